"""Transactional enqueue: put jobs in the caller's transaction, never commit it.

Whatever connection you pass is used as it is: inside ``conn.transaction()`` the jobs
appear when that transaction commits and never if it rolls back; on an autocommit
connection each call commits on its own. pgjobs never calls ``commit()`` here.

SQLAlchemy connections and sessions, and Django's connection, are accepted when they sit
on psycopg 3 (see :func:`psycopg_connection`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

import psycopg

from . import _queries
from ._ops import Copy, Op, Statement, run, run_async
from .errors import InvalidTaskError
from .task import DEFAULT_MAX_PAYLOAD_BYTES, Task, encode_payload

__all__ = [
    "AsyncEnqueuer",
    "Enqueuer",
    "enqueue",
    "enqueue_async",
    "enqueue_many",
    "enqueue_many_async",
    "psycopg_connection",
]


@runtime_checkable
class Enqueuer(Protocol):
    """Anything that can enqueue tasks: :class:`pgjobs.Client`, a test double, your own.

    Application code that accepts an ``Enqueuer`` does not care where jobs go.
    """

    def enqueue(self, task: Task, *, conn: Any = None) -> int: ...

    def enqueue_many(self, tasks: Iterable[Task], *, conn: Any = None) -> list[int]: ...


@runtime_checkable
class AsyncEnqueuer(Protocol):
    """The async twin of :class:`Enqueuer` (implemented by :class:`pgjobs.AsyncClient`)."""

    async def enqueue(self, task: Task, *, conn: Any = None) -> int: ...

    async def enqueue_many(self, tasks: Iterable[Task], *, conn: Any = None) -> list[int]: ...


def insert_op(task: Task, schema: str, max_payload_bytes: int) -> Op[int]:
    """The operation behind every single enqueue."""
    if not isinstance(task, Task):
        raise InvalidTaskError(f"expected a pgjobs.Task, got {type(task).__name__}")
    params = {
        "queue": task.queue,
        "kind": task.kind,
        "payload": encode_payload(task.payload, max_payload_bytes),
        "priority": task.priority,
        "max_retry": task.max_retry,
        "timeout": task.timeout,
        "run_at": task.run_at,
        "delay": task.delay,
    }
    rows = yield Statement(_queries.queries(schema)["job_insert"], params)
    return int(rows[0][0])


def insert_many_op(tasks: Iterable[Task], schema: str, max_payload_bytes: int) -> Op[list[int]]:
    """The operation behind every bulk enqueue: ids, one COPY, and the wakeups.

    Every task is validated and encoded before anything is sent, so one bad task means
    nothing is written. Three round trips whatever the count (see job_reserve_ids).
    """
    encoded: list[tuple[Task, str]] = []
    for index, task in enumerate(tasks):
        if not isinstance(task, Task):
            raise InvalidTaskError(
                f"tasks[{index}]: expected a pgjobs.Task, got {type(task).__name__}"
            )
        try:
            encoded.append((task, encode_payload(task.payload, max_payload_bytes)))
        except InvalidTaskError as exc:
            # Say which task, keeping the exception's type and attributes (size, limit).
            exc.args = (f"tasks[{index}]: {exc}",)
            raise
    if not encoded:
        return []
    statements = _queries.queries(schema)
    reserved = yield Statement(statements["job_reserve_ids"], {"count": len(encoded)})
    now, ids = reserved[0]
    rows = []
    due_queues: set[str] = set()
    for job_id, (task, payload) in zip(ids, encoded, strict=True):
        run_at = task.run_at or (now + timedelta(seconds=task.delay) if task.delay else now)
        state = "available" if run_at <= now else "scheduled"
        if state == "available":
            due_queues.add(task.queue)
        rows.append(
            (
                job_id,
                task.queue,
                task.kind,
                payload,
                task.priority,
                task.max_retry,
                timedelta(seconds=task.timeout),
                run_at,
                state,
            )
        )
    yield Copy(statements["job_copy"], rows)
    if due_queues:
        yield Statement(statements["queue_wake"], {"queues": sorted(due_queues)})
    return [int(job_id) for job_id in ids]


def psycopg_connection(conn: Any) -> Any:
    """Return the psycopg connection under *conn*, whatever wraps it.

    Accepts a psycopg ``Connection``/``AsyncConnection``, a SQLAlchemy ``Connection`` or
    ``Session`` on the psycopg dialect, and Django's ``connection`` on the postgresql
    backend. The transaction stays the wrapper's: pgjobs only adds statements to it.
    """
    if isinstance(conn, psycopg.Connection | psycopg.AsyncConnection):
        return conn
    # SQLAlchemy Session: its connection() joins (or begins) the session's transaction.
    if hasattr(conn, "get_bind") and hasattr(conn, "connection") and callable(conn.connection):
        conn = conn.connection()
    # SQLAlchemy Connection -> pooled DBAPI connection -> driver connection.
    dbapi = getattr(conn, "connection", None)
    driver = getattr(dbapi, "driver_connection", None)
    if isinstance(driver, psycopg.Connection):
        # SQLAlchemy begins its transaction lazily, on its first execute. Writing through
        # the driver before that would leave the job in a transaction SQLAlchemy does not
        # know about: its commit() would be a no-op and the pool would roll the job back.
        # Begin it here, as SQLAlchemy's own execute would.
        if not conn.in_transaction():
            conn.begin()
        return driver
    # Django: connection.connection is the psycopg connection once connected.
    if hasattr(conn, "ensure_connection"):
        conn.ensure_connection()
        if isinstance(conn.connection, psycopg.Connection):
            return conn.connection
    raise TypeError(
        f"cannot enqueue through {type(conn).__name__}: pass a psycopg 3 connection, or a "
        "SQLAlchemy connection/session or Django connection that uses psycopg 3"
    )


def enqueue(
    conn: Any,
    task: Task,
    *,
    schema: str = _queries.DEFAULT_SCHEMA,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> int:
    """Add *task* to the queue within *conn*'s current transaction; return the job id."""
    return run(psycopg_connection(conn), insert_op(task, schema, max_payload_bytes))


def enqueue_many(
    conn: Any,
    tasks: Iterable[Task],
    *,
    schema: str = _queries.DEFAULT_SCHEMA,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> list[int]:
    """Add all *tasks* in one statement within *conn*'s transaction; ids in input order."""
    return run(psycopg_connection(conn), insert_many_op(tasks, schema, max_payload_bytes))


async def enqueue_async(
    conn: psycopg.AsyncConnection[Any],
    task: Task,
    *,
    schema: str = _queries.DEFAULT_SCHEMA,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> int:
    """Async :func:`enqueue`, for a psycopg ``AsyncConnection``."""
    return await run_async(conn, insert_op(task, schema, max_payload_bytes))


async def enqueue_many_async(
    conn: psycopg.AsyncConnection[Any],
    tasks: Iterable[Task],
    *,
    schema: str = _queries.DEFAULT_SCHEMA,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> list[int]:
    """Async :func:`enqueue_many`, for a psycopg ``AsyncConnection``."""
    return await run_async(conn, insert_many_op(tasks, schema, max_payload_bytes))
