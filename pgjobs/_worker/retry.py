"""The worker's loops and a database that goes away or answers out of turn: which errors
they survive, how long they wait before trying again, and how they notice a reply that
belongs to another statement."""

from __future__ import annotations

import random
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

__all__ = ["DB_ERRORS", "ReplyMismatch", "check_reply", "reconnect_delay"]

#: What a background loop survives: the database went away, or a statement failed.
DB_ERRORS: tuple[type[BaseException], ...] = (psycopg.Error, PoolTimeout, OSError)


def reconnect_delay(failures: int, *, first: float = 0.1, cap: float = 5.0) -> float:
    """Exponential backoff with full jitter: 0.1 s, 0.2 s, ... up to *cap* seconds."""
    return random.uniform(first / 2, min(cap, first * 2 ** max(0, failures - 1)))


class ReplyMismatch(psycopg.InterfaceError):
    """A reply whose columns are not those of the statement it came back for."""


async def check_reply(
    conn: psycopg.AsyncConnection[Any], cursor: psycopg.AsyncCursor[Any], columns: int, what: str
) -> None:
    """Raise :class:`ReplyMismatch`, closing *conn*, unless the reply on *cursor* has the
    *columns* of *what* (the statement it answers).

    A pooler that mixes up its server connections' replies leaves the client's connection
    one reply behind, and every later statement on it would read its predecessor's reply
    (PgBouncer 1.18, with ``server_check_delay = 0``, handed a worker's claim the reply to
    its own ``server_check_query`` when a notification came in on that server connection).
    Closed, the connection is replaced by its pool, and the caller treats the reply as lost:
    the claim loop gives back the jobs claimed for it, the completer writes its batch again.
    """
    result = cursor.pgresult
    got = -1 if result is None else result.nfields
    if got == columns:
        return
    await conn.close()
    raise ReplyMismatch(
        f"the reply to {what} has {got} columns, not {columns}: a pooler in between"
        " mixed up its connections' replies; the connection is closed"
    )
