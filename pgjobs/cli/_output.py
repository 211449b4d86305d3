"""What the operator commands share: a database connection, terminal tables, times, JSON.

Everything a command prints that came from the database goes through :func:`clean` (or
:func:`json_text`), from :mod:`pgjobs._text`: a queue, kind, error or payload is written
by whoever can enqueue, and printed raw an escape sequence in it would run in the
operator's terminal (set the window title, clear the screen, hide text). Control
characters are shown as escapes instead; other Unicode is printed as it is.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NoReturn, TypeVar
from uuid import UUID

import psycopg
import psycopg.errors
from psycopg.abc import Buffer
from psycopg.types.json import JsonbLoader

from .. import admin
from .._ops import MISSING_OBJECT, schema_error
from .._pooler import pooled
from .._text import clean, escape_json
from ..errors import InvalidArgumentError
from ..task import MAX_SECONDS
from ._common import add_database_options, dsn_from, schema_from
from ._parse import parse_duration

__all__ = [
    "add_job_id",
    "add_json_option",
    "add_queue_name",
    "age",
    "age_limit",
    "call",
    "clean",
    "connect",
    "count",
    "duration",
    "job_state",
    "json_text",
    "new_parser",
    "print_json",
    "refresh_seconds",
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
    run: Callable[[argparse.Namespace], int] | None = None,
    database: bool = True,
) -> argparse.ArgumentParser:
    """A command's parser with the shared layout: description (one paragraph, written
    over as many lines as it takes), examples, --dsn/--schema; *run* is what the command
    does with the parsed arguments (none for a command whose actions have parsers of
    their own)."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=" ".join(description.split()),
        epilog="examples:\n" + textwrap.indent(textwrap.dedent(examples).strip("\n"), "  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if database:
        add_database_options(parser)
    parser.set_defaults(log_level="WARNING")
    if run is not None:
        parser.set_defaults(func=run)
    parser.error = _one_line_error  # type: ignore[method-assign]
    return parser


def _one_line_error(message: str) -> NoReturn:
    """A command's argument error as the other errors are: one line, exit status 2
    (argparse's own would print the whole usage first)."""
    print(f"pgjobs: error: {clean(message)}", file=sys.stderr)
    raise SystemExit(2)


#: The largest count an option takes (rows per batch, jobs listed): the range of the
#: integer parameter it becomes in SQL.
MAX_COUNT = 2**31 - 1
#: The longest ``--watch`` interval: a day (time.sleep overflows on huge values).
MAX_REFRESH_SECONDS = 86_400.0


def count(text: str) -> int:
    """An option's whole number, 1 to :data:`MAX_COUNT` (argparse ``type=``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_COUNT}, not {text}")
    return value


def refresh_seconds(text: str) -> float:
    """Seconds between two refreshes, 0.1 to :data:`MAX_REFRESH_SECONDS` (``type=``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.1 <= value <= MAX_REFRESH_SECONDS:  # also NaN
        raise argparse.ArgumentTypeError(
            f"must be from 0.1 to {MAX_REFRESH_SECONDS:g} seconds, not {text}"
        )
    return value


def age_limit(text: str) -> timedelta:
    """A duration that the database subtracts from now(), such as ``--older-than 7d``:
    up to MAX_SECONDS (100 years), within any timestamp's range (``type=``)."""
    try:
        value = parse_duration(text)
    except InvalidArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value.total_seconds() > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be at most 100 years (36525d), not {text}")
    return value


def add_job_id(parser: argparse.ArgumentParser, *, optional: bool = False) -> None:
    """The ID argument of a command on one job (read by :func:`pgjobs.job.parse_id`)."""
    parser.add_argument("id", metavar="ID", nargs="?" if optional else None, help="the job id")


def add_queue_name(parser: argparse.ArgumentParser) -> None:
    """The QUEUE argument of a command on one queue."""
    parser.add_argument("queue", metavar="QUEUE", help="the queue name")


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
        conn.adapters.register_loader("jsonb", _TolerantJsonbLoader)
        pooled(conn)  # a purge repeats its statements: not prepared through a pooler
        try:
            yield conn
        except MISSING_OBJECT as exc:
            raise schema_error(exc, schema) from exc


_T = TypeVar("_T")


def call(
    args: argparse.Namespace, operation: Callable[..., _T], *params: Any, **options: Any
) -> _T:
    """*operation* (a function of pgjobs that takes a connection first and a ``schema``
    keyword: an :mod:`pgjobs.admin` operation, an enqueue) run on a connection to the
    command's database (see :func:`connect`) and in its schema."""
    with connect(args) as conn:
        return operation(conn, *params, schema=args.schema, **options)


def json_text(value: Any, *, indent: int | None = 2) -> str:
    """*value* as JSON safe to print (see :func:`pgjobs._text.escape_json`)."""
    return escape_json(json.dumps(jsonable(value), indent=indent, ensure_ascii=False))


class _TolerantJsonbLoader(JsonbLoader):
    """jsonb as Python values, or a note where Python cannot decode one: a payload
    nested thousands deep, or holding an integer of thousands of digits, is a value
    jsonb accepts from any enqueuer, and `jobs show` must still show its job."""

    def load(self, data: Buffer) -> Any:
        try:
            return super().load(data)
        except (ValueError, RecursionError) as exc:
            return f"<{len(data)} bytes of JSON that Python cannot decode: {type(exc).__name__}>"


def jsonable(value: Any) -> Any:
    """*value* (a row dataclass, or lists and dicts of them) as plain JSON-ready data:
    datetimes as ISO 8601 text, durations as seconds, UUIDs as text."""
    if hasattr(value, "__dataclass_fields__"):
        value = {field.name: getattr(value, field.name) for field in fields(value)}
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, UUID):
        return str(value)
    return value


def job_state(conn: psycopg.Connection[Any], job_id: int, schema: str) -> str:
    """Job *job_id*'s state now, for the message of an operation that did nothing
    (``deleted`` if it has gone since)."""
    job = admin.get_job(conn, job_id, schema=schema)
    return "deleted" if job is None else str(job.state)


def print_json(value: Any) -> None:
    sys.stdout.write(json_text(value) + "\n")


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


class Figure(str):
    """Text that reads as a number, such as ``3/8`` busy slots: right-aligned like one."""


def _is_number(value: Any) -> bool:
    # By type, never by look: a worker id such as "20751964" or a queue named "2024" is
    # text, and a column of them must line up as text (and under its heading).
    return isinstance(value, int | float | Decimal | Figure) and not isinstance(value, bool)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, wrap_last: bool = False) -> str:
    """A plain-text table with aligned columns; numbers are right-aligned.

    With *wrap_last*, the last column is wrapped to the terminal's width, continuation
    lines indented under it.
    """
    cells = [[clean(cell) for cell in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        for index, cell in enumerate(row):
            if not (wrap_last and index == len(headers) - 1):
                widths[index] = max(widths[index], len(cell))
    numeric = [
        bool(rows) and all(_is_number(row[index]) or row[index] == "-" for row in rows)
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
