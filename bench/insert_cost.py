"""Where an enqueue's server time goes: ``python -m bench.insert_cost``.

The enqueue workloads compare ``pgjobs.enqueue`` with a one-row INSERT into a plain
table, through Python. This takes pgjobs' Python out and runs, with the same values in
every statement,

* the plain INSERT of the ceiling (``plain_jobs``: id, kind, payload, created_at);
* the same INSERT into a copy of ``pgjobs.jobs`` with its columns and defaults but only
  its primary key, and without its rules (the domains' base types);
* the same with all its indexes;
* the same with the rules as table CHECK constraints, as they were before domains;
* the same INSERT into ``pgjobs.jobs`` itself, whose rules are domains;
* the same returning the new id;
* ``job_insert_defaults``, the statement ``pgjobs.enqueue`` sends for a job due at once
  with the default priority, max_retry and timeout (the id, and the wakeup check);
  ``job_insert_available``, the one for a job due at once with other options; and
  ``job_insert``, the one for a job with a ``run_at`` or a ``delay`` (all from
  ``pgjobs/sql/jobs.sql``; given neither, so that they insert the same row).

Each step down the list adds one thing a queue row pays for (the CHECK constraints and
the domains are two ways of paying for the same rules), so the ratios to the plain
INSERT say what each costs. Statements take turns (3 rounds), the median is reported.

Two drivers. ``--driver pgbench`` (the default), from 1 and from 8 clients
(``--clients``): the server's cost with nothing else running. ``--driver psycopg``: one
psycopg connection sends every statement, the statements taking turns in blocks of
``BLOCK``, which is how the enqueue workload meets them. The two disagree: on a 2-core
machine a step that costs the server a few per cent under pgbench can cost several
times that from Python: pgbench's values, written in, are folded when the statement is
planned, where bound values are read at every execution; and the Python between two
statements likely evicts the server's caches (not proven). Turns on one connection keep
out the few per cent by which two connections' rates differ.
Nothing here is part of the benchmark table; it is a profile to read beside it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import psycopg
from psycopg import sql

from bench import pg
from bench.systems import get
from bench.turns import back_and_forth
from bench.workloads.ceiling import pgbench, render
from pgjobs import _queries

ROUNDS = 3
#: Statements a case sends in one turn, with ``--driver psycopg``.
BLOCK = 20
#: The values of the row every case inserts: bound to the statement's parameters, as a
#: producer sends them (``--driver psycopg``), or written in as literals (pgbench).
PARAMS = {
    "queue": "default",
    "kind": "noop",
    "payload": '{"seq": 1}',
    "priority": 0,
    "max_retry": 25,
    "timeout": 1800.0,
    "run_at": None,
    "delay": None,
}
ROW = "(%(kind)s::text, %(payload)s::jsonb)"

#: Copies of pgjobs.jobs: with its primary key only and without its rules; with all its
#: indexes and without its rules; with them and its rules as CHECK constraints.
COPIES = """
create table jobs_key_only (like pgjobs.jobs including defaults including identity);
alter table jobs_key_only
    add primary key (id),
    alter column kind type text, alter column queue type text,
    alter column max_retry type integer, alter column attempt type integer,
    alter column timeout type interval;
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


def statements() -> dict[str, bytes]:
    """Every case's statement, with psycopg placeholders for the values."""
    queries = _queries.queries("pgjobs")

    def insert(table: str, returning: str = "") -> bytes:
        return f"insert into {table} (kind, payload) values {ROW}{returning}".encode()

    return {
        "plain table": insert("plain_jobs"),
        "jobs columns, primary key only": insert("jobs_key_only"),
        "jobs columns and indexes, no rules": insert("jobs_unchecked"),
        "the rules as CHECK constraints": insert("jobs_checked"),
        "pgjobs.jobs (the rules as domains)": insert("pgjobs.jobs"),
        "pgjobs.jobs, returning the id": insert("pgjobs.jobs", " returning id"),
        "job_insert_defaults (due now, defaults)": queries["job_insert_defaults"],
        "job_insert_available (a job due now)": queries["job_insert_available"],
        "job_insert (for run_at or delay)": queries["job_insert"],
    }


def by_pgbench(dsn: str, cases: dict[str, bytes], clients: int, seconds: int) -> dict[str, float]:
    """Statements per second of each case, from *clients* pgbench clients."""
    options = ["-c", str(clients), "-j", str(min(clients, 2)), "-T", str(seconds)]
    literals = {name: sql.Literal(value).as_string() for name, value in PARAMS.items()}
    scripts = {name: render(query, literals).rstrip().rstrip(";") for name, query in cases.items()}
    tps: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, script in scripts.items():
            tps[name].append(pgbench(dsn, script + ";\n", options)[0])
    return {name: statistics.median(runs) for name, runs in tps.items()}


def by_psycopg(dsn: str, cases: dict[str, bytes], seconds: int) -> dict[str, float]:
    """Statements per second of each case, from one psycopg connection: in every round
    the cases take turns, ``BLOCK`` statements at a time, in order and then in reverse,
    until each has had about *seconds*."""
    rates: dict[str, list[float]] = {name: [] for name in cases}
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.cursor()
        for query in cases.values():  # past psycopg's prepare threshold
            for _ in range(2 * BLOCK):
                cursor.execute(query, PARAMS)
        for _ in range(ROUNDS):
            spent = dict.fromkeys(cases, 0.0)
            turns = 0
            while min(spent.values()) < seconds:
                for _, name in back_and_forth(list(cases), 2):
                    query = cases[name]
                    began = time.perf_counter()
                    for _ in range(BLOCK):
                        cursor.execute(query, PARAMS)
                    spent[name] += time.perf_counter() - began
                turns += 2
            for name in cases:
                rates[name].append(turns * BLOCK / spent[name])
    return {name: statistics.median(runs) for name, runs in rates.items()}


def show(title: str, rates: dict[str, float]) -> None:
    base = rates["plain table"]
    print(f"\n{title}")
    for name, rate in rates.items():
        share = f"{rate / base:6.0%} of the plain INSERT"
        print(f"  {name:40} {rate:9,.0f}/s {1e6 / rate:7.1f} µs  {share}")


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.insert_cost", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--dsn", default=pg.DEFAULT_ADMIN_DSN, help="an admin DSN of the server")
    parser.add_argument(
        "--driver",
        choices=("pgbench", "psycopg"),
        default="pgbench",
        help="who sends the statements: pgbench, with no Python (default), or one psycopg "
        "connection, values bound, as the enqueue workload sends them",
    )
    parser.add_argument("--clients", default="1,8", help="pgbench client counts, comma-separated")
    parser.add_argument("--seconds", type=int, default=3, help="per statement and round")
    args = parser.parse_args()
    with pg.fresh_database(args.dsn, "insert_cost") as dsn:
        get("pgjobs").install(dsn)
        get("plain").install(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(COPIES)
        cases = statements()
        if args.driver == "psycopg":
            how = f"median of {ROUNDS} rounds of {args.seconds} s, in turns of {BLOCK}"
            show(f"1 psycopg connection, {how}", by_psycopg(dsn, cases, args.seconds))
            return 0
        for clients in (int(n) for n in args.clients.split(",")):
            how = f"pgbench -M prepared, median of {ROUNDS} x {args.seconds} s"
            show(f"{clients} client(s), {how}", by_pgbench(dsn, cases, clients, args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
