"""Procrastinate 3: sync ``defer`` for producers, its CLI worker for draining."""

from __future__ import annotations

import time
from importlib.metadata import version
from typing import Any

import procrastinate

from bench.systems.base import BIN, PostgresQueue, WorkerSpec, child_env, run_installer

APP = "bench.apps.procrastinate_app.app"
#: Concurrent job slots in the one worker process; each fetches one job per query and
#: holds a pool connection, so the pool gets one connection per slot.
CONCURRENCY = 10


def _cli(*args: str) -> list[str]:
    return [str(BIN / "procrastinate"), f"--app={APP}", "--log-level=warning", *args]


class _Producer:
    def __init__(self, dsn: str) -> None:
        connector = procrastinate.PsycopgConnector(conninfo=dsn, min_size=1, max_size=1)
        self.app = procrastinate.App(connector=connector).open()

    def enqueue(self, kind: str, i: int) -> None:
        self.app.configure_task(kind).defer(seq=i)

    def close(self) -> None:
        self.app.close()


class ProcrastinateSystem(PostgresQueue):
    name = "procrastinate"
    pending_sql = "select exists (select from procrastinate_jobs where status in ('todo', 'doing'))"
    remaining_sql = "select count(*) from procrastinate_jobs where status in ('todo', 'doing')"
    failed_sql = "select count(*) from procrastinate_jobs where status in ('failed', 'aborted')"

    def version(self) -> str:
        return f"procrastinate {version('procrastinate')}"

    def install(self, dsn: str) -> None:
        run_installer(_cli("schema", "--apply"), child_env(dsn))

    def producer(self, dsn: str) -> _Producer:
        return _Producer(dsn)

    def bulk_enqueue(self, dsn: str, count: int, kind: str = "noop", start: int = 0) -> float:
        producer = _Producer(dsn)
        try:
            producer.app.connector.get_sync_connector().execute_query("select 1")
            began = time.perf_counter()
            kwargs: list[dict[str, Any]] = [{"seq": i} for i in range(start, start + count)]
            producer.app.configure_task(kind).batch_defer(*kwargs)
            return time.perf_counter() - began
        finally:
            producer.close()

    def worker(self, dsn: str, queues: dict[str, int] | None = None) -> WorkerSpec:
        argv = _cli("worker", f"--concurrency={CONCURRENCY}", "--delete-jobs=successful")
        env = child_env(dsn, BENCH_POOL_SIZE=str(CONCURRENCY + 2))
        description = (
            f"1 process, async handlers, concurrency {CONCURRENCY}, LISTEN/NOTIFY on, "
            "deletes succeeded jobs"
        )
        return WorkerSpec(argv, env, description)
