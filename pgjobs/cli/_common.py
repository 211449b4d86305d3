"""Options and helpers shared by the commands."""

from __future__ import annotations

import argparse

from .._dsn import resolve_dsn
from .._queries import DEFAULT_SCHEMA, check_schema_name

__all__ = ["add_database_options", "dsn_from", "schema_from"]


def add_database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dsn",
        help="database to use (default: $PGJOBS_DSN, then $DATABASE_URL)",
    )
    parser.add_argument(
        "--schema",
        default=DEFAULT_SCHEMA,
        help=f"the pgjobs schema (default: {DEFAULT_SCHEMA})",
    )


def dsn_from(args: argparse.Namespace) -> str:
    return resolve_dsn(args.dsn)


def schema_from(args: argparse.Namespace) -> str:
    return check_schema_name(args.schema)
