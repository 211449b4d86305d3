"""One implementation, two faces: database operations written once as generators.

An operation is a generator that yields steps (a :class:`Statement`, a :class:`Copy`,
or a :class:`WaitNotify` for a notification) and receives each step's rows back;
whatever it returns is the operation's result. It does no I/O itself, so :func:`run`
(psycopg ``Connection``) and :func:`run_async` (psycopg ``AsyncConnection``) can both
drive it, and the sync and async APIs cannot drift apart: run() itself is written from
run_async() by ``scripts/gen_sync.py``, as are the other sync faces of pgjobs.
Other drivers and wrappers (psycopg2, asyncpg, SQLAlchemy, Django) are handed to
:mod:`pgjobs._drivers` once the psycopg check has failed, so they cost psycopg nothing::

    def job_count(schema) -> Op[int]:
        rows = yield Statement(b"select count(*) from ...", {})
        return rows[0][0]

    run(conn, job_count("pgjobs"))              # sync face
    await run_async(aconn, job_count("pgjobs"))  # async face
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import psycopg
from psycopg.pq import ExecStatus
from psycopg.rows import tuple_row

from ._queries import DEFAULT_SCHEMA
from .errors import SchemaError

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

#: What Postgres says when a statement names a pgjobs object that is not there: the
#: schema was never migrated, or is older than this pgjobs.
MISSING_OBJECT = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.UndefinedFunction,
    psycopg.errors.InvalidSchemaName,
)

__all__ = [
    "ATOMIC",
    "MISSING_OBJECT",
    "Atomic",
    "Copy",
    "Op",
    "Params",
    "Rows",
    "Statement",
    "Step",
    "WaitNotify",
    "error_for",
    "own_transaction",
    "run",
    "run_async",
    "schema_error",
    "unwind",
    "unwind_async",
    "wrong_connection",
]

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


@dataclass(slots=True)
class WaitNotify:
    """Wait until a notification comes on a channel the connection listens to, or
    *timeout* seconds have passed; the runner sends back ``[]`` either way."""

    timeout: float


class Atomic:
    """The step that says an operation's statements must commit together.

    An operation of several statements yields :data:`ATOMIC` first. On the caller's
    connection it changes nothing (the caller's transaction holds them together, and
    the runners pass it by); :func:`own_transaction` begins a transaction for it.
    """

    __slots__ = ()


ATOMIC = Atomic()

Step: TypeAlias = Statement | Copy | WaitNotify | Atomic
Op: TypeAlias = Generator[Step, Rows, T]


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


_BEGIN = Statement(b"begin")
_COMMIT = Statement(b"commit")
_ROLLBACK = Statement(b"rollback")


def own_transaction(op: Op[T]) -> Op[T]:
    """*op* on an autocommit connection of pgjobs' own (a client's pool): a single
    statement commits by itself, in one round trip where BEGIN and COMMIT would make it
    three; an operation that yields :data:`ATOMIC` runs in a transaction of its own."""
    try:
        step = next(op)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    atomic = step is ATOMIC
    if atomic:
        yield _BEGIN
    try:
        if atomic:
            step = op.send([])
        while True:
            try:
                rows = yield step
            except GeneratorExit:
                op.close()
                raise
            except BaseException as exc:  # a step failed: tell op (see unwind)
                step = op.throw(exc)
            else:
                step = op.send(rows)
    except StopIteration as done:
        result: T = done.value
    except GeneratorExit:
        raise
    except BaseException:
        if atomic:
            yield _ROLLBACK  # run by the runner's unwind
        raise
    if atomic:
        yield _COMMIT
    return result


def error_for(exc: BaseException, *, missing: bool) -> BaseException:
    """What a runner raises when a statement raised *exc*: a SchemaError if *missing*
    (the statement named a pgjobs object Postgres lacks), else *exc* itself."""
    return schema_error(exc) if missing and isinstance(exc, Exception) else exc


# The runners: run() is written from run_async() by scripts/gen_sync.py.


# sync: begin runner (generated by scripts/gen_sync.py from the async code: do not edit)
def run(conn: Any, op: Op[T], entry: str | None = None) -> T:
    """Drive *op* on *conn*, inside whatever transaction it is in: a psycopg
    ``Connection`` here, anything else through :func:`pgjobs._drivers.sync_driver`.
    *entry* names the public function that was called, for the TypeError a connection
    it cannot use raises (see :func:`wrong_connection`)."""
    if not isinstance(conn, psycopg.Connection):
        from . import _drivers

        driver = _drivers.sync_driver(conn, entry)
        if not isinstance(driver, psycopg.Connection):
            return _drivers.drive(driver, op)
        conn = driver
    cursor: psycopg.Cursor[tuple[Any, ...]] | None = None
    rows: Rows = []
    try:
        step = next(op)
        cursor = _take_cursor(conn)  # not before: an operation may send nothing
        while True:
            rows = _step(conn, cursor, step)
            step = op.send(rows)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except BaseException as exc:
        error = error_for(exc, missing=isinstance(exc, MISSING_OBJECT))
        steps = None if cursor is None else functools.partial(_step, conn, cursor)
        unwind(steps, op, error)
        if error is exc:
            raise
        raise error from exc
    finally:
        if cursor is not None:
            _keep_cursor(conn, cursor, rows)


def _step(conn: psycopg.Connection[Any], cursor: psycopg.Cursor[Any], step: Step) -> Rows:
    """Run one step of an operation on a psycopg connection; its rows."""
    if isinstance(step, Statement):
        cursor.execute(step.query, step.params)
        return cursor.fetchall() if _has_rows(cursor) else []
    if isinstance(step, Copy):
        with cursor.copy(step.query) as copy:
            for row in step.rows:
                copy.write_row(row)
        return []
    if isinstance(step, WaitNotify):
        for _ in conn.notifies(timeout=step.timeout, stop_after=1):
            pass
    return []  # ATOMIC


def unwind(run_step: Callable[[Step], Rows] | None, op: Op[Any], error: BaseException) -> None:
    """Tell *op* that one of its steps raised *error*: it is raised at the op's ``yield``
    (a traced enqueue records it on its span: see pgjobs/tracing.py), and the steps the
    op yields while it handles it (its ``finally`` blocks: Client.wait removes its
    waiter) are run by *run_step*. Whatever the op ends with is dropped, for the runner
    raises *error* itself. An op that has already ended (it raised *error*) is left as
    it is."""
    if getattr(op, "gi_frame", None) is None:
        return
    try:
        step = op.throw(error)
        while run_step is not None:
            step = op.send(run_step(step))
    except BaseException:
        pass  # the op ended, raising error or what its cleanup raised
    finally:
        op.close()  # still suspended only if it yielded a step that could not run


# sync: end runner


# async: begin runner
async def run_async(conn: Any, op: Op[T], entry: str | None = None) -> T:
    """Drive *op* on *conn*, inside whatever transaction it is in: a psycopg
    ``AsyncConnection`` here, anything else through :func:`pgjobs._drivers.async_driver`.
    *entry* names the public function that was called, for the TypeError a connection
    it cannot use raises (see :func:`wrong_connection`)."""
    if not isinstance(conn, psycopg.AsyncConnection):
        from . import _drivers

        driver = await _drivers.async_driver(conn, entry)
        if not isinstance(driver, psycopg.AsyncConnection):
            return await _drivers.drive_async(driver, op)
        conn = driver
    cursor: psycopg.AsyncCursor[tuple[Any, ...]] | None = None
    rows: Rows = []
    try:
        step = next(op)
        cursor = _take_cursor(conn)  # not before: an operation may send nothing
        while True:
            rows = await _step_async(conn, cursor, step)
            step = op.send(rows)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except BaseException as exc:
        error = error_for(exc, missing=isinstance(exc, MISSING_OBJECT))
        steps = None if cursor is None else functools.partial(_step_async, conn, cursor)
        await unwind_async(steps, op, error)
        if error is exc:
            raise
        raise error from exc
    finally:
        if cursor is not None:
            _keep_cursor(conn, cursor, rows)


async def _step_async(
    conn: psycopg.AsyncConnection[Any], cursor: psycopg.AsyncCursor[Any], step: Step
) -> Rows:
    """Run one step of an operation on a psycopg connection; its rows."""
    if isinstance(step, Statement):
        await cursor.execute(step.query, step.params)
        return await cursor.fetchall() if _has_rows(cursor) else []
    if isinstance(step, Copy):
        async with cursor.copy(step.query) as copy:
            for row in step.rows:
                await copy.write_row(row)
        return []
    if isinstance(step, WaitNotify):
        async for _ in conn.notifies(timeout=step.timeout, stop_after=1):
            pass
    return []  # ATOMIC


async def unwind_async(
    run_step: Callable[[Step], Awaitable[Rows]] | None, op: Op[Any], error: BaseException
) -> None:
    """Tell *op* that one of its steps raised *error*: it is raised at the op's ``yield``
    (a traced enqueue records it on its span: see pgjobs/tracing.py), and the steps the
    op yields while it handles it (its ``finally`` blocks: Client.wait removes its
    waiter) are run by *run_step*. Whatever the op ends with is dropped, for the runner
    raises *error* itself. An op that has already ended (it raised *error*) is left as
    it is."""
    if getattr(op, "gi_frame", None) is None:
        return
    try:
        step = op.throw(error)
        while run_step is not None:
            step = op.send(await run_step(step))
    except BaseException:
        pass  # the op ended, raising error or what its cleanup raised
    finally:
        op.close()  # still suspended only if it yielded a step that could not run


# async: end runner


def schema_error(exc: Exception, schema: str | None = None) -> SchemaError:
    """The SchemaError for a pgjobs statement that named an object Postgres lacks.

    Made only when a statement has failed, so the hot path asks nothing in advance. The
    schema, when not given, is read from Postgres's message (every pgjobs statement
    names its objects with their schema).
    """
    diag = getattr(exc, "diag", None)  # psycopg and psycopg2 have one, asyncpg does not
    said = getattr(diag, "message_primary", None) or str(exc)
    if schema is None:
        found = re.search(r'(?:relation|schema|function) "([^".]+)', said)
        schema = found.group(1) if found else DEFAULT_SCHEMA
    option = "" if schema == DEFAULT_SCHEMA else f" --schema {schema}"
    return SchemaError(
        f"the pgjobs schema {schema!r} is missing or older than this pgjobs ({said}): "
        f"run `python -m pgjobs migrate{option}`"
    )


#: What each face accepts, as a wrong connection's TypeError says it.
ACCEPTED = {
    True: "a psycopg.Connection (psycopg 3), a psycopg2 connection or cursor, a SQLAlchemy "
    "Connection or Session, or a Django connection",
    False: "a psycopg.AsyncConnection, an asyncpg connection, or a SQLAlchemy AsyncConnection "
    "or AsyncSession",
}


def wrong_connection(conn: Any, *, sync: bool, wrong_face: bool, entry: str | None) -> TypeError:
    """The TypeError for a connection the public function *entry* (its dotted name, as
    ``pgjobs.enqueue``, given to the runner) cannot use: what it accepts and, for the
    other face's connection (*wrong_face*: async given to a sync function, or the
    reverse), the function to call instead."""
    got = f"{type(conn).__module__}.{type(conn).__qualname__}"
    if entry is None:
        return TypeError(f"expected {ACCEPTED[sync]}; got a {got}")
    advice = ""
    if wrong_face:
        twin = _twin(entry, to_async=sync)
        if twin is None:
            advice = f"; it has no {'async' if sync else 'sync'} version"
        else:
            advice = f"; use {twin}() for this connection"
    return TypeError(f"{entry}() takes {ACCEPTED[sync]}, not a {got}{advice}")


def _resolve(dotted: str) -> Any:
    """The object named *dotted* (``pgjobs.testing.drain``), or None."""
    import importlib

    parts = dotted.split(".")
    target: Any = importlib.import_module(parts[0])
    for index, part in enumerate(parts[1:], start=1):
        found = getattr(target, part, None)
        if found is None:
            try:
                found = importlib.import_module(".".join(parts[: index + 1]))
            except ImportError:
                return None
        target = found
    return target


def _twin(entry: str, to_async: bool) -> str | None:
    """The other face of *entry* (``pgjobs.enqueue`` and ``pgjobs.enqueue_async``,
    ``pgjobs.Client.get`` and ``pgjobs.AsyncClient.get``), if there is one."""
    *owner, function = entry.split(".")
    if owner and owner[-1][:1].isupper():  # a method: the class has the face
        cls = owner[-1]
        owner[-1] = f"Async{cls}" if to_async else cls.removeprefix("Async")
    elif to_async:
        function = f"{function}_async"
    else:
        function = function.removesuffix("_async")
    twin = ".".join([*owner, function])
    return twin if twin != entry and _resolve(twin) is not None else None
