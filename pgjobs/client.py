"""Clients that own a connection pool: the convenient way to enqueue outside a transaction.

``Client`` and ``AsyncClient`` have the same methods; each method is a one-line call of
an operation (:mod:`pgjobs._ops`), run either on the connection you pass (joining its
transaction, never committing it) or on a pooled connection. The pool's connections are
in autocommit mode: an operation of one statement (an enqueue, a get) commits as it
runs, in one round trip, and only one of several statements (``enqueue_many``) is
wrapped in a transaction of its own. ``Client`` is written from ``AsyncClient`` by
``scripts/gen_sync.py``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from . import _queries
from ._dsn import resolve_dsn
from ._enqueue import (
    EnqueueResult,
    insert_many_op,
    insert_op,
    unique_insert_op,
)
from ._ops import Op, Statement, WaitNotify, own_transaction, run, run_async
from ._pooler import configure, configure_async, pooled, pooled_async
from .errors import ConfigurationError
from .job import Job, get_op
from .task import DEFAULT_MAX_PAYLOAD_BYTES, Task

__all__ = ["AsyncClient", "Client"]

T = TypeVar("T")

#: wait() re-checks the job this often even without a NOTIFY: finishes that send none
#: (an operator's cancel, a rescue that fails the job) are seen within this delay.
WAIT_RECHECK = 1.0
#: Through a pooler no NOTIFY arrives: wait() re-reads the job after this delay, doubled
#: at each read up to WAIT_RECHECK, so a short job is seen soon and a long one costs a
#: read a second.
POOLED_FIRST_RECHECK = 0.01


def _remaining(deadline: float | None, job_id: int, recheck: float) -> float:
    """Seconds to wait for the next notification; TimeoutError once *deadline* passed."""
    if deadline is None:
        return recheck
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"job {job_id} did not finish in time")
    return min(left, recheck)


def wait_op(job_id: int, schema: str, timeout: float | None, *, listen: bool) -> Op[Job | None]:
    """The job once it is finished, on an autocommit connection of its own (see
    :meth:`AsyncClient.wait`): listen, register as a waiter, read the job until it is
    finished, between waits for a notification; unregister whatever happens.

    Without *listen* (through a pooler) it never LISTENs: no notification could arrive,
    and a LISTEN left on one of the pooler's server connections makes notifications come
    in on whichever client uses it next (PgBouncer 1.18 then hands one of its own
    ``server_check_query`` replies to the wrong client). It registers all the same: a
    waiter keeps the finished job from being deleted before this call reads it.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    statements = _queries.queries(schema)
    recheck = WAIT_RECHECK if listen else POOLED_FIRST_RECHECK
    if listen:
        yield Statement(f"LISTEN {_queries.finished_channel(schema)}".encode())
    yield Statement(statements["waiter_add"], {"id": job_id})
    try:
        while True:
            job = yield from get_op(job_id, schema)
            if job is None or job.finished:
                return job
            yield WaitNotify(_remaining(deadline, job_id, recheck))
            recheck = min(recheck * 2, WAIT_RECHECK)
    finally:
        yield Statement(statements["waiter_remove"], {"id": job_id})


class _ClientBase:
    """Configuration shared by both clients; no I/O here."""

    def __init__(
        self,
        dsn: str | None,
        *,
        schema: str,
        max_payload_bytes: int,
        min_connections: int,
        max_connections: int,
    ) -> None:
        self.dsn = resolve_dsn(dsn)
        self.schema = _queries.check_schema_name(schema)
        if (
            isinstance(max_payload_bytes, bool)
            or not isinstance(max_payload_bytes, int)
            or max_payload_bytes < 1
        ):
            raise ConfigurationError(
                f"max_payload_bytes must be a positive integer, not {max_payload_bytes!r}"
            )
        self.max_payload_bytes = max_payload_bytes
        self._pool_args: dict[str, Any] = {
            "min_size": min_connections,
            "max_size": max_connections,
            "open": False,
            "name": "pgjobs-client",
            "kwargs": {"autocommit": True},  # see the module doc
        }

    @staticmethod
    def _probe_args(timeout: float) -> dict[str, Any]:
        """Arguments of the one direct connection made before the pool opens. The pool
        retries a failing connection quietly until its timeout (the cause only in its
        log); a direct one fails at once with the cause, and within *timeout* for a host
        that does not answer (libpq counts whole seconds, at least 2)."""
        return {"connect_timeout": max(2, math.ceil(timeout))}

    def _insert(self, task: Task) -> Op[int]:
        return insert_op(task, self.schema, self.max_payload_bytes)

    def _insert_many(self, tasks: Iterable[Task]) -> Op[list[int]]:
        return insert_many_op(tasks, self.schema, self.max_payload_bytes)

    def _insert_unique(self, task: Task) -> Op[EnqueueResult]:
        return unique_insert_op(task, self.schema, self.max_payload_bytes)


# sync: begin client (generated by scripts/gen_sync.py from the async code: do not edit)
class Client(_ClientBase):
    """Enqueue jobs through a pool of psycopg connections it owns (for the async client,
    an asyncio pool).

    :param dsn: the database; defaults to ``$PGJOBS_DSN``, then ``$DATABASE_URL``.
    :param schema: the pgjobs schema name.
    :param max_payload_bytes: refuse payloads larger than this as JSON.

    Use it as a context manager, or call :meth:`close` when done::

        with pgjobs.Client(dsn) as client:
            client.enqueue(pgjobs.Task("send_email", {"to": "a@example.com"}))
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str = _queries.DEFAULT_SCHEMA,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        min_connections: int = 1,
        max_connections: int = 4,
    ) -> None:
        super().__init__(
            dsn,
            schema=schema,
            max_payload_bytes=max_payload_bytes,
            min_connections=min_connections,
            max_connections=max_connections,
        )
        self._pool: ConnectionPool[Any] = ConnectionPool(
            self.dsn, configure=configure, **self._pool_args
        )
        self._opened = False

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self, timeout: float = 30.0) -> None:
        """Open the pool, waiting until its connections work.

        A database that cannot be reached raises psycopg's ``OperationalError`` at once,
        with libpq's reason (see :meth:`_ClientBase._probe_args`); PoolTimeout after
        *timeout* seconds means the pool could still not fill.
        """
        if not self._opened:
            probe = psycopg.Connection.connect(self.dsn, **self._probe_args(timeout))
            probe.close()
            self._pool.open(wait=True, timeout=timeout)
            self._opened = True

    def close(self) -> None:
        self._pool.close()
        self._opened = False

    def _run(self, op: Op[T], conn: Any, entry: str) -> T:
        if conn is not None:
            return run(conn, op, entry)
        self.open()
        # Not pool.connection(): its `with conn` would commit or roll back an autocommit
        # connection, which own_transaction has already done, at a cost per enqueue.
        pooled = self._pool.getconn()
        try:
            return run(pooled, own_transaction(op))
        finally:
            self._pool.putconn(pooled)

    def enqueue(self, task: Task, *, conn: Any = None) -> int:
        """Enqueue *task*; in *conn*'s transaction if given, else committed at once."""
        return self._run(self._insert(task), conn, "pgjobs.Client.enqueue")

    def enqueue_many(self, tasks: Iterable[Task], *, conn: Any = None) -> list[int]:
        """Enqueue all *tasks* in one statement; ids in input order."""
        return self._run(self._insert_many(tasks), conn, "pgjobs.Client.enqueue_many")

    def enqueue_unique(self, task: Task, *, conn: Any = None) -> EnqueueResult:
        """Enqueue a task with a ``unique_key``; the id, and whether it was a duplicate
        (see :func:`pgjobs.enqueue_unique`)."""
        return self._run(self._insert_unique(task), conn, "pgjobs.Client.enqueue_unique")

    def get(self, job_id: int, *, conn: Any = None) -> Job | None:
        """The job as stored now; None if there is no such row (never enqueued, or
        completed and deleted, which is the default for completed jobs)."""
        return self._run(get_op(job_id, self.schema), conn, "pgjobs.Client.get")

    def wait(self, job_id: int, timeout: float | None = None) -> Job | None:
        """Wait until the job is completed, failed or cancelled, and return it.

        The job is kept for this call even if completed jobs are not retained: the
        worker does not delete a completed job that a client waits for, and the leader's
        pruner deletes it after this call has read it. Returns None if the job no longer
        existed when the call began (completed and not retained, or purged), or if it
        completed in the very statement that ran as this call registered. Raises
        TimeoutError after *timeout* seconds. The worker that finishes the job sends a
        NOTIFY because this call registered as a waiter; there is no busy polling.
        Through a pooler in transaction mode (PgBouncer) a NOTIFY cannot arrive: the
        call does not LISTEN there, and re-reads the job after 10 ms, then at doubling
        intervals up to once a second.
        """
        conn = psycopg.Connection.connect(self.dsn, autocommit=True)
        with conn:
            listen = not pooled(conn)
            return run(conn, wait_op(job_id, self.schema, timeout, listen=listen))


# sync: end client


# async: begin client
class AsyncClient(_ClientBase):
    """Enqueue jobs through a pool of psycopg connections it owns (for the async client,
    an asyncio pool).

    :param dsn: the database; defaults to ``$PGJOBS_DSN``, then ``$DATABASE_URL``.
    :param schema: the pgjobs schema name.
    :param max_payload_bytes: refuse payloads larger than this as JSON.

    Use it as a context manager, or call :meth:`close` when done::

        async with pgjobs.AsyncClient(dsn) as client:
            await client.enqueue(pgjobs.Task("send_email", {"to": "a@example.com"}))
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str = _queries.DEFAULT_SCHEMA,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        min_connections: int = 1,
        max_connections: int = 4,
    ) -> None:
        super().__init__(
            dsn,
            schema=schema,
            max_payload_bytes=max_payload_bytes,
            min_connections=min_connections,
            max_connections=max_connections,
        )
        self._pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            self.dsn, configure=configure_async, **self._pool_args
        )
        self._opened = False

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self, timeout: float = 30.0) -> None:
        """Open the pool, waiting until its connections work.

        A database that cannot be reached raises psycopg's ``OperationalError`` at once,
        with libpq's reason (see :meth:`_ClientBase._probe_args`); PoolTimeout after
        *timeout* seconds means the pool could still not fill.
        """
        if not self._opened:
            probe = await psycopg.AsyncConnection.connect(self.dsn, **self._probe_args(timeout))
            await probe.close()
            await self._pool.open(wait=True, timeout=timeout)
            self._opened = True

    async def close(self) -> None:
        await self._pool.close()
        self._opened = False

    async def _run(self, op: Op[T], conn: Any, entry: str) -> T:
        if conn is not None:
            return await run_async(conn, op, entry)
        await self.open()
        # Not pool.connection(): its `with conn` would commit or roll back an autocommit
        # connection, which own_transaction has already done, at a cost per enqueue.
        pooled = await self._pool.getconn()
        try:
            return await run_async(pooled, own_transaction(op))
        finally:
            await self._pool.putconn(pooled)

    async def enqueue(self, task: Task, *, conn: Any = None) -> int:
        """Enqueue *task*; in *conn*'s transaction if given, else committed at once."""
        return await self._run(self._insert(task), conn, "pgjobs.AsyncClient.enqueue")

    async def enqueue_many(self, tasks: Iterable[Task], *, conn: Any = None) -> list[int]:
        """Enqueue all *tasks* in one statement; ids in input order."""
        return await self._run(self._insert_many(tasks), conn, "pgjobs.AsyncClient.enqueue_many")

    async def enqueue_unique(self, task: Task, *, conn: Any = None) -> EnqueueResult:
        """Enqueue a task with a ``unique_key``; the id, and whether it was a duplicate
        (see :func:`pgjobs.enqueue_unique`)."""
        return await self._run(self._insert_unique(task), conn, "pgjobs.AsyncClient.enqueue_unique")

    async def get(self, job_id: int, *, conn: Any = None) -> Job | None:
        """The job as stored now; None if there is no such row (never enqueued, or
        completed and deleted, which is the default for completed jobs)."""
        return await self._run(get_op(job_id, self.schema), conn, "pgjobs.AsyncClient.get")

    async def wait(self, job_id: int, timeout: float | None = None) -> Job | None:
        """Wait until the job is completed, failed or cancelled, and return it.

        The job is kept for this call even if completed jobs are not retained: the
        worker does not delete a completed job that a client waits for, and the leader's
        pruner deletes it after this call has read it. Returns None if the job no longer
        existed when the call began (completed and not retained, or purged), or if it
        completed in the very statement that ran as this call registered. Raises
        TimeoutError after *timeout* seconds. The worker that finishes the job sends a
        NOTIFY because this call registered as a waiter; there is no busy polling.
        Through a pooler in transaction mode (PgBouncer) a NOTIFY cannot arrive: the
        call does not LISTEN there, and re-reads the job after 10 ms, then at doubling
        intervals up to once a second.
        """
        conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        async with conn:
            listen = not await pooled_async(conn)
            return await run_async(conn, wait_op(job_id, self.schema, timeout, listen=listen))


# async: end client
