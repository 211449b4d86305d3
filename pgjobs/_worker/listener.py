"""The worker's LISTEN connection: wakeups for new work, control messages for running jobs.

It needs a session of its own (LISTEN does not survive PgBouncer's transaction pooling;
run such workers with ``listen=False``). When the connection drops it reconnects with
backoff and then wakes the worker, since notifications sent meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg

from .. import _queries
from .retry import DB_ERRORS, reconnect_delay

__all__ = ["Listener"]

log = logging.getLogger("pgjobs.worker")


class Listener:
    def __init__(
        self,
        dsn: str,
        schema: str,
        on_wakeup: Callable[[str | None], None],
        on_control: Callable[[str], None],
    ) -> None:
        self._dsn = dsn
        self._wakeup = _queries.wakeup_channel(schema)
        self._control = _queries.control_channel(schema)
        self._on_wakeup = on_wakeup
        self._on_control = on_control
        #: True while LISTEN is in place; the worker only asks for NOTIFYs then.
        self.listening = False
        self.ready = asyncio.Event()

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {self._wakeup}".encode())
                    await conn.execute(f"LISTEN {self._control}".encode())
                    self.listening = True
                    self.ready.set()
                    if failures:
                        log.info("listening for notifications again")
                    failures = 0
                    self._on_wakeup(None)  # anything sent while we were away is lost
                    async for note in conn.notifies():
                        if note.channel == self._wakeup:
                            self._on_wakeup(note.payload)
                        else:
                            self._on_control(note.payload)
            except DB_ERRORS as exc:
                failures += 1
                delay = reconnect_delay(failures)
                log.warning("notification connection lost (%s); reconnecting in %.1fs", exc, delay)
                await asyncio.sleep(delay)
            finally:
                self.listening = False
                self.ready.clear()
