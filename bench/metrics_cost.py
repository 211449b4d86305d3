"""What Prometheus metrics cost a worker: drain N no-op jobs with and without them.

    python -m bench.metrics_cost --dsn postgresql://root@127.0.0.1:5432/postgres

Creates (and drops) a scratch database, then for each run enqueues N no-op jobs and
times one in-process worker draining them, alternating metrics off and on so that
drift in a shared machine's load hits both alike. Prints each run and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import psycopg
from psycopg.conninfo import make_conninfo

import pgjobs
from pgjobs import migrate


async def drain(dsn: str, jobs: int, concurrency: int, with_metrics: bool) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("truncate pgjobs.jobs, pgjobs.stats")
        pgjobs.enqueue_many(conn, [pgjobs.Task("noop") for _ in range(jobs)])
        conn.execute("vacuum analyze pgjobs.jobs")
    server = pgjobs.Server(pgjobs.Config(dsn=dsn, concurrency=concurrency, poll_interval=0.1))
    if with_metrics:
        from pgjobs.metrics import PrometheusObserver

        server.observer = PrometheusObserver()

    @server.handler("noop")
    async def noop(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        pass

    started = time.perf_counter()
    await server.start()
    worker = server.worker
    assert worker is not None
    while worker.processed < jobs:  # noqa: ASYNC110 (the worker has no event for it)
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    await server.stop()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="an admin DSN (creates a database)")
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    name = "pgjobs_metrics_cost"
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(f"drop database if exists {name} with (force)")
        conn.execute(f"create database {name}")
    dsn = make_conninfo(args.dsn, dbname=name)
    try:
        migrate.upgrade(dsn)
        times: dict[bool, list[float]] = {False: [], True: []}
        for run in range(args.runs):
            for with_metrics in (False, True):
                elapsed = asyncio.run(drain(dsn, args.jobs, args.concurrency, with_metrics))
                times[with_metrics].append(elapsed)
                rate = args.jobs / elapsed
                label = "on " if with_metrics else "off"
                print(f"run {run + 1} metrics {label}: {elapsed:.2f} s, {rate:,.0f} jobs/s")
        off, on = statistics.median(times[False]), statistics.median(times[True])
        print(
            f"median: off {off:.2f} s ({args.jobs / off:,.0f} jobs/s), "
            f"on {on:.2f} s ({args.jobs / on:,.0f} jobs/s): {100 * (on / off - 1):+.1f} %"
        )
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(f"drop database if exists {name} with (force)")


if __name__ == "__main__":
    main()
