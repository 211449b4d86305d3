"""``pgjobs pause QUEUE`` and ``pgjobs resume QUEUE``: stop workers claiming from a
queue, and let them claim from it again."""

from __future__ import annotations

import argparse

from .. import admin
from ..errors import QueueNotFoundError
from ._output import add_queue_name, call, new_parser

EXAMPLES = """
pgjobs pause email            # workers stop claiming from queue email at their next claim
pgjobs pause reports --force  # pause a queue no job or worker has used yet
pgjobs resume email
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pause = new_parser(
        subparsers,
        "pause",
        help="stop workers claiming from a queue",
        description="""
            Pause a queue: no worker claims from it from its next claim on (well within
            a second). Running jobs finish; new jobs can still be enqueued. The pause is
            stored in the database, so it holds across restarts and machines. Calls
            pause_queue().
        """,
        examples=EXAMPLES,
        run=run_pause,
    )
    add_queue_name(pause)
    pause.add_argument(
        "--force", action="store_true", help="pause even if no job or worker names the queue"
    )
    resume = new_parser(
        subparsers,
        "resume",
        help="let workers claim from a paused queue again",
        description="""
            Resume a paused queue. Waiting workers serving it are woken at once. Calls
            resume_queue().
        """,
        examples="pgjobs resume email",
        run=run_resume,
    )
    add_queue_name(resume)


def run_pause(args: argparse.Namespace) -> int:
    try:
        changed = call(args, admin.pause_queue, args.queue, force=args.force)
    except QueueNotFoundError as exc:
        raise QueueNotFoundError(
            f"{exc}; check the name, or use --force to pause it before first use"
        ) from exc
    print(f"queue {args.queue!r} {'paused' if changed else 'was already paused'}")
    return 0


def run_resume(args: argparse.Namespace) -> int:
    changed = call(args, admin.resume_queue, args.queue)
    print(f"queue {args.queue!r} {'resumed' if changed else 'was not paused'}")
    return 0
