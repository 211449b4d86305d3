"""Drain: N jobs enqueued in bulk, then one worker process runs them all.

The clock starts when the first handler runs (so process start-up, imports and
connecting are excluded) and stops when the queue table has nothing waiting or running,
polled every 20 ms on a separate connection. Commits and WAL are counted over the
worker's whole life, start-up and shutdown included; the poller's own commits are
subtracted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bench import pg, procs
from bench.apps.signal import now
from bench.context import Context
from bench.results import Result, unavailable
from bench.systems import System, Unavailable

POLL = 0.02
#: Largest single bulk call used to fill the queue before a drain.
CHUNK = 100_000


@dataclass
class Drained:
    rate: float
    commits_per_job: float | None
    wal_per_job: float | None
    rss_mb: float | None
    note: str


def fill(system: System, dsn: str, count: int) -> None:
    for start in range(0, count, CHUNK):
        system.bulk_enqueue(dsn, min(CHUNK, count - start), start=start)


def drain(
    ctx: Context,
    system: System,
    dsn: str,
    count: int,
    label: str,
    timeout: float | None = None,
    **worker: Any,
) -> Drained:
    """Start one worker on a filled database and time it to empty; see the module doc."""
    spec = system.worker(dsn, **worker)
    timeout = ctx.profile.drain_timeout if timeout is None else timeout
    pg.settle(dsn)
    before = pg.counters(ctx.admin_dsn, dsn)
    ctx.signals.drain()
    probe = system.probe(dsn)
    try:
        with procs.worker_process(spec, ctx.signals, ctx.log_dir / f"{label}.log") as pid:
            started = ctx.signals.wait_for("start", None, timeout=60)
            if started is None:
                raise RuntimeError(f"{system.name} worker ran no job within 60 s")
            deadline = time.monotonic() + timeout
            last_busy, done_at, timed_out = started, None, False
            while done_at is None:
                asked = now()
                if not probe.busy():
                    done_at = (last_busy + asked) / 2
                elif time.monotonic() > deadline or not procs.alive(pid):
                    timed_out, done_at = True, asked
                else:
                    last_busy = now()
                    time.sleep(POLL)
            rss = procs.peak_rss_mb(pid)
            # Read while the worker still runs: a Redis queue's worker may take the rest
            # with it when stopped (Celery returns its prefetched jobs on SIGTERM).
            remaining = probe.remaining() if timed_out else 0
        failed = probe.failed()
    finally:
        probe.close()
    after = pg.counters(ctx.admin_dsn, dsn)
    delta = after - before
    done = count - remaining
    notes = [spec.description]
    if timed_out:
        notes.append(f"stopped after {timeout:.0f} s with {remaining} left")
    if failed:
        notes.append(f"{failed} jobs failed")
    return Drained(
        rate=done / (done_at - started),
        commits_per_job=(delta.commits - probe.commits) / max(done, 1),
        wal_per_job=delta.wal / max(done, 1),
        rss_mb=rss,
        note="; ".join(notes),
    )


def run(ctx: Context, system: System) -> list[Result]:
    count, timeout = ctx.profile.drain_jobs, ctx.profile.drain_timeout
    if not system.on_postgres:
        count, timeout = ctx.profile.redis_drain_jobs, ctx.profile.redis_drain_timeout
    label = f"drain_{system.name}"
    with ctx.database(system, label) as dsn:
        try:
            system.worker(dsn)
        except Unavailable as exc:
            return [unavailable("drain", system.name, "jobs/s", str(exc))]
        fill(system, dsn, count)
        got = drain(ctx, system, dsn, count, label, timeout)
    if not system.on_postgres:
        got.commits_per_job = got.wal_per_job = None
    extra = {"rss_mb": got.rss_mb} if got.rss_mb is not None else {}
    return [
        Result(
            "drain",
            system.name,
            got.rate,
            "jobs/s",
            got.note,
            got.commits_per_job,
            got.wal_per_job,
            extra,
        )
    ]
