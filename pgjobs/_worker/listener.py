"""The worker's LISTEN connection: wakeups for new work, control messages for running jobs.

It needs a session of its own. Through a pooler in transaction mode (PgBouncer's
``pool_mode = transaction``) LISTEN is accepted but its notifications never arrive: the
server connection that ran it goes back to the pool. So the listener does not LISTEN
through a pooler it detects (see _pooler.py); where it does LISTEN, it then sends itself
a notification from a connection of the worker's pool. If a pooler was detected, or the
notification does not arrive within ``CHECK_TIMEOUT``, it says so in the log and stops,
and the worker polls for work every ``poll_interval`` (``listen=False`` skips the check
and the connection). When the connection drops it reconnects with backoff and then
wakes the worker, since notifications sent meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from .. import _queries
from .._dsn import redact
from .._pooler import pooled_async
from .retry import DB_ERRORS, reconnect_delay

__all__ = ["Listener"]

log = logging.getLogger("pgjobs.worker")

#: Longest wait for the listener's own test notification after LISTEN.
CHECK_TIMEOUT = 2.0


class Listener:
    def __init__(
        self,
        dsn: str,
        pool: AsyncConnectionPool[Any],
        schema: str,
        on_wakeup: Callable[[str | None], None],
        on_control: Callable[[str], None],
        *,
        poll_interval: float = 1.0,
    ) -> None:
        self._dsn = dsn
        self._pool = pool
        self._wakeup = _queries.wakeup_channel(schema)
        self._control = _queries.control_channel(schema)
        self._on_wakeup = on_wakeup
        self._on_control = on_control
        self._poll_interval = poll_interval
        #: True while LISTEN is in place; the worker only asks for NOTIFYs then.
        self.listening = False
        #: Set once LISTEN works, or once it is known not to (then ``deaf`` is True too).
        self.ready = asyncio.Event()
        #: True once notifications proved not to arrive: the worker only polls.
        self.deaf = False

    async def run(self) -> None:
        failures = 0
        while not self.deaf:
            try:
                conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
                async with conn:
                    if await pooled_async(conn):
                        # Not even tried: a LISTEN left on one of the pooler's server
                        # connections makes notifications come in on whichever client
                        # uses it next (PgBouncer 1.18 then hands one of its own
                        # server_check_query replies to the wrong client).
                        self._give_up(detected=True)
                        return
                    await conn.execute(f"LISTEN {self._wakeup}".encode())
                    await conn.execute(f"LISTEN {self._control}".encode())
                    if not await self._hears_itself(conn):
                        # Best effort: the LISTEN stays on whichever server connection ran it.
                        await conn.execute(b"UNLISTEN *")
                        self._give_up()
                        return
                    self.listening = True
                    self.ready.set()
                    if failures:
                        log.info("listening for notifications again")
                    failures = 0
                    self._on_wakeup(None)  # anything sent while we were away is lost
                    async for note in conn.notifies():
                        self._dispatch(note)
            except DB_ERRORS as exc:
                failures += 1
                delay = reconnect_delay(failures)
                log.warning("notification connection lost (%s); reconnecting in %.1fs", exc, delay)
                await asyncio.sleep(delay)
            finally:
                self.listening = False
                if not self.deaf:
                    self.ready.clear()

    def _dispatch(self, note: psycopg.Notify) -> None:
        # Anyone who can log in may NOTIFY: no payload may end the listener (and with it
        # the worker), whatever a handler of it fails to foresee.
        try:
            if note.channel == self._wakeup:
                self._on_wakeup(note.payload)
            else:
                self._on_control(note.payload)
        except Exception:
            log.exception("ignoring notification on %s %r", note.channel, note.payload[:200])

    async def _hears_itself(self, conn: psycopg.AsyncConnection[psycopg.rows.TupleRow]) -> bool:
        """Send a notification from another connection; True if it reaches *conn*."""
        token = f"pgjobs-listen-check-{uuid.uuid4()}"
        # A connection of the worker's pool: no extra connection against the budget.
        async with self._pool.connection() as sender:
            await sender.execute("select pg_notify(%s, %s)", (self._wakeup, token), prepare=False)
        async for note in conn.notifies(timeout=CHECK_TIMEOUT):
            if note.channel == self._wakeup and note.payload == token:
                return True
            self._dispatch(note)
        return False

    def _give_up(self, *, detected: bool = False) -> None:
        self.deaf = True
        self.ready.set()
        why = (
            "goes through a pooler (PgBouncer in transaction mode, say): not listening"
            if detected
            else "receives no notifications (a pooler in transaction mode, such as "
            "PgBouncer, in between?)"
        )
        log.warning(
            "LISTEN on %s %s: polling for work every %gs instead; operator cancels reach "
            "running jobs only when they finish; listen=False skips this check",
            redact(self._dsn),
            why,
            self._poll_interval,
        )
