"""``pgjobs migrate``: create or upgrade (or downgrade) the pgjobs schema."""

from __future__ import annotations

import argparse
import sys

import psycopg

from .. import migrate
from ._common import add_database_options, dsn_from, schema_from

EXAMPLES = """\
examples:
  pgjobs migrate --dsn postgresql://app@localhost/app   # create or upgrade to the newest schema
  pgjobs migrate --sql > pgjobs.sql                      # the DDL for a DBA, nothing is run
  pgjobs migrate --downgrade base                        # remove pgjobs' tables (data is lost)
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "migrate",
        help="create or upgrade the pgjobs schema",
        description=(
            "Create or upgrade the pgjobs schema with alembic. pgjobs records its version in "
            "<schema>.pgjobs_version, apart from your application's own alembic history. "
            "Running it again when the schema is current does nothing."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_database_options(parser)
    parser.add_argument(
        "--sql",
        action="store_true",
        help="print the SQL instead of running it (no database needed)",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--to", default="head", metavar="REVISION", help="upgrade to this revision (default: head)"
    )
    target.add_argument(
        "--downgrade", metavar="REVISION", help="downgrade to this revision ('base' removes all)"
    )
    parser.set_defaults(func=run, log_level="WARNING")


def run(args: argparse.Namespace) -> int:
    schema = schema_from(args)
    if args.sql:
        if args.downgrade:
            migrate.downgrade(None, args.downgrade, schema=schema, sql=True, output=sys.stdout)
        else:
            migrate.upgrade(None, schema=schema, revision=args.to, sql=True, output=sys.stdout)
        return 0
    dsn = dsn_from(args)
    # Connect with psycopg first: an unreachable database then fails with one clear line
    # instead of a SQLAlchemy traceback from inside alembic.
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        before = migrate.current_revision(conn, schema)
    if args.downgrade:
        migrate.downgrade(dsn, args.downgrade, schema=schema)
    else:
        migrate.upgrade(dsn, schema=schema, revision=args.to)
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        after = migrate.current_revision(conn, schema)
    if before == after:
        print(f"pgjobs schema {schema!r} is at revision {after or 'base'}: nothing to do")
    else:
        print(f"pgjobs schema {schema!r} migrated from {before or 'base'} to {after or 'base'}")
    return 0
