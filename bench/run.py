"""Run the benchmark: ``python -m bench.run [--quick] [--only ...] [--systems ...]``.

Every system runs every workload on a fresh database of the same server, one after the
other, in this process tree; then one table is printed and written, with a plot, to
``docs/benchmarks.md`` and ``docs/benchmarks.png``. Whatever happens (an error, Ctrl-C,
SIGTERM), the worker processes started are stopped and the databases dropped.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from bench import pg, procs, report
from bench.context import FULL, QUICK, Context
from bench.results import Result
from bench.systems import NAMES, REDIS, get
from bench.systems.base import REPO
from bench.workloads import ceiling, drain, enqueue, latency, scale

WORKLOADS = ("enqueue", "concurrent", "bulk", "latency", "drain", "sql", "scale")
PRODUCERS = {
    "pgjobs": "`pgjobs.enqueue(conn, Task)` / `enqueue_many`, psycopg autocommit connection;"
    " also `Client.enqueue` and `await AsyncClient.enqueue` (default pools); latency through"
    " `AsyncClient.enqueue`",
    "procrastinate": "`configure_task(name).defer()` / `batch_defer`, sync connector, pool of 1",
    "pgqueuer": "`SyncQueries.enqueue` / list form, `SyncPsycopgDriver`, autocommit connection",
    "celery": "`task.delay(n)`, Redis broker; drain filled by a loop of it (no bulk API)",
    "rq": "`Queue.enqueue(func, n, result_ttl=0)`; drain filled by `enqueue_many` pipelines",
    "arq": "`await ArqRedis.enqueue_job(name, n)`; drain filled by 1,000 such calls at once",
}
#: Results of pgjobs' variants, shown in pgjobs' column as rows of their own.
AS_PGJOBS = {
    "pgjobs_client": "enqueue_client",
    "pgjobs_async_client": "enqueue_async_client",
    "pgjobs_sync": "drain_sync",
}


def _as_pgjobs(job: Callable[..., list[Result]], *args: Any) -> list[Result]:
    """Run *job*; put its pgjobs variants' results in pgjobs' column."""
    results = job(*args)
    for r in results:
        if r.system in AS_PGJOBS:
            r.workload, r.system = AS_PGJOBS[r.system], "pgjobs"
    return results


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under two minutes")
    parser.add_argument("--only", help=f"comma-separated workloads: {','.join(WORKLOADS)}")
    parser.add_argument("--systems", default=",".join(NAMES), help="comma-separated systems")
    parser.add_argument(
        "--dsn",
        default=pg.DEFAULT_ADMIN_DSN,
        help="a database of the server, to create and drop the bench databases",
    )
    parser.add_argument(
        "--docs", type=Path, default=REPO / "docs", help="where benchmarks.md and benchmarks.png go"
    )
    parser.add_argument("--no-docs", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    args.only = (
        args.only.split(",")
        if args.only
        else [w for w in WORKLOADS if w != "scale" or not args.quick]
    )
    args.systems = args.systems.split(",")
    for name in args.only:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}")
    for name in args.systems:
        if name not in NAMES:
            parser.error(f"unknown system {name!r}")
    return args


_stop_requested: list[int] = []


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Remembered as well as raised: code that swallows the exception (a finaliser, a
    # library's broad except) cannot keep the run going past the current step.
    _stop_requested.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


@dataclass(frozen=True)
class Step:
    """One measurement: what it prints, which rows it fills, and the work."""

    label: str
    workload: str
    systems: tuple[str, ...]
    unit: str
    job: Callable[[], list[Result]]


def _guarded(step: Step, log_dir: Path) -> list[Result]:
    """Run one step; an error becomes n/a rows (traceback in the log dir)."""
    began = time.monotonic()
    print(f"  {step.label} ...", end="", flush=True)
    try:
        got = step.job()
    except Exception as exc:  # one broken system must not sink the others' numbers
        name = f"error_{step.workload}_{'_'.join(step.systems)}.txt"
        (log_dir / name).write_text(traceback.format_exc())
        reason = f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        print(f" {reason[:160]}")
        return [
            Result(step.workload, system, None, step.unit, note=reason) for system in step.systems
        ]
    shown = ", ".join(
        f"{r.system}{'' if r.workload == step.workload else f' ({r.workload})'} "
        f"{report.fmt(r.value, r.unit)}"
        if len(step.systems) > 1
        else report.fmt(r.value, r.unit)
        for r in got
    )
    print(f" {shown} ({time.monotonic() - began:.1f} s)")
    return got


def _plan(ctx: Context, only: list[str], systems: list[str]) -> list[Step]:
    """Everything asked for, in run order.

    The Redis queues run the drain, the one-connection enqueue and the latency; the
    other workloads measure what only a Postgres queue has (its table, its SQL).
    """
    on_pg = [s for s in systems if s not in REDIS]
    ours = "pgjobs" in systems
    clients = ("pgjobs_client", "pgjobs_async_client") if ours else ()
    steps: list[Step] = []
    for name in only:
        if name == "enqueue":
            names = (*systems, *clients, "plain")
            steps.append(
                Step(
                    "enqueue, 1 connection, in turns",
                    "enqueue",
                    names,
                    "jobs/s",
                    partial(_as_pgjobs, enqueue.sequential, ctx, names),
                )
            )
        elif name == "concurrent":
            everyone = (*on_pg, "plain")
            steps.append(
                Step(
                    "enqueue, 8 connections, in turns",
                    "concurrent",
                    everyone,
                    "jobs/s",
                    partial(enqueue.concurrent, ctx, everyone),
                )
            )
            steps += [
                Step(
                    f"enqueue, 8 connections, {s} worker listening",
                    "concurrent_worker",
                    (s,),
                    "jobs/s",
                    partial(enqueue.concurrent_with_worker, ctx, get(s)),
                )
                for s in on_pg
            ]
        elif name == "bulk":
            steps += [
                Step(f"bulk {s}", "bulk", (s,), "jobs/s", partial(enqueue.bulk, ctx, get(s)))
                for s in on_pg
            ]
        elif name == "latency":
            # pgjobs' latency is taken through AsyncClient, the producer of an async app.
            steps += [
                Step(
                    f"latency {s}",
                    "latency_p50",
                    (s,),
                    "ms",
                    partial(
                        latency.run,
                        ctx,
                        get(s),
                        get("pgjobs_async_client").producer if s == "pgjobs" else None,
                    ),
                )
                for s in systems
            ]
        elif name == "drain":
            # pgjobs drains last, right before its SQL ceiling, and its sync-handler drain
            # and the Python-loop ceiling right before it: the numbers whose ratios are
            # targets are taken as close together in time as can be.
            last = sorted(systems, key=lambda s: s == "pgjobs")
            if ours:
                last[-1:-1] = ["pgjobs_sync", "loop"]
            steps += [
                Step(
                    f"drain {s}",
                    "drain",
                    (s,),
                    "jobs/s",
                    partial(_as_pgjobs, drain.run, ctx, get(s)),
                )
                for s in last
            ]
        elif name == "sql":
            steps.append(
                Step(
                    "SQL ceiling (pgbench)", "sql_100", ("sql",), "jobs/s", lambda: ceiling.run(ctx)
                )
            )
        elif name == "scale" and ours:
            steps.append(
                Step("scale (pgjobs)", "scale_1m", ("pgjobs",), "ratio", lambda: scale.run(ctx))
            )
    return steps


def _machine(admin_dsn: str) -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        "?",
    )
    facts = pg.server_facts(admin_dsn)
    settings = ", ".join(f"{k}={v}" for k, v in facts.items() if k != "version")
    return {
        "CPU": f"{cpu}, {os.cpu_count()} cores",
        "memory": memory,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "PostgreSQL": f"{facts['version']} on the same machine ({settings})",
    }


def _commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    dirty = (
        " (with uncommitted changes)"
        if git("status", "--porcelain", "pgjobs", "migrations")
        else ""
    )
    return (git("rev-parse", "--short", "HEAD") or "?") + dirty


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    profile = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, _on_sigterm)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    log_dir = REPO / "bench" / "results" / stamp
    log_dir.mkdir(parents=True, exist_ok=True)
    signals = procs.Signals()
    ctx = Context(args.dsn, profile, signals, log_dir)
    command = "python -m bench.run" + (
        " " + shlex.join(argv if argv is not None else sys.argv[1:])
        if (argv or sys.argv[1:])
        else ""
    )
    dropped = pg.drop_leftovers(args.dsn)
    if dropped:
        print(f"dropped databases of earlier runs: {', '.join(dropped)}")
    load_before = os.getloadavg()
    began = time.monotonic()
    results: list[Result] = []
    print(f"pgjobs benchmark, {profile.name} mode; logs in {log_dir.relative_to(REPO)}")
    try:
        for step in _plan(ctx, args.only, args.systems):
            if _stop_requested:
                raise KeyboardInterrupt
            results += _guarded(step, log_dir)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping workers and dropping databases")
        return 130
    finally:
        procs.stop_all()
        ctx.close()
        signals.close()
    elapsed = time.monotonic() - began
    meta = {
        "command": command,
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "commit": _commit(),
        **_machine(args.dsn),
        "load average (1 min) before / after": f"{load_before[0]:.2f} / {os.getloadavg()[0]:.2f}",
        "wall time of the run": f"{elapsed:.0f} s",
    }
    configs = {}
    for name in args.systems:
        system = get(name)
        try:
            worker = system.worker("postgresql:///x").description
        except Exception as exc:
            worker = f"n/a ({exc})"
        configs[name] = (system.version(), worker, PRODUCERS[name])
    table = report.results_table(results, args.systems, profile)
    print()
    print(table)
    print()
    print(report.redis_table(results, [s for s in args.systems if s in REDIS]))
    print()
    print(report.cost_table(results, args.systems))
    for note in report.notes(results):
        print(f"- {note}")
    print(f"\n{elapsed:.0f} s in all")
    if not args.no_docs:
        args.docs.mkdir(parents=True, exist_ok=True)
        (args.docs / "benchmarks.md").write_text(
            report.markdown(results, args.systems, profile, meta, configs)
        )
        wrote = [args.docs / "benchmarks.md"]
        if report.plot(results, args.systems, args.docs / "benchmarks.png"):
            wrote.append(args.docs / "benchmarks.png")
        print("wrote " + " and ".join(map(str, wrote)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
