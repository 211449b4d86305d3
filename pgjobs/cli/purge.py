"""``pgjobs purge --older-than 7d``: delete finished jobs, in short transactions."""

from __future__ import annotations

import argparse

from .. import admin
from ..job import FINISHED_STATES
from ._output import age_limit, connect, count, duration, new_parser

EXAMPLES = """
pgjobs purge --older-than 7d                      # completed, failed and cancelled jobs
pgjobs purge --older-than 30d --state failed      # only failed ones
pgjobs purge --older-than 12h --dry-run           # count, delete nothing
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = new_parser(
        subparsers,
        "purge",
        help="delete finished jobs older than a duration",
        description="""
            Delete completed, failed and cancelled jobs that finished more than a
            duration ago, in batches of --batch-size rows, each its own short
            transaction so that vacuum is never held back for long. Calls
            purge_finished().
        """,
        examples=EXAMPLES,
        run=run,
    )
    parser.add_argument(
        "--older-than",
        required=True,
        type=age_limit,
        metavar="DURATION",
        help="such as 7d, 12h or 90m",
    )
    parser.add_argument(
        "--state",
        action="append",
        choices=[str(state) for state in FINISHED_STATES],
        help="only this finished state (repeatable; default all three)",
    )
    parser.add_argument(
        "--batch-size", type=count, default=10_000, help="rows per transaction (default 10000)"
    )
    parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")


def run(args: argparse.Namespace) -> int:
    older_than = args.older_than
    states = args.state or [str(state) for state in FINISHED_STATES]
    what = f"{'/'.join(states)} jobs that finished more than {duration(older_than)} ago"
    with connect(args) as conn:
        if args.dry_run:
            count = admin.count_finished(conn, older_than, states=states, schema=args.schema)
            print(f"would delete {count} {what}")
            return 0
        total = 0
        while True:
            deleted = admin.purge_finished(
                conn, older_than, max_rows=args.batch_size, states=states, schema=args.schema
            )
            total += deleted
            if deleted < args.batch_size:
                break
    print(f"deleted {total} {what}")
    return 0
