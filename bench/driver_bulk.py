"""Bulk enqueue through each driver: ``python -m bench.driver_bulk --dsn DSN``.

Times ``enqueue_many`` / ``enqueue_many_async`` of N tasks (100k by default) in one
transaction through every driver pgjobs accepts, and prints each rate beside psycopg 3's.
Django is not timed apart: pgjobs unwraps its connection to the psycopg 3 or psycopg2
connection under it, timed here.
The jobs are rolled back, so the database is left as it was (it must be migrated).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

import pgjobs


def _tasks(count: int) -> list[pgjobs.Task]:
    return [pgjobs.Task("bulk", {"n": n, "to": "someone@example.com"}) for n in range(count)]


def _url(dsn: str, dialect: str) -> str:
    info = conninfo_to_dict(dsn)
    user = info.get("user") or "root"
    return (
        f"postgresql+{dialect}://{user}@{info.get('host') or '127.0.0.1'}:"
        f"{info.get('port') or 5432}/{info['dbname']}"
    )


def _sync(dsn: str, driver: str, count: int) -> float:
    tasks = _tasks(count)
    if driver == "psycopg":
        with psycopg.connect(dsn) as conn:
            return _timed(lambda: pgjobs.enqueue_many(conn, tasks), conn.rollback)
    if driver == "psycopg2":
        import psycopg2

        raw = psycopg2.connect(dsn)
        try:
            return _timed(lambda: pgjobs.enqueue_many(raw, tasks), raw.rollback)
        finally:
            raw.close()
    import sqlalchemy

    engine = sqlalchemy.create_engine(_url(dsn, driver.removeprefix("sqlalchemy-")))
    try:
        with engine.connect() as sa:
            return _timed(lambda: pgjobs.enqueue_many(sa, tasks), sa.rollback)
    finally:
        engine.dispose()


def _timed(call: Callable[[], Any], undo: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    elapsed = time.perf_counter() - start
    undo()
    return elapsed


async def _async(dsn: str, driver: str, count: int) -> float:
    tasks = _tasks(count)
    if driver == "psycopg-async":
        async with await psycopg.AsyncConnection.connect(dsn) as aconn:
            start = time.perf_counter()
            await pgjobs.enqueue_many_async(aconn, tasks)
            elapsed = time.perf_counter() - start
            await aconn.rollback()
            return elapsed
    if driver == "asyncpg":
        import asyncpg

        info = conninfo_to_dict(dsn)
        conn = await asyncpg.connect(
            user=info.get("user") or "root",
            host=info.get("host") or "127.0.0.1",
            port=int(info.get("port") or 5432),
            database=info["dbname"],
        )
        try:
            transaction = conn.transaction()
            await transaction.start()
            start = time.perf_counter()
            await pgjobs.enqueue_many_async(conn, tasks)
            elapsed = time.perf_counter() - start
            await transaction.rollback()
            return elapsed
        finally:
            await conn.close()
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(
        _url(dsn, driver.removeprefix("sqlalchemy-").removesuffix("-async"))
    )
    try:
        async with engine.connect() as sa:
            start = time.perf_counter()
            await pgjobs.enqueue_many_async(sa, tasks)
            elapsed = time.perf_counter() - start
            await sa.rollback()
            return elapsed
    finally:
        await engine.dispose()


SYNC = ["psycopg", "psycopg2", "sqlalchemy-psycopg", "sqlalchemy-psycopg2"]
ASYNC = ["psycopg-async", "asyncpg", "sqlalchemy-asyncpg", "sqlalchemy-psycopg-async"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    rates: dict[str, float] = {}
    for driver in SYNC + ASYNC:
        runs = [
            _sync(args.dsn, driver, args.count)
            if driver in SYNC
            else asyncio.run(_async(args.dsn, driver, args.count))
            for _ in range(args.repeat)
        ]
        rates[driver] = args.count / min(runs)
    base = rates["psycopg"]
    for driver, rate in rates.items():
        print(f"{driver:26} {rate:10,.0f} tasks/s  {rate / base:5.2f} x psycopg 3")


if __name__ == "__main__":
    main()
