"""The worker's first connection: wait for a database that is not up yet.

A worker started beside its database (``docker compose up``) often starts first. Until
``Config.wait_for_db`` seconds have passed it tries again, with a growing delay and a
log line each time; a server that answers and refuses (authentication, no such
database or role) is not waited for, since time does not fix that. A server that is
out of connections (``too many clients``, a role's or database's connection limit) is
waited for: connections come free, and a fleet that starts while the database is busy
should come up when it can, not crash-loop.
"""

from __future__ import annotations

import asyncio
import logging
import time

import psycopg

from .retry import reconnect_delay

__all__ = ["wait_for_database"]

log = logging.getLogger("pgjobs.worker")

#: The first delay between tries (then doubling, with jitter, up to 5 s).
FIRST_DELAY = 0.5


#: FATAL errors that pass by themselves: the server starting up, shutting down or in
#: recovery, and every way of being out of connections. libpq gives no SQLSTATE for a
#: failed connection, only the server's message, so it is matched by text.
_PASSING = ("the database system is", "too many", "connection slots are reserved")


def _refused_by_the_server(exc: psycopg.OperationalError) -> bool:
    """The server answered with a FATAL error that time does not fix."""
    text = str(exc)
    return "FATAL:" in text and not any(passing in text for passing in _PASSING)


async def wait_for_database(dsn: str, patience: float) -> None:
    """Return once a connection to *dsn* works; raise its OperationalError once
    *patience* seconds have passed (at once for 0), or at once if the server refused."""
    deadline = time.monotonic() + patience
    failures = 0
    while True:
        try:
            probe = await psycopg.AsyncConnection.connect(dsn, connect_timeout=10)
        except psycopg.OperationalError as exc:
            left = deadline - time.monotonic()
            if left <= 0 or _refused_by_the_server(exc):
                raise
            failures += 1
            delay = min(reconnect_delay(failures, first=FIRST_DELAY), left)
            reason = str(exc).strip().splitlines()[0]
            log.warning(
                "cannot reach the database yet (%s): trying again in %.1fs, for %.0fs more",
                reason,
                delay,
                left,
            )
            await asyncio.sleep(delay)
        else:
            await probe.close()
            return
