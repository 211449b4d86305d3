"""The ``pgjobs`` command line: one module per command, one place for errors.

Each command module (``pause`` also holds its inverse, ``resume``) exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking
the parsed arguments and returning an exit code. Errors a user can fix (no DSN,
unreachable database, schema not migrated, bad input) are printed as one line,
``pgjobs: error: ...``, with exit status 2; nothing else is caught.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import psycopg
import psycopg_pool

from .._logging import configure as configure_logging
from .._version import __version__
from ..errors import PgjobsError
from . import (
    cancel,
    dashboard_cmd,
    demo,
    doctor,
    enqueue_cmd,
    grants,
    jobs,
    migrate_cmd,
    pause,
    purge,
    retry,
    status,
    why,
    worker_cmd,
)
from ._output import clean

__all__ = ["main"]

COMMANDS = (
    migrate_cmd,
    worker_cmd,
    dashboard_cmd,
    demo,
    status,
    jobs,
    enqueue_cmd,
    retry,
    cancel,
    pause,  # and resume
    why,
    doctor,
    purge,
    grants,
)

EPILOG = """\
examples:
  pgjobs migrate --dsn postgresql://app@localhost/app   # create or upgrade the schema
  pgjobs demo                                           # try it on an embedded Postgres

The database comes from --dsn, else $PGJOBS_DSN, else $DATABASE_URL.
Run `pgjobs COMMAND --help` for a command's options and an example."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgjobs",
        description="pgjobs: a transactional, Postgres-only job queue.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pgjobs {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def error(message: str) -> int:
    # A message may quote the database (a queue's name, Postgres' own words): one line,
    # with no control character of its own (see _output.clean).
    print(f"pgjobs: error: {clean(message)}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        configure_logging(getattr(args, "log_level", "INFO"), getattr(args, "log_format", None))
        return int(args.func(args))
    except PgjobsError as exc:
        return error(str(exc))
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return error(f"cannot reach the database: {first_line}")
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return error(f"database error: {first_line}")
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`pgjobs migrate --sql | head`): stop quietly, and keep
        # Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
