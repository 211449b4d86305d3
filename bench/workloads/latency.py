"""Wakeup latency: an idle worker, then sequential enqueues, each awaited.

The producer reads the clock right before it calls enqueue (so the sample includes the
enqueue's own round trips and commit, as a user waiting for the job sees it); the
``ping`` handler reads the same clock first thing and sends it back
over UDP (:mod:`bench.apps.signal`). The next job is enqueued only once that report
has arrived and a further ``IDLE_GAP`` has passed, so that the worker has finished the
previous job and its bookkeeping and is idle again: every sample is a wakeup.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable

from bench import procs
from bench.apps.signal import now
from bench.context import Context
from bench.results import Result, unavailable
from bench.systems import Producer, System, Unavailable

WARMUP = 5
IDLE_GAP = 0.01
#: A ping not seen by then counts as lost; too many lost ends the run.
SAMPLE_TIMEOUT = 5.0
MAX_LOST = 5


def run(
    ctx: Context, system: System, producer: Callable[[str], Producer] | None = None
) -> list[Result]:
    """Latency of *system*'s worker, fed by its own producer or by *producer*."""
    label = f"latency_{system.name}"
    with ctx.database(system, label) as dsn:
        try:
            spec = system.worker(dsn)
        except Unavailable as exc:
            return [
                unavailable("latency_p50", system.name, "ms", str(exc)),
                unavailable("latency_p99", system.name, "ms", str(exc)),
            ]
        with procs.worker_process(spec, ctx.signals, ctx.log_dir / f"{label}.log"):
            ctx.signals.drain()
            sender = (producer or system.producer)(dsn)
            try:
                samples, lost = _measure(ctx, sender)
            finally:
                sender.close()
    ms = [s * 1000 for s in samples]
    (ctx.log_dir / f"{label}.json").write_text(json.dumps([round(m, 3) for m in ms]))
    ms.sort()
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    note = f"{len(ms)} samples"
    if len(ms) + lost < ctx.profile.latency_samples:
        note += f" (stopped at the {ctx.profile.latency_budget:.0f} s limit)"
    if lost:
        note += f", {lost} lost (> {SAMPLE_TIMEOUT:.0f} s)"
    extra = {"mean": statistics.fmean(ms), "max": ms[-1]}
    return [
        Result("latency_p50", system.name, p50, "ms", note, extra=extra),
        Result("latency_p99", system.name, p99, "ms", note, extra=extra),
    ]


def _measure(ctx: Context, producer: Producer) -> tuple[list[float], int]:
    for seq in range(-WARMUP, 0):
        producer.enqueue("ping", seq)
        if ctx.signals.wait_for("ping", seq, timeout=60 if seq == -WARMUP else 10) is None:
            raise RuntimeError("the worker did not run the warm-up pings")
    samples: list[float] = []
    lost = 0
    deadline = time.monotonic() + ctx.profile.latency_budget
    for seq in range(ctx.profile.latency_samples):
        if time.monotonic() > deadline:
            break
        called = now()
        producer.enqueue("ping", seq)
        started = ctx.signals.wait_for("ping", seq, timeout=SAMPLE_TIMEOUT)
        if started is None:
            lost += 1
            if lost > MAX_LOST:
                raise RuntimeError(f"{lost} pings were never run")
            continue
        samples.append(started - called)
        time.sleep(IDLE_GAP)
    return samples, lost
