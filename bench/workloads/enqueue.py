"""Enqueueing: one job per transaction (one connection, then 8 at once) and in bulk.

Every producer uses an autocommit connection, so each enqueue call is one transaction
that has committed when the call returns; the plain-table ceiling does the same with
one ``INSERT``.

Without a worker, the systems and the ceiling take turns: ``ROUNDS`` rounds, each
giving every one of them a slice of the time, in a rotating order. Whatever the machine
does meanwhile falls on all of them alike, so the ratios hold on a noisy machine. A
system's rate is the median of its slices' rates: a burst of load elsewhere that falls on
one slice moves a total by its whole size, a median of six hardly. WAL is read
around each slice; commits are counted per database over the whole run, warm-up
included, and divided by every job sent.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager

from bench import pg, procs
from bench.apps.signal import now
from bench.context import Context
from bench.results import Result, unavailable
from bench.systems import Producer, System, Unavailable, get
from bench.systems.base import TimedProducer
from bench.turns import rotations

ROUNDS = 6
WARMUP = 200
CONCURRENT_WARMUP = 20

#: ``(name, dsn, seconds) -> (jobs in the timed window, jobs sent in all)``
Slice = Callable[[str, str, float], tuple[int, int]]


def _enqueue_for(producer: Producer, seconds: float, first: int) -> int:
    """Enqueue jobs back to back for *seconds*; return how many.

    An asyncio producer brings its own loop (``enqueue_for``), run inside one coroutine
    as in an async app, so that entering its event loop per call is not charged to it.
    """
    if isinstance(producer, TimedProducer):
        return producer.enqueue_for(seconds, first)
    sent = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        producer.enqueue("noop", first + sent)
        sent += 1
    return sent


def _take_turns(
    ctx: Context,
    workload: str,
    names: Sequence[str],
    seconds: float,
    run_slice: Slice,
    close: Callable[[], None] = lambda: None,
) -> list[Result]:
    """Give every name ``seconds / ROUNDS`` per round, in turns; one result each, the
    median of its slices' rates.

    *close* ends the slices' sessions, so that the commits can be counted exactly.
    """
    piece = seconds / ROUNDS
    measured: dict[str, list[int]] = {name: [] for name in names}
    sent = dict.fromkeys(names, 0)
    wal = dict.fromkeys(names, 0)
    with ExitStack() as stack:
        dsns = {
            name: stack.enter_context(ctx.database(get(name), f"{workload}_{name}"))
            for name in names
        }
        before = {name: pg.counters(ctx.admin_dsn, dsn) for name, dsn in dsns.items()}
        with pg.admin(ctx.admin_dsn) as meter:
            for name in rotations(names, ROUNDS):
                start = pg.wal_position(meter)
                got, total = run_slice(name, dsns[name], piece)
                wal[name] += pg.wal_position(meter) - start
                measured[name].append(got)
                sent[name] += total
        close()
        commits = {
            name: (pg.counters(ctx.admin_dsn, dsn) - before[name]).commits
            for name, dsn in dsns.items()
        }
    return [
        Result(
            workload,
            name,
            statistics.median(measured[name]) / piece,
            "jobs/s",
            f"median of {ROUNDS} slices of {piece:.2f} s, in turns with the others ("
            + ", ".join(f"{got / piece:,.0f}" for got in measured[name])
            + ")",
            commits_per_job=commits[name] / max(sent[name], 1),
            wal_per_job=wal[name] / max(sent[name], 1),
        )
        for name in names
    ]


def sequential(ctx: Context, names: Sequence[str]) -> list[Result]:
    """One connection, one job per transaction, for every system and the ceiling."""
    producers: dict[str, Producer] = {}
    first = dict.fromkeys(names, 0)

    def run_slice(name: str, dsn: str, seconds: float) -> tuple[int, int]:
        warmup = 0
        if name not in producers:
            producers[name] = get(name).producer(dsn)
            for i in range(WARMUP):
                producers[name].enqueue("noop", i)
            warmup = first[name] = WARMUP
        got = _enqueue_for(producers[name], seconds, first[name])
        first[name] += got
        return got, got + warmup

    def close() -> None:
        while producers:
            producers.popitem()[1].close()

    try:
        return _take_turns(ctx, "enqueue", names, ctx.profile.enqueue_seconds, run_slice, close)
    finally:
        close()


def _ready(names: tuple[str, ...]) -> None:
    """Pool warm-up: import every system's producer so that no run pays for it."""
    for name in names:
        get(name)
    time.sleep(0.2)  # hold this worker so that the pool starts all of them


def _concurrent_child(name: str, dsn: str, start_at: float, seconds: float, index: int) -> int:
    """One concurrent producer: connect, warm up, then enqueue from *start_at* for *seconds*.

    All producers share one start and end on the system-wide monotonic clock; one that
    was not ready at the start still stops at the common end.
    """
    producer = get(name).producer(dsn)
    try:
        first = (index + 1) * 100_000_000 + int(start_at * 1000) % 10_000 * 10_000
        for i in range(CONCURRENT_WARMUP):
            producer.enqueue("noop", first + i)
        time.sleep(max(0.0, start_at - now()))
        sent = 0
        end = start_at + seconds
        while now() < end:
            producer.enqueue("noop", first + CONCURRENT_WARMUP + sent)
            sent += 1
        return sent
    finally:
        producer.close()


def _concurrent_slice(ctx: Context, name: str, dsn: str, seconds: float) -> tuple[int, int]:
    """All concurrent producers of *name* for *seconds*."""
    pool = ctx.producer_pool()
    connections = ctx.profile.concurrent_connections
    start_at = now() + 0.4  # time for every producer to connect and warm up
    futures = [
        pool.submit(_concurrent_child, name, dsn, start_at, seconds, i) for i in range(connections)
    ]
    sent = [future.result(timeout=60 + seconds) for future in futures]
    return sum(sent), sum(sent) + CONCURRENT_WARMUP * connections


def _warm_pool(ctx: Context, names: Sequence[str]) -> None:
    connections = ctx.profile.concurrent_connections
    list(ctx.producer_pool().map(_ready, [tuple(names)] * connections, timeout=120))


def concurrent(ctx: Context, names: Sequence[str]) -> list[Result]:
    """8 connections at once, no worker, for every system and the ceiling, in turns."""
    _warm_pool(ctx, names)

    def run_slice(name: str, dsn: str, seconds: float) -> tuple[int, int]:
        return _concurrent_slice(ctx, name, dsn, seconds)

    return _take_turns(ctx, "concurrent", names, ctx.profile.concurrent_seconds, run_slice)


@contextmanager
def _idle_worker(ctx: Context, system: System, dsn: str, label: str) -> Iterator[None]:
    """One worker of *system*, started and proven idle (it ran a ping and went back)."""
    with procs.worker_process(system.worker(dsn), ctx.signals, ctx.log_dir / f"{label}.log"):
        ctx.signals.drain()
        producer = system.producer(dsn)
        try:
            producer.enqueue("ping", -1)
        finally:
            producer.close()
        if ctx.signals.wait_for("ping", -1, timeout=60) is None:
            raise RuntimeError(f"{system.name} worker did not start within 60 s")
        time.sleep(0.3)
        yield


def concurrent_with_worker(ctx: Context, system: System) -> list[Result]:
    """8 connections at once while one worker of *system* listens (and runs the jobs)."""
    workload = "concurrent_worker"
    label = f"{workload}_{system.name}"
    seconds = ctx.profile.concurrent_seconds
    _warm_pool(ctx, [system.name])
    with ctx.database(system, label) as dsn, ExitStack() as stack:
        try:
            stack.enter_context(_idle_worker(ctx, system, dsn, label))
        except Unavailable as exc:
            return [unavailable(workload, system.name, "jobs/s", str(exc))]
        before = pg.counters(ctx.admin_dsn, dsn, settle=False)
        with pg.admin(ctx.admin_dsn) as meter:
            start = pg.wal_position(meter)
            measured, total = _concurrent_slice(ctx, system.name, dsn, seconds)
            wal = pg.wal_position(meter) - start
        stack.close()  # stop the worker so that its statistics are flushed
        delta = pg.counters(ctx.admin_dsn, dsn) - before
    return [
        Result(
            workload,
            system.name,
            measured / seconds,
            "jobs/s",
            "worker started before, shown idle, running the jobs as they come",
            commits_per_job=delta.commits / total,
            wal_per_job=wal / total,
        )
    ]


def bulk(ctx: Context, system: System) -> list[Result]:
    """One bulk call with ``bulk_jobs`` jobs, from plain numbers to committed."""
    count = ctx.profile.bulk_jobs
    with ctx.database(system, f"bulk_{system.name}") as dsn:
        before = pg.counters(ctx.admin_dsn, dsn)
        seconds = system.bulk_enqueue(dsn, count)
        delta = pg.counters(ctx.admin_dsn, dsn) - before
    return [
        Result(
            "bulk",
            system.name,
            count / seconds,
            "jobs/s",
            commits_per_job=delta.commits / count,
            wal_per_job=delta.wal / count,
        )
    ]
