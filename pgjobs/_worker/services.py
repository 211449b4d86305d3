"""Background passes every worker runs beside its claim loop, all of one shape.

Each service has:

* a frozen config (:class:`HeartbeatConfig`, ...) whose defaults are
  :class:`pgjobs.Config`'s and which checks itself when built; ``from_config`` takes it
  from the worker's Config, so the services add no settings of their own;
* ``run_once(conn, now=None)``: one pass that does a bounded amount of work and returns
  what it did (a result object). *now* is the time the pass takes as the present:
  ``None``, what the worker passes, is the database server's clock; a test passes a
  time to rescue a lease or stage a job without waiting for it (the ``%(now)s`` of the
  SQL statements);
* ``signals``: :class:`~pgjobs._worker.signals.TestSignal` of each pass's result, and of
  its failures, for tests to wait on.

:func:`run_periodically` runs a service on a timer (with jitter, so many workers don't
fire together) and survives database errors. The passes are safe to run on every worker
at once: they lock rows with SKIP LOCKED and re-check each row's state as they change it.

* :class:`Heartbeat` keeps this worker's row fresh and extends the lease of its long jobs.
* :class:`Stager` makes scheduled jobs (delayed, or retrying after backoff) available
  when their time comes, and wakes the workers of their queues.
* :class:`Rescuer` returns jobs whose lease expired (their worker died) to their queue,
  and forgets workers that stopped heartbeating. It runs when its worker starts and then
  at the next lease expiry (or every interval, whichever is sooner), so how fast a dead
  worker's jobs come back does not depend on any worker living long.

The leader alone also runs the periodic scheduler and the pruner (``scheduler.py``,
``pruner.py``), of the same shape, started and stopped by the elector (``leader.py``).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Generic, NamedTuple, Protocol, TypeVar

from psycopg_pool import AsyncConnectionPool

from .. import _queries
from ..config import Config, _positive_number
from ..errors import ConfigurationError
from .retry import DB_ERRORS
from .signals import TestSignal

__all__ = [
    "Heartbeat",
    "HeartbeatConfig",
    "HeartbeatResult",
    "RescueResult",
    "Rescuer",
    "RescuerConfig",
    "Service",
    "ServiceConfig",
    "ServiceSignals",
    "StageResult",
    "Stager",
    "StagerConfig",
    "WorkerServices",
    "check_seconds",
    "run_periodically",
]

log = logging.getLogger("pgjobs.worker")

R = TypeVar("R")


class ServiceConfig(Protocol):
    """What every service's config has: seconds between two passes."""

    @property
    def interval(self) -> float: ...


C = TypeVar("C", bound=ServiceConfig)

#: Rows changed per statement by a maintenance pass, so no pass holds many row locks.
BATCH = 1000


def check_seconds(config: Any, *names: str, allow_zero: bool = False) -> None:
    """Raise ConfigurationError unless each field *names* of *config* is a number of
    seconds (more than 0, or 0 too with *allow_zero*)."""
    for name in names:
        _positive_number(
            getattr(config, name), f"{type(config).__name__}.{name}", allow_zero=allow_zero
        )


class ServiceSignals(Generic[R]):
    """What a service's passes report (see :mod:`~pgjobs._worker.signals`)."""

    def __init__(self) -> None:
        #: The result of each pass :func:`run_periodically` made.
        self.ran: TestSignal[R] = TestSignal()
        #: The error of each pass that failed.
        self.failed: TestSignal[BaseException] = TestSignal()

    def init(self) -> None:
        self.ran.init()
        self.failed.init()


class Service(Generic[R, C]):
    """The shape every service has: a name, a config and its interval, a pass, its
    signals."""

    name: ClassVar[str] = "service"
    #: Make a first pass as soon as the service starts, instead of after one interval.
    run_at_start: ClassVar[bool] = False

    def __init__(self, schema: str, config: C) -> None:
        self.queries = _queries.queries(schema)
        self.config = config
        self.signals: ServiceSignals[R] = ServiceSignals()

    @property
    def interval(self) -> float:
        """Seconds between two passes, as the config says."""
        return self.config.interval

    async def run_once(self, conn: Any, now: datetime | None = None) -> R:
        """One pass on *conn* (autocommit), as if at *now* (None: the server's clock)."""
        raise NotImplementedError

    async def run_pass(self, pool: AsyncConnectionPool[Any]) -> R:
        """The pass :func:`run_periodically` makes: :meth:`run_once` on a connection of
        *pool*, held for the whole pass. The worker's completer takes turns with the
        services on that connection, so a pass that can be long gives it back between
        its statements instead (see :func:`turn`)."""
        async with pool.connection() as conn:
            return await self.run_once(conn)

    def next_delay(self) -> float:
        """Seconds until the next pass: the interval, ±10% so that many workers started
        together do not fire together."""
        return self.interval * random.uniform(0.9, 1.1)


@asynccontextmanager
async def turn(db: Any) -> AsyncIterator[Any]:
    """A connection for one statement or transaction: *db* itself, or one taken from
    *db* for the block when it is a pool."""
    if isinstance(db, AsyncConnectionPool):
        async with db.connection() as conn:
            yield conn
    else:
        yield db


async def run_periodically(service: Service[Any, Any], pool: AsyncConnectionPool[Any]) -> None:
    """Run *service* every :meth:`Service.next_delay` seconds until cancelled."""
    delay = 0.0 if service.run_at_start else service.next_delay()
    while True:
        await asyncio.sleep(delay)
        try:
            result = await service.run_pass(pool)
        except DB_ERRORS as exc:
            log.warning("%s pass failed: %s", service.name, exc)
            service.signals.failed.signal(exc)
        else:
            service.signals.ran.signal(result)
        delay = service.next_delay()


# --- heartbeat ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeartbeatConfig:
    """:param interval: seconds between beats (``Config.heartbeat_interval``), at most
        half the lease, or leases would lapse between beats.
    :param lease: seconds from a beat to the new end of a long job's lease
        (``Config.lease``), which is never later than the job's deadline plus *grace*
        (``Config.lease_grace``).
    """

    interval: float = Config.heartbeat_interval
    lease: float = Config.lease
    grace: float = Config.lease_grace

    def __post_init__(self) -> None:
        check_seconds(self, "interval", "lease")
        check_seconds(self, "grace", allow_zero=True)
        if self.interval * 2 > self.lease:
            raise ConfigurationError(
                f"the heartbeat interval ({self.interval}s) must be at most half the lease "
                f"({self.lease}s)"
            )

    @classmethod
    def from_config(cls, config: Config) -> HeartbeatConfig:
        return cls(config.heartbeat_interval, config.lease, config.lease_grace)


@dataclass(frozen=True)
class HeartbeatResult:
    #: Jobs whose lease the beat pushed forward.
    extended: tuple[int, ...]


class Heartbeat(Service[HeartbeatResult, HeartbeatConfig]):
    name = "heartbeat"

    def __init__(
        self,
        schema: str,
        config: HeartbeatConfig,
        worker_row: dict[str, Any],
        long_jobs: Callable[[], tuple[list[int], list[int]]],
    ) -> None:
        super().__init__(schema, config)
        self.worker_row = worker_row
        self.long_jobs = long_jobs

    async def run_once(self, conn: Any, now: datetime | None = None) -> HeartbeatResult:
        await conn.execute(self.queries["worker_heartbeat"], {**self.worker_row, "now": now})
        ids, attempts = self.long_jobs()
        if not ids:
            return HeartbeatResult(())
        cursor = await conn.execute(
            self.queries["job_extend_lease"],
            {
                "ids": ids,
                "attempts": attempts,
                "lease": self.config.lease,
                "grace": self.config.grace,
                "now": now,
            },
        )
        return HeartbeatResult(tuple(row[0] for row in await cursor.fetchall()))


# --- stager ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StagerConfig:
    """:param interval: seconds between passes (``Config.poll_interval``, which bounds
    how late a scheduled job becomes available)."""

    interval: float = Config.poll_interval

    def __post_init__(self) -> None:
        check_seconds(self, "interval")

    @classmethod
    def from_config(cls, config: Config) -> StagerConfig:
        return cls(config.poll_interval)


@dataclass(frozen=True)
class StageResult:
    #: Jobs made available, per queue.
    staged: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.staged.values())


class Stager(Service[StageResult, StagerConfig]):
    name = "stager"

    def __init__(self, schema: str, config: StagerConfig, on_staged: Callable[[str], None]) -> None:
        super().__init__(schema, config)
        self.on_staged = on_staged

    async def run_once(self, conn: Any, now: datetime | None = None) -> StageResult:
        staged: dict[str, int] = {}
        while True:
            cursor = await conn.execute(self.queries["job_stage_due"], {"limit": BATCH, "now": now})
            batch = 0
            for queue, count, _ in await cursor.fetchall():
                self.on_staged(queue)
                staged[queue] = staged.get(queue, 0) + count
                batch += count
            if batch < BATCH:
                return StageResult(staged)


# --- rescuer --------------------------------------------------------------------------------

#: Least time between two rescue passes, however soon the next lease runs out: a lease
#: that expired but cannot be rescued yet (its row is locked) must not make every worker
#: spin on it.
RESCUE_MIN_GAP = 0.5
#: How long after a lease runs out the rescuer looks for it. Rescue takes leases that
#: expired strictly before the database's now(); a pass at the very instant would miss
#: the lease it woke for. Each worker adds its own share of jitter, so that a fleet does
#: not query at the same instant.
RESCUE_AFTER_EXPIRY = 0.05
#: A worker is forgotten after this many heartbeat intervals without one.
STALE_HEARTBEATS = 4


@dataclass(frozen=True)
class RescuerConfig:
    """:param interval: longest time between passes (``Config.rescue_interval``).
    :param stale_after: seconds without a heartbeat after which a worker's row is
        deleted (four ``Config.heartbeat_interval``).
    """

    interval: float = Config.rescue_interval
    stale_after: float = STALE_HEARTBEATS * Config.heartbeat_interval

    def __post_init__(self) -> None:
        check_seconds(self, "interval", "stale_after")

    @classmethod
    def from_config(cls, config: Config) -> RescuerConfig:
        return cls(config.rescue_interval, STALE_HEARTBEATS * config.heartbeat_interval)


@dataclass(frozen=True)
class RescueResult:
    #: Jobs whose lease had run out, returned to their queue...
    available: tuple[int, ...]
    #: ...or failed, having no retry left.
    failed: tuple[int, ...]
    #: Workers forgotten for want of a heartbeat.
    forgotten: tuple[str, ...]
    #: Seconds from this pass to the next lease expiry (None: no job running).
    next_expiry: float | None

    @property
    def total(self) -> int:
        return len(self.available) + len(self.failed)


class Rescuer(Service[RescueResult, RescuerConfig]):
    """Returns the jobs of dead workers to their queues.

    Every worker runs a pass at start, so that workers restarting faster than the
    interval (a crash loop, a rolling deploy) still rescue; and each pass learns when
    the next lease runs out and wakes then if that is sooner than the interval, so a
    job comes back within a fraction of a second of its lease, not up to an interval
    later. A healthy queue costs little: the next lease to run out belongs to the oldest
    running job, which normally finishes first, so a pass that finds nothing is followed
    by a wait of about one lease.
    """

    name = "rescuer"
    run_at_start = True

    def __init__(self, schema: str, config: RescuerConfig) -> None:
        super().__init__(schema, config)
        #: Seconds from the last pass to the next lease expiry (None: no running job).
        self.next_expiry: float | None = None

    def next_delay(self) -> float:
        delay = super().next_delay()
        if self.next_expiry is not None:
            soon = self.next_expiry + RESCUE_AFTER_EXPIRY * random.uniform(1.0, 2.0)
            delay = min(delay, max(RESCUE_MIN_GAP, soon))
        return delay

    async def run_once(self, conn: Any, now: datetime | None = None) -> RescueResult:
        available: list[int] = []
        failed: list[int] = []
        while True:
            cursor = await conn.execute(
                self.queries["job_rescue_expired"], {"limit": BATCH, "now": now}
            )
            rows = await cursor.fetchall()
            if rows:
                self._log(rows)
            for job_id, state, _ in rows:
                (failed if state == "failed" else available).append(job_id)
            if len(rows) < BATCH:
                break
        cursor = await conn.execute(
            self.queries["worker_prune_stale"],
            {"stale_after": self.config.stale_after, "now": now},
        )
        forgotten = tuple(str(row[0]) for row in await cursor.fetchall())
        cursor = await conn.execute(self.queries["job_next_lease_expiry"], {"now": now})
        row = await cursor.fetchone()
        self.next_expiry = None if row is None else row[0]
        return RescueResult(tuple(available), tuple(failed), forgotten, self.next_expiry)

    def _log(self, rows: list[tuple[Any, ...]]) -> None:
        ids = [row[0] for row in rows]
        failed = sum(1 for row in rows if row[1] == "failed")
        log.warning(
            "rescued %d jobs whose lease expired (their worker is gone): %d to run "
            "again, %d out of retries; ids %s%s",
            len(ids),
            len(ids) - failed,
            failed,
            ", ".join(map(str, ids[:10])),
            " ..." if len(ids) > 10 else "",
            extra={"job_ids": ids},
        )


# --- what every worker runs -----------------------------------------------------------------


class WorkerServices(NamedTuple):
    """The services every worker runs (the leader's are in ``leader.py``)."""

    heartbeat: Heartbeat
    stager: Stager
    rescuer: Rescuer

    @classmethod
    def build(
        cls,
        config: Config,
        worker_row: dict[str, Any],
        long_jobs: Callable[[], tuple[list[int], list[int]]],
        on_staged: Callable[[str], None],
    ) -> WorkerServices:
        schema = config.schema
        return cls(
            Heartbeat(schema, HeartbeatConfig.from_config(config), worker_row, long_jobs),
            Stager(schema, StagerConfig.from_config(config), on_staged),
            Rescuer(schema, RescuerConfig.from_config(config)),
        )
