"""Writes attempts' outcomes to the database in batches.

Outcomes queue up in memory while a flush is in flight, and the next flush takes them
all (up to ``MAX_BATCH``) in one ``job_finish_many`` statement. Under load that batches
hundreds of outcomes per round trip; when idle, an outcome is written at once. Nothing
is dropped when the database is away: the batch is retried with backoff, and each row's
guard (state running, same attempt) makes a late write harmless if the job was rescued
meanwhile. An outcome that the statement itself refuses (a value out of range, text the
database cannot store) must not hold back the rest: a batch refused for its data is
written one outcome at a time, and an outcome refused alone fails its job instead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from .. import _queries
from .outcome import Outcome, describe_error, finish_params
from .retry import DB_ERRORS, check_reply, reconnect_delay

__all__ = ["Completer"]

log = logging.getLogger("pgjobs.worker")

MAX_BATCH = 5000
#: The columns of a ``job_finish_many`` row: a recorded id, and the count that makes its
#: notifications to waiters run.
FINISH_COLUMNS = 2
#: What a statement raises when one of its values is refused, not the connection lost:
#: data exceptions and constraint violations (SQLSTATE classes 22 and 23), and a value
#: the driver cannot send.
REFUSED: tuple[type[Exception], ...] = (psycopg.DataError, psycopg.IntegrityError, ValueError)


class Completer:
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        schema: str,
        worker_id: str,
        *,
        delete_completed: bool,
    ) -> None:
        self._pool = pool
        self._query = _queries.queries(schema)["job_finish_many"]
        self._worker_id = worker_id
        self._delete_completed = delete_completed
        self._pending: list[Outcome] = []
        self._wake = asyncio.Event()
        self._closing = False
        self.written = 0
        self.discarded = 0

    def add(self, outcome: Outcome) -> None:
        self._pending.append(outcome)
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def pending_ids(self) -> list[int]:
        """Jobs whose outcome is not written yet (a batch in flight included)."""
        return [outcome.job_id for outcome in self._pending]

    def close(self) -> None:
        """Finish once everything pending is written; :meth:`run` then returns."""
        self._closing = True
        self._wake.set()

    async def run(self) -> None:
        failures = 0
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                # A connection per batch: the one it takes is the pool's second, which the
                # periodic services use too. Under a steady stream of outcomes the pending
                # list never empties, so holding the connection until it did would starve
                # the heartbeat and the leader's election; the pool hands a returned
                # connection to the longest waiter, so each waiting service gets its turn
                # between two batches.
                async with self._pool.connection() as conn:
                    batch = self._pending[:MAX_BATCH]
                    await self._flush(conn, batch, retry=failures > 0)
                del self._pending[: len(batch)]
                failures = 0
            except DB_ERRORS as exc:
                failures += 1
                delay = reconnect_delay(failures)
                log.warning(
                    "could not record %d job outcomes (%s); retrying in %.1fs",
                    len(self._pending),
                    exc,
                    delay,
                    extra={"pending": len(self._pending), "error": str(exc)},
                )
                await asyncio.sleep(delay)

    async def _flush(self, conn: Any, batch: list[Outcome], *, retry: bool) -> None:
        try:
            await self._write(conn, batch, retry=retry)
        except REFUSED as exc:
            log.error(
                "a batch of %d job outcomes was refused (%s); writing them one by one",
                len(batch),
                exc,
            )
            for outcome in batch:
                await self._write_alone(conn, outcome, retry=retry)

    async def _write_alone(self, conn: Any, outcome: Outcome, *, retry: bool) -> None:
        try:
            await self._write(conn, [outcome], retry=retry)
        except REFUSED as exc:
            log.error(
                "job %d attempt %d: outcome %r refused by the database (%s); failing the job",
                outcome.job_id,
                outcome.attempt,
                outcome.state,
                exc,
                extra={"job_id": outcome.job_id, "attempt": outcome.attempt},
            )
            error = f"its outcome {outcome.state!r} was refused: {describe_error(exc)}"
            await self._write(
                conn,
                [Outcome(outcome.job_id, outcome.attempt, "failed", error=error)],
                retry=retry,
            )

    async def _write(self, conn: Any, batch: list[Outcome], *, retry: bool) -> None:
        """Write *batch*. With *retry*, the last write of it failed, perhaps only its
        reply (a connection lost after the commit, a pooler's mixed-up reply): an outcome
        this one does not record may be one that write recorded, so it is not counted as
        discarded."""
        params = finish_params(
            batch, worker_id=self._worker_id, delete_completed=self._delete_completed
        )
        cursor = await conn.execute(self._query, params)
        await check_reply(conn, cursor, FINISH_COLUMNS, "an outcome batch")
        recorded = {row[0] for row in await cursor.fetchall()}
        self.written += len(recorded)
        if len(recorded) == len(batch):
            return
        for outcome in batch:
            if outcome.job_id in recorded:
                continue
            if retry:
                why = (
                    " by the retry; the write that failed may have recorded it, or the job is"
                    " no longer this attempt's"
                )
            else:
                self.discarded += 1
                why = (
                    ", the job is no longer this attempt's (cancelled, or rescued after its"
                    " lease expired)"
                )
            log.info(
                "job %d attempt %d: outcome %r not recorded%s",
                outcome.job_id,
                outcome.attempt,
                outcome.state,
                why,
                extra={"job_id": outcome.job_id, "attempt": outcome.attempt},
            )
