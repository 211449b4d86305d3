"""The periodic scheduler: a leader-only service that enqueues due ticks.

It has the shape of every background service (``services.py``): a name, an interval
(about a second, so ticks are enqueued within a second of their time), and a
``run_once(conn)`` pass. The rules it applies (late ticks, missed ticks, idempotent
per-tick keys) are described in :mod:`pgjobs.periodic`.

One instance lives for one leadership term: the elector builds a new one whenever this
worker becomes leader, telling it when the previous leader was last renewed (its
*handover* time), so its first pass is always the start of a term.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from .._ops import run_async
from ..enqueue import unique_insert_op
from ..periodic import LATE_GRACE, Handover, Periodic
from ..task import DEFAULT_MAX_PAYLOAD_BYTES
from .services import Service

__all__ = ["Scheduler"]

log = logging.getLogger("pgjobs.worker")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Scheduler(Service):
    name = "periodic"

    def __init__(
        self,
        schema: str,
        interval: float,
        periodic: Sequence[Periodic],
        *,
        handover: Handover | None = None,
        grace: float = LATE_GRACE,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        super().__init__(schema, interval)
        self.schema = schema
        self.periodic = list(periodic)
        self.handover = handover
        self.grace = timedelta(seconds=grace)
        self.clock = clock
        #: The next tick to enqueue, per schedule name, once this term has started it.
        self._due: dict[str, datetime] = {}

    async def run_once(self, conn: Any) -> int:
        """Enqueue every tick that is due; return how many new jobs that made."""
        now = self.clock()
        enqueued = 0
        for periodic in self.periodic:
            tick = self._due.get(periodic.name)
            if tick is None:  # the first pass of this term
                handover = self.handover
                if handover is not None and now - handover.renewed_at <= self.grace:
                    # Taking over from a leader seen moments ago: ticks since then are
                    # late, not missed (and those it enqueued are duplicates).
                    start = handover.resume_from(2 * self.interval + 1.0)
                else:
                    # No leader for a while: ticks until now were missed.
                    start = now
                    if periodic.catch_up == "last":
                        missed = periodic.schedule.last_at_or_before(now)
                        enqueued += await self._enqueue(conn, periodic, missed, now, "missed tick")
                tick = periodic.schedule.next_after(start)
            while tick <= now:
                enqueued += await self._enqueue(conn, periodic, tick, now, "tick")
                tick = periodic.schedule.next_after(tick)
                self._due[periodic.name] = tick
            self._due[periodic.name] = tick
        return enqueued

    async def _enqueue(
        self, conn: Any, periodic: Periodic, tick: datetime, now: datetime, what: str
    ) -> int:
        task = periodic.task_for(tick, now, self.grace.total_seconds())
        async with conn.transaction():
            result = await run_async(
                conn, unique_insert_op(task, self.schema, DEFAULT_MAX_PAYLOAD_BYTES)
            )
        if result.duplicate:
            log.debug(
                "periodic %s: %s %s was enqueued already (job %d)",
                periodic.name,
                what,
                tick.isoformat(),
                result.id,
            )
            return 0
        log.info(
            "periodic %s: enqueued job %d for the %s at %s%s",
            periodic.name,
            result.id,
            what,
            tick.isoformat(),
            f" ({(now - tick).total_seconds():.0f}s late)" if now - tick > self.grace / 10 else "",
            extra={"job_id": result.id, "periodic": periodic.name, "tick": tick.isoformat()},
        )
        return 1
