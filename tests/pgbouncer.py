"""A real PgBouncer in transaction mode in front of the test server, for the tests that
prove pgjobs works through one.

:class:`PgBouncer` writes an ini file and a userlist into a temporary directory, starts
``/usr/sbin/pgbouncer`` on a free port with a wildcard database entry (every database of
the test server is reachable under its own name, so each test's fresh database is too),
waits until it accepts connections, and stops it on :meth:`stop`. PgBouncer refuses to
run as root, so as root it runs as the ``postgres`` user (``-u``), like the embedded
server. Tests that need it are skipped where it is not installed (``.ci/run`` installs
Debian's package).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["BINARY", "PgBouncer", "available", "free_port", "routed"]

BINARY = "/usr/sbin/pgbouncer"
#: Longest wait for PgBouncer to accept connections after it starts.
START_TIMEOUT = 15.0


#: Ports of the PgBouncers running now (see :func:`routed`).
_PORTS: set[int] = set()


def routed(dsn: str) -> bool:
    """True if *dsn* goes through one of the PgBouncers started here."""
    port = conninfo_to_dict(dsn).get("port")
    return port is not None and int(port) in _PORTS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run_as() -> str | None:
    """The user to run PgBouncer as when we are root (it refuses to run as root)."""
    return "postgres" if os.geteuid() == 0 else None


class PgBouncer:
    """PgBouncer in ``pool_mode = transaction`` in front of the server of *server_dsn*."""

    def __init__(self, server_dsn: str, *, pool_size: int = 20) -> None:
        self.server = conninfo_to_dict(server_dsn)
        self.pool_size = pool_size
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pgjobs-pgbouncer-"))
        self.process: subprocess.Popen[bytes] | None = None

    def dsn(self, server_dsn: str) -> str:
        """*server_dsn* (a database of the same server) reached through PgBouncer."""
        params = conninfo_to_dict(server_dsn)
        params.update(host="127.0.0.1", port=str(self.port))
        params.pop("password", None)  # auth_type = trust between the tests and PgBouncer
        return make_conninfo(**params)  # type: ignore[arg-type]

    def _write_config(self) -> Path:
        server = self.server
        user = str(server.get("user") or os.environ.get("USER") or "postgres")
        target = [f"host={server.get('host') or '127.0.0.1'}", f"port={server.get('port') or 5432}"]
        target.append(f"user={user}")
        if server.get("password"):
            target.append(f"password={server['password']}")
        (self.dir / "userlist.txt").write_text(f'"{user}" ""\n')
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(
            "\n".join(
                [
                    "[databases]",
                    f"* = {' '.join(target)}",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {self.port}",
                    "unix_socket_dir =",
                    "auth_type = trust",
                    f"auth_file = {self.dir / 'userlist.txt'}",
                    "pool_mode = transaction",
                    f"default_pool_size = {self.pool_size}",
                    "max_client_conn = 2000",
                    "max_db_connections = 0",
                    "server_check_delay = 0",
                    f"admin_users = {user}",
                    f"logfile = {self.dir / 'pgbouncer.log'}",
                    f"pidfile = {self.dir / 'pgbouncer.pid'}",
                    "",
                ]
            )
        )
        return ini

    def start(self) -> PgBouncer:
        ini = self._write_config()
        user = _run_as()
        if user is not None:
            shutil.chown(self.dir, user)
            for path in self.dir.iterdir():
                shutil.chown(path, user)
        command = [BINARY, *(["-u", user] if user else []), str(ini)]
        # Its log goes to the logfile too. A pipe that nobody reads fills after 64 KB of
        # log lines (a few hundred logins), and PgBouncer then blocks on it for good.
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with psycopg.connect(self.admin_dsn(), autocommit=True, connect_timeout=2):
                    _PORTS.add(self.port)
                    return self
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"PgBouncer did not start:\n{self.log()}") from None
                time.sleep(0.05)

    def admin_dsn(self) -> str:
        """PgBouncer's own console (``SHOW POOLS`` and the like)."""
        user = str(self.server.get("user") or "postgres")
        return make_conninfo(host="127.0.0.1", port=self.port, dbname="pgbouncer", user=user)

    def server_connections(self, database: str) -> int:
        """Server connections PgBouncer holds to *database* now (active, idle, used...)."""
        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            conn.prepare_threshold = None
            cursor = conn.execute("SHOW POOLS")
            columns = [c.name for c in cursor.description or ()]
            total = 0
            for row in cursor.fetchall():
                pool = dict(zip(columns, row, strict=True))
                if pool["database"] == database:
                    total += sum(
                        int(pool[name])
                        for name in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login")
                    )
            return total

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        _PORTS.discard(self.port)
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # immediate shutdown
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def available() -> bool:
    return Path(BINARY).exists()
