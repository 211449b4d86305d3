"""``pgjobs resume QUEUE``: let workers claim from a paused queue again."""

from __future__ import annotations

import argparse

from .. import admin
from ._output import add_queue_name, call, new_parser

EXAMPLES = """
pgjobs resume email
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = new_parser(
        subparsers,
        "resume",
        help="let workers claim from a paused queue again",
        description="""
            Resume a paused queue. Waiting workers serving it are woken at once. Calls
            resume_queue().
        """,
        examples=EXAMPLES,
        run=run,
    )
    add_queue_name(parser)


def run(args: argparse.Namespace) -> int:
    changed = call(args, admin.resume_queue, args.queue)
    print(f"queue {args.queue!r} {'resumed' if changed else 'was not paused'}")
    return 0
