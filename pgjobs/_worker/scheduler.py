"""The periodic scheduler: a leader-only service that enqueues due ticks.

It has the shape of every background service (``services.py``): a config, a
``run_once(conn, now=None)`` pass that returns what it enqueued, and test signals. Its
*now* is this machine's clock, not the database's: ticks are computed in Python from
the schedules, and each tick's job is made idempotent by a unique key (the rules for
late ticks, missed ticks and keys are in :mod:`pgjobs.periodic`).

One instance lives for one leadership term: the elector builds a new one whenever this
worker becomes leader, telling it when the previous leader was last renewed (its
*handover* time), so its first pass is always the start of a term.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .._enqueue import unique_insert_op
from .._ops import run_async
from ..config import Config
from ..periodic import LATE_GRACE, Handover, Periodic
from ..task import DEFAULT_MAX_PAYLOAD_BYTES
from .services import Service, check_seconds

__all__ = ["ScheduleResult", "Scheduler", "SchedulerConfig"]

log = logging.getLogger("pgjobs.worker")


@dataclass(frozen=True)
class SchedulerConfig:
    """:param interval: seconds between passes: a second at most, so that ticks are
        enqueued within a second of their time (``Config.leader_interval`` if shorter).
    :param grace: a tick enqueued this late still counts as on time, and a leader seen
        this recently hands its schedules over (see :mod:`pgjobs.periodic`).
    """

    interval: float = min(1.0, Config.leader_interval)
    grace: float = LATE_GRACE

    def __post_init__(self) -> None:
        check_seconds(self, "interval", "grace")

    @classmethod
    def from_config(cls, config: Config, takeover: float) -> SchedulerConfig:
        """*takeover*: the longest a change of leader takes (see ``leader.py``); ticks
        that late are taken over rather than missed."""
        return cls(min(1.0, config.leader_interval), max(LATE_GRACE, takeover))


@dataclass(frozen=True)
class ScheduleResult:
    #: The jobs this pass enqueued (ticks some leader had enqueued already are not here).
    enqueued: tuple[int, ...]


class Scheduler(Service[ScheduleResult, SchedulerConfig]):
    name = "periodic"

    def __init__(
        self,
        schema: str,
        config: SchedulerConfig,
        periodic: Sequence[Periodic],
        *,
        handover: Handover | None = None,
    ) -> None:
        super().__init__(schema, config)
        self.schema = schema
        self.periodic = list(periodic)
        self.handover = handover
        self.grace = timedelta(seconds=config.grace)
        #: The next tick to enqueue, per schedule name, once this term has started it.
        self._due: dict[str, datetime] = {}

    async def run_once(self, conn: Any, now: datetime | None = None) -> ScheduleResult:
        """Enqueue every tick that is due at *now* (None: this machine's clock)."""
        if now is None:
            now = datetime.now(UTC)
        enqueued: list[int] = []
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
                        await self._enqueue(conn, periodic, missed, now, "missed tick", enqueued)
                tick = periodic.schedule.next_after(start)
            while tick <= now:
                await self._enqueue(conn, periodic, tick, now, "tick", enqueued)
                tick = periodic.schedule.next_after(tick)
                self._due[periodic.name] = tick
            self._due[periodic.name] = tick
        return ScheduleResult(tuple(enqueued))

    async def _enqueue(
        self,
        conn: Any,
        periodic: Periodic,
        tick: datetime,
        now: datetime,
        what: str,
        enqueued: list[int],
    ) -> None:
        """Enqueue *tick*'s job, adding its id to *enqueued* unless it existed already."""
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
            return
        enqueued.append(result.id)
        log.info(
            "periodic %s: enqueued job %d for the %s at %s%s",
            periodic.name,
            result.id,
            what,
            tick.isoformat(),
            f" ({(now - tick).total_seconds():.0f}s late)" if now - tick > self.grace / 10 else "",
            extra={"job_id": result.id, "periodic": periodic.name, "tick": tick.isoformat()},
        )
