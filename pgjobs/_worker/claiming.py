"""Claiming: the worker's loop that fills free slots with jobs, by queue weight.

Slots: ``concurrency`` bounds the jobs whose code is running. A slot is taken at claim
and given back when the handler returns; the claim asks only for as many jobs as there
are free slots, so nothing waits in memory. Each claim is one ``job_claim`` statement
per round of per-queue quotas (``_weights.py``); when every queue comes up short the
loop waits for a NOTIFY (``listener.py``) or a poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import psycopg

from .attempt import CLAIM_COLUMNS, claim_params
from .retry import DB_ERRORS, check_reply, reconnect_delay
from .running import Runner, Running

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from .._weights import QueuePlanner
    from .listener import Listener

__all__ = ["Claimer"]

log = logging.getLogger("pgjobs.worker")

#: Longest wait for more free slots before a claim (see Worker._gather_slots).
CLAIM_COALESCE = 0.002
#: First poll after running out of work; each further poll waits twice as long, up to
#: Config.poll_interval, until work turns up.
IDLE_POLL_FIRST = 0.002
#: Least time between two settings of the waiting flag. Each setting invites NOTIFYs, whose
#: commit-time lock serialises the enqueuers that send them; a fast worker that runs dry
#: between every two jobs would otherwise ask for one NOTIFY per job. In between, the
#: quick idle polls stand in for wakeups. At 10 ms, a worker asks for at most 100 NOTIFYs
#: a second, and a job that arrives 10 ms or more after the previous one is always
#: notified (25 ms left every other job of a 12 ms cadence to the 2-4-8 ms polls: wakeup
#: p50 2.6 ms against 0.7 ms now, with no measurable change to 8 concurrent enqueuers).
REARM_INTERVAL = 0.010
#: Longest time a queue's claims start where the previous one ended (see job_claim)
#: before one scans from the front again, to pick up jobs that landed behind that point.
RESCAN_INTERVAL = 0.1


class Claimer(Runner):
    """The worker's claiming half (a mixin of :class:`~.worker.Worker`, which sets these
    attributes); it starts what it claims through :class:`~.running.Runner`."""

    _queries: dict[str, bytes]
    _planner: QueuePlanner
    _resume: dict[str, tuple[int, int]]
    _rescan_at: dict[str, float]
    _claim_min: int
    _stopping: bool
    _waiting: bool
    _pool: AsyncConnectionPool[Any] | None
    _listener: Listener | None
    _wake: asyncio.Event

    async def _claim_loop(self) -> None:
        assert self._pool is not None
        assert self._loop is not None
        failures = 0
        idle_polls = 0  # polls since the last claim that found work
        armed_at = -REARM_INTERVAL  # when we last set our waiting flag
        while not self._stopping:
            try:
                async with self._pool.connection() as conn:
                    if failures:
                        await self._release_orphans(conn)
                    while not self._stopping:
                        if self._free < self._claim_min:
                            await self._gather_slots()
                            if self._free <= 0:
                                continue
                        self._wake.clear()
                        asked = min(self._free, self.config.claim_batch)
                        claimed = await self._claim(conn, asked)
                        failures = 0
                        if claimed:
                            idle_polls = 0
                        if claimed == asked or self._stopping:
                            continue
                        # Every queue came up short: nothing more is ready now. Claiming
                        # again at once would find nothing (or one job) at the price of a
                        # statement; under a stream of single enqueues that loop cost a
                        # claim, and a commit, for every job or two. Wait for a wakeup or
                        # the first quick poll instead, and claim what arrived meanwhile.
                        listener = self._listener
                        now = self._loop.time()
                        if (
                            listener is not None
                            and listener.listening
                            and not self._waiting
                            and now - armed_at >= REARM_INTERVAL
                        ):
                            # Ask enqueuers for a NOTIFY, then look once more: a job that
                            # committed before the flag did would otherwise wait for a poll.
                            await conn.execute(
                                self._queries["worker_set_waiting"],
                                {"waiting": True, "id": self.id},
                            )
                            self._waiting = True
                            armed_at = now
                            continue
                        # Idle: wait for a NOTIFY, polling 2, 4, 8 ms ... up to poll_interval
                        # meanwhile. The first quick polls catch a job whose enqueuer read the
                        # flag just before we set it, but committed (WAL flush and all) just
                        # after we looked again; and they stand in for wakeups while the flag
                        # may not be re-armed yet (REARM_INTERVAL).
                        delay = min(self.config.poll_interval, IDLE_POLL_FIRST * 2**idle_polls)
                        idle_polls += 1
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), delay)
                        if self.observer is not None:
                            self.observer.waited(self._wake.is_set())
            except DB_ERRORS as exc:
                self._waiting = False  # unknown after a failure: set it again when idle
                failures += 1
                delay = reconnect_delay(failures)
                log.warning("claiming failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def _release_orphans(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Give back jobs claimed for us by a claim whose reply never arrived."""
        assert self._completer is not None
        known = [*self._running, *self._completer.pending_ids()]
        cursor = await conn.execute(
            self._queries["job_release_orphans"], {"worker_id": self.id, "known": known}
        )
        released = [row[0] for row in await cursor.fetchall()]
        if released:
            log.warning(
                "gave back %d jobs whose claim reply was lost with the connection: %s",
                len(released),
                ", ".join(map(str, released[:10])),
                extra={"job_ids": released},
            )

    async def _gather_slots(self) -> None:
        """Wait for a free slot, then briefly for more, so that one claim fills several.

        Slots free up one job at a time; claiming at each would cost a round trip per
        job. Waiting up to ``CLAIM_COALESCE`` seconds for ``_claim_min`` free slots costs
        long jobs nothing noticeable and lets short ones be claimed in batches.
        """
        assert self._loop is not None
        while self._free <= 0 and not self._stopping:
            self._slot_freed.clear()
            await self._slot_freed.wait()
        deadline = self._loop.time() + CLAIM_COALESCE
        while self._free < self._claim_min and not self._stopping:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return
            self._slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_freed.wait(), remaining)

    async def _claim(self, conn: psycopg.AsyncConnection[Any], slots: int) -> int:
        """Claim up to *slots* jobs, lending unused quota across queues; start them."""
        quotas = self._planner.first_round(slots)
        dry: set[str] = set()
        total = 0
        query = self._queries["job_claim"]
        while quotas:
            after_priorities, after_ids = self._scan_points(quotas)
            params = claim_params(
                self.config,
                self.id,
                list(quotas),
                list(quotas.values()),
                unwait=self._waiting,
                after_priorities=after_priorities,
                after_ids=after_ids,
            )
            cursor = await conn.execute(query, params)
            await check_reply(conn, cursor, CLAIM_COLUMNS, "a claim")
            rows = await cursor.fetchall()
            if self.observer is not None:
                self.observer.claimed(len(rows))
            got: dict[str, int] = {}
            ends: dict[str, tuple[int, int]] = {}
            if rows:
                self._waiting = False  # the claim statement cleared the flag
                by_timeout: dict[float, list[Running]] = {}
                for row in rows:
                    queue, end = row[1], (row[4], row[0])  # (priority, id)
                    got[queue] = got.get(queue, 0) + 1
                    if queue not in ends or end > ends[queue]:
                        ends[queue] = end
                    run = self._start(row)
                    if run is not None:
                        by_timeout.setdefault(run.timeout, []).append(run)
                # Armed before any handler can report back: their callbacks run on this
                # loop, after this synchronous stretch.
                for timeout, runs in by_timeout.items():
                    self._arm(runs, timeout)
                total += len(rows)
                slots -= len(rows)
            for queue, quota in quotas.items():
                if got.get(queue, 0) < quota:
                    # Short: the queue ran dry, or jobs wait behind the point we started
                    # from. Either way its next claim scans from the front.
                    self._resume.pop(queue, None)
                else:
                    self._resume[queue] = ends[queue]
            quotas = self._planner.next_round(slots, quotas, got, dry)
        return total

    def _scan_points(self, quotas: dict[str, int]) -> tuple[list[int | None], list[int | None]]:
        """Where each queue's claim starts: after the (priority, id) its last full claim
        ended at, or from the front (None) if it has none or its rescan is due.

        Claimed jobs leave dead entries at the front of the claim index until vacuum, and
        a scan from the front walks them all (see job_claim). Starting where the last claim
        ended skips them; scanning from the front at least every ``RESCAN_INTERVAL``, and
        after any short claim, finds jobs that landed behind that point: a higher
        priority, a retry of an older job, a job whose enqueuer committed late.
        """
        assert self._loop is not None
        now = self._loop.time()
        priorities: list[int | None] = []
        ids: list[int | None] = []
        for queue in quotas:
            point = self._resume.get(queue)
            if point is None or now >= self._rescan_at.get(queue, 0.0):
                self._rescan_at[queue] = now + RESCAN_INTERVAL
                point = None
            priorities.append(None if point is None else point[0])
            ids.append(None if point is None else point[1])
        return priorities, ids
