"""PGQueuer with its psycopg driver: ``SyncQueries`` for producers, ``pgq run`` to drain."""

from __future__ import annotations

import json
import os
import sys
import time
from importlib.metadata import version
from typing import Any

import psycopg
from pgqueuer.adapters.drivers.psycopg import SyncPsycopgDriver
from pgqueuer.adapters.persistence.queries import SyncQueries
from psycopg.conninfo import conninfo_to_dict

from bench.systems.base import BIN, PostgresQueue, WorkerSpec, child_env, run_installer

APP = "bench.apps.pgqueuer_app"
#: Jobs fetched per dequeue query; PGQueuer's default is 10. Quick drains on 2026-12-03
#: (asyncpg): batch 10 705 jobs/s, 100 2,952, 500 5,039, 1000 4,907.
BATCH_SIZE = int(os.environ.get("BENCH_PGQUEUER_BATCH", "500"))
#: The worker's driver. ``PsycopgDriver`` waits up to a second after a wakeup (see
#: bench/README.md); ``AsyncpgDriver`` takes notifications by callback and does not:
#: quick latency on 2026-12-03, p50/p99 15.5/92 ms against 31.6/1,034 (loaded machine).
DRIVER = os.environ.get("BENCH_PGQUEUER_DRIVER", "asyncpg")


def url(dsn: str) -> str:
    """*dsn* as a URL: asyncpg (which ``pgq`` prefers when installed) reads no other form."""
    parts = conninfo_to_dict(dsn)
    user = parts.get("user", "")
    host, port = parts.get("host", "localhost"), parts.get("port", "5432")
    return f"postgresql://{user}@{host}:{port}/{parts.get('dbname', '')}"


def _payload(i: int) -> bytes:
    return json.dumps({"seq": i}).encode()


class _Producer:
    def __init__(self, dsn: str) -> None:
        self.conn: psycopg.Connection[Any] = psycopg.connect(dsn, autocommit=True)
        self.queries = SyncQueries(SyncPsycopgDriver(self.conn))

    def enqueue(self, kind: str, i: int) -> None:
        self.queries.enqueue(kind, _payload(i))

    def close(self) -> None:
        self.conn.close()


class PgqueuerSystem(PostgresQueue):
    name = "pgqueuer"
    pending_sql = "select exists (select from pgqueuer)"
    remaining_sql = "select count(*) from pgqueuer"
    failed_sql = "select count(*) from pgqueuer_log where status = 'exception'"

    def version(self) -> str:
        return f"pgqueuer {version('pgqueuer')}"

    def install(self, dsn: str) -> None:
        run_installer([str(BIN / "pgq"), "--pg-dsn", url(dsn), "install"], child_env(dsn))

    def producer(self, dsn: str) -> _Producer:
        return _Producer(dsn)

    def bulk_enqueue(self, dsn: str, count: int, kind: str = "noop", start: int = 0) -> float:
        producer = _Producer(dsn)
        try:
            began = time.perf_counter()
            seqs = range(start, start + count)
            producer.queries.enqueue([kind] * count, [_payload(i) for i in seqs], [0] * count)
            return time.perf_counter() - began
        finally:
            producer.close()

    def worker(self, dsn: str, queues: dict[str, int] | None = None) -> WorkerSpec:
        argv = [sys.executable, "-m", APP, f"--batch-size={BATCH_SIZE}", "--dequeue-timeout=30"]
        description = f"1 process (pgqueuer.run), {DRIVER} driver, batch size {BATCH_SIZE}"
        return WorkerSpec(argv, child_env(url(dsn), BENCH_PGQUEUER_DRIVER=DRIVER), description)
