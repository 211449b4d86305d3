"""``ctx.transaction()``: a handler's database work and its job's completion, committed
together.

Inside the block the handler writes through the connection it is given; when the block
ends without an exception, the job is marked completed *in that same transaction* and it
commits. So a crash can never leave the work done and the job pending, or the job done
and the work lost. If the job is no longer this attempt's when the block ends (an
operator cancelled it, or its lease expired and it was rescued), the transaction is
rolled back and :class:`~pgjobs.JobLostError` raised: the work is undone, since another
attempt owns the job now.

The connections come from pools of their own (sync for sync handlers, async for async
ones), made on first use, so handlers holding a transaction never starve the worker's
own connections. Each holds at most ``Config.handler_pool_size`` connections, not one per
slot: a fleet at high concurrency would otherwise take every connection the server has
(8 workers at concurrency 50 held 445) and lock out the applications that enqueue.
Handlers beyond it wait for a connection; since that wait is time the job spends doing
nothing, the worker counts such waits and says so in its log, at most once a minute.
When no connection comes within ``CONNECTION_WAIT`` (the server refuses more, or the
pool is too small for the handlers' transactions), the attempt is snoozed: it is given
back and the job runs again later. A database that is short of connections is no fault
of the job, and should not use up its retries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from .. import _queries
from .._ops import Op, Statement, run, run_async
from .._pooler import configure, configure_async
from ..errors import JobLostError, Snooze
from .outcome import Outcome, encode_result, finish_params

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["JobTransactions"]

log = logging.getLogger("pgjobs.worker")

#: A handler that waited this long for a connection counts as having waited for one.
WAIT_NOTICED = 0.05
#: Least time between two log lines about handlers waiting for connections.
WAIT_LOG_INTERVAL = 60.0
#: Longest wait for a connection before the attempt is snoozed, and for how long.
CONNECTION_WAIT = 5.0


class NoConnection(Snooze):
    """No handler connection came in time: the attempt is given back (see module doc)."""

    def __init__(self, job_id: int, size: int) -> None:
        super().__init__(CONNECTION_WAIT)
        self.args = (
            f"job {job_id}: no database connection for ctx.transaction() within "
            f"{CONNECTION_WAIT:g}s (handler_pool_size {size}; the server may be refusing "
            f"connections); the attempt is given back and runs again in {CONNECTION_WAIT:g}s",
        )


class JobTransactions:
    def __init__(
        self, dsn: str, schema: str, worker_id: str, *, delete_completed: bool, size: int
    ) -> None:
        self._dsn = dsn
        self._finish = _queries.queries(schema)["job_finish_many"]
        self._worker_id = worker_id
        self._delete_completed = delete_completed
        self._size = size
        self._lock = threading.Lock()
        self._sync_pool: ConnectionPool[Any] | None = None
        self._async_pool: AsyncConnectionPool[Any] | None = None
        #: How many times a handler waited for a connection (see WAIT_NOTICED), and the
        #: seconds those waits took in all: pgjobs_handler_connection_wait* in metrics.py.
        self.waits = 0
        self.waited = 0.0
        self._unlogged_waits = 0
        self._longest_unlogged = 0.0
        self._logged_at = -WAIT_LOG_INTERVAL

    def _unavailable(self, ctx: Context) -> NoConnection:
        error = NoConnection(ctx.job_id, self._size)
        log.warning("%s", error, extra={"job_id": ctx.job_id})
        return error

    def _acquired(self, since: float) -> None:
        """A handler got its connection; note it if it had to wait (any thread)."""
        waited = time.monotonic() - since
        if waited < WAIT_NOTICED:
            return
        with self._lock:
            self.waits += 1
            self.waited += waited
            self._unlogged_waits += 1
            self._longest_unlogged = max(self._longest_unlogged, waited)
            now = time.monotonic()
            if now - self._logged_at < WAIT_LOG_INTERVAL:
                return
            count, longest = self._unlogged_waits, self._longest_unlogged
            self._unlogged_waits, self._longest_unlogged = 0, 0.0
            self._logged_at = now
        log.warning(
            "%d handlers waited for a database connection (longest %.1fs): all %d of "
            "handler_pool_size are in use by ctx.transaction(); raise it if the database "
            "can take more connections",
            count,
            longest,
            self._size,
            extra={"handler_connection_waits": count},
        )

    def _params(self, ctx: Context) -> dict[str, Any]:
        completed = Outcome(
            ctx.job_id, ctx.attempt, "completed", result=encode_result(ctx.job_id, ctx.result)
        )
        return finish_params(
            [completed], worker_id=self._worker_id, delete_completed=self._delete_completed
        )

    def _lost(self, ctx: Context) -> JobLostError:
        return JobLostError(
            f"job {ctx.job_id} attempt {ctx.attempt} is no longer this worker's (cancelled, "
            "or rescued after its lease expired): its transaction was rolled back"
        )

    def _args(self) -> dict[str, Any]:
        """The handler pools' arguments but the face's own."""
        return {
            "conninfo": self._dsn,
            "min_size": 1,
            "max_size": self._size,
            "name": "pgjobs-handlers",
        }

    def _pool(self) -> ConnectionPool[Any]:
        with self._lock:  # sync handlers run in threads: one of them makes the pool
            if self._sync_pool is None:
                self._sync_pool = ConnectionPool(configure=configure, open=True, **self._args())
            return self._sync_pool

    async def _pool_async(self) -> AsyncConnectionPool[Any]:
        if self._async_pool is None:
            self._async_pool = AsyncConnectionPool(
                configure=configure_async, open=False, **self._args()
            )
            await self._async_pool.open()
        return self._async_pool

    # sync: begin transaction (generated by scripts/gen_sync.py from the async code: do not edit)
    @contextmanager
    def transaction(self, ctx: Context) -> Iterator[psycopg.Connection[Any]]:
        """``ctx.transaction()``: a connection of the handlers' pool, in a transaction
        that completes the job (see :meth:`completing`)."""
        pool = self._pool()
        since = time.monotonic()
        try:
            conn = pool.getconn(timeout=CONNECTION_WAIT)
        except PoolTimeout:
            raise self._unavailable(ctx) from None
        try:
            self._acquired(since)
            with self.completing(conn, ctx):
                yield conn
        finally:
            pool.putconn(conn)

    # sync: end transaction

    # async: begin transaction
    @asynccontextmanager
    async def transaction_async(self, ctx: Context) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """``ctx.transaction()``: a connection of the handlers' pool, in a transaction
        that completes the job (see :meth:`acompleting`)."""
        pool = await self._pool_async()
        since = time.monotonic()
        try:
            conn = await pool.getconn(timeout=CONNECTION_WAIT)
        except PoolTimeout:
            raise self._unavailable(ctx) from None
        try:
            self._acquired(since)
            async with self.acompleting(conn, ctx):
                yield conn
        finally:
            await pool.putconn(conn)

    # async: end transaction

    def finish_op(self, ctx: Context) -> Op[None]:
        """The job's completion as an operation, to run in a transaction that is not
        ours (pgjobs.contrib.django.atomic: Django's, on Django's connection)."""
        if not (yield Statement(self._finish, self._params(ctx))):
            raise self._lost(ctx)

    # sync: begin completing (generated by scripts/gen_sync.py from the async code: do not edit)
    @contextmanager
    def completing(
        self, conn: psycopg.Connection[Any], ctx: Context
    ) -> Iterator[psycopg.Connection[Any]]:
        """A transaction on *conn* (a savepoint if it is in one already) that marks the
        job completed when the block ends without an exception."""
        with conn.transaction():
            yield conn
            run(conn, self.finish_op(ctx))
        ctx._committed = True

    # sync: end completing

    # async: begin completing
    @asynccontextmanager
    async def acompleting(
        self, conn: psycopg.AsyncConnection[Any], ctx: Context
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A transaction on *conn* (a savepoint if it is in one already) that marks the
        job completed when the block ends without an exception."""
        async with conn.transaction():
            yield conn
            await run_async(conn, self.finish_op(ctx))
        ctx._committed = True

    # async: end completing

    async def close(self) -> None:
        if self._async_pool is not None:
            await self._async_pool.close()
        if self._sync_pool is not None:
            self._sync_pool.close(timeout=1.0)
