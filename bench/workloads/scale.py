"""Scale (full mode, pgjobs only): how the drain rate holds as the table grows.

With the full sizes:

* 10k ready jobs against 1M (the 1M run also gives the worker's peak RSS);
* 100k ready jobs, alone and beside 10M completed rows retained in the same table;
* 100k ready jobs in one queue, and spread over 100 weighted queues (weights 1 to 10).
"""

from __future__ import annotations

import psycopg

import pgjobs
from bench.context import Context
from bench.results import Result, unavailable
from bench.systems import Unavailable, get
from bench.workloads.drain import CHUNK, Drained, drain, fill

QUEUES = {f"q{i:03}": 1 + i % 10 for i in range(100)}


def _fill_queues(dsn: str, count: int) -> None:
    names = list(QUEUES)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(0, count, CHUNK):
            tasks = [
                pgjobs.Task("noop", {"seq": i}, queue=names[i % len(names)])
                for i in range(start, min(count, start + CHUNK))
            ]
            pgjobs.enqueue_many(conn, tasks)


def _retain(dsn: str, count: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "insert into pgjobs.jobs (kind, payload, state, attempt, started_at, finished_at)"
            " select 'noop', jsonb_build_object('seq', g), 'completed', 1, now(), now()"
            " from generate_series(1, %s) g",
            (count,),
        )


def _case(
    ctx: Context, label: str, count: int, *, retained: int = 0, queues: bool = False
) -> Drained:
    system = get("pgjobs")
    with ctx.database(system, label) as dsn:
        if retained:
            _retain(dsn, retained)
        if queues:
            _fill_queues(dsn, count)
            return drain(ctx, system, dsn, count, label, queues=QUEUES)
        fill(system, dsn, count)
        return drain(ctx, system, dsn, count, label)


def run(ctx: Context) -> list[Result]:
    names = ("scale_1m", "scale_retained", "scale_queues", "scale_rss")
    if ctx.profile.scale_sizes is None:
        return [unavailable(name, "pgjobs", "ratio", "full mode only") for name in names]
    try:
        get("pgjobs").worker("")
    except Unavailable as exc:
        return [unavailable(name, "pgjobs", "ratio", str(exc)) for name in names]
    small_n, large_n, medium_n, retained_n = ctx.profile.scale_sizes
    small = _case(ctx, "scale_small", small_n)
    large = _case(ctx, "scale_large", large_n)
    medium = _case(ctx, "scale_medium", medium_n)
    retained = _case(ctx, "scale_retained", medium_n, retained=retained_n)
    queued = _case(ctx, "scale_queues", medium_n, queues=True)

    def ratio(name: str, got: Drained, base: Drained, note: str) -> Result:
        return Result(
            name,
            "pgjobs",
            got.rate / base.rate,
            "ratio",
            f"{got.rate:,.0f} vs {base.rate:,.0f} jobs/s; {note}",
            got.commits_per_job,
            got.wal_per_job,
            extra={"rate": got.rate, "base": base.rate},
        )

    return [
        ratio("scale_1m", large, small, f"{large_n:,} ready vs {small_n:,} ready"),
        ratio(
            "scale_retained",
            retained,
            medium,
            f"{medium_n:,} ready beside {retained_n:,} completed rows vs alone",
        ),
        ratio("scale_queues", queued, medium, f"{medium_n:,} over 100 weighted queues vs 1"),
        Result("scale_rss", "pgjobs", large.rss_mb, "MB", f"peak RSS (VmHWM) draining {large_n:,}"),
    ]
