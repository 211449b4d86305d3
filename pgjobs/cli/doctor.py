"""``pgjobs doctor``: what degrades the queue, and what to do about it."""

from __future__ import annotations

import argparse

from .. import admin, migrate
from ._output import add_json_option, age_limit, connect, duration, new_parser, print_json, table

EXAMPLES = """
pgjobs doctor                         # exit status 1 when something needs attention
pgjobs doctor --long-transaction 1m   # flag transactions open for a minute or more
pgjobs doctor --json
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = new_parser(
        subparsers,
        "doctor",
        help="diagnose what degrades the queue",
        description="""
            Check what makes a Postgres queue slow: transactions, replication slots and
            prepared transactions holding back vacuum (pid, age, query start), dead rows
            in the jobs table, jobs stuck past their lease, overdue scheduled jobs,
            queues with work that no live worker serves, and the jobs table's autovacuum
            settings. Exit status 1 when a finding is a warning. Calls doctor() and
            reads vacuum_blockers.
        """,
        examples=EXAMPLES,
        run=run,
    )
    parser.add_argument(
        "--long-transaction",
        type=age_limit,
        default="5m",
        metavar="DURATION",
        help="flag transactions open at least this long (default 5m)",
    )
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    long_transaction = args.long_transaction
    with connect(args) as conn:
        current = migrate.current_revision(conn, args.schema)
        head = migrate.head_revision()
        schema_finding = admin.DoctorFinding(
            "schema",
            "ok" if current == head else "warn",
            f"{args.schema} is at revision {current}"
            + ("" if current == head else f", this pgjobs needs {head}: run `pgjobs migrate`"),
        )
        findings = [
            schema_finding,
            *admin.doctor(conn, long_transaction=long_transaction, schema=args.schema),
        ]
        blockers = admin.vacuum_blockers(conn, limit=5, schema=args.schema)
    warned = any(f.status == "warn" for f in findings)
    if args.json:
        print_json({"findings": findings, "vacuum_blockers": blockers})
        return 1 if warned else 0
    print(
        table(
            ["status", "check", "detail"],
            [[f.status, f.check_name, f.detail] for f in findings],
            wrap_last=True,
        )
    )
    if blockers:
        print("\noldest snapshots (what vacuum must wait for):")
        rows = [
            [
                b.kind,
                b.pid if b.pid is not None else "-",
                b.username or "-",
                b.state or "-",
                duration(b.xact_duration),
                b.xmin_age if b.xmin_age is not None else "-",
                " ".join((b.query or b.name or "").split())[:60],
            ]
            for b in blockers
        ]
        print(table(["kind", "pid", "user", "state", "open for", "xmin age", "query"], rows))
    print()
    print("warnings found" if warned else "all good")
    return 1 if warned else 0
