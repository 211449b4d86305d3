"""What the workloads need from a queue system, and the pieces every system shares."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import psycopg

#: The bench venv's executables (pgq, procrastinate) sit next to its python.
BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


class Unavailable(Exception):
    """This system cannot run this workload (yet); the table shows n/a with the reason."""


class Producer(Protocol):
    """One connection that enqueues one job per transaction."""

    def enqueue(self, kind: str, i: int) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class TimedProducer(Producer, Protocol):
    """An asyncio producer: enqueues ``noop`` jobs for *seconds* in one coroutine."""

    def enqueue_for(self, seconds: float, first: int) -> int: ...


@dataclass(frozen=True)
class WorkerSpec:
    """How to start one worker process of a system, and what that configuration is."""

    argv: list[str]
    env: dict[str, str]
    description: str


class Probe(Protocol):
    """Asks a system's store how far a drain has got, from outside the worker."""

    #: Commits the probe's own queries made in the measured database (subtracted).
    commits: int

    def busy(self) -> bool:
        """True while any job is still waiting or running."""

    def remaining(self) -> int:
        """Jobs still waiting or running, for a drain that ran out of time."""

    def failed(self) -> int:
        """Jobs that ended in failure (a broken handler, not a win)."""

    def close(self) -> None: ...


class SqlProbe:
    """The :class:`Probe` of a system that keeps its jobs in Postgres: its three queries."""

    def __init__(self, dsn: str, pending_sql: str, remaining_sql: str, failed_sql: str) -> None:
        self.conn: psycopg.Connection[Any] = psycopg.connect(dsn, autocommit=True)
        self.sql = (pending_sql, remaining_sql, failed_sql)
        self.commits = 0

    def _one(self, sql: str) -> Any:
        self.commits += 1
        (value,) = self.conn.execute(sql).fetchone()  # type: ignore[misc]
        return value

    def busy(self) -> bool:
        return bool(self._one(self.sql[0]))

    def remaining(self) -> int:
        return int(self._one(self.sql[1]))

    def failed(self) -> int:
        return int(self._one(self.sql[2]))

    def close(self) -> None:
        self.conn.close()


class System(Protocol):
    """A queue under test. Each lives in its own module of :mod:`bench.systems`."""

    name: str
    #: False for the Redis queues: commits and WAL of the run's database mean nothing there.
    on_postgres: bool

    def version(self) -> str: ...

    def install(self, dsn: str) -> None:
        """Create the system's schema in a fresh database, with its own installer."""

    def reset(self) -> None:
        """Empty whatever store outlives a database (Redis); called for every workload."""

    def probe(self, dsn: str) -> Probe:
        """How the drain sees the queue empty (:class:`SqlProbe` for Postgres queues)."""

    def producer(self, dsn: str) -> Producer: ...

    def bulk_enqueue(self, dsn: str, count: int, kind: str = "noop", start: int = 0) -> float:
        """Enqueue *count* jobs in one call of the system's bulk API.

        Returns the seconds from having plain numbers to the committed call: building
        the system's input objects is part of what a user pays.
        """

    def worker(self, dsn: str, queues: dict[str, int] | None = None) -> WorkerSpec:
        """One worker process in the system's best configuration (raises Unavailable)."""


def child_env(dsn: str, **extra: str) -> dict[str, str]:
    """Environment for a worker or installer: ours, plus the DSN and the repo on the path."""
    env = dict(os.environ)
    env["BENCH_DSN"] = dsn
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def run_installer(argv: list[str], env: dict[str, str]) -> None:
    """Run a schema installer to completion (bounded), raising with its output on failure."""
    done = subprocess.run(
        argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed:\n{done.stdout}\n{done.stderr}")


class PostgresQueue:
    """What every queue kept in Postgres shares: a fresh database is all the reset it needs."""

    on_postgres = True
    #: ``select exists(...)`` true while any job is still waiting or running.
    pending_sql: str
    #: ``select count(*)`` of the same jobs, for a drain that ran out of time.
    remaining_sql: str
    #: ``select count(*)`` of jobs that ended in failure (a broken handler, not a win).
    failed_sql: str

    def reset(self) -> None:
        pass

    def probe(self, dsn: str) -> SqlProbe:
        return SqlProbe(dsn, self.pending_sql, self.remaining_sql, self.failed_sql)
