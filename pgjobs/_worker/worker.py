"""The worker: claims jobs by queue weight, runs them, records what became of them.

::

        LISTEN {schema}_wakeup / {schema}_control          (listener.py)
                      │ wake                     │ cancel job N
                      ▼                          ▼
      ┌───────────────────────────────┐    ┌─────────────────┐
      │ claim loop                    │    │ running jobs    │
      │  waits for a free slot and    │───►│  async handler: │  deadline timer,
      │  for work (NOTIFY or poll);   │    │   asyncio task  │  operator cancel,
      │  job_claim with per-queue     │    │  sync handler:  │  shutdown
      │  quotas (_weights.py)         │    │   daemon thread │
      └───────────────────────────────┘    └────────┬────────┘
                                                    │ Outcome
                                           ┌────────▼────────┐
                                           │ completer       │ job_finish_many,
                                           │  (batches)      │ one statement per batch
                                           └─────────────────┘
      heartbeat · stager · rescuer: periodic passes (services.py)

Slots: ``concurrency`` bounds the jobs whose code is running. A slot is taken at claim
and given back when the handler returns; the claim asks only for as many jobs as there
are free slots, so nothing waits in memory.

Deadlines: when a job's timeout passes, its attempt is recorded as failed (retried with
backoff or failed) at once. An async handler is cancelled. A sync handler's context is
cancelled, but Python cannot stop a thread: the thread keeps its slot until the handler
returns, so ``concurrency`` always counts code that is really running, and whatever the
handler does after its deadline is discarded.

Delivery is at least once: a job whose worker dies runs again after its lease expires,
and every outcome write is guarded by (state running, attempt) so a late write from a
presumed-dead worker cannot overwrite a newer attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from .. import _queries, _tracing
from .._dsn import redact, resolve_dsn
from .._ops import run_async
from .._pooler import pooled_async
from .._version import __version__
from ..config import Config
from ..context import Context
from ..errors import HandlerNotFoundError
from ..middleware import ErrorHook, Middleware
from ..registry import Registration, Registry
from ..task import Task
from .attempt import claim_params, conclude, raised_after_commit, start, tells_hooks
from .completer import Completer
from .handler import call_error_hooks, call_handler, call_handler_async, timeout_error
from .joblog import JobLog
from .leader import Elector, leader_services
from .listener import Listener
from .observer import Observer
from .outcome import Outcome
from .probe import wait_for_database
from .retry import DB_ERRORS, reconnect_delay
from .services import Heartbeat, Rescuer, Stager, run_periodically
from .threads import DaemonThreadPool
from .transactions import JobTransactions

__all__ = ["Worker"]

log = logging.getLogger("pgjobs.worker")

#: Names the host in the workers table instead of the machine's host name, where that
#: one says nothing (every container of a pod, say, or processes grouped by hand).
HOST_VARIABLE = "PGJOBS_WORKER_HOST"
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


async def _configure(conn: psycopg.AsyncConnection[Any], synchronous_commit: bool) -> None:
    """Set up a connection of the worker's pool (see _pooler.py for poolers).

    The worker's own writes need no WAL flush to be correct (see Config), but through a
    pooler the setting would stay on the server connection and reach other clients'
    transactions, such as an application's enqueue, which must be durable.
    """
    if not await pooled_async(conn) and not synchronous_commit:
        await conn.execute(b"set synchronous_commit = off")


class Running:
    """Bookkeeping for one claimed job while its code runs."""

    __slots__ = (
        "aio_task",
        "attempt",
        "ctx",
        "deadline",
        "id",
        "max_retry",
        "registration",
        "settled",
        "started",
        "task",
        "timeout",
    )

    def __init__(
        self,
        job_id: int,
        attempt: int,
        max_retry: int,
        timeout: float,
        ctx: Context,
        task: Task,
        registration: Registration | None,
        started: float,
    ) -> None:
        self.id = job_id
        self.attempt = attempt
        self.max_retry = max_retry
        self.timeout = timeout
        self.ctx = ctx
        self.task = task
        self.registration = registration
        self.started = started
        #: True once the attempt's fate is decided (outcome queued, or cancelled/released).
        self.settled = False
        self.deadline: Deadline | None = None
        self.aio_task: asyncio.Task[None] | None = None


class Deadline:
    """One timer for the jobs a claim started with the same timeout.

    A claim of 500 jobs arms one timer, not 500: a TimerHandle per job, armed and then
    cancelled, was 5 % of a draining worker's time. The timer is cancelled once every
    one of its jobs has settled, so finished batches do not pile up in the event loop's
    heap for the length of their timeout.
    """

    __slots__ = ("handle", "pending", "runs")

    def __init__(self, runs: list[Running]) -> None:
        self.runs = runs
        self.pending = len(runs)
        self.handle: asyncio.TimerHandle | None = None

    def release(self) -> None:
        """One of its jobs settled."""
        self.pending -= 1
        if self.pending == 0:
            if self.handle is not None:
                self.handle.cancel()
            self.runs = []


class Worker:
    """Runs jobs from the queues in *config* with the handlers in *registry*."""

    def __init__(
        self,
        config: Config,
        registry: Registry,
        *,
        middleware: Sequence[Middleware] = (),
        error_hooks: Sequence[ErrorHook] = (),
        observer: Observer | None = None,
    ) -> None:
        from .._weights import QueuePlanner

        self.config = config
        self.registry = registry
        # With tracing on (pgjobs.tracing), every handler runs in its span, outermost.
        hook = _tracing.hook
        self._middleware = tuple(middleware) if hook is None else (hook.middleware, *middleware)
        self._error_hooks = tuple(error_hooks)
        self.id = str(uuid.uuid4())
        self._queries = _queries.queries(config.schema)
        self._planner = QueuePlanner(config.queues, strict=config.strict_priority)
        self._queue_names = list(config.queues)
        # Per queue: the (priority, id) where the last full claim from it ended, and when
        # its claims must next scan from the front (see _scan_points).
        self._resume: dict[str, tuple[int, int]] = {}
        self._rescan_at: dict[str, float] = {}
        self._running: dict[int, Running] = {}
        self._free = config.concurrency
        # Claim once at least this many slots are free (or CLAIM_COALESCE has passed).
        self._claim_min = max(1, min(config.claim_batch, config.concurrency // 4))
        self._threads = DaemonThreadPool(config.concurrency)
        self._stopping = False
        self._waiting = False  # our row's `waiting` flag, as last written
        self._tasks: list[asyncio.Task[Any]] = []
        self._pool: AsyncConnectionPool[Any] | None = None
        self._listener: Listener | None = None
        # Control messages naming a running job: job id -> attempt, until checked.
        self._cancel_hints: dict[int, int] = {}
        self._cancel_check: asyncio.Task[None] | None = None
        self._completer: Completer | None = None
        self._transactions: JobTransactions | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.processed = 0
        self.failed = 0
        self._joblog = JobLog()
        self.observer = observer  # metrics; None costs one comparison (see observer.py)
        if observer is not None:
            observer.attach(self)

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Connect, check the schema, register, and start claiming. Returns once running."""
        config = self.config
        dsn = resolve_dsn(config.dsn)
        self._loop = asyncio.get_running_loop()
        self._slot_freed = asyncio.Event()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set when no job is running
        self._idle.set()
        self._abort = asyncio.Event()
        self._failed = asyncio.Event()
        self._pool = AsyncConnectionPool(
            dsn,
            min_size=3,
            max_size=4,
            kwargs={"autocommit": True},
            configure=functools.partial(_configure, synchronous_commit=config.synchronous_commit),
            open=False,
            name="pgjobs-worker",
        )
        # One direct connection first: a database that is not up yet is waited for (with
        # a log line), and a misconfigured one fails with libpq's own message, not a pool
        # timeout 30 s later.
        await wait_for_database(dsn, config.wait_for_db)
        await self._pool.open(wait=True, timeout=30.0)
        self._row = {
            "id": self.id,
            "host": os.environ.get(HOST_VARIABLE) or socket.gethostname(),
            "pid": os.getpid(),
            "queues": self._queue_names,
            "concurrency": config.concurrency,
            "version": __version__,
            "kinds": list(self.registry.kinds()),
            "weights": list(config.queues.values()),
        }
        try:
            async with self._pool.connection() as conn:
                await self._check_schema(conn)
                await conn.execute(self._queries["worker_register"], self._row)
        except BaseException:
            await self._pool.close()
            raise
        self._completer = Completer(
            self._pool, config.schema, self.id, delete_completed=config._deletes_completed
        )
        self._transactions = JobTransactions(
            dsn,
            config.schema,
            self.id,
            delete_completed=config._deletes_completed,
            size=min(config.handler_pool_size, config.concurrency),
        )
        self._spawn(self._claim_loop(), "claim loop")
        self._spawn(self._completer.run(), "completer")
        if config.listen:
            self._listener = Listener(
                dsn,
                self._pool,
                config.schema,
                self._on_wakeup,
                self._on_control,
                poll_interval=config.poll_interval,
            )
            self._spawn(self._listener.run(), "listener")
        services = (
            Heartbeat(
                config.schema,
                config.heartbeat_interval,
                self._row,
                self._long_jobs,
                config.lease,
                config.lease_grace,
            ),
            Stager(config.schema, config.poll_interval, self._on_wakeup),
            Rescuer(
                config.schema, config.rescue_interval, stale_after=4 * config.heartbeat_interval
            ),
        )
        for service in services:
            self._spawn(run_periodically(service, self._pool), service.name)
        # --- leadership (leader.py): one worker runs periodic jobs and pruning -------------
        self._elector = Elector(
            self._pool,
            config.schema,
            self.id,
            config.leader_interval,
            lambda handover: leader_services(config, self.registry.periodic(), handover),
        )
        self._spawn(self._elector.run(), "leader elector")
        # --- end of leadership ------------------------------------------------------------
        if self._listener is not None:
            # Return once wakeups work, so callers can rely on them; on failure the
            # worker still polls, and the listener keeps trying in the background.
            try:
                await asyncio.wait_for(self._listener.ready.wait(), timeout=5.0)
            except TimeoutError:
                log.warning(
                    "LISTEN is not in place yet; polling every %ss meanwhile", config.poll_interval
                )
        weights = ",".join(f"{q}={w}" for q, w in config.queues.items())
        log.info(
            "pgjobs %s worker %s started: queues %s (%s), concurrency %d, %s, database %s, "
            "handlers: %s",
            __version__,
            self.id,
            weights,
            "strict" if config.strict_priority else "weighted",
            config.concurrency,
            "LISTEN/NOTIFY" if config.listen else f"polling every {config.poll_interval}s",
            redact(dsn),
            ", ".join(self.registry.kinds()) or "none",
        )

    async def _check_schema(self, conn: psycopg.AsyncConnection[Any]) -> None:
        from ..migrate import require_current_op

        await run_async(conn, require_current_op(self.config.schema))

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=f"pgjobs {name}")
        task.add_done_callback(self._on_task_done)
        self._tasks.append(task)

    def _on_task_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        log.critical("pgjobs %s crashed", task.get_name(), exc_info=task.exception())
        self._failed.set()

    async def wait_failed(self) -> None:
        """Return if an internal loop of the worker crashed (a bug): the caller should stop."""
        await self._failed.wait()

    def abort(self) -> None:
        """Make a stop in progress give up waiting for running jobs."""
        self._abort.set()

    async def stop(self, timeout: float | None = None) -> None:
        """Stop claiming, let running jobs finish for *timeout* seconds (default
        ``shutdown_timeout``), then cancel the rest and give them back to their queue."""
        if self._stopping:
            return
        self._stopping = True
        # --- leadership: hand it over now, not when the term runs out (leader.py) ---------
        await self._elector.resign()
        # --- end of leadership ------------------------------------------------------------
        timeout = self.config.shutdown_timeout if timeout is None else timeout
        claim_loop = self._tasks[0]
        self._wake.set()
        self._slot_freed.set()
        await asyncio.wait([claim_loop], timeout=5.0)  # a claim in flight finishes first
        if not claim_loop.done():
            claim_loop.cancel()
        if self._running:
            log.info("waiting up to %.1fs for %d running jobs", timeout, len(self._running))
            idle = asyncio.ensure_future(self._idle.wait())
            abort = asyncio.ensure_future(self._abort.wait())
            await asyncio.wait([idle, abort], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            idle.cancel()
            abort.cancel()
        released = self._cancel_unfinished()
        assert self._completer is not None
        assert self._pool is not None
        self._completer.close()
        completer = self._tasks[1]
        await asyncio.wait([completer], timeout=10.0)
        if not completer.done():
            log.error(
                "could not record %d job outcomes before stopping; those jobs run again once "
                "their lease expires",
                self._completer.pending,
            )
        tasks = [*self._tasks, *([self._cancel_check] if self._cancel_check else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            async with self._pool.connection(timeout=5.0) as conn:
                if released:
                    ids, attempts = zip(*released, strict=True)
                    await conn.execute(
                        self._queries["job_release"], {"ids": list(ids), "attempts": list(attempts)}
                    )
                    log.info("returned %d unfinished jobs to their queues", len(released))
                await conn.execute(self._queries["worker_unregister"], {"id": self.id})
        except DB_ERRORS as exc:
            log.error(
                "could not return %d jobs at shutdown (%s); they run again once their "
                "lease expires",
                len(released),
                exc,
            )
        await self._pool.close()
        if self._transactions is not None:
            await self._transactions.close()
        self._threads.shutdown()
        self._joblog.flush(all=True)
        log.info(
            "pgjobs worker %s stopped: %d jobs processed, %d failed attempts",
            self.id,
            self.processed,
            self.failed,
        )

    def _cancel_unfinished(self) -> list[tuple[int, int]]:
        released = []
        for run in list(self._running.values()):
            if run.settled:
                continue  # outcome queued; a stuck thread is simply abandoned
            self._mark_settled(run)
            run.ctx._cancel("shutdown")
            if run.aio_task is not None:
                run.aio_task.cancel()
            released.append((run.id, run.attempt))
        return released

    # --- claiming ------------------------------------------------------------------

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

    # --- running -------------------------------------------------------------------

    def _start(self, row: tuple[Any, ...]) -> Running | None:
        """Start the claimed job *row*; the caller arms its deadline (see _arm). None if
        there is no handler for it or its row cannot be decoded (its attempt is already
        recorded as failed)."""
        loop = self._loop
        assert loop is not None
        ctx, task, registration, unrunnable, timeout = start(row, self.registry, self._transactions)
        job_id, kind = ctx.job_id, ctx.kind
        now = loop.time()
        run = Running(job_id, ctx.attempt, ctx.max_retry, timeout, ctx, task, registration, now)
        self._running[job_id] = run
        self._free -= 1
        self._idle.clear()
        if unrunnable is not None or registration is None:
            error = unrunnable or HandlerNotFoundError(
                f"no handler registered for kind {kind!r} on worker {self.id}"
                f" (registered: {', '.join(self.registry.kinds()) or 'none'})"
            )
            self._conclude(run, error=error)
            self._finish(run)
            return None
        if registration.is_async:
            run.aio_task = loop.create_task(self._run_async(run, registration))
        else:
            func = self._with_middleware if self._middleware else registration.func
            args = (registration.func, ctx, task) if self._middleware else (ctx, task)
            self._threads.submit(
                loop, func, args, lambda result, error: self._sync_done(run, result, error)
            )
        return run

    def _arm(self, runs: list[Running], timeout: float) -> None:
        """One deadline timer for *runs*, started together with the same *timeout*."""
        assert self._loop is not None
        deadline = Deadline(runs)
        for run in runs:
            run.deadline = deadline
        deadline.handle = self._loop.call_at(runs[0].started + timeout, self._expire_all, deadline)

    def _expire_all(self, deadline: Deadline) -> None:
        for run in deadline.runs:
            self._expire(run)  # a no-op for those that settled meanwhile

    def _mark_settled(self, run: Running) -> None:
        """*run*'s fate is decided: mark it so, and let its deadline go."""
        run.settled = True
        if run.deadline is not None:
            run.deadline.release()
            run.deadline = None

    def _with_middleware(self, func: Any, ctx: Context, task: Task) -> Any:
        """Call a sync handler inside every middleware (in its thread, outermost first)."""
        return call_handler(func, ctx, task, self._middleware)

    async def _run_async(self, run: Running, registration: Registration) -> None:
        result = None  # stays None if a middleware swallows the handler's exception
        try:
            if self._middleware:
                result = await call_handler_async(
                    registration.func, run.ctx, run.task, self._middleware
                )
            else:  # the common case, on the hot path: no ExitStack, no extra frame
                result = await registration.func(run.ctx, run.task)
        except asyncio.CancelledError as exc:
            if run.ctx.reason is None:
                # Not a cancellation of ours (each sets a reason first): the handler's
                # own code raised it. Its attempt failed; the job must not stay running.
                self._conclude(run, error=exc)
                raise
        except BaseException as exc:
            if run.ctx.reason == "timeout":
                self._expire(run)
            self._conclude(run, error=exc)
        else:
            self._conclude(run, result=result)
        finally:
            self._finish(run)

    def _sync_done(self, run: Running, result: Any, error: BaseException | None) -> None:
        if run.ctx.reason == "timeout" and not run.settled:
            self._expire(run)  # it saw its deadline before our timer fired: same outcome
        if run.settled and run.ctx.reason == "timeout":
            log.warning(
                "job %d (%s): sync handler returned %.1fs after its deadline; result discarded",
                run.id,
                run.task.kind,
                -run.ctx.remaining(),
                extra={"job_id": run.id},
            )
        else:
            self._conclude(run, result=result, error=error)
        self._finish(run)

    def _conclude(
        self, run: Running, *, result: Any = None, error: BaseException | None = None
    ) -> None:
        """Decide the attempt's outcome from what the handler did, report it, queue it."""
        if run.settled:
            return
        if run.ctx._committed:
            # ctx.transaction() already recorded the completion with the handler's work.
            self._mark_settled(run)
            self.processed += 1
            self._joblog.completed(run.ctx, run.started)
            if error is not None:
                raised_after_commit(run.ctx, error)
            return
        outcome = conclude(run.ctx, run.registration, self.config, result, error)
        # Settled before the error hooks run, so that nothing they do can keep the
        # outcome from being recorded.
        self._settle(run, outcome)
        if error is not None:
            self._report(run, error, outcome)

    def _report(self, run: Running, error: BaseException, outcome: Outcome) -> None:
        """Log what became of a failed attempt and tell the error hooks."""
        self._joblog.failed(run.ctx, run.started, error, outcome)
        if tells_hooks(error):
            call_error_hooks(self._error_hooks, run.ctx, run.task, error)

    def _settle(self, run: Running, outcome: Outcome) -> None:
        if run.settled:
            return
        self._mark_settled(run)
        if outcome.state == "completed":
            self.processed += 1
            self._joblog.completed(run.ctx, run.started)
        elif outcome.failed:
            self.failed += 1
        if self.observer is not None:
            assert self._loop is not None
            seconds = self._loop.time() - run.started
            self.observer.settled(run.task.queue, run.task.kind, outcome, seconds)
        assert self._completer is not None
        self._completer.add(outcome)

    def _finish(self, run: Running) -> None:
        """The handler's code has returned: give its slot back."""
        if self._running.pop(run.id, None) is None:
            return
        self._free += 1
        self._slot_freed.set()
        if not self._running:
            self._idle.set()

    def _expire(self, run: Running) -> None:
        """The job's deadline passed: fail this attempt now and cancel the handler."""
        if run.settled:
            return
        run.ctx._cancel("timeout")
        self._conclude(run, error=timeout_error(run.timeout))
        if run.aio_task is not None:
            run.aio_task.cancel()
        else:
            log.warning(
                "job %d (%s): sync handler still running at its deadline; its context is "
                "cancelled and its slot stays taken until it returns",
                run.id,
                run.task.kind,
                extra={"job_id": run.id},
            )

    # --- signals from the listener and services -------------------------------------

    def _on_wakeup(self, queue: str | None) -> None:
        if queue is None or queue in self.config.queues:
            self._wake.set()

    def _on_control(self, payload: str) -> None:
        """A control message is only a hint: NOTIFY needs no privilege, so any role that
        can log in can send one. A cancel is acted on once the job's row says so (see
        _confirm_cancels), and that row only roles allowed to cancel can write."""
        try:
            message = json.loads(payload)
            action, job_id = message.get("action"), int(message.get("job_id"))
        except (ValueError, TypeError, AttributeError, RecursionError):
            log.warning("ignoring malformed control message %r", payload[:200])
            return
        run = self._running.get(job_id)
        if action != "cancel" or run is None or run.settled:
            return
        self._cancel_hints[job_id] = run.attempt
        if self._cancel_check is None or self._cancel_check.done():
            self._cancel_check = asyncio.create_task(
                self._confirm_cancels(), name="pgjobs cancel check"
            )

    async def _confirm_cancels(self) -> None:
        """Cancel the hinted jobs whose row says this attempt was cancelled. One check at a
        time, for every hint that came meanwhile, so a flood of forged messages costs one
        query per round trip, not one per message."""
        assert self._pool is not None
        while self._cancel_hints:
            hints, self._cancel_hints = self._cancel_hints, {}
            try:
                async with self._pool.connection() as conn:
                    cursor = await conn.execute(
                        self._queries["job_confirm_cancelled"],
                        {"ids": list(hints), "attempts": list(hints.values())},
                    )
                    confirmed = [row[0] for row in await cursor.fetchall()]
            except DB_ERRORS as exc:
                # The outcome write is guarded anyway: the attempt's late outcome cannot
                # overwrite the cancel, and its handler stops at its deadline.
                log.warning("could not check %d cancel request(s): %s", len(hints), exc)
                return
            for job_id in confirmed:
                self._cancel_run(job_id, hints[job_id])

    def _cancel_run(self, job_id: int, attempt: int) -> None:
        run = self._running.get(job_id)
        if run is None or run.settled or run.attempt != attempt:
            return
        # The database already says cancelled; stop the code and record nothing.
        self._mark_settled(run)
        run.ctx._cancel("cancelled")
        if run.aio_task is not None:
            run.aio_task.cancel()
        log.info(
            "job %d (%s) cancelled by an operator", job_id, run.task.kind, extra={"job_id": job_id}
        )

    def _long_jobs(self) -> tuple[list[int], list[int]]:
        """Running jobs old enough that their lease needs extending by the heartbeat."""
        assert self._loop is not None
        horizon = self._loop.time() - self.config.heartbeat_interval
        ids, attempts = [], []
        for run in self._running.values():
            if not run.settled and run.started < horizon:
                ids.append(run.id)
                attempts.append(run.attempt)
        return ids, attempts
