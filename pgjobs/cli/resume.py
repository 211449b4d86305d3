"""``pgjobs resume QUEUE``: let workers claim from a paused queue again."""

from __future__ import annotations

import argparse

from .. import admin
from ._output import connect, new_parser

EXAMPLES = """
pgjobs resume email
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = new_parser(
        subparsers,
        "resume",
        help="let workers claim from a paused queue again",
        description=(
            "Resume a paused queue. Waiting workers serving it are woken at once. "
            "Calls resume_queue()."
        ),
        examples=EXAMPLES,
    )
    parser.add_argument("queue", metavar="QUEUE", help="the queue name")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with connect(args) as conn:
        changed = admin.resume_queue(conn, args.queue, schema=args.schema)
    print(f"queue {args.queue!r} {'resumed' if changed else 'was not paused'}")
    return 0
