"""Running operations through drivers other than psycopg 3.

Operations (:mod:`pgjobs._ops`) yield statements written for psycopg 3: ``%(name)s``
placeholders, Python values. A psycopg 3 connection runs them itself (the fast path in
``_ops.run``, decided by one ``isinstance``); everything else comes here, once that
check has failed, and is turned into what can run them::

    passed                                  sync face (run)        async face (run_async)
    psycopg2 connection or cursor           _Psycopg2              wrong face
    SQLAlchemy Connection / Session         its driver's           wrong face
    Django connection (psycopg 2 or 3)      its driver's           wrong face
    asyncpg connection (or pool proxy)      wrong face             _Asyncpg
    SQLAlchemy AsyncConnection / Session    wrong face             its driver's

A wrapper (SQLAlchemy, Django) is unwrapped to the driver connection under it, joining
the wrapper's transaction, and that driver decides: psycopg 3 goes back to the fast
path, psycopg2 and asyncpg get an adapter. An adapter only binds parameters, reads rows
and sends a COPY; the operations stay one per statement for every driver.

Nothing is sent before the operation has yielded its first statement, so a task that
fails validation raises its pgjobs error with the caller's transaction untouched.
Optional libraries are never imported here: an object can only be one of their types if
its module is already loaded, so ``sys.modules`` is asked instead.
"""

from __future__ import annotations

import functools
import io
import re
import sys
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol, TypeVar

import psycopg

from ._ops import (
    Copy,
    Op,
    Params,
    Rows,
    Statement,
    Step,
    WaitNotify,
    error_for,
    unwind,
    unwind_async,
    wrong_connection,
)

__all__ = ["async_driver", "drive", "drive_async", "sync_driver"]

T = TypeVar("T")

#: SQLSTATEs of MISSING_OBJECT (pgjobs/_ops.py), as the other drivers report them.
_MISSING_STATES = frozenset({"42P01", "42703", "42883", "3F000"})

_PLACEHOLDER = re.compile(rb"%\((\w+)\)[sb]|%[sb]|%%")
_COPY_TARGET = re.compile(rb"copy\s+(\w+)\.(\w+)\s*\(([^)]*)\)\s+from\s+stdin", re.IGNORECASE)

#: COPY text format: the characters a value must not contain as themselves.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


class Adapter(Protocol):
    def start(self) -> None: ...
    def execute(self, query: bytes, params: Params) -> Rows: ...
    def copy(self, statement: Copy) -> None: ...
    def close(self) -> None: ...


class AsyncAdapter(Protocol):
    async def start(self) -> None: ...
    async def execute(self, query: bytes, params: Params) -> Rows: ...
    async def copy(self, statement: Copy) -> None: ...
    async def close(self) -> None: ...


# --- telling the objects apart ---------------------------------------------------------------


def _class(module: str, name: str) -> type | None:
    """``module.name`` if that module is loaded (else nothing passed can be one)."""
    loaded = sys.modules.get(module)
    found = getattr(loaded, name, None)
    return found if isinstance(found, type) else None


def _is(conn: Any, *where: tuple[str, str]) -> bool:
    return any((cls := _class(*w)) is not None and isinstance(conn, cls) for w in where)


_PSYCOPG2 = (("psycopg2.extensions", "connection"), ("psycopg2.extensions", "cursor"))
_ASYNCPG = (("asyncpg", "Connection"), ("asyncpg.pool", "PoolConnectionProxy"))
_SA_SYNC = (("sqlalchemy.engine", "Connection"), ("sqlalchemy.orm", "Session"))
_SA_ASYNC = (
    ("sqlalchemy.ext.asyncio", "AsyncConnection"),
    ("sqlalchemy.ext.asyncio", "AsyncSession"),
)


def _is_django(conn: Any) -> bool:
    """Django's ``connection`` (a proxy) or ``connections[alias]``: duck-typed, as the
    proxy is no instance of the wrapper class."""
    return hasattr(conn, "ensure_connection")


def _is_sync_kind(conn: Any) -> bool:
    return (
        isinstance(conn, psycopg.Connection) or _is(conn, *_PSYCOPG2, *_SA_SYNC) or _is_django(conn)
    )


def _is_async_kind(conn: Any) -> bool:
    return isinstance(conn, psycopg.AsyncConnection) or _is(conn, *_ASYNCPG, *_SA_ASYNC)


def sync_driver(conn: Any, entry: str | None = None) -> psycopg.Connection[Any] | Adapter:
    """What runs operations for *conn* (anything but a psycopg ``Connection``) on the
    sync face; TypeError saying what is accepted if nothing does."""
    if _is(conn, *_SA_SYNC):
        if _is(conn, ("sqlalchemy.orm", "Session")):
            conn = conn.connection()  # joins (or begins) the session's transaction
        # SQLAlchemy begins its transaction lazily, on its first execute. Writing through
        # the driver before that would leave the job in a transaction SQLAlchemy does not
        # know about: its commit() would be a no-op and the pool would roll the job back.
        # Begin it here, as SQLAlchemy's own execute would (nothing is sent: the driver
        # begins on its first statement).
        if not conn.in_transaction():
            conn.begin()
        driver = conn.connection.driver_connection
    elif _is_django(conn):
        # Inside atomic() Django has turned the driver's autocommit off, and savepoints are
        # plain statements: the driver connection is in Django's transaction.
        conn.ensure_connection()
        driver = conn.connection
    else:
        driver = conn
    if isinstance(driver, psycopg.Connection):
        return driver
    if _is(driver, *_PSYCOPG2):
        return _Psycopg2(driver)
    raise wrong_connection(conn, sync=True, wrong_face=_is_async_kind(conn), entry=entry)


async def async_driver(
    conn: Any, entry: str | None = None
) -> psycopg.AsyncConnection[Any] | AsyncAdapter:
    """:func:`sync_driver` for the async face."""
    if _is(conn, *_SA_ASYNC):
        if _is(conn, ("sqlalchemy.ext.asyncio", "AsyncSession")):
            conn = await conn.connection()
        driver = (await conn.get_raw_connection()).driver_connection
        if isinstance(driver, psycopg.AsyncConnection):
            if not conn.in_transaction():  # as in sync_driver
                await conn.begin()
            return driver
        if _is(driver, *_ASYNCPG):
            return _Asyncpg(driver, sqlalchemy=conn)
    elif _is(conn, *_ASYNCPG):
        return _Asyncpg(conn)
    raise wrong_connection(conn, sync=False, wrong_face=_is_sync_kind(conn), entry=entry)


# --- the loops -------------------------------------------------------------------------------


def _missing_object(exc: Exception) -> bool:
    state = getattr(exc, "pgcode", None) or getattr(exc, "sqlstate", None)
    return state in _MISSING_STATES


# sync: begin drive (generated by scripts/gen_sync.py from the async code: do not edit)
def drive(adapter: Adapter, op: Op[T]) -> T:
    """``_ops.run`` through an adapter."""
    try:
        step = next(op)
        adapter.start()
        while True:
            step = op.send(_step(adapter, step))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except Exception as exc:
        error = error_for(exc, missing=_missing_object(exc))
        unwind(functools.partial(_step, adapter), op, error)
        if error is exc:
            raise
        raise error from exc
    finally:
        adapter.close()


def _step(adapter: Adapter, step: Step) -> Rows:
    if isinstance(step, Statement):
        return adapter.execute(step.query, step.params)
    if isinstance(step, Copy):
        adapter.copy(step)
        return []
    if isinstance(step, WaitNotify):
        raise TypeError("waiting for a notification takes a psycopg connection")
    return []  # ATOMIC


# sync: end drive


# async: begin drive
async def drive_async(adapter: AsyncAdapter, op: Op[T]) -> T:
    """``_ops.run_async`` through an adapter."""
    try:
        step = next(op)
        await adapter.start()
        while True:
            step = op.send(await _step_async(adapter, step))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except Exception as exc:
        error = error_for(exc, missing=_missing_object(exc))
        await unwind_async(functools.partial(_step_async, adapter), op, error)
        if error is exc:
            raise
        raise error from exc
    finally:
        await adapter.close()


async def _step_async(adapter: AsyncAdapter, step: Step) -> Rows:
    if isinstance(step, Statement):
        return await adapter.execute(step.query, step.params)
    if isinstance(step, Copy):
        await adapter.copy(step)
        return []
    if isinstance(step, WaitNotify):
        raise TypeError("waiting for a notification takes a psycopg connection")
    return []  # ATOMIC


# async: end drive


# --- psycopg2 --------------------------------------------------------------------------------


def _to_pyformat(match: re.Match[bytes]) -> bytes:
    placeholder = match.group(0)
    return placeholder if placeholder == b"%%" else placeholder[:-1] + b"s"


@lru_cache(maxsize=256)
def _pyformat(query: bytes) -> str:
    """*query* for psycopg2, which has the same placeholders but no binary ones."""
    return _PLACEHOLDER.sub(_to_pyformat, query).decode()


def _copy_field(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    if isinstance(value, timedelta):
        return f"{value.days} days {value.seconds} seconds {value.microseconds} microseconds"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def _copy_text(rows: Sequence[Sequence[Any]]) -> io.StringIO:
    """*rows* in COPY's text format."""
    text = io.StringIO()
    text.writelines("\t".join(map(_copy_field, row)) + "\n" for row in rows)
    text.seek(0)
    return text


class _Psycopg2:
    """psycopg2: the same ``%(name)s`` placeholders; COPY by ``copy_expert``."""

    def __init__(self, conn: Any) -> None:
        if _is(conn, ("psycopg2.extensions", "cursor")):
            conn = conn.connection  # a cursor of its own, not to overwrite the caller's rows
        self.conn = conn
        self.cursor: Any = None

    def start(self) -> None:
        # The plain cursor class: rows as tuples whatever the connection's cursor_factory.
        self.cursor = self.conn.cursor(cursor_factory=sys.modules["psycopg2.extensions"].cursor)

    def execute(self, query: bytes, params: Params) -> Rows:
        self.cursor.execute(_pyformat(query), params)
        return self.cursor.fetchall() if self.cursor.description is not None else []

    def copy(self, statement: Copy) -> None:
        self.cursor.copy_expert(_pyformat(statement.query), _copy_text(statement.rows))

    def close(self) -> None:
        if self.cursor is not None:
            self.cursor.close()


# --- asyncpg ---------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _numbered(query: bytes) -> tuple[str, tuple[str | int, ...]]:
    """*query* with ``$n`` placeholders (asyncpg's), and the parameter (name, or position
    for ``%s``) each ``$n`` takes."""
    order: list[str | int] = []
    positional = 0

    def number(match: re.Match[bytes]) -> bytes:
        nonlocal positional
        if match.group(0) == b"%%":
            return b"%"
        key: str | int
        if match.group(1):
            key = match.group(1).decode()
        else:
            key, positional = positional, positional + 1
        if key not in order:
            order.append(key)
        return b"$%d" % (order.index(key) + 1)

    return _PLACEHOLDER.sub(number, query).decode(), tuple(order)


@lru_cache(maxsize=32)
def _copy_target(query: bytes) -> tuple[str, str, tuple[str, ...]]:
    found = _COPY_TARGET.search(query)
    if found is None:  # pragma: no cover - every Copy pgjobs yields names its columns
        raise ValueError(f"not a COPY pgjobs can send through asyncpg: {query!r}")
    columns = tuple(c.strip().decode() for c in found.group(3).split(b","))
    return found.group(1).decode(), found.group(2).decode(), columns


class _Asyncpg:
    """asyncpg: ``$n`` placeholders (translated once per query text), Records as rows,
    COPY by ``copy_records_to_table`` (binary)."""

    def __init__(self, conn: Any, sqlalchemy: Any = None) -> None:
        self.conn = conn
        self.sqlalchemy = sqlalchemy

    async def start(self) -> None:
        # SQLAlchemy's asyncpg adapter starts the asyncpg transaction on its own first
        # statement, not at begin(): until then a statement sent past it would commit on
        # its own. Send that first statement through SQLAlchemy.
        if self.sqlalchemy is not None and not self.conn.is_in_transaction():
            await self.sqlalchemy.exec_driver_sql("select")

    async def execute(self, query: bytes, params: Params) -> Rows:
        text, order = _numbered(query)
        given: Any = params  # a mapping for named placeholders, a sequence for %s
        args = [given[key] for key in order]
        return [tuple(record) for record in await self.conn.fetch(text, *args)]

    async def copy(self, statement: Copy) -> None:
        schema, table, columns = _copy_target(statement.query)
        await self.conn.copy_records_to_table(
            table, records=statement.rows, columns=columns, schema_name=schema
        )

    async def close(self) -> None:
        pass  # the connection is the caller's, and asyncpg needs no cursor
