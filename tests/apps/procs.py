"""Start, watch and stop real worker processes; wait on the database without sleeping blind.

Every wait here polls (every 50 ms by default) up to a generous bound and fails with a
message saying what it waited for and what the worker logged; no test asserts a duration.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]
APP = "tests.apps.jobs:server"

T = TypeVar("T")


def wait_for(
    check: Callable[[], T],
    what: str,
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    detail: Callable[[], str] | None = None,
) -> T:
    """Call *check* until it returns something truthy, and return that; fail after *timeout*."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            extra = f"\n{detail()}" if detail else ""
            pytest.fail(f"gave up after {timeout:g}s waiting for {what}{extra}")
        time.sleep(interval)


class Probe:
    """Looks at the test database from outside, reconnecting when the connection was cut
    (the tests terminate backends and restart the server)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: psycopg.Connection[Any] | None = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
        return self._conn

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[Any]:
        cursor = self._connection().execute(sql.encode(), params)
        return cursor.fetchall() if cursor.description else []

    def value(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    def try_value(self, sql: str, params: Any = None) -> Any:
        """:meth:`value`, or None while the server is unreachable."""
        try:
            return self.value(sql, params)
        except psycopg.OperationalError:
            self.close()
            return None

    def job(self, job_id: int) -> dict[str, Any] | None:
        rows = self.rows(
            "select state::text, attempt, errors, last_error, worker_id::text "
            "from pgjobs.jobs where id = %s",
            [job_id],
        )
        if not rows:
            return None
        state, attempt, errors, last_error, worker_id = rows[0]
        return {
            "state": state,
            "attempt": attempt,
            "errors": errors,
            "last_error": last_error,
            "worker_id": worker_id,
        }

    def states(self) -> dict[str, int]:
        return dict(self.rows("select state::text, count(*) from pgjobs.jobs group by 1"))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class WorkerProcess:
    """``python -m pgjobs worker APP --dsn DSN ...`` run from the repository root, its output
    (stdout and stderr) in ``<out>/<name>.log``. The app reads ``PGJOBS_TEST_*`` (see
    :mod:`tests.apps.jobs`)."""

    def __init__(
        self,
        dsn: str | None,
        out: Path,
        *args: str,
        name: str = "worker",
        app: str = APP,
        config: dict[str, Any] | None = None,
        kinds: Sequence[str] | None = None,
        backoff: float | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.out = out
        self.log_path = out / f"{name}.log"
        environ = dict(os.environ)
        environ["PGJOBS_TEST_OUT"] = str(out)
        environ["PGJOBS_TEST_CONFIG"] = json.dumps(config or {})
        if kinds is not None:
            environ["PGJOBS_TEST_KINDS"] = ",".join(kinds)
        if backoff is not None:
            environ["PGJOBS_TEST_BACKOFF"] = str(backoff)
        environ.update(env or {})
        command = [sys.executable, "-m", "pgjobs", "worker", app]
        if dsn is not None:
            command += ["--dsn", dsn]
        command += list(args)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command, cwd=REPO, env=environ, stdout=log, stderr=subprocess.STDOUT
            )
        self.pid = self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def describe(self) -> str:
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        return f"--- {self.name} (pid {self.pid}, {state}) log:\n{self.log()[-6000:]}"

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_log(self, text: str, *, timeout: float = 30.0, count: int = 1) -> None:
        """Wait until *text* appears *count* times in the log (while the process runs)."""

        def seen() -> bool:
            if self.log().count(text) >= count:
                return True
            if not self.running():
                pytest.fail(f"{self.name} exited before logging {text!r}\n{self.describe()}")
            return False

        wait_for(seen, f"{self.name} to log {text!r}", timeout=timeout, detail=self.describe)

    def wait_started(self, timeout: float = 30.0) -> None:
        self.wait_log(" started: queues ", timeout=timeout)

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the process to exit and return its exit status; fail (and kill it) if
        it does not within *timeout*."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} did not exit within {timeout:g}s\n{self.describe()}")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then :meth:`wait`."""
        if self.running():
            self.send(signal.SIGTERM)
        return self.wait(timeout)


class Workers:
    """Starts worker processes for a test and kills whatever is left at its end."""

    def __init__(self, dsn: str, out: Path) -> None:
        self.dsn = dsn
        self.out = out
        self.started: list[WorkerProcess] = []

    def start(self, *args: str, name: str | None = None, **kwargs: Any) -> WorkerProcess:
        dsn = kwargs.pop("dsn", self.dsn)
        worker = WorkerProcess(
            dsn, self.out, *args, name=name or f"worker{len(self.started) + 1}", **kwargs
        )
        self.started.append(worker)
        return worker

    def describe(self) -> str:
        return "\n".join(worker.describe() for worker in self.started)

    def executed(self) -> list[int]:
        """Every job id the ``record`` handlers ran, from the files workers write at exit."""
        ids: list[int] = []
        for path in sorted(self.out.glob("executed-*.txt")):
            ids.extend(int(line) for line in path.read_text().split())
        return ids

    def close(self) -> None:
        for worker in self.started:
            if worker.running():
                worker.kill()


def markers(out: Path, event: str) -> list[str]:
    """Names of the marker files for *event* (``started-17-1``, ...)."""
    return sorted(path.name for path in out.glob(f"{event}-*"))


def terminate_backends(probe: Probe) -> int:
    """Cut every other connection to the test database; return how many were cut."""
    return int(
        probe.value(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity "
            "where datname = current_database() and pid <> pg_backend_pid()"
        )
    )


def iter_lines(text: str, needle: str) -> Iterator[str]:
    return (line for line in text.splitlines() if needle in line)
