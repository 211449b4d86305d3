"""``pgjobs cancel ID``: cancel a job, cooperatively when it is running."""

from __future__ import annotations

import argparse

from .. import admin
from ..errors import JobStateError
from ..job import not_found, parse_id
from ._output import add_job_id, clean, connect, job_state, new_parser

EXAMPLES = """
pgjobs cancel 42
pgjobs cancel 42 --reason "customer withdrew the order"
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = new_parser(
        subparsers,
        "cancel",
        help="cancel a job (a running one cooperatively)",
        description="""
            Cancel a scheduled, available or running job. A running job is marked
            cancelled at once and its worker is told through NOTIFY, which cancels the
            handler's context; the handler's own result is then discarded. Calls
            cancel_job().
        """,
        examples=EXAMPLES,
        run=run,
    )
    add_job_id(parser)
    parser.add_argument("--reason", help="recorded as the job's last error")


def run(args: argparse.Namespace) -> int:
    job_id = parse_id(args.id)
    with connect(args) as conn:
        before = admin.get_job(conn, job_id, schema=args.schema)
        if before is None:
            raise not_found(job_id)
        if not admin.cancel_job(conn, job_id, reason=args.reason, schema=args.schema):
            state = job_state(conn, job_id, args.schema)
            raise JobStateError(
                f"job {job_id} is already {state}: only scheduled, available or running jobs "
                "can be cancelled"
            )
    if before.state == "running":
        worker = clean(before.worker_id)
        print(f"job {job_id} cancelled; its worker {worker} was told to stop it")
    else:
        print(f"job {job_id} cancelled (it was {before.state})")
    return 0
