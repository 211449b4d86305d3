"""``pgjobs why ID``: why a job is or is not running, in words."""

from __future__ import annotations

import argparse

from .. import admin
from ..job import parse_id
from ._output import add_job_id, call, clean, new_parser

EXAMPLES = """
pgjobs why 42
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = new_parser(
        subparsers,
        "why",
        help="explain why a job is or is not running",
        description="""
            Say why a job is or is not running: scheduled for later, its queue paused,
            no live worker serving its queue, waiting behind other jobs, running (since
            when, on which worker), failed (with the error) or finished; for a job that
            no longer exists, whether it completed within the last hour (workers record
            the completed jobs they delete), or else what can have deleted it (ids are
            never reused, so an id that was handed out belonged to a job). Calls why().
        """,
        examples=EXAMPLES,
        run=run,
    )
    add_job_id(parser)


def run(args: argparse.Namespace) -> int:
    print(clean(call(args, admin.why, parse_id(args.id)), lines=True))
    return 0
