"""``pgjobs pause QUEUE``: stop workers claiming from a queue."""

from __future__ import annotations

import argparse

from .. import admin
from ..errors import QueueNotFoundError
from ._output import connect, new_parser

EXAMPLES = """
pgjobs pause email            # workers stop claiming from queue email at their next claim
pgjobs pause reports --force  # pause a queue no job or worker has used yet
pgjobs resume email
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = new_parser(
        subparsers,
        "pause",
        help="stop workers claiming from a queue",
        description=(
            "Pause a queue: no worker claims from it from its next claim on (well within a "
            "second). Running jobs finish; new jobs can still be enqueued. The pause is stored "
            "in the database, so it holds across restarts and machines. Calls pause_queue()."
        ),
        examples=EXAMPLES,
    )
    parser.add_argument("queue", metavar="QUEUE", help="the queue name")
    parser.add_argument(
        "--force", action="store_true", help="pause even if no job or worker names the queue"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with connect(args) as conn:
        try:
            changed = admin.pause_queue(conn, args.queue, force=args.force, schema=args.schema)
        except QueueNotFoundError as exc:
            raise QueueNotFoundError(
                f"{exc}; check the name, or use --force to pause it before first use"
            ) from exc
    print(f"queue {args.queue!r} {'paused' if changed else 'was already paused'}")
    return 0
