"""One implementation, two faces: database operations written once as generators.

An operation is a generator that yields :class:`Statement` objects and receives each
statement's rows back; whatever it returns is the operation's result. It does no I/O
itself, so :func:`run` (psycopg ``Connection``) and :func:`run_async` (psycopg
``AsyncConnection``) can both drive it, and the sync and async APIs cannot drift apart::

    def job_count(schema) -> Op[int]:
        rows = yield Statement(b"select count(*) from ...", {})
        return rows[0][0]

    run(conn, job_count("pgjobs"))              # sync face
    await run_async(aconn, job_count("pgjobs"))  # async face
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import psycopg
from psycopg.pq import ExecStatus
from psycopg.rows import tuple_row

TUPLES_OK = ExecStatus.TUPLES_OK

#: The attribute under which a connection keeps the cursor its operations run on.
#: A cursor remembers how to send each type of parameter and read each type of column;
#: a fresh one per statement (``conn.execute``) looked all of them up again, which was
#: a fifth of an enqueue's client CPU. Keeping it took 8 processes enqueueing at once
#: (one connection each) from 68-73 % to 79-84 % of the plain INSERT's rate. Its rows
#: are tuples whatever the connection's own row factory.
_KEPT_CURSOR = "_pgjobs_cursor"

#: A cursor keeps its last result until its next statement; after a larger one it is
#: dropped rather than kept, so that an idle connection holds no big result.
_MAX_ROWS_KEPT = 100

__all__ = ["Copy", "Op", "Rows", "Statement", "run", "run_async"]

T = TypeVar("T")
Rows: TypeAlias = list[tuple[Any, ...]]
Params: TypeAlias = Mapping[str, Any] | Sequence[Any] | None


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__,
# which made building the Statement of every enqueue 4.4k instructions instead of 1.6k
# (callgrind). Nothing changes them after the operation yields them.
@dataclass(slots=True)
class Statement:
    """One statement to execute; the runner sends back all its rows (``[]`` for none)."""

    query: bytes
    params: Params = None


@dataclass(slots=True)
class Copy:
    """A ``COPY ... FROM STDIN`` of *rows*; the runner sends back ``[]``."""

    query: bytes
    rows: Sequence[Sequence[Any]]


Op: TypeAlias = Generator[Statement | Copy, Rows, T]


def _has_rows(cursor: Any) -> bool:
    """Whether the statement returned rows. Asked of the result's status, not of
    ``cursor.description``, which builds column objects at every call (measurable on the
    enqueue path)."""
    result = cursor.pgresult
    return result is not None and result.status == TUPLES_OK


def _take_cursor(conn: Any) -> Any:
    """The connection's kept cursor, or a new one. Taking it out (one atomic ``pop``)
    means that two threads, or two asyncio tasks, sharing a connection never share a
    cursor: the second one to come makes its own."""
    try:
        kept = conn.__dict__.pop(_KEPT_CURSOR, None)
    except AttributeError:  # a connection class without a __dict__ keeps nothing
        kept = None
    return kept if kept is not None else conn.cursor(row_factory=tuple_row)


def _keep_cursor(conn: Any, cursor: Any, rows: Rows) -> None:
    if len(rows) <= _MAX_ROWS_KEPT:
        attributes = getattr(conn, "__dict__", None)
        if attributes is not None:
            attributes[_KEPT_CURSOR] = cursor


def run(conn: psycopg.Connection[Any], op: Op[T]) -> T:
    """Drive *op* on a sync psycopg connection, inside whatever transaction it is in."""
    cursor: psycopg.Cursor[tuple[Any, ...]] | None = None
    rows: Rows = []
    try:
        statement = next(op)
        cursor = _take_cursor(conn)  # not before: an operation may send nothing
        while True:
            rows = []
            if isinstance(statement, Copy):
                with cursor.copy(statement.query) as copy:
                    for row in statement.rows:
                        copy.write_row(row)
            else:
                cursor.execute(statement.query, statement.params)
                rows = cursor.fetchall() if _has_rows(cursor) else []
            statement = op.send(rows)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        if cursor is not None:
            _keep_cursor(conn, cursor, rows)


async def run_async(conn: psycopg.AsyncConnection[Any], op: Op[T]) -> T:
    """Drive *op* on an async psycopg connection, inside whatever transaction it is in."""
    cursor: psycopg.AsyncCursor[tuple[Any, ...]] | None = None
    rows: Rows = []
    try:
        statement = next(op)
        cursor = _take_cursor(conn)  # not before: an operation may send nothing
        while True:
            rows = []
            if isinstance(statement, Copy):
                async with cursor.copy(statement.query) as copy:
                    for row in statement.rows:
                        await copy.write_row(row)
            else:
                await cursor.execute(statement.query, statement.params)
                rows = await cursor.fetchall() if _has_rows(cursor) else []
            statement = op.send(rows)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        if cursor is not None:
            _keep_cursor(conn, cursor, rows)
