"""``Client.enqueue`` against a plain INSERT: ``python -m bench.client_enqueue``.

Times, in rounds that alternate the ways, enqueueing one job at a time through
``pgjobs.Client``, ``pgjobs.AsyncClient`` and a one-row INSERT on an autocommit
connection (the ceiling: one round trip per job). Prints each way's best round, in jobs
per second, and the clients' rates as a share of the INSERT's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg

import pgjobs
from bench import pg
from bench.systems import get


def _plain(dsn: str, jobs: int) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        insert = "insert into plain_jobs (kind, payload) values (%s, %s::jsonb)"
        started = time.perf_counter()
        for i in range(jobs):
            conn.execute(insert, ("noop", json.dumps({"seq": i})))
        return time.perf_counter() - started


def _client(dsn: str, jobs: int) -> float:
    with pgjobs.Client(dsn, max_connections=1) as client:
        started = time.perf_counter()
        for i in range(jobs):
            client.enqueue(pgjobs.Task("noop", {"seq": i}))
        return time.perf_counter() - started


def _async_client(dsn: str, jobs: int) -> float:
    async def go() -> float:
        async with pgjobs.AsyncClient(dsn, max_connections=1) as client:
            started = time.perf_counter()
            for i in range(jobs):
                await client.enqueue(pgjobs.Task("noop", {"seq": i}))
            return time.perf_counter() - started

    return asyncio.run(go())


WAYS: dict[str, Callable[[str, int], float]] = {
    "plain INSERT": _plain,
    "Client": _client,
    "AsyncClient": _async_client,
}


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.client_enqueue", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--dsn", default=pg.DEFAULT_ADMIN_DSN, help="an admin DSN of the server")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per way per round")
    args = parser.parse_args()
    best: dict[str, float] = {}
    with pg.fresh_database(args.dsn, "client_enqueue") as dsn:
        get("pgjobs").install(dsn)
        get("plain").install(dsn)
        for _ in range(args.rounds):
            for name, way in WAYS.items():
                rate = args.jobs / way(dsn, args.jobs)
                best[name] = max(best.get(name, 0.0), rate)
    ceiling = best["plain INSERT"]
    for name, rate in best.items():
        share: Any = f"{rate / ceiling:6.1%}"
        print(f"{name:13} {rate:8,.0f} jobs/s  {share} of the plain INSERT")
    return 0


if __name__ == "__main__":
    sys.exit(main())
