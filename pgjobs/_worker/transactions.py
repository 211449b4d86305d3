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
ones), made on first use, sized to the worker's concurrency, so handlers holding a
transaction never starve the worker's own connections.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from .. import _queries
from ..errors import JobLostError
from .outcome import Outcome, encode_result, finish_params

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["JobTransactions"]


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

    @contextmanager
    def sync(self, ctx: Context) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            if self._sync_pool is None:
                self._sync_pool = ConnectionPool(
                    self._dsn, min_size=1, max_size=self._size, open=True, name="pgjobs-handlers"
                )
        with self._sync_pool.connection() as conn, self.completing(conn, ctx):
            yield conn

    @asynccontextmanager
    async def asynchronous(self, ctx: Context) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self._async_pool is None:
            self._async_pool = AsyncConnectionPool(
                self._dsn, min_size=1, max_size=self._size, open=False, name="pgjobs-handlers"
            )
            await self._async_pool.open()
        async with self._async_pool.connection() as conn, self.acompleting(conn, ctx):
            yield conn

    @contextmanager
    def completing(
        self, conn: psycopg.Connection[Any], ctx: Context
    ) -> Iterator[psycopg.Connection[Any]]:
        """A transaction on *conn* (a savepoint if it is in one already) that marks the
        job completed when the block ends without an exception."""
        with conn.transaction():
            yield conn
            if not conn.execute(self._finish, self._params(ctx)).fetchall():
                raise self._lost(ctx)
        ctx._committed = True

    @asynccontextmanager
    async def acompleting(
        self, conn: psycopg.AsyncConnection[Any], ctx: Context
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """:meth:`completing` on an async connection."""
        async with conn.transaction():
            yield conn
            cursor = await conn.execute(self._finish, self._params(ctx))
            if not await cursor.fetchall():
                raise self._lost(ctx)
        ctx._committed = True

    async def close(self) -> None:
        if self._async_pool is not None:
            await self._async_pool.close()
        if self._sync_pool is not None:
            self._sync_pool.close(timeout=1.0)
