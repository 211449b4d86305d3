"""pgjobs, from this repository: enqueue API now, worker once ``pgjobs.Server`` exists."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import psycopg

import pgjobs
from bench.systems.base import PostgresQueue, Unavailable, WorkerSpec, child_env, run_installer

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


class _ClientProducer:
    """``Client.enqueue``: the pool-owning client, at its default settings."""

    def __init__(self, dsn: str) -> None:
        self.client = pgjobs.Client(dsn)
        self.client.open()

    def enqueue(self, kind: str, i: int) -> None:
        self.client.enqueue(pgjobs.Task(kind, {"seq": i}))

    def close(self) -> None:
        self.client.close()


class _AsyncClientProducer:
    """``await AsyncClient.enqueue``, on an event loop of its own.

    ``enqueue_for`` runs the whole timed loop inside one coroutine, as an async app
    would, so that the event loop's entry per call is not charged to the client.
    """

    def __init__(self, dsn: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = pgjobs.AsyncClient(dsn)
        self.loop.run_until_complete(self.client.open())

    def enqueue(self, kind: str, i: int) -> None:
        self.loop.run_until_complete(self.client.enqueue(pgjobs.Task(kind, {"seq": i})))

    def enqueue_for(self, seconds: float, first: int) -> int:
        async def send() -> int:
            sent = 0
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                await self.client.enqueue(pgjobs.Task("noop", {"seq": first + sent}))
                sent += 1
            return sent

        return self.loop.run_until_complete(send())

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


class PgjobsSystem(PostgresQueue):
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


class PgjobsClient(PgjobsSystem):
    """pgjobs through ``Client.enqueue`` (enqueue workload only)."""

    name = "pgjobs_client"

    def producer(self, dsn: str) -> _ClientProducer:  # type: ignore[override]
        return _ClientProducer(dsn)


class PgjobsAsyncClient(PgjobsSystem):
    """pgjobs through ``AsyncClient.enqueue`` (enqueue and latency workloads)."""

    name = "pgjobs_async_client"

    def producer(self, dsn: str) -> _AsyncClientProducer:  # type: ignore[override]
        return _AsyncClientProducer(dsn)


#: The sync-handler worker runs most users' handlers: default settings but concurrency.
SYNC_CONCURRENCY = 50


class PgjobsSync(PgjobsSystem):
    """The pgjobs worker with sync (``def``) handlers, at default settings (drain only)."""

    name = "pgjobs_sync"

    def worker(self, dsn: str, queues: dict[str, int] | None = None) -> WorkerSpec:
        argv = [sys.executable, "-m", "pgjobs", "worker", "bench.apps.pgjobs_sync_app:server"]
        argv += ["--dsn", dsn, "--concurrency", str(SYNC_CONCURRENCY), "--log-level", "WARNING"]
        env = child_env(dsn, BENCH_CONCURRENCY=str(SYNC_CONCURRENCY))
        description = (
            f"1 process, sync handlers, concurrency {SYNC_CONCURRENCY}, defaults otherwise"
        )
        return WorkerSpec(argv, env, description)


#: Jobs the Python-loop ceiling claims per statement: pgjobs' ``claim_batch``.
LOOP_BATCH = 500


class PythonLoop(PgjobsSystem):
    """The drain's ceiling in Python (bench/apps/loop_app.py), on pgjobs' own table."""

    name = "loop"

    def version(self) -> str:
        return "lean Python loop"

    def worker(self, dsn: str, queues: dict[str, int] | None = None) -> WorkerSpec:
        argv = [sys.executable, "-m", "bench.apps.loop_app", f"--batch={LOOP_BATCH}"]
        description = (
            f"claim {LOOP_BATCH} with one SKIP LOCKED statement, no-op coroutines as tasks,"
            " delete on a second connection during the next claim; synchronous_commit off"
        )
        return WorkerSpec(argv, child_env(dsn), description)
