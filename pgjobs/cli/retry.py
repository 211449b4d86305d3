"""``pgjobs retry ID`` and ``pgjobs retry --all-failed [--kind K] [--queue Q]``."""

from __future__ import annotations

import argparse

from .. import admin
from ..errors import InvalidArgumentError, JobStateError
from ..job import parse_id
from ._output import add_job_id, connect, job_state, new_parser

EXAMPLES = """
pgjobs retry 42                                  # run failed (or cancelled) job 42 again, now
pgjobs retry --all-failed --kind send_receipt    # every failed send_receipt job
pgjobs retry --all-failed --queue email          # every failed job of queue email
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = new_parser(
        subparsers,
        "retry",
        help="run a failed or cancelled job again (or all failed jobs)",
        description="""
            Make a failed, cancelled or scheduled job available now. A job that used up
            its retries gets exactly one more attempt. With --all-failed, every failed
            job, optionally of one kind and queue. Calls retry_job() / retry_failed().
        """,
        examples=EXAMPLES,
        run=run,
    )
    add_job_id(parser, optional=True)
    parser.add_argument("--all-failed", action="store_true", help="retry every failed job")
    parser.add_argument("--kind", help="with --all-failed: only jobs of this kind")
    parser.add_argument("--queue", help="with --all-failed: only jobs of this queue")


def run(args: argparse.Namespace) -> int:
    if args.all_failed == (args.id is not None):
        raise InvalidArgumentError("give a job ID or --all-failed, not both or neither")
    if args.id is not None and (args.kind or args.queue):
        raise InvalidArgumentError("--kind and --queue go with --all-failed, not with an ID")
    with connect(args) as conn:
        if args.all_failed:
            count = admin.retry_failed(conn, kind=args.kind, queue=args.queue, schema=args.schema)
            scope = "".join(
                f" {name} {value!r}"
                for name, value in (("of kind", args.kind), ("in queue", args.queue))
                if value
            )
            print(f"{count} failed job{'s' if count != 1 else ''}{scope} will run again now")
            return 0
        job_id = parse_id(args.id)
        if not admin.retry_job(conn, job_id, schema=args.schema):
            state = job_state(conn, job_id, args.schema)
            raise JobStateError(
                f"job {job_id} is {state}: only failed, cancelled or scheduled jobs can be retried"
            )
    print(f"job {job_id} will run again now")
    return 0
