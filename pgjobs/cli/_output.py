"""What the operator commands share: a database connection, terminal tables, times, JSON."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import psycopg
import psycopg.errors

from .. import admin
from .._pooler import pooled
from ..errors import SchemaError
from ._common import add_database_options, dsn_from, schema_from

__all__ = [
    "add_json_option",
    "age",
    "connect",
    "duration",
    "new_parser",
    "print_json",
    "table",
    "timestamp",
]


def new_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    help: str,
    description: str,
    examples: str,
    database: bool = True,
) -> argparse.ArgumentParser:
    """A command's parser with the shared layout: description, examples, --dsn/--schema."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog="examples:\n" + textwrap.indent(textwrap.dedent(examples).strip("\n"), "  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if database:
        add_database_options(parser)
    parser.set_defaults(log_level="WARNING")
    return parser


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print JSON for scripts instead of a table"
    )


@contextmanager
def connect(args: argparse.Namespace) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the database of --dsn/$PGJOBS_DSN.

    A pgjobs object that does not exist means the schema is missing or older than this
    pgjobs: that is said in one line, with the fix, instead of as a raw SQL error.
    """
    schema = schema_from(args)
    dsn = dsn_from(args)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        pooled(conn)  # a purge repeats its statements: not prepared through a pooler
        try:
            yield conn
        except (
            psycopg.errors.UndefinedTable,
            psycopg.errors.UndefinedFunction,
            psycopg.errors.InvalidSchemaName,
        ) as exc:
            raise SchemaError(
                f"the pgjobs schema {schema!r} is missing or older than this pgjobs "
                f"({exc.diag.message_primary}): run `pgjobs migrate --schema {schema}`"
            ) from exc


def print_json(value: Any) -> None:
    json.dump(admin.jsonable(value), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def duration(value: timedelta | float | None) -> str:
    """A short duration for tables: ``850ms``, ``42s``, ``3m12s``, ``5h03m``, ``2d04h``."""
    if value is None:
        return "-"
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    if seconds < 1:
        text = f"{seconds * 1000:.0f}ms"
    elif seconds < 60:
        text = f"{seconds:.0f}s"
    elif seconds < 3600:
        text = f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    elif seconds < 86400:
        text = f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    else:
        text = f"{int(seconds // 86400)}d{int(seconds % 86400 // 3600):02d}h"
    return sign + text


def age(moment: datetime | None, now: datetime | None = None) -> str:
    """``3m12s ago`` or ``in 5m00s`` relative to *now*."""
    if moment is None:
        return "-"
    delta = (now or datetime.now(moment.tzinfo)) - moment
    if delta >= timedelta(0):
        return f"{duration(delta)} ago"
    return f"in {duration(-delta)}"


def timestamp(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def _is_number(text: str) -> bool:
    return text.replace(",", "").replace("/", "").replace(".", "").lstrip("-").isdigit()


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, wrap_last: bool = False) -> str:
    """A plain-text table with aligned columns; numbers are right-aligned.

    With *wrap_last*, the last column is wrapped to the terminal's width, continuation
    lines indented under it.
    """
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        for index, cell in enumerate(row):
            if not (wrap_last and index == len(headers) - 1):
                widths[index] = max(widths[index], len(cell))
    numeric = [
        bool(cells) and all(_is_number(row[index]) or row[index] == "-" for row in cells)
        for index in range(len(headers))
    ]

    def line(row: Sequence[str], heading: bool = False) -> str:
        out = []
        for index, cell in enumerate(row):
            last = index == len(row) - 1
            if last and (wrap_last or not numeric[index] or heading):
                out.append(cell)
            elif numeric[index]:
                out.append(cell.rjust(widths[index]))
            else:
                out.append(cell.ljust(widths[index]))
        return "  ".join(out).rstrip()

    lines = [line([h.upper() for h in headers], heading=True)]
    indent = sum(widths[:-1]) + 2 * (len(headers) - 1)
    room = max(shutil.get_terminal_size((120, 24)).columns - indent, 30)
    for row in cells:
        if wrap_last and len(row[-1]) > room:
            parts = textwrap.wrap(row[-1], room) or [""]
            lines.append(line([*row[:-1], parts[0]]))
            lines.extend(" " * indent + part for part in parts[1:])
        else:
            lines.append(line(row))
    return "\n".join(lines)
