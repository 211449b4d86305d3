"""PGQueuer with its psycopg driver: ``SyncQueries`` for producers, ``pgq run`` to drain."""

from __future__ import annotations

import json
import sys
import time
from importlib.metadata import version
from typing import Any

import psycopg
from pgqueuer.adapters.drivers.psycopg import SyncPsycopgDriver
from pgqueuer.adapters.persistence.queries import SyncQueries

from bench.systems.base import BIN, WorkerSpec, child_env, run_installer

APP = "bench.apps.pgqueuer_app"
#: Jobs fetched per dequeue query; PGQueuer's default is 10.
BATCH_SIZE = 100


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


class PgqueuerSystem:
    name = "pgqueuer"
    pending_sql = "select exists (select from pgqueuer)"
    remaining_sql = "select count(*) from pgqueuer"
    failed_sql = "select count(*) from pgqueuer_log where status = 'exception'"

    def version(self) -> str:
        return f"pgqueuer {version('pgqueuer')}"

    def install(self, dsn: str) -> None:
        run_installer([str(BIN / "pgq"), "--pg-dsn", dsn, "install"], child_env(dsn))

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
        description = f"1 process (pgqueuer.run), psycopg driver, batch size {BATCH_SIZE}"
        return WorkerSpec(argv, child_env(dsn), description)
