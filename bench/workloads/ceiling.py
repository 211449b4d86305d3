"""The SQL ceiling: pgjobs' own claim and completion statements driven by pgbench.

No Python anywhere: one pgbench client claims a batch with ``job_claim`` (exactly the
statement the worker sends, rendered by ``pgjobs._queries``), then records it completed
with ``job_finish_many``, each in its own transaction, as the worker's claimer and
completer do. That is the physical limit of pgjobs' design on this machine; a worker
can only approach it. Beside it runs the simplest possible claim (``UPDATE ... FROM
(SELECT ... FOR UPDATE SKIP LOCKED)``) followed by a ``DELETE``, on the same table.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg

from bench import pg
from bench.context import Context
from bench.results import Result, unavailable
from bench.systems import get
from pgjobs import _queries

BATCHES = (500, 100)  # 500 first: the batch of the drain it is compared with
_PLACEHOLDER = re.compile(r"%\((\w+)\)[sb](::[\w.]+\[\])?")

RAW_CLAIM = """
with claimed as (
    update pgjobs.jobs j set state = 'running'
    from (select id from pgjobs.jobs
          where state = 'available' and queue = 'default'
          order by priority, id
          limit {batch}
          for update skip locked) picked
    where j.id = picked.id
    returning j.id
)
select coalesce(array_agg(id), '{{}}') as ids from claimed
\\gset
delete from pgjobs.jobs where id = any (:ids::int8[]);
"""


def render(statement: bytes, values: dict[str, str], fill: str | None = None) -> str:
    """Swap psycopg placeholders for pgbench variables or SQL literals.

    With *fill* (an array length), a parameter not in *values* that is cast to an array
    type becomes an array of that many NULLs: a per-outcome column added to the
    statement after this benchmark was written (a result, an error) is empty for a
    no-op job. Any other new parameter makes the ceiling n/a until it is mapped here.
    """
    text = statement.decode()

    def swap(match: re.Match[str]) -> str:
        name, cast = match.group(1), match.group(2) or ""
        if name in values:
            return values[name] + cast
        if fill and cast:
            return f"array_fill(null{cast[:-2]}, {fill}){cast}"
        raise LookupError(f"parameter %({name})s is new to the benchmark")

    return _PLACEHOLDER.sub(swap, text).replace("%%", "%")


def pgjobs_script(batch: int) -> str:
    """``job_claim`` then ``job_finish_many`` as one pgbench script."""
    statements = _queries.queries("pgjobs")
    worker = f"'{uuid.uuid4()}'::uuid"
    claim = render(
        statements["job_claim"],
        {
            "queues": "'{default}'",
            "limits": f"'{{{batch}}}'",
            "grace": "10",
            "lease": "60",
            "unwait": "false",
            "worker_id": worker,
            # Each claim starts where the previous one ended, as the worker's do. (The
            # worker also rescans from the front every 100 ms; this never does, so the
            # ceiling is if anything a little high.) Every job here has priority 0.
            "after_priorities": "'{0}'",
            "after_ids": "array[:floor]",
        },
    )
    every = "array[cardinality(:ids::int8[])]"
    finish = render(
        statements["job_finish_many"],
        {
            "ids": ":ids",
            "attempts": ":attempts",
            # What the worker sends for a batch of plain completions: NULL for the columns
            # that hold only their default (see finish_params).
            "states": "null",
            "delays": "null",
            "errors": "null",
            "results": "null",
            "refunds": "null",
            "delete_completed": "true",
            "worker_id": worker,
        },
        fill=every,
    )
    aggregate = (
        "select coalesce(array_agg(id), '{}') as ids,"
        " coalesce(array_agg(attempt), '{}') as attempts,"
        " coalesce(max(id), :floor) as floor from claimed"
    )
    return f"{_as_cte(claim, 'claimed')}\n{aggregate}\n\\gset\n{finish};\n"


def _as_cte(statement: str, name: str) -> str:
    """Turn ``[with ...] update ... returning ...`` into ``with ..., name as (update ...)``.

    pgbench keeps one row with ``\\gset``, so the claimed rows are folded into arrays
    by a final ``select``. A data-modifying ``WITH`` cannot be nested, hence the splice:
    the statement's own top-level command (the one starting a line) becomes one more
    CTE of its top-level ``WITH``.
    """
    lines = [line for line in statement.splitlines() if not line.startswith("--")]
    starts = [i for i, line in enumerate(lines) if re.match(r"(update|delete|insert)\b", line)]
    if not starts:
        raise LookupError("job_claim has no top-level update to time")
    head, body = lines[: starts[-1]], "\n".join(lines[starts[-1] :])
    if head and head[0].startswith("with"):
        return "\n".join(head) + f",\n{name} as (\n{body}\n)"
    return f"with {name} as (\n{body}\n)"


def _fill(dsn: str, count: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "insert into pgjobs.jobs (kind, payload)"
            " select 'noop', jsonb_build_object('seq', g) from generate_series(1, %s) g",
            (count,),
        )
    pg.settle(dsn)


def pgbench(dsn: str, script: str, options: list[str]) -> tuple[float, str]:
    """Run *script* with pgbench (prepared statements, plus *options*): its tps without
    connection time, and its whole report."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "script.sql"
        path.write_text(script)
        argv = ["pgbench", "-n", "-M", "prepared", *options, "-f", str(path), dsn]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    found = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"pgbench failed:\n{done.stdout}\n{done.stderr}")
    return float(found.group(1)), done.stdout


def _pgbench(dsn: str, script: str, runs: int) -> tuple[float, list[float]]:
    """Run *script* *runs* times from one client: scripts per second, ms per statement.

    A count of runs rather than a duration: a run that found the table empty would be a
    cheap no-op, and averaging those in would make the ceiling whatever the table size
    divided by the duration happened to be.
    """
    options = ["-r", "-c", "1", "-j", "1", "-t", str(runs), "-D", "floor=0"]
    tps, report = pgbench(dsn, script, options)
    latencies = re.findall(
        r"^\s+([\d.]+)\s+\d+\s+\S", report.split("statement latencies")[-1], re.M
    )
    return tps, [float(ms) for ms in latencies]


def _left(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select count(*) from pgjobs.jobs where state = 'available'").fetchone()
    return int(row[0]) if row else 0


def run(ctx: Context) -> list[Result]:
    cases = [(f"sql_{b}", b) for b in BATCHES] + [("sql_raw", 100)]
    if shutil.which("pgbench") is None:
        return [unavailable(name, "sql", "jobs/s", "pgbench not on PATH") for name, _ in cases]
    jobs = ctx.profile.sql_jobs
    results = []
    with ctx.database(get("pgjobs"), "sql_template") as template:
        _fill(template, jobs)
        for workload, batch in cases:
            try:
                raw = workload == "sql_raw"
                script = RAW_CLAIM.format(batch=batch) if raw else pgjobs_script(batch)
            except LookupError as exc:
                results.append(unavailable(workload, "sql", "jobs/s", str(exc)))
                continue
            with pg.fresh_database(ctx.admin_dsn, workload, template=template) as dsn:
                before = pg.counters(ctx.admin_dsn, dsn)
                # Every run claims a full batch: the table holds exactly enough jobs.
                tps, latencies = _pgbench(dsn, script, jobs // batch)
                rate = tps * batch
                delta = pg.counters(ctx.admin_dsn, dsn) - before
                done = jobs - _left(dsn)
            note = f"batch {batch}, 1 client, pgbench -M prepared, {jobs:,} jobs"
            if len(latencies) == 2:
                note += f"; claim {latencies[0]:.2f} ms + finish {latencies[1]:.2f} ms per batch"
            if done < jobs - jobs % batch:
                note += f"; only {done:,} of {jobs:,} jobs were claimed"
            results.append(
                Result(
                    workload,
                    "sql",
                    rate,
                    "jobs/s",
                    note,
                    commits_per_job=delta.commits / max(done, 1),
                    wal_per_job=delta.wal / max(done, 1),
                )
            )
    return results
