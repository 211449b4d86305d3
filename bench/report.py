"""One table for the terminal and ``docs/benchmarks.md``, and a plot in ``docs/benchmarks.png``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.context import Profile
from bench.results import Result
from bench.systems import REDIS

TITLES = {
    "pgjobs": "pgjobs",
    "procrastinate": "Procrastinate",
    "pgqueuer": "PGQueuer",
    "celery": "Celery",
    "rq": "RQ",
    "arq": "arq",
    "plain": "Plain INSERT (ceiling)",
    "loop": "Python loop (ceiling)",
}
PEER = "pgqueuer"  # the targets are ratios to PGQueuer


@dataclass(frozen=True)
class Row:
    workload: str
    label: str
    #: (workload, system) whose value is this row's ceiling, if any.
    ceiling: tuple[str, str] | None = None
    target: str = ""
    #: (value, ratio to PGQueuer, share of ceiling) -> met?
    check: Callable[[float, float | None, float | None], bool | None] | None = None


def _rows(profile: Profile) -> list[Row]:
    def both(
        peer: float, share: float
    ) -> Callable[[float, float | None, float | None], bool | None]:
        def check(_: float, ratio: float | None, part: float | None) -> bool | None:
            if ratio is None or part is None:
                return None
            return ratio >= peer and part >= share

        return check

    return [
        Row(
            "drain",
            f"Drain {profile.drain_jobs:,} jobs, 1 worker process (jobs/s)",
            ("drain", "loop"),
            "≥ 8x PGQueuer, ≥ 60% of the Python loop",
            both(8, 0.6),
        ),
        Row(
            "drain_sync",
            "Drain, sync handlers, concurrency 50, else defaults (jobs/s; ceiling: async drain)",
            ("drain", "pgjobs"),
            "≥ 15,000/s, ≥ 50% of async drain",
            lambda v, _r, part: None if part is None else v >= 15_000 and part >= 0.5,
        ),
        Row(
            "enqueue",
            "Enqueue, 1 job per transaction, 1 connection (jobs/s)",
            ("enqueue", "plain"),
            "≥ 1.5x PGQueuer, ≥ 70% of ceiling",
            both(1.5, 0.7),
        ),
        Row(
            "enqueue_client",
            "Enqueue, `Client.enqueue`, 1 job per call (jobs/s)",
            ("enqueue", "plain"),
            "≥ 90% of ceiling",
            lambda _v, _r, part: None if part is None else part >= 0.9,
        ),
        Row(
            "enqueue_async_client",
            "Enqueue, `AsyncClient.enqueue`, 1 job per call (jobs/s)",
            ("enqueue", "plain"),
            "≥ 90% of ceiling",
            lambda _v, _r, part: None if part is None else part >= 0.9,
        ),
        Row(
            "concurrent",
            f"Enqueue, {profile.concurrent_connections} connections, no worker (jobs/s)",
            ("concurrent", "plain"),
            "≥ 80% of ceiling",
            lambda _v, _r, part: None if part is None else part >= 0.8,
        ),
        # The worker runs the jobs on the same cores as the producers, hence the lower bar.
        Row(
            "concurrent_worker",
            f"Enqueue, {profile.concurrent_connections} connections, 1 worker listening (jobs/s)",
            ("concurrent", "plain"),
            "≥ 60% of ceiling",
            lambda _v, _r, part: None if part is None else part >= 0.6,
        ),
        Row(
            "bulk",
            f"Bulk enqueue, {profile.bulk_jobs:,} jobs in one call (jobs/s)",
            None,
            "≥ 2x PGQueuer",
            lambda _v, ratio, _p: None if ratio is None else ratio >= 2,
        ),
        # From just before the enqueue call (the text under the table says so); the label
        # stays, as docs/comparison.md quotes rows by it.
        Row("latency_p50", "Wakeup latency p50 (ms)", None, "≤ 2 ms", lambda v, _r, _p: v <= 2),
        Row("latency_p99", "Wakeup latency p99 (ms)", None, "≤ 10 ms", lambda v, _r, _p: v <= 10),
        Row(
            "sql_100", "SQL ceiling: pgjobs claim + finish, batch 100 (jobs/s)", ("sql_100", "sql")
        ),
        Row(
            "sql_500", "SQL ceiling: pgjobs claim + finish, batch 500 (jobs/s)", ("sql_500", "sql")
        ),
        Row("sql_raw", "SQL ceiling: raw claim 100 + delete (jobs/s)", ("sql_raw", "sql")),
        Row(
            "scale_1m",
            "Scale: drain 1M ready ÷ 10k ready",
            None,
            "≥ 0.8",
            lambda v, _r, _p: v >= 0.8,
        ),
        Row(
            "scale_retained",
            "Scale: drain beside 10M retained rows ÷ without",
            None,
            "≥ 0.9",
            lambda v, _r, _p: v >= 0.9,
        ),
        Row(
            "scale_queues",
            "Scale: drain over 100 weighted queues ÷ 1 queue",
            None,
            "≥ 0.7",
            lambda v, _r, _p: v >= 0.7,
        ),
        Row(
            "scale_rss",
            "Scale: worker peak RSS draining 1M (MB)",
            None,
            "≤ 150 MB",
            lambda v, _r, _p: v <= 150,
        ),
    ]


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "jobs/s":
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:.1f}"
    if unit == "ratio":
        return f"{value:.2f}x"
    if unit == "MB":
        return f"{value:.0f}"
    return f"{value:.3g}"


def _find(results: Sequence[Result], workload: str, system: str) -> Result | None:
    return next((r for r in results if r.workload == workload and r.system == system), None)


def results_table(results: Sequence[Result], systems: Sequence[str], profile: Profile) -> str:
    """The Postgres queues' table (the Redis ones have :func:`redis_table`)."""
    systems = [s for s in systems if s not in REDIS]
    head = [
        "Workload",
        *(TITLES[s] for s in systems),
        "Ceiling",
        "pgjobs ÷ PGQueuer",
        "pgjobs ÷ ceiling",
        "Target (pgjobs)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "--:|" * (len(systems) + 3) + "---|"]
    for row in _rows(profile):
        found = [r for r in results if r.workload == row.workload]
        ceiling = _find(results, *row.ceiling) if row.ceiling else None
        if not found and ceiling is None:
            continue
        unit = (found[0] if found else ceiling).unit  # type: ignore[union-attr]
        cells = [row.label]
        for system in systems:
            got = _find(results, row.workload, system)
            cells.append(fmt(got.value, unit) if got else "")
        cells.append(fmt(ceiling.value, unit) if ceiling else "")
        ours = _find(results, row.workload, "pgjobs")
        peer = _find(results, row.workload, PEER)
        ratio = part = None
        if ours and ours.value and peer and peer.value and unit == "jobs/s":
            ratio = ours.value / peer.value
        if ours and ours.value and ceiling and ceiling.value and ceiling is not ours:
            part = ours.value / ceiling.value
        cells.append(f"{ratio:.2f}x" if ratio is not None else "")
        cells.append(f"{part:.0%}" if part is not None else "")
        verdict = ""
        if row.check and ours and ours.value is not None:
            met = row.check(ours.value, ratio, part)
            verdict = "" if met is None else (" ✓" if met else " ✗")
        cells.append(row.target + verdict)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: pgjobs beside the Redis queues: (workload, label, least pgjobs ÷ each peer, or None).
REDIS_ROWS = (
    ("drain", "Drain, 1 worker process (jobs/s)", 5.0),
    ("enqueue", "Enqueue, 1 job per call, 1 connection (jobs/s)", 0.7),
    ("latency_p50", "Wakeup latency p50, from the enqueue call (ms)", None),
    ("latency_p99", "Wakeup latency p99, from the enqueue call (ms)", None),
)


def redis_table(results: Sequence[Result], peers: Sequence[str]) -> str:
    """pgjobs beside Celery, RQ and arq, with pgjobs ÷ each; empty if none of them ran."""
    if not any(r.system in peers for r in results):
        return ""
    head = ["Workload", "pgjobs", *(TITLES[p] for p in peers)]
    head += [f"pgjobs ÷ {TITLES[p]}" for p in peers] + ["Target (pgjobs)"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "--:|" * (2 * len(peers) + 1) + "---|"]
    for workload, label, least in REDIS_ROWS:
        ours = _find(results, workload, "pgjobs")
        theirs = [_find(results, workload, p) for p in peers]
        if ours is None and not any(theirs):
            continue
        unit = (ours or next(t for t in theirs if t)).unit  # type: ignore[union-attr]
        cells = [label, fmt(ours.value, unit) if ours else ""]
        cells += [fmt(t.value, unit) if t else "" for t in theirs]
        ratios = [
            ours.value / t.value if ours and ours.value and t and t.value else None for t in theirs
        ]
        cells += ["" if r is None or least is None else f"{r:.2f}x" for r in ratios]
        target = ""
        if least is not None:
            met = [r >= least for r in ratios if r is not None]
            verdict = (" ✓" if all(met) else " ✗") if met else ""
            target = f"≥ {least:g}x each{verdict}"
        cells.append(target)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


COST_ROWS = (
    ("drain", "Drain"),
    ("enqueue", "Enqueue, 1 connection"),
    ("concurrent", "Enqueue, 8 connections"),
    ("concurrent_worker", "Enqueue, 8 connections, worker listening"),
    ("bulk", "Bulk enqueue"),
    ("sql_100", "SQL ceiling, batch 100"),
    ("sql_500", "SQL ceiling, batch 500"),
    ("sql_raw", "Raw claim 100 + delete"),
)


def cost_table(results: Sequence[Result], systems: Sequence[str]) -> str:
    systems = [s for s in systems if s not in REDIS]
    columns = [*systems, "plain", "sql"]
    head = ["Workload", *(TITLES.get(s, "Ceiling" if s == "plain" else "SQL") for s in columns)]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "--:|" * len(columns)]
    for workload, label in COST_ROWS:
        cells, any_value = [label], False
        for system in columns:
            got = _find(results, workload, system)
            if got and got.commits_per_job is not None and got.wal_per_job is not None:
                cells.append(f"{got.commits_per_job:.3g} / {got.wal_per_job:,.0f} B")
                any_value = True
            else:
                cells.append("")
        if any_value:
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: Workloads whose figures are medians of rounds (besides the scale ratios).
MEDIANS = ("enqueue", "concurrent")

#: Words in a result's note that make it worth a line under the table.
NOTEWORTHY = ("error", "left", "failed", "lost", "ran out", "stopped", "claim ")


def notes(results: Sequence[Result]) -> list[str]:
    """Notes the reader needs: n/a reasons, timeouts, failures, pgbench statement times."""
    out: list[str] = []
    for r in results:
        # A median means little without the figures behind it: always shown.
        shown = r.workload in MEDIANS or r.workload.startswith("scale")
        shown = shown or any(word in r.note for word in NOTEWORTHY)
        if r.note and (r.value is None or shown):
            workload = "latency" if r.workload.startswith("latency") else r.workload
            line = f"{TITLES.get(r.system, r.system)}, {workload}: {r.note}"
            if line not in out:
                out.append(line)
    return out


def markdown(
    results: Sequence[Result],
    systems: Sequence[str],
    profile: Profile,
    meta: dict[str, str],
    configs: dict[str, tuple[str, str, str]],
) -> str:
    parts = [
        "# Benchmarks",
        "",
        "pgjobs beside Procrastinate and PGQueuer, then beside Celery, RQ and arq on Redis: "
        "the same workloads on the same machine, back to back in one run, each system on a "
        "fresh database. Ratios come from this one "
        "run, so that a noisy machine cannot flatter or hide them. How each number is taken: "
        "[bench/README.md](../bench/README.md).",
        "",
        f"Run: `{meta['command']}` ({profile.name} mode) on {meta['date']}, "
        f"pgjobs at {meta['commit']}.",
        "",
        results_table(results, systems, profile),
        "",
        "Ceilings: drain against a lean Python loop on pgjobs' table (claim 500 with one "
        "SKIP LOCKED statement, run the no-op coroutines, delete the batch on a second "
        "connection while the next claim runs; `bench/apps/loop_app.py`), the sync-handler "
        "drain against pgjobs' async drain, the SQL rows against themselves; "
        "enqueue against the same one-row INSERT into a plain table, from the same number of "
        "connections. Latency is from just before the producer's enqueue call (pgjobs': "
        "`AsyncClient.enqueue`) to the handler starting.",
        "",
        "![benchmark chart](benchmarks.png)",
        "",
        "## Cost per job: commits / WAL bytes",
        "",
        "From `pg_stat_database.xact_commit` of the run's database and `pg_current_wal_lsn()`, "
        "read once every session had ended; WAL is server-wide, so other activity on the "
        "server shows up here.",
        "",
        cost_table(results, systems),
        "",
    ]
    peers = [s for s in systems if s in REDIS]
    table = redis_table(results, peers)
    if table:
        parts += [
            "## Beside the Redis queues",
            "",
            "What Python users pick instead of a Postgres queue: Celery, RQ and arq on the "
            "machine's Redis (a database of its own, flushed before every workload), each "
            "at its best settings (below), in the same run. Their drains are of "
            f"{profile.redis_drain_jobs:,} jobs, bounded at "
            f"{profile.redis_drain_timeout:.0f} s (a drain cut short counts the jobs it ran).",
            "",
            table,
            "",
        ]
    parts += [
        "## Configurations",
        "",
        "| System | Version | Worker (drain, latency, listening) | Producer |",
        "|---|---|---|---|",
    ]
    for system in systems:
        version, worker, producer = configs[system]
        parts.append(f"| {TITLES[system]} | {version} | {worker} | {producer} |")
    found = notes(results)
    if found:
        parts += ["", "## Notes", "", *(f"- {n}" for n in found)]
    parts += ["", "## Machine", ""]
    parts += [f"- {key}: {value}" for key, value in meta.items() if key not in ("command", "date")]
    return "\n".join(parts) + "\n"


#: Workloads the plot shows; a run of none of them (``--only scale``) has no plot.
PLOTTED = ("drain", "enqueue", "concurrent", "concurrent_worker", "bulk", "latency_p50")


def plot(results: Sequence[Result], systems: Sequence[str], path: Path) -> bool:
    """Write the chart to *path*; False (and nothing written) if there is nothing to plot."""
    if not any(r.workload in PLOTTED and r.value for r in results):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [
        ("drain", "drain"),
        ("enqueue", "enqueue\n1 conn"),
        ("concurrent", "enqueue\n8 conns"),
        ("concurrent_worker", "8 conns,\nworker"),
        ("bulk", "bulk"),
    ]
    ceilings = {
        "drain": ("drain", "loop"),
        "enqueue": ("enqueue", "plain"),
        "concurrent": ("concurrent", "plain"),
        "concurrent_worker": ("concurrent", "plain"),
    }
    series = [*systems, "ceiling"]
    colors = {
        "pgjobs": "#2a7ab9",
        "procrastinate": "#e07b39",
        "pgqueuer": "#5aa05a",
        "celery": "#a05aa0",
        "rq": "#c04040",
        "arq": "#d0b030",
        "ceiling": "#b0b0b0",
    }
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), width_ratios=[3, 1.3])
    width = 0.8 / len(series)
    for s_index, name in enumerate(series):
        xs, ys = [], []
        for g_index, (workload, _) in enumerate(groups):
            key = ceilings.get(workload) if name == "ceiling" else (workload, name)
            got = _find(results, *key) if key else None
            if got and got.value:
                xs.append(g_index + (s_index - (len(series) - 1) / 2) * width)
                ys.append(got.value)
        left.bar(
            xs,
            ys,
            width,
            label=TITLES.get(name, "ceiling (plain INSERT / Python loop)"),
            color=colors[name],
        )
    left.set_yscale("log")
    left.set_xticks(range(len(groups)), [label for _, label in groups])
    left.set_ylabel("jobs/s (log scale, higher is better)")
    left.legend(fontsize=8)
    left.set_title("Throughput")
    width = 0.8 / len(systems)
    for s_index, name in enumerate(systems):
        xs, ys = [], []
        for g_index, workload in enumerate(("latency_p50", "latency_p99")):
            got = _find(results, workload, name)
            if got and got.value is not None:
                xs.append(g_index + (s_index - (len(systems) - 1) / 2) * width)
                ys.append(got.value)
        bars = right.bar(xs, ys, width, label=TITLES[name], color=colors[name])
        right.bar_label(bars, [f"{v:.3g}" if v < 100 else f"{v:,.0f}" for v in ys], fontsize=7)
    right.set_yscale("log")
    right.set_xticks([0, 1], ["p50", "p99"])
    right.set_ylabel("ms (log scale, lower is better)")
    right.set_title("Wakeup latency")
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
