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

TUPLES_OK = ExecStatus.TUPLES_OK

__all__ = ["Copy", "Op", "Rows", "Statement", "run", "run_async"]

T = TypeVar("T")
Rows: TypeAlias = list[tuple[Any, ...]]
Params: TypeAlias = Mapping[str, Any] | Sequence[Any] | None


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement to execute; the runner sends back all its rows (``[]`` for none)."""

    query: bytes
    params: Params = None


@dataclass(frozen=True, slots=True)
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


def run(conn: psycopg.Connection[Any], op: Op[T]) -> T:
    """Drive *op* on a sync psycopg connection, inside whatever transaction it is in."""
    try:
        statement = next(op)
        while True:
            rows: Rows = []
            if isinstance(statement, Copy):
                with conn.cursor().copy(statement.query) as copy:
                    for row in statement.rows:
                        copy.write_row(row)
            else:
                cursor = conn.execute(statement.query, statement.params)
                rows = cursor.fetchall() if _has_rows(cursor) else []
            statement = op.send(rows)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def run_async(conn: psycopg.AsyncConnection[Any], op: Op[T]) -> T:
    """Drive *op* on an async psycopg connection, inside whatever transaction it is in."""
    try:
        statement = next(op)
        while True:
            rows: Rows = []
            if isinstance(statement, Copy):
                async with conn.cursor().copy(statement.query) as copy:
                    for row in statement.rows:
                        await copy.write_row(row)
            else:
                cursor = await conn.execute(statement.query, statement.params)
                rows = await cursor.fetchall() if _has_rows(cursor) else []
            statement = op.send(rows)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
