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

#: The roles, each an option naming it (``--worker ROLE``) and a parameter of grant_roles().
ROLES = ("enqueuer", "worker", "reader")


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
    for role in ROLES:
        parser.add_argument(f"--{role}", metavar="ROLE", help=f"default: <schema>_{role}")
    parser.add_argument(
        "--no-create", action="store_true", help="grant to existing roles, create none"
    )


def run(args: argparse.Namespace) -> int:
    names = {role: getattr(args, role) for role in ROLES}
    statements = call(args, admin.grant_roles, **names, create_missing=not args.no_create)
    for statement in statements:
        print(statement + ";")
    return 0
