"""``Client.enqueue`` against a plain INSERT: ``python -m bench.client_enqueue``.

Enqueues one job at a time through ``pgjobs.Client``, ``pgjobs.AsyncClient`` and a
one-row INSERT on an autocommit connection (the ceiling: one round trip per job),
alternating the three every ``BLOCK`` jobs so that a busy machine slows them alike.
Prints, per round, each way's rate and the clients' rates as a share of the INSERT's,
then the median share over the rounds.

A commit waits for its WAL flush, which on a shared disk varies more than a round trip
takes: ``--async-commit`` sets ``synchronous_commit = off`` for the benchmark's
database, so that what is compared is the client and its round trips.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg

import pgjobs
from bench import pg
from bench.systems import get

#: Jobs each way enqueues before the next way's turn.
BLOCK = 50

PLAIN = "insert into plain_jobs (kind, payload) values (%s, %s::jsonb)"


def _ways(dsn: str, stack: Any) -> dict[str, Callable[[int], float]]:
    """Each way as a function that enqueues *n* jobs and returns the seconds it took."""
    conn = stack.enter_context(psycopg.connect(dsn, autocommit=True))
    client = stack.enter_context(pgjobs.Client(dsn, max_connections=1))
    runner = stack.enter_context(asyncio.Runner())
    aclient = pgjobs.AsyncClient(dsn, max_connections=1)
    runner.run(aclient.open())
    stack.callback(lambda: runner.run(aclient.close()))

    def plain(n: int) -> float:
        started = time.perf_counter()
        for i in range(n):
            conn.execute(PLAIN, ("noop", json.dumps({"seq": i})))
        return time.perf_counter() - started

    def sync(n: int) -> float:
        started = time.perf_counter()
        for i in range(n):
            client.enqueue(pgjobs.Task("noop", {"seq": i}))
        return time.perf_counter() - started

    async def enqueue_async(n: int) -> float:
        started = time.perf_counter()
        for i in range(n):
            await aclient.enqueue(pgjobs.Task("noop", {"seq": i}))
        return time.perf_counter() - started

    return {
        "plain INSERT": plain,
        "Client": sync,
        "AsyncClient": lambda n: runner.run(enqueue_async(n)),
    }


def main() -> int:
    import contextlib

    parser = argparse.ArgumentParser(
        prog="python -m bench.client_enqueue", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--dsn", default=pg.DEFAULT_ADMIN_DSN, help="an admin DSN of the server")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per way per round")
    parser.add_argument(
        "--async-commit", action="store_true", help="synchronous_commit = off (see above)"
    )
    args = parser.parse_args()
    shares: dict[str, list[float]] = {"Client": [], "AsyncClient": []}
    with pg.fresh_database(args.dsn, "client_enqueue") as dsn, contextlib.ExitStack() as stack:
        get("pgjobs").install(dsn)
        get("plain").install(dsn)
        if args.async_commit:
            with psycopg.connect(dsn, autocommit=True) as conn:
                dbname = conn.info.dbname
                conn.execute(f'alter database "{dbname}" set synchronous_commit = off'.encode())
        ways = _ways(dsn, stack)
        for number in range(1, args.rounds + 1):
            seconds = dict.fromkeys(ways, 0.0)
            for _ in range(args.jobs // BLOCK):
                for name, way in ways.items():
                    seconds[name] += way(BLOCK)
            rates = {name: args.jobs / spent for name, spent in seconds.items()}
            line = [f"round {number}: plain INSERT {rates['plain INSERT']:,.0f} jobs/s"]
            for name in shares:
                shares[name].append(rates[name] / rates["plain INSERT"])
                line.append(f"{name} {rates[name]:,.0f} ({shares[name][-1]:.0%})")
            print(", ".join(line))
    for name, values in shares.items():
        print(f"{name}: median {statistics.median(values):.0%} of the plain INSERT")
    return 0


if __name__ == "__main__":
    sys.exit(main())
