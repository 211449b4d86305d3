"""Background passes every worker runs beside its claim loop, all of one shape.

Each service has a name, an interval and a ``run_once(conn)`` pass that does a bounded
amount of work and returns how much; :func:`run_periodically` runs a service on a timer
(with jitter, so many workers don't fire together) and survives database errors. The
passes are safe to run on every worker at once: they lock rows with SKIP LOCKED and
re-check each row's state as they change it.

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
from collections.abc import Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool

from .. import _queries
from .retry import DB_ERRORS

__all__ = ["Heartbeat", "Rescuer", "Service", "Stager", "run_periodically"]

log = logging.getLogger("pgjobs.worker")

#: Rows changed per statement by a maintenance pass, so no pass holds many row locks.
BATCH = 1000


class Service:
    name = "service"
    #: Make a first pass as soon as the service starts, instead of after one interval.
    run_at_start = False

    def __init__(self, schema: str, interval: float) -> None:
        self.queries = _queries.queries(schema)
        self.interval = interval

    async def run_once(self, conn: Any) -> int:
        raise NotImplementedError

    def next_delay(self) -> float:
        """Seconds until the next pass: the interval, ±10% so that many workers started
        together do not fire together."""
        return self.interval * random.uniform(0.9, 1.1)


async def run_periodically(service: Service, pool: AsyncConnectionPool[Any]) -> None:
    """Run *service* every :meth:`Service.next_delay` seconds until cancelled."""
    delay = 0.0 if service.run_at_start else service.next_delay()
    while True:
        await asyncio.sleep(delay)
        try:
            async with pool.connection() as conn:
                await service.run_once(conn)
        except DB_ERRORS as exc:
            log.warning("%s pass failed: %s", service.name, exc)
        delay = service.next_delay()


class Heartbeat(Service):
    name = "heartbeat"

    def __init__(
        self,
        schema: str,
        interval: float,
        worker_row: dict[str, Any],
        long_jobs: Callable[[], tuple[list[int], list[int]]],
        lease: float,
        grace: float,
    ) -> None:
        super().__init__(schema, interval)
        self.worker_row = worker_row
        self.long_jobs = long_jobs
        self.lease = lease
        self.grace = grace

    async def run_once(self, conn: Any) -> int:
        await conn.execute(self.queries["worker_heartbeat"], self.worker_row)
        ids, attempts = self.long_jobs()
        if not ids:
            return 0
        cursor = await conn.execute(
            self.queries["job_extend_lease"],
            {"ids": ids, "attempts": attempts, "lease": self.lease, "grace": self.grace},
        )
        return len(await cursor.fetchall())


class Stager(Service):
    name = "stager"

    def __init__(self, schema: str, interval: float, on_staged: Callable[[str], None]) -> None:
        super().__init__(schema, interval)
        self.on_staged = on_staged

    async def run_once(self, conn: Any) -> int:
        total = 0
        while True:
            cursor = await conn.execute(self.queries["job_stage_due"], {"limit": BATCH})
            queues = [row[0] for row in await cursor.fetchall()]
            for queue in queues:
                self.on_staged(queue)
            if not queues:
                return total
            total += len(queues)


#: Least time between two rescue passes, however soon the next lease runs out: a lease
#: that expired but cannot be rescued yet (its row is locked) must not make every worker
#: spin on it.
RESCUE_MIN_GAP = 0.5
#: How long after a lease runs out the rescuer looks for it. Rescue takes leases that
#: expired strictly before the database's now(); a pass at the very instant would miss
#: the lease it woke for. Each worker adds its own share of jitter, so that a fleet does
#: not query at the same instant.
RESCUE_AFTER_EXPIRY = 0.05


class Rescuer(Service):
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

    def __init__(self, schema: str, interval: float, stale_after: float) -> None:
        super().__init__(schema, interval)
        self.stale_after = stale_after
        #: Seconds from the last pass to the next lease expiry (None: no running job).
        self.next_expiry: float | None = None

    def next_delay(self) -> float:
        delay = super().next_delay()
        if self.next_expiry is not None:
            soon = self.next_expiry + RESCUE_AFTER_EXPIRY * random.uniform(1.0, 2.0)
            delay = min(delay, max(RESCUE_MIN_GAP, soon))
        return delay

    async def run_once(self, conn: Any) -> int:
        rescued = 0
        while True:
            cursor = await conn.execute(self.queries["job_rescue_expired"], {"limit": BATCH})
            rows = await cursor.fetchall()
            if rows:
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
            rescued += len(rows)
            if len(rows) < BATCH:
                break
        await conn.execute(self.queries["worker_prune_stale"], {"stale_after": self.stale_after})
        cursor = await conn.execute(self.queries["job_next_lease_expiry"])
        row = await cursor.fetchone()
        self.next_expiry = None if row is None else row[0]
        return rescued
