"""Leader election: one worker per schema runs the periodic scheduler and the pruner.

::

                    every leader_interval (±10%): leader_attempt_elect
      ┌──────────┐  row returned: we lead      ┌──────────┐
      │ follower │ ──────────────────────────► │  leader  │──┐ renew: the same upsert
      └──────────┘ ◄────────────────────────── └──────────┘◄─┘ pushes expires_at on
            ▲         no row (another took over  │
            │         after our term expired),   │ graceful stop: leader_resign
            │         or no renewal for a term   ▼ ends the term at once
            └──────────────────────────────── (stopped)

The election is one conditional upsert on ``{schema}.leader`` (see ``sql/leader.sql``):
it inserts the row, or updates it if it is ours or has expired, and returns a row only
if we lead afterwards. A term lasts ``3 * leader_interval`` from the last renewal,
measured by the database's clock. No session state (no advisory lock, no LISTEN), so it
works through PgBouncer in transaction mode.

Failure handling:

* The leader crashes or loses the database: its term runs out and the next follower to
  attempt an election takes over, within about four intervals.
* The leader cannot reach the database for a while: it stops its services once its
  last successful renewal is more than ``ttl - interval`` old, before anyone else can
  have been elected (both measure time from the renewal statement, the follower later).
* Two leaders at once (a leader stalled past its term, e.g. a long GC pause or a frozen
  VM, while another was elected) cannot do harm: every periodic tick's enqueue is
  idempotent (a unique key per tick), and pruning locks rows with SKIP LOCKED.

The elector starts the leader-only services when the worker becomes leader and stops
them when it stops being leader, so no service checks leadership itself (River's
design). Services are built afresh for each term, and told when the previous leader
was last renewed (or resigned): the periodic scheduler takes over from there.

The elector has the services' shape (``services.py``): a config, a ``run_once(now=None)``
that makes one election attempt and returns its :class:`Election`, and test signals;
a test passes a *now* past the term to see another worker take over without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from .. import _queries
from ..config import Config
from ..periodic import Handover, Periodic
from .pruner import Pruner, PrunerConfig
from .retry import DB_ERRORS, check_reply
from .scheduler import Scheduler, SchedulerConfig
from .services import Service, check_seconds, run_periodically
from .signals import TestSignal

__all__ = ["LEADER_NAME", "Election", "Elector", "ElectorConfig", "leader_services"]

log = logging.getLogger("pgjobs.worker")

#: The name of the leadership workers of one schema compete for.
LEADER_NAME = "default"
#: A term lasts this many election intervals from the last renewal.
TERMS_PER_INTERVAL = 3
#: The columns of a ``leader_attempt_elect`` row: our term, and the term it followed.
ELECTION_COLUMNS = 5
_RESIGN_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *DB_ERRORS)


def leader_services(
    config: Config, periodic: Sequence[Periodic], handover: Handover | None
) -> list[Service[Any, Any]]:
    """The services a leader runs: the periodic scheduler (if anything is periodic) and
    the pruner. *handover*: the previous leader's term, if there was one."""
    services: list[Service[Any, Any]] = []
    if periodic:
        # A handover takes up to a term and an interval; take over ticks from at least that.
        takeover = (TERMS_PER_INTERVAL + 2) * config.leader_interval
        scheduler = SchedulerConfig.from_config(config, takeover)
        services.append(Scheduler(config.schema, scheduler, periodic, handover=handover))
    services.append(Pruner(config.schema, PrunerConfig.from_config(config)))
    return services


@dataclass(frozen=True)
class ElectorConfig:
    """:param interval: seconds between election attempts (``Config.leader_interval``);
        a term lasts :data:`TERMS_PER_INTERVAL` intervals from its last renewal.
    :param name: the leadership competed for.
    """

    interval: float = Config.leader_interval
    name: str = LEADER_NAME

    def __post_init__(self) -> None:
        check_seconds(self, "interval")

    @property
    def ttl(self) -> float:
        """Seconds a term lasts from its last renewal."""
        return TERMS_PER_INTERVAL * self.interval

    @classmethod
    def from_config(cls, config: Config) -> ElectorConfig:
        return cls(config.leader_interval)


@dataclass(frozen=True)
class Election:
    """What one election attempt did."""

    #: This worker leads after the attempt.
    leading: bool
    #: The attempt started a term (and the leader's services).
    started: bool = False
    #: The attempt ended this worker's term (and stopped the services).
    stopped: bool = False


class ElectorSignals:
    """What the elector reports (see :mod:`~pgjobs._worker.signals`)."""

    def __init__(self) -> None:
        #: Every attempt run by :meth:`Elector.run`, as an :class:`Election`.
        self.ran: TestSignal[Election] = TestSignal()

    def init(self) -> None:
        self.ran.init()


class Elector:
    """Takes part in the election for this worker, and runs the leader's services."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        schema: str,
        worker_id: str,
        config: ElectorConfig,
        services: Callable[[Handover | None], Sequence[Service[Any, Any]]],
    ) -> None:
        self.pool = pool
        self.queries = _queries.queries(schema)
        self.worker_id = worker_id
        self.config = config
        self.interval = config.interval
        self.ttl = config.ttl
        self.make_services = services
        self.name = config.name
        self.signals = ElectorSignals()
        #: The services of the current term (empty while not leading).
        self.services: list[Service[Any, Any]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._leading = False
        self._lock = asyncio.Lock()
        self._closed = False
        self._renewed = 0.0  # loop time of the last successful election attempt
        self._elected_at: datetime | None = None  # the start of our term, as recorded
        self._crashed: BaseException | None = None
        #: Set while this worker leads (for tests and callers that wait for it).
        self.leading_event = asyncio.Event()
        #: Terms this worker has started.
        self.terms = 0

    @property
    def leading(self) -> bool:
        """Whether this worker is the leader (as of its last election attempt)."""
        return self._leading

    async def run(self) -> None:
        """Attempt an election every interval until :meth:`resign`; raises if a leader
        service crashed (a bug), so that the worker stops."""
        while True:
            async with self._lock:
                if self._closed:
                    return
                if self._crashed is not None:
                    raise self._crashed
                election = await self._elect(None)
            self.signals.ran.signal(election)
            await asyncio.sleep(self.interval * random.uniform(0.9, 1.0))

    async def run_once(self, now: datetime | None = None) -> Election:
        """One election attempt, as if at *now* (None: the server's clock), starting or
        stopping the leader's services as its outcome says."""
        async with self._lock:
            if self._closed:
                return Election(leading=False)
            return await self._elect(now)

    async def _elect(self, now: datetime | None) -> Election:
        loop = asyncio.get_running_loop()
        started = loop.time()
        was_leading = self.leading
        began = False
        try:
            row = await self._attempt(now)
            won = row is not None
            if row is not None:
                self._renewed = started
                elected_at, _, previous, previous_start, previous_renewal = row
                if self.leading and elected_at != self._elected_at:
                    await self._stop_services()  # a new term we did not notice
                self._elected_at = elected_at
                if not self.leading:
                    handover = None
                    if previous is not None:
                        handover = Handover(previous_start, previous_renewal)
                    self._start_services(handover)
                    began = True
        except DB_ERRORS as exc:
            # Keep leading only while our last renewal surely still holds.
            won = self.leading and loop.time() - self._renewed < self.ttl - self.interval
            log.warning(
                "leader election failed (%s)%s",
                exc,
                "; still leading" if won else "",
            )
        if not won and self.leading:
            await self._stop_services()
            log.warning("worker %s is no longer the leader", self.worker_id)
        return Election(self.leading, began, was_leading and not self.leading)

    async def _attempt(self, now: datetime | None) -> tuple[Any, ...] | None:
        """One election statement: our term's row if we lead, else None."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                self.queries["leader_attempt_elect"],
                {"name": self.name, "worker_id": self.worker_id, "ttl": self.ttl, "now": now},
            )
            # Unpacked by the caller: a reply of another shape (see check_reply) must be
            # a failed attempt, not a crash that takes the worker down.
            await check_reply(conn, cursor, ELECTION_COLUMNS, "an election")
            row: tuple[Any, ...] | None = await cursor.fetchone()
            return row

    def _start_services(self, handover: Handover | None) -> None:
        services = list(self.make_services(handover))
        self.services = services
        self._leading = True
        self.terms += 1
        for service in services:
            task = asyncio.create_task(
                run_periodically(service, self.pool), name=f"pgjobs leader {service.name}"
            )
            task.add_done_callback(self._on_service_done)
            self._tasks.append(task)
        self.leading_event.set()
        log.info(
            "worker %s is now the leader: running %s",
            self.worker_id,
            ", ".join(service.name for service in services),
        )

    def _on_service_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        log.critical("pgjobs %s crashed", task.get_name(), exc_info=error)
        self._crashed = error

    async def _stop_services(self) -> None:
        tasks, self._tasks = self._tasks, []
        self.services = []
        self._leading = False
        self.leading_event.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def resign(self, timeout: float = 5.0) -> None:
        """Stop taking part: stop the services and, if leading, end the term at once so
        that another worker takes over at its next attempt."""
        try:
            async with asyncio.timeout(timeout):
                async with self._lock:
                    self._closed = True
                    if not self.leading:
                        return
                    await self._stop_services()
                    async with self.pool.connection() as conn:
                        await conn.execute(
                            self.queries["leader_resign"],
                            {"name": self.name, "worker_id": self.worker_id, "now": None},
                        )
                    log.info("worker %s resigned as leader", self.worker_id)
        except _RESIGN_ERRORS as exc:
            self._closed = True
            await self._stop_services()
            log.warning("could not resign as leader (%s); the term will simply run out", exc)
