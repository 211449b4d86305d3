"""Whether a connection goes through a pooler such as PgBouncer, and what pgjobs then avoids.

A pooler in transaction mode hands each transaction to whichever server connection is
free, so anything that outlives a transaction goes astray:

* prepared statements: psycopg prepares a statement the fifth time a connection runs it
  (``prepare_threshold``); the next run may reach a server connection that never saw
  the ``Parse`` and fail with *prepared statement "_pg3_0" does not exist* (PgBouncer
  before 1.21 has no support for them, later ones only with ``max_prepared_statements``);
* session settings: ``SET synchronous_commit = off`` would stay on the server connection
  and apply to whichever client gets it next, an application's enqueue included;
* LISTEN: its notifications never reach the client that asked, and the LISTEN stays on
  the server connection, where notifications then come in on whichever client uses it
  next. The worker's listener and ``Client.wait`` do not LISTEN through a detected pooler.

Detection: a pooler answers the connection's start-up itself, so the backend process id
the client is told (``conn.info.backend_pid``, from BackendKeyData) is one the pooler made
up, not the id of the backend that runs the statements (``pg_backend_pid()``). One round
trip per new connection; a direct connection always matches. A proxy that passes the
start-up through unchanged is not detected, and a session-mode pooler is (harmlessly:
pgjobs only gives up prepared statements and the asynchronous commit of its own writes).
"""

from __future__ import annotations

from typing import Any

import psycopg

__all__ = ["configure", "configure_async", "pooled", "pooled_async"]

_BACKEND_PID = b"select pg_backend_pid()"


def _pooled(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], pid: int) -> bool:
    pooled = conn.info.backend_pid != pid
    if pooled:
        # The statements below run once per connection: never prepared, whatever happens.
        conn.prepare_threshold = None
    return pooled


def pooled(conn: psycopg.Connection[Any]) -> bool:
    """True if *conn* goes through a pooler (see the module doc); then it also stops
    preparing statements on it."""
    row = conn.execute(_BACKEND_PID, prepare=False).fetchone()
    assert row is not None
    return _pooled(conn, row[0])


async def pooled_async(conn: psycopg.AsyncConnection[Any]) -> bool:
    """:func:`pooled` for an async connection."""
    cursor = await conn.execute(_BACKEND_PID, prepare=False)
    row = await cursor.fetchone()
    assert row is not None
    return _pooled(conn, row[0])


def configure(conn: psycopg.Connection[Any]) -> None:
    """A pool's ``configure`` callback: no prepared statements through a pooler."""
    pooled(conn)
    if not conn.autocommit:  # pools hand out idle connections: end the check's transaction
        conn.rollback()


async def configure_async(conn: psycopg.AsyncConnection[Any]) -> None:
    """:func:`configure` for an async pool."""
    await pooled_async(conn)
    if not conn.autocommit:
        await conn.rollback()
