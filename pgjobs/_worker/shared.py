"""One pool connection that several of the worker's loops use at the same time.

The claim loop and the completer each used to hold a connection of their own for the
worker's whole life. Sharing one keeps a worker process at three server connections
(this one, one for the periodic services, the listener's), which is what lets a fleet of
processes fit under ``max_connections`` or a pooler's pool. psycopg serialises the
statements of tasks that use one connection (each takes the connection's lock), and both
loops send one autocommit statement at a time, so neither sees the other's transaction.

When a user's block raises (the connection broke, or the task was cancelled mid-statement)
the connection is retired: later users get a fresh one from the pool, and the retired one
goes back to the pool, which checks it and discards it if broken, once its last user is done.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

__all__ = ["SharedConnection"]


class SharedConnection:
    """Hands the same connection of *pool* to every caller of :meth:`connection`."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._users: Counter[psycopg.AsyncConnection[Any]] = Counter()
        self._getting = asyncio.Lock()  # one getconn when several callers find none

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self._getting:
            if self._conn is None:
                self._conn = await self._pool.getconn()
            conn = self._conn
        self._users[conn] += 1
        try:
            yield conn
        except BaseException:
            if self._conn is conn:
                self._conn = None
            raise
        finally:
            self._users[conn] -= 1
            if self._users[conn] == 0:
                del self._users[conn]
                if self._conn is not conn:
                    await self._pool.putconn(conn)

    async def close(self) -> None:
        """Give the connection back to the pool (once its users are gone)."""
        conn, self._conn = self._conn, None
        if conn is not None and conn not in self._users:
            await self._pool.putconn(conn)
