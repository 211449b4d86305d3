"""pgjobs, from this repository: enqueue API now, worker once ``pgjobs.Server`` exists."""

from __future__ import annotations

import sys
import time
from typing import Any

import psycopg

import pgjobs
from bench.systems.base import Unavailable, WorkerSpec, child_env, run_installer

#: Async no-op handlers cost little to run concurrently; at the default claim_batch (500)
#: one claim can fill every free slot.
CONCURRENCY = 500


def worker_available() -> bool:
    """The worker API the benchmark drives: ``pgjobs.Server`` and ``pgjobs.Config``."""
    return hasattr(pgjobs, "Server") and hasattr(pgjobs, "Config")


class _Producer:
    def __init__(self, dsn: str) -> None:
        self.conn: psycopg.Connection[Any] = psycopg.connect(dsn, autocommit=True)

    def enqueue(self, kind: str, i: int) -> None:
        pgjobs.enqueue(self.conn, pgjobs.Task(kind, {"seq": i}))

    def close(self) -> None:
        self.conn.close()


class PgjobsSystem:
    name = "pgjobs"
    pending_sql = (
        "select exists (select from pgjobs.jobs where state = 'available')"
        " or exists (select from pgjobs.jobs where state = 'running')"
    )
    remaining_sql = "select count(*) from pgjobs.jobs where state in ('available', 'running')"
    failed_sql = (
        "select count(*) from pgjobs.jobs where state in ('failed', 'cancelled', 'scheduled')"
    )

    def version(self) -> str:
        return f"pgjobs {pgjobs.__version__}"

    def install(self, dsn: str) -> None:
        run_installer([sys.executable, "-m", "pgjobs", "migrate", "--dsn", dsn], child_env(dsn))

    def producer(self, dsn: str) -> _Producer:
        return _Producer(dsn)

    def bulk_enqueue(self, dsn: str, count: int, kind: str = "noop", start: int = 0) -> float:
        with psycopg.connect(dsn, autocommit=True) as conn:
            began = time.perf_counter()
            tasks = [pgjobs.Task(kind, {"seq": i}) for i in range(start, start + count)]
            pgjobs.enqueue_many(conn, tasks)
            return time.perf_counter() - began

    def worker(self, dsn: str, queues: dict[str, int] | None = None) -> WorkerSpec:
        if not worker_available():
            raise Unavailable("pgjobs worker not built yet (no pgjobs.Server)")
        queues = queues or {"default": 1}
        spec = ",".join(f"{name}={weight}" for name, weight in queues.items())
        argv = [sys.executable, "-m", "pgjobs", "worker", "bench.apps.pgjobs_app:server"]
        argv += ["--dsn", dsn, "--concurrency", str(CONCURRENCY), "--queues", spec]
        argv += ["--log-level", "WARNING"]
        env = child_env(dsn, BENCH_CONCURRENCY=str(CONCURRENCY), BENCH_QUEUES=spec)
        return WorkerSpec(argv, env, f"1 process, async handlers, concurrency {CONCURRENCY}")
