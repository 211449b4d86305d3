"""Scale (full mode, pgjobs only): how the drain rate holds as the table grows.

With the full sizes:

* 10k ready jobs against 1M (the 1M drains also give the worker's peak RSS);
* 100k ready jobs, alone and beside 10M completed rows retained in the same table;
* 100k ready jobs in one queue, and spread over 100 weighted queues (weights 1 to 10).

Each ratio compares two drains of pgjobs with itself, so the machine's drift between
them would be all the ratio shows: one drain after the other, the same code gave 0.71x
and 1.31x for the 1M ratio on one day, and over five rounds the same case drained at
27k in the first and 39k in the last. So the cases are measured in pairs, ``ROUNDS``
times: every case has its own database, filled anew for each round; in each round the
two drains of a pair run side by side, in order and then in reverse (see
bench/turns.py); a ratio is the median of the rounds' ratios. The 10M retained rows are
written once and stay.
"""

from __future__ import annotations

import statistics
from contextlib import ExitStack
from dataclasses import dataclass

import psycopg

import pgjobs
from bench.context import Context
from bench.results import Result, unavailable
from bench.systems import Unavailable, get
from bench.turns import back_and_forth
from bench.workloads.drain import CHUNK, Drained, drain, fill

ROUNDS = 6
QUEUES = {f"q{i:03}": 1 + i % 10 for i in range(100)}


@dataclass(frozen=True)
class Case:
    count: int
    retained: int = 0
    queues: bool = False


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


def _drain_case(ctx: Context, case: Case, dsn: str, label: str) -> Drained:
    """Fill *dsn* with the case's ready jobs and drain them (completed jobs are deleted)."""
    system = get("pgjobs")
    if case.queues:
        _fill_queues(dsn, case.count)
        return drain(ctx, system, dsn, case.count, label, queues=QUEUES)
    fill(system, dsn, case.count)
    return drain(ctx, system, dsn, case.count, label)


def _drain_in_turns(ctx: Context, cases: dict[str, Case]) -> dict[str, list[Drained]]:
    system = get("pgjobs")
    drained: dict[str, list[Drained]] = {name: [] for name in cases}
    with ExitStack() as stack:
        dsns = {name: stack.enter_context(ctx.database(system, f"scale_{name}")) for name in cases}
        for name, case in cases.items():
            if case.retained:
                _retain(dsns[name], case.retained)
        for round_, name in back_and_forth(list(cases), ROUNDS):
            label = f"scale_{name}_{round_ + 1}"
            drained[name].append(_drain_case(ctx, cases[name], dsns[name], label))
    return drained


def _median(runs: list[Drained]) -> Drained:
    """The run with the median rate (the lower middle one for an even count)."""
    return sorted(runs, key=lambda run: run.rate)[(len(runs) - 1) // 2]


def run(ctx: Context) -> list[Result]:
    names = ("scale_1m", "scale_retained", "scale_queues", "scale_rss")
    if ctx.profile.scale_sizes is None:
        return [unavailable(name, "pgjobs", "ratio", "full mode only") for name in names]
    try:
        get("pgjobs").worker("")
    except Unavailable as exc:
        return [unavailable(name, "pgjobs", "ratio", str(exc)) for name in names]
    small_n, large_n, medium_n, retained_n = ctx.profile.scale_sizes
    drained = _drain_in_turns(
        ctx,
        {
            # In this order each pair is side by side: (small, large), (retained,
            # medium) and (medium, queues).
            "small": Case(small_n),
            "large": Case(large_n),
            "retained": Case(medium_n, retained=retained_n),
            "medium": Case(medium_n),
            "queues": Case(medium_n, queues=True),
        },
    )

    def ratio(name: str, case: str, base: str, note: str) -> Result:
        ratios = [
            got.rate / against.rate
            for got, against in zip(drained[case], drained[base], strict=True)
        ]
        typical, typical_base = _median(drained[case]), _median(drained[base])
        # A drain that stopped short or failed jobs says so in its note, after the worker.
        trouble = sorted({part for run in drained[case] for part in run.note.split("; ")[1:]})
        return Result(
            name,
            "pgjobs",
            statistics.median(ratios),
            "ratio",
            f"median of {ROUNDS} rounds, each a pair side by side"
            f" ({', '.join(f'{r:.2f}' for r in ratios)}); median rates"
            f" {typical.rate:,.0f} vs {typical_base.rate:,.0f} jobs/s;"
            f" {'; '.join([note, *trouble])}",
            typical.commits_per_job,
            typical.wal_per_job,
            extra={"rate": typical.rate, "base": typical_base.rate},
        )

    peaks = [run.rss_mb for run in drained["large"] if run.rss_mb is not None]
    return [
        ratio("scale_1m", "large", "small", f"{large_n:,} ready vs {small_n:,} ready"),
        ratio(
            "scale_retained",
            "retained",
            "medium",
            f"{medium_n:,} ready beside {retained_n:,} completed rows vs alone",
        ),
        ratio("scale_queues", "queues", "medium", f"{medium_n:,} over 100 weighted queues vs 1"),
        Result(
            "scale_rss",
            "pgjobs",
            max(peaks) if peaks else None,
            "MB",
            f"peak RSS (VmHWM), the highest of {ROUNDS} drains of {large_n:,}",
        ),
    ]
