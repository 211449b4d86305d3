"""The worker: claims jobs by queue weight, runs them, records what became of them.

::

        LISTEN {schema}_wakeup / {schema}_control          (listener.py)
                      │ wake                     │ cancel job N
                      ▼                          ▼
      ┌───────────────────────────────┐    ┌─────────────────┐
      │ claim loop  (claiming.py)     │    │ running jobs    │
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

The claim loop is in ``claiming.py`` (slots and quotas), the running jobs and the
deciding of their outcomes in ``running.py`` (deadlines); this module starts and stops
them, with the listener, the services and the leader election.

Delivery is at least once: a job whose worker dies runs again after its lease expires,
and every outcome write is guarded by (state running, attempt) so a late write from a
presumed-dead worker cannot overwrite a newer attempt.
"""

from __future__ import annotations

import asyncio
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
from ..middleware import ErrorHook, Middleware
from ..registry import Registry
from .claiming import Claimer
from .completer import Completer
from .joblog import JobLog
from .leader import Elector, ElectorConfig, leader_services
from .listener import Listener
from .observer import Observer
from .probe import wait_for_database
from .retry import DB_ERRORS
from .running import Running
from .services import WorkerServices, run_periodically
from .threads import DaemonThreadPool
from .transactions import JobTransactions

__all__ = ["Worker"]

log = logging.getLogger("pgjobs.worker")

#: Names the host in the workers table instead of the machine's host name, where that
#: one says nothing (every container of a pod, say, or processes grouped by hand).
HOST_VARIABLE = "PGJOBS_WORKER_HOST"
#: How long a stopping worker waits for the handlers it cancelled to return: long enough
#: for one that checks its context to clean up, short enough that a handler ignoring it
#: adds little to a stop.
CANCEL_GRACE = 1.0


async def _configure(conn: psycopg.AsyncConnection[Any], synchronous_commit: bool) -> None:
    """Set up a connection of the worker's pool (see _pooler.py for poolers).

    The worker's own writes need no WAL flush to be correct (see Config), but through a
    pooler the setting would stay on the server connection and reach other clients'
    transactions, such as an application's enqueue, which must be durable.
    """
    if not await pooled_async(conn) and not synchronous_commit:
        await conn.execute(b"set synchronous_commit = off")


class Worker(Claimer):
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
        # Two connections: the claim loop holds one, the completer and the periodic
        # services take turns on the other; with the listener's, three per worker
        # (docs/deployment.md says why claims get one to themselves).
        self._pool = AsyncConnectionPool(
            dsn,
            min_size=2,
            max_size=2,
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
        self.services = WorkerServices.build(config, self._row, self._long_jobs, self._on_wakeup)
        for service in self.services:
            self._spawn(run_periodically(service, self._pool), service.name)
        # --- leadership (leader.py): one worker runs periodic jobs and pruning -------------
        self._elector = Elector(
            self._pool,
            config.schema,
            self.id,
            ElectorConfig.from_config(config),
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
            await self._wait_idle(timeout)
        released = self._cancel_unfinished()
        if released:
            # Their jobs are given back whatever they do now; this only keeps the process
            # (and a sync handler's daemon thread) alive while they unwind.
            await self._wait_idle(CANCEL_GRACE)
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
            "pgjobs worker %s stopped: jobs processed %d, failed attempts %d",
            self.id,
            self.processed,
            self.failed,
        )

    async def _wait_idle(self, timeout: float) -> None:
        """Wait up to *timeout* seconds for every running handler to return, or for a
        second stop signal."""
        idle = asyncio.ensure_future(self._idle.wait())
        abort = asyncio.ensure_future(self._abort.wait())
        await asyncio.wait([idle, abort], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        idle.cancel()
        abort.cancel()

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
        except Exception:  # ValueError, OverflowError (1e400), RecursionError, ...: the sender's
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
