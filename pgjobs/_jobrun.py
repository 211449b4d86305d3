"""How ``pgjobs.testing`` runs a server's jobs: one at a time, on a test's connection.

The claim, the handler call, the decision and the record are the worker's own
(:mod:`pgjobs._worker.attempt`, ``job_claim``, ``job_finish_many``); what differs from
a worker is said in the doc of :mod:`pgjobs.testing`. The statements are operations,
run by the public functions of either face; the handler calls are here, one method a
face, for a sync face runs async handlers on an event loop of its own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg

from . import _queries
from ._ops import Op, Statement
from ._worker.attempt import (
    Started,
    claim_params,
    conclude,
    raised_after_commit,
    start,
    tells_hooks,
)
from ._worker.handler import call_error_hooks, call_handler, call_handler_async, timeout_error
from ._worker.outcome import Outcome, finish_params
from ._worker.transactions import JobTransactions
from .context import Context
from .errors import HandlerNotFoundError, InvalidArgumentError, JobControl, JobStateError
from .job import Job, checked_id, get_op, not_found
from .registry import Registration
from .server import Server

__all__ = ["Claimed", "JobRun", "Session", "check_max_jobs", "queue_list"]

T = TypeVar("T")

#: A claimed job, ready to run: its context, task and handler, as the worker has them.
Claimed = Started


@dataclass(frozen=True, slots=True)
class JobRun:
    """One attempt run by :func:`run_job` or :func:`drain`, and what became of it.

    :ivar job_id: the job's id.
    :ivar kind: its kind.
    :ivar queue: its queue.
    :ivar attempt: the attempt's number, 1 for the first.
    :ivar state: the job's state afterwards: ``completed`` (also when the completed job
        was deleted, the default), ``failed``, ``cancelled``, ``scheduled`` (a retry or
        snooze waiting for its time) or ``available`` (one with no delay, run again by
        the same ``drain``).
    :ivar result: what the handler returned (for a job completed by
        ``ctx.transaction()``, ``ctx.result``); None if it raised.
    :ivar error: what the handler raised (a ``Snooze`` or ``Cancel`` too), or
        ``TimeoutError`` past the deadline, or ``HandlerNotFoundError``; None if it
        returned in time.
    :ivar job: the job as stored after the attempt; None once deleted.
    """

    job_id: int
    kind: str
    queue: str
    attempt: int
    state: str
    result: Any = None
    error: BaseException | None = None
    job: Job | None = field(default=None, repr=False, compare=False)


class _SameConnection(JobTransactions):
    """``ctx.transaction()`` for a job run by this module: a savepoint on the test's own
    connection, which marks the job completed as the worker's transactions do."""

    def __init__(
        self,
        schema: str,
        worker_id: str,
        *,
        delete_completed: bool,
        conn: psycopg.Connection[Any] | None = None,
        aconn: psycopg.AsyncConnection[Any] | None = None,
    ) -> None:
        super().__init__("", schema, worker_id, delete_completed=delete_completed, size=1)
        self._conn = conn
        self._aconn = aconn

    @contextmanager
    def transaction(self, ctx: Context) -> Iterator[psycopg.Connection[Any]]:
        if self._conn is None:
            raise RuntimeError(
                "ctx.transaction() has no connection here: this job runs under drain_async() "
                "or run_job_async(), on an AsyncConnection. Use ctx.atransaction() in an async "
                "handler, or run sync handlers with drain() or run_job() on a psycopg Connection"
            )
        with self.completing(self._conn, ctx) as conn:
            yield conn

    @asynccontextmanager
    async def transaction_async(self, ctx: Context) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self._aconn is None:
            raise RuntimeError(
                "ctx.atransaction() has no connection here: this job runs under drain() or "
                "run_job(), on a sync Connection. Run async handlers that use it with "
                "drain_async() or run_job_async() on a psycopg AsyncConnection"
            )
        async with self.acompleting(self._aconn, ctx) as conn:
            yield conn


class _PrivateLoop:
    """The event loop on which the sync face runs async handlers, made on first use."""

    def __init__(self) -> None:
        self._runner: asyncio.Runner | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._runner is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                self._runner = asyncio.Runner()
            else:
                coro.close()
                raise RuntimeError(
                    "drain() and run_job() run async handlers on an event loop of their own, "
                    "which cannot start inside a running one: in an async test use "
                    "`await drain_async(...)` or `await run_job_async(...)` with an AsyncConnection"
                )
        return self._runner.run(coro)

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()


class Session:
    """Running one server's jobs on one connection (a psycopg ``Connection`` or
    ``AsyncConnection``): the statements as operations (the faces run them), the
    handler calls and the decisions."""

    def __init__(self, server: Server, conn: Any) -> None:
        if not isinstance(server, Server):
            raise TypeError(f"expected a pgjobs.Server, got {type(server).__name__}")
        self.server = server
        self.config = server.config
        self.schema = server.config.schema
        self.queries = _queries.queries(self.schema)
        self.worker_id = str(uuid.uuid4())
        is_async = isinstance(conn, psycopg.AsyncConnection)
        self.transactions = _SameConnection(
            self.schema,
            self.worker_id,
            delete_completed=self.config._deletes_completed,
            conn=None if is_async else conn,
            aconn=conn if is_async else None,
        )
        self._loop = _PrivateLoop()

    def close(self) -> None:
        """Close the event loop on which a sync face ran async handlers, if it made one."""
        self._loop.close()

    # claiming

    def _claim_op(self, queue: str) -> Op[tuple[Any, ...] | None]:
        params = claim_params(self.config, self.worker_id, [queue], [1])
        rows = yield Statement(self.queries["job_claim"], params)
        return rows[0] if rows else None

    def claim_next_op(self, queues: list[str] | None, run_scheduled: bool) -> Op[Claimed | None]:
        """Claim the job a one-slot worker of *queues* would run next, if any."""
        if run_scheduled:
            yield Statement(self.queries["job_stage_early"], {"queues": queues})
        rows = yield Statement(self.queries["job_next_queue"], {"queues": queues})
        if not rows:
            return None
        row = yield from self._claim_op(rows[0][0])
        return None if row is None else start(row, self.server.registry, self.transactions)

    def claim_id_op(self, job_id: int) -> Op[Claimed]:
        """Claim job *job_id*, available or scheduled, with job_claim: alone in a queue of
        its own for the claim's duration (see job_isolate)."""
        checked_id(job_id)
        private = f"pgjobs.testing/{job_id}"
        rows = yield Statement(self.queries["job_isolate"], {"id": job_id, "queue": private})
        if not rows:
            raise not_found(job_id, f" in {self.schema}.jobs on this connection")
        queue, state, moved = rows[0]
        if not moved:
            raise JobStateError(
                f"job {job_id} is {state}: run_job runs available or scheduled jobs"
            )
        row = yield from self._claim_op(private)
        yield Statement(self.queries["job_set_queue"], {"id": job_id, "queue": queue})
        if row is None:  # pragma: no cover - the job was locked and moved above
            raise RuntimeError(f"job {job_id} could not be claimed")
        return start((row[0], queue, *row[2:]), self.server.registry, self.transactions)

    # running

    def _missing(self, claimed: Claimed) -> BaseException | None:
        """Why *claimed* cannot run at all: its row cannot be decoded, or no handler."""
        if claimed.unrunnable is not None:
            return claimed.unrunnable
        if claimed.registration is not None:
            return None
        try:
            self.server.registry.get_handler(claimed.task.kind)
        except HandlerNotFoundError as exc:
            return exc
        raise AssertionError("unreachable")  # pragma: no cover

    def call(self, claimed: Claimed) -> tuple[Any, BaseException | None]:
        """Run *claimed*'s handler in this thread (an async one on a private loop): what
        it returned, or raised."""
        missing = self._missing(claimed)
        if missing is not None:
            return None, missing
        assert claimed.registration is not None
        if claimed.registration.is_async:
            return self._loop.run(self._call_coroutine(claimed, claimed.registration))
        return self._call_sync(claimed, claimed.registration)

    async def call_async(self, claimed: Claimed) -> tuple[Any, BaseException | None]:
        """:meth:`call` on the caller's event loop."""
        missing = self._missing(claimed)
        if missing is not None:
            return None, missing
        assert claimed.registration is not None
        if claimed.registration.is_async:
            return await self._call_coroutine(claimed, claimed.registration)
        return self._call_sync(claimed, claimed.registration)

    def _call_sync(
        self, claimed: Claimed, registration: Registration
    ) -> tuple[Any, BaseException | None]:
        try:
            result = call_handler(
                registration.func, claimed.ctx, claimed.task, self.server.middleware
            )
        except Exception as exc:
            return None, exc
        return result, None

    async def _call_coroutine(
        self, claimed: Claimed, registration: Registration
    ) -> tuple[Any, BaseException | None]:
        try:
            async with asyncio.timeout(max(0.0, claimed.ctx.remaining())):
                result = await call_handler_async(
                    registration.func, claimed.ctx, claimed.task, self.server.middleware
                )
        except Exception as exc:
            return None, exc
        return result, None

    # deciding and recording

    def conclude(
        self, claimed: Claimed, result: Any, error: BaseException | None
    ) -> tuple[Outcome | None, Any, BaseException | None]:
        """The outcome to record (None: ``ctx.transaction()`` recorded it), and the
        result and error the attempt is reported with."""
        ctx = claimed.ctx
        if ctx._committed:
            if error is not None:
                raised_after_commit(ctx, error)
            return None, ctx.result, error
        if ctx.cancelled():  # past its deadline, whatever it did: the worker's timer fired
            result, error = None, timeout_error(claimed.timeout)
        outcome = conclude(ctx, claimed.registration, self.config, result, error)
        if error is not None and tells_hooks(error):
            call_error_hooks(self.server.error_hooks, ctx, claimed.task, error)
        return outcome, result, error

    def finish_op(self, claimed: Claimed, outcome: Outcome | None) -> Op[Job | None]:
        """Record *outcome* (None: recorded already) and read the job back."""
        if outcome is not None:
            yield Statement(
                self.queries["job_finish_many"],
                finish_params(
                    [outcome],
                    worker_id=self.worker_id,
                    delete_completed=self.config._deletes_completed,
                ),
            )
        job = yield from get_op(claimed.ctx.job_id, self.schema)
        return job

    @staticmethod
    def report(
        claimed: Claimed,
        outcome: Outcome | None,
        result: Any,
        error: BaseException | None,
        job: Job | None,
        raise_errors: bool,
    ) -> JobRun:
        """What became of the attempt; or what the handler raised, if *raise_errors*."""
        if raise_errors and error is not None and not isinstance(error, JobControl):
            raise error
        state = job.state if job is not None else outcome.state if outcome else "completed"
        ctx, task = claimed.ctx, claimed.task
        return JobRun(ctx.job_id, task.kind, task.queue, ctx.attempt, state, result, error, job)


def queue_list(queue: str | Iterable[str] | None) -> list[str] | None:
    if queue is None:
        return None
    queues = [queue] if isinstance(queue, str) else list(queue)
    if not queues or not all(isinstance(q, str) for q in queues):
        raise InvalidArgumentError(
            "queue must be a queue name, names of queues, or None for every queue"
        )
    return queues


def check_max_jobs(max_jobs: int) -> None:
    if isinstance(max_jobs, bool) or not isinstance(max_jobs, int) or max_jobs < 1:
        raise InvalidArgumentError(
            f"max_jobs must be a whole number of at least 1, not {max_jobs!r}"
        )
