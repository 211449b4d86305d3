"""``pgjobs grants``: create and grant the enqueuer, worker and reader roles."""

from __future__ import annotations

import argparse

from .. import admin
from ._output import call, new_parser

EXAMPLES = """
pgjobs grants                              # pgjobs_enqueuer, pgjobs_worker, pgjobs_reader
pgjobs grants --no-create --worker app_worker --reader grafana --enqueuer web
# then, as an admin: GRANT pgjobs_worker TO my_worker_login;
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = new_parser(
        subparsers,
        "grants",
        help="create and grant least-privilege roles",
        description="""
            Create (when missing, as NOLOGIN roles) and grant three roles: one that may
            only enqueue, through enqueue() or an INSERT, and never reads payloads or
            changes a job; one for workers; one read-only for dashboards and inspection.
            Grant them to your login roles. Run it again after `pgjobs migrate`: it is
            idempotent. Needs CREATEROLE to create roles. Calls grant_roles(); see
            docs/operations.md.
        """,
        examples=EXAMPLES,
        run=run,
    )
    parser.add_argument("--enqueuer", metavar="ROLE", help="default: <schema>_enqueuer")
    parser.add_argument("--worker", metavar="ROLE", help="default: <schema>_worker")
    parser.add_argument("--reader", metavar="ROLE", help="default: <schema>_reader")
    parser.add_argument(
        "--no-create", action="store_true", help="grant to existing roles, create none"
    )


def run(args: argparse.Namespace) -> int:
    statements = call(
        args,
        admin.grant_roles,
        enqueuer=args.enqueuer,
        worker=args.worker,
        reader=args.reader,
        create_missing=not args.no_create,
    )
    for statement in statements:
        print(statement + ";")
    return 0
