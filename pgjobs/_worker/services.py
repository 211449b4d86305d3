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
  and forgets workers that stopped heartbeating.

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

    def __init__(self, schema: str, interval: float) -> None:
        self.queries = _queries.queries(schema)
        self.interval = interval

    async def run_once(self, conn: Any) -> int:
        raise NotImplementedError


async def run_periodically(service: Service, pool: AsyncConnectionPool[Any]) -> None:
    """Run *service* every ``service.interval`` seconds (±10%) until cancelled."""
    while True:
        await asyncio.sleep(service.interval * random.uniform(0.9, 1.1))
        try:
            async with pool.connection() as conn:
                await service.run_once(conn)
        except DB_ERRORS as exc:
            log.warning("%s pass failed: %s", service.name, exc)


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


class Rescuer(Service):
    name = "rescuer"

    def __init__(self, schema: str, interval: float, stale_after: float) -> None:
        super().__init__(schema, interval)
        self.stale_after = stale_after

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
        return rescued
