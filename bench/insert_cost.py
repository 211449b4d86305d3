"""Where an enqueue's server time goes: ``python -m bench.insert_cost [--clients 1,8]``.

The enqueue workloads compare ``pgjobs.enqueue`` with a one-row INSERT into a plain
table, through Python. This takes Python out: pgbench runs, from 1 and from 8 clients,

* the plain INSERT of the ceiling (``plain_jobs``: id, kind, payload, created_at);
* the same INSERT into a copy of ``pgjobs.jobs`` with its columns, defaults and indexes
  but without its rules (the domains' base types);
* the same with the rules as table CHECK constraints, as before migration 0005;
* the same INSERT into ``pgjobs.jobs`` itself, whose rules are domains;
* ``job_insert_defaults``, the statement ``pgjobs.enqueue`` sends for a job due at once
  with the default priority, max_retry and timeout; ``job_insert_available``, the one
  for a job due at once with other options; and ``job_insert``, the one for a job with
  a ``run_at`` or a ``delay`` (all from ``pgjobs/sql/jobs.sql``; given neither, so that
  they insert the same row).

Each step down the list adds one thing a queue row pays for (the CHECK constraints and
the domains are two ways of paying for the same rules), so the ratios to the plain
INSERT say what each costs. Statements take turns (3 rounds), the median is reported.
Nothing here is part of the benchmark table; it is a profile to read beside it.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import psycopg

from bench import pg
from bench.systems import get
from bench.workloads.ceiling import pgbench, render
from pgjobs import _queries

ROUNDS = 3
ROW = "('noop', '{\"seq\": 1}'::jsonb)"

#: Two copies of pgjobs.jobs: without its rules, and with them as CHECK constraints.
COPIES = """
create table jobs_unchecked (like pgjobs.jobs including defaults including identity
                             including indexes);
alter table jobs_unchecked
    alter column kind type text, alter column queue type text,
    alter column max_retry type integer, alter column attempt type integer,
    alter column timeout type interval;
create table jobs_checked (like jobs_unchecked including defaults including identity
                           including indexes);
alter table jobs_checked
    add check (length(kind) between 1 and 255 and btrim(kind) <> ''),
    add check (length(queue) between 1 and 255 and btrim(queue) <> ''),
    add check (max_retry >= 0), add check (timeout > interval '0'), add check (attempt >= 0);
"""


def statements() -> dict[str, str]:
    queries = _queries.queries("pgjobs")
    values = {
        "queue": "'default'",
        "kind": "'noop'",
        "payload": "'{\"seq\": 1}'",
        "priority": "0",
        "max_retry": "25",
        "timeout": "1800.0",
        "run_at": "null",
        "delay": "null",
    }
    return {
        "plain table": f"insert into plain_jobs (kind, payload) values {ROW}",
        "jobs columns and indexes, no rules": (
            f"insert into jobs_unchecked (kind, payload) values {ROW}"
        ),
        "the rules as CHECK constraints": f"insert into jobs_checked (kind, payload) values {ROW}",
        "pgjobs.jobs (the rules as domains)": (
            f"insert into pgjobs.jobs (kind, payload) values {ROW}"
        ),
        "job_insert_defaults (due now, defaults)": render(queries["job_insert_defaults"], values),
        "job_insert_available (a job due now)": render(queries["job_insert_available"], values),
        "job_insert (for run_at or delay)": render(queries["job_insert"], values),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.insert_cost", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--dsn", default=pg.DEFAULT_ADMIN_DSN, help="an admin DSN of the server")
    parser.add_argument("--clients", default="1,8", help="client counts, comma-separated")
    parser.add_argument("--seconds", type=int, default=3, help="per statement and round")
    args = parser.parse_args()
    with pg.fresh_database(args.dsn, "insert_cost") as dsn:
        get("pgjobs").install(dsn)
        get("plain").install(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(COPIES)
        cases = statements()
        for clients in (int(n) for n in args.clients.split(",")):
            options = ["-c", str(clients), "-j", str(min(clients, 2)), "-T", str(args.seconds)]
            tps: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(ROUNDS):
                for name, script in cases.items():
                    tps[name].append(pgbench(dsn, script.rstrip().rstrip(";") + ";\n", options)[0])
            base = statistics.median(tps["plain table"])
            how = f"pgbench -M prepared, median of {ROUNDS} x {args.seconds} s"
            print(f"\n{clients} client(s), {how}")
            for name, runs in tps.items():
                rate = statistics.median(runs)
                print(f"  {name:40} {rate:9,.0f} tps  {rate / base:6.0%} of the plain INSERT")
    return 0


if __name__ == "__main__":
    sys.exit(main())
