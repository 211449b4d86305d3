"""Running claimed jobs and settling their attempts: the worker's half after the claim.

Each claimed job gets a :class:`Running` record and a slot; an async handler runs as an
asyncio task, a sync one in a daemon thread. What the handler did (returned, raised,
snoozed, ran out of time) becomes an :class:`~pgjobs._worker.outcome.Outcome`, queued for
the completer, and the slot is given back when the handler's code returns.

Deadlines: when a job's timeout passes, its attempt is recorded as failed (retried with
backoff or failed) at once. An async handler is cancelled. A sync handler's context is
cancelled, but Python cannot stop a thread: the thread keeps its slot until the handler
returns, so ``concurrency`` always counts code that is really running, and whatever the
handler does after its deadline is discarded.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..context import Context
from ..errors import HandlerNotFoundError
from ..middleware import ErrorHook, Middleware
from ..registry import Registration, Registry
from ..task import Task
from .attempt import conclude, raised_after_commit, start, tells_hooks
from .handler import call_error_hooks, call_handler, call_handler_async, timeout_error
from .outcome import Outcome

if TYPE_CHECKING:
    from ..config import Config
    from .completer import Completer
    from .joblog import JobLog
    from .observer import Observer
    from .threads import DaemonThreadPool
    from .transactions import JobTransactions

__all__ = ["Deadline", "Runner", "Running"]

log = logging.getLogger("pgjobs.worker")


@dataclass(slots=True, eq=False, repr=False)  # its repr would show the payload
class Running:
    """Bookkeeping for one claimed job while its code runs."""

    id: int
    attempt: int
    max_retry: int
    timeout: float
    ctx: Context
    task: Task
    registration: Registration | None
    started: float
    #: True once the attempt's fate is decided (outcome queued, or cancelled/released).
    settled: bool = False
    deadline: Deadline | None = None
    aio_task: asyncio.Task[None] | None = None


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


class Runner:
    """The worker's running and settling half (a mixin of :class:`~.worker.Worker`,
    which sets these attributes in its ``__init__`` and ``start``)."""

    config: Config
    registry: Registry
    id: str
    observer: Observer | None
    processed: int
    failed: int
    _middleware: tuple[Middleware, ...]
    _error_hooks: tuple[ErrorHook, ...]
    _running: dict[int, Running]
    _free: int
    _threads: DaemonThreadPool
    _joblog: JobLog
    _completer: Completer | None
    _transactions: JobTransactions | None
    _loop: asyncio.AbstractEventLoop | None
    _idle: asyncio.Event
    _slot_freed: asyncio.Event

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
