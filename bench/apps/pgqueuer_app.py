"""The PGQueuer app, run by ``python -m bench.apps.pgqueuer_app --batch-size 100``.

That is ``pgqueuer.run(factory, ...)``, documented as what ``pgq run`` does without the
CLI: with typer 0.29, ``pgq run`` 1.6 fails while parsing its ``--log-level`` default
('str' object has no attribute 'name'), before it starts any worker.

The factory is an async context manager that owns the worker's one connection: an
asyncpg one (``AsyncpgDriver``) or an autocommit psycopg ``AsyncConnection``
(``PsycopgDriver``), by ``BENCH_PGQUEUER_DRIVER``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg
import pgqueuer
import psycopg
from pgqueuer import AsyncpgDriver, PgQueuer, PsycopgDriver
from pgqueuer.models import Job
from pgqueuer.ports.driver import Driver

from bench.apps import signal


@asynccontextmanager
async def _driver(name: str) -> AsyncIterator[Driver]:
    dsn = os.environ.get("BENCH_DSN", "")
    if name == "asyncpg":
        conn = await asyncpg.connect(dsn)
        try:
            yield AsyncpgDriver(conn)
        finally:
            await conn.close()
    else:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as aconn:
            yield PsycopgDriver(aconn)


@asynccontextmanager
async def create() -> AsyncIterator[PgQueuer]:
    async with _driver(os.environ.get("BENCH_PGQUEUER_DRIVER", "psycopg")) as driver:
        pgq = PgQueuer(driver)

        @pgq.entrypoint("noop")
        async def noop(job: Job) -> None:
            signal.noop_called()

        @pgq.entrypoint("ping")
        async def ping(job: Job) -> None:
            signal.ping_called(int(json.loads(job.payload or b"{}")["seq"]))

        yield pgq


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.apps.pgqueuer_app")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--dequeue-timeout", type=float, default=30.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(
        pgqueuer.run(
            create,
            batch_size=args.batch_size,
            dequeue_timeout=timedelta(seconds=args.dequeue_timeout),
        )
    )


if __name__ == "__main__":
    main()
