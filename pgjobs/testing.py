"""Testing code that uses pgjobs: what it enqueued, and running its jobs inside a test.

Application code enqueues on a connection in an open transaction; a test calls that
code on a connection it rolls back afterwards (the pytest plugin's ``pgjobs_conn``
fixture is one), and checks or runs the jobs through the same connection, so it sees
them although nothing was committed::

    from pgjobs import testing

    def test_an_order_sends_a_receipt(pgjobs_conn):
        place_order(pgjobs_conn, email="ada@example.com")       # your code, enqueueing

        testing.assert_enqueued(pgjobs_conn, "send_receipt", payload={"order": 1})

        [run] = testing.drain(app.server, pgjobs_conn)          # runs its handler
        assert run.state == "completed"

Assertions: :func:`enqueued` lists jobs, :func:`assert_enqueued` and
:func:`assert_not_enqueued` check them, with messages that list what *was* enqueued.

Running jobs: :func:`run_job` runs one job and :func:`drain` runs jobs until none is
left, one at a time, in the calling thread, on the test's connection and inside its
transaction. Each attempt goes through the worker's own code::

    claim       job_claim (pgjobs/sql/jobs.sql), the statement workers run
    run         the server's handler, inside its middleware (pgjobs/_worker/handler.py);
                an async one on a private event loop (``drain``) or awaited (``drain_async``)
    decide      pgjobs._worker.outcome.decide: result, retry with the kind's backoff,
                Snooze, Cancel, SkipRetry, no retries left; error hooks on failures
    record      job_finish_many, as the worker's completer writes it

What differs from a worker, and why:

* A test's transaction keeps ``now()`` at its start, so a retry with a backoff delay
  (or a snooze, or a delayed job) stays ``scheduled``: ``drain`` does not run it unless
  ``run_scheduled=True``, and :func:`run_job` runs a scheduled job when asked to.
  A retry with no delay is ``available`` at once and runs again in the same ``drain``.
* Deadlines hold: an async handler is cancelled at its job's timeout, and any attempt
  that ends past its deadline is recorded as timed out, as a worker would. A sync
  handler cannot be interrupted (nor is it by a worker); ``ctx.wait()`` and
  ``ctx.cancelled()`` see the deadline as usual.
* ``ctx.transaction()`` works on the test's connection, as a savepoint: the handler's
  work and the job's completion are released together, or rolled back together if the
  block raises, and the test's transaction goes on. A sync handler under ``drain`` uses
  ``ctx.transaction()``, an async one under ``drain_async`` uses
  ``ctx.atransaction()``; the other pairings have no connection to give and raise
  RuntimeError.
* Handlers that open connections of their own do not see what the test has not
  committed: pass the connection to the code under test instead.
* No leases are renewed and nothing is rescued: there is no other worker to race.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import psycopg

from . import _queries
from ._ops import Op, Statement, run, run_async
from ._worker.handler import call_error_hooks, call_handler, call_handler_async, timeout_error
from ._worker.outcome import Outcome, decide, describe_error, finish_params
from ._worker.rows import decode_claimed
from ._worker.transactions import JobTransactions
from .context import Context
from .enqueue import (
    EnqueueResult,
    enqueue,
    enqueue_many,
    enqueue_unique,
    psycopg_connection,
)
from .errors import HandlerNotFoundError, InvalidArgumentError, JobControl, JobStateError
from .job import Job, checked_id, get_many_op, get_op, not_found
from .registry import Registration
from .server import Server
from .task import DEFAULT_MAX_PAYLOAD_BYTES, Task, _from_row, encode_payload

__all__ = [
    "JobRun",
    "TransactionClient",
    "assert_enqueued",
    "assert_enqueued_async",
    "assert_not_enqueued",
    "assert_not_enqueued_async",
    "drain",
    "drain_async",
    "enqueued",
    "enqueued_async",
    "get_job",
    "get_job_async",
    "run_job",
    "run_job_async",
]

log = logging.getLogger("pgjobs.testing")

#: Jobs :func:`drain` runs at most by default: enough for any test, and a stop for a
#: handler that keeps enqueueing or snoozing itself.
DEFAULT_MAX_JOBS = 1000
#: Jobs listed at most in an assertion's message.
_LISTED = 30


class _Any:
    def __repr__(self) -> str:
        return "<any>"


#: The default of ``payload=``: any payload matches (``payload=None`` matches JSON null).
_ANY: Any = _Any()


# --- what was enqueued ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Filter:
    kind: str | None
    queue: str | None
    payload: Any
    payload_contains: Any
    states: list[str] | None

    @classmethod
    def make(
        cls,
        kind: str | None,
        queue: str | None,
        payload: Any,
        payload_contains: Any,
        state: str | Iterable[str] | None,
    ) -> _Filter:
        states = [state] if isinstance(state, str) else None if state is None else list(state)
        return cls(kind, queue, payload, payload_contains, states)

    def params(self) -> dict[str, Any]:
        def encoded(value: Any) -> str | None:
            return None if value is _ANY else encode_payload(value, sys.maxsize)

        return {
            "kind": self.kind,
            "queue": self.queue,
            "states": self.states,
            "payload": encoded(self.payload),
            "contains": None if self.payload_contains is None else encoded(self.payload_contains),
        }

    def describe(self) -> str:
        parts = [f"kind={self.kind!r}"] if self.kind is not None else []
        if self.queue is not None:
            parts.append(f"queue={self.queue!r}")
        if self.payload is not _ANY:
            parts.append(f"payload={self.payload!r}")
        if self.payload_contains is not None:
            parts.append(f"payload containing {self.payload_contains!r}")
        if self.states is not None:
            one = len(self.states) == 1
            parts.append(f"state={self.states[0]!r}" if one else f"state in {self.states!r}")
        return ", ".join(parts) if parts else "any kind"


def _list_op(where: _Filter, schema: str) -> Op[list[tuple[Job, bool]]]:
    rows = yield Statement(_queries.queries(schema)["job_list_matching"], where.params())
    matching = {job_id: bool(matches) for job_id, matches in rows}
    jobs = yield from get_many_op(matching, schema)
    return [(job, matching[job.id]) for job in jobs]


def _line(job: Job) -> str:
    line = f"  #{job.id} {job.kind} queue={job.queue!r} state={job.state} payload={job.payload!r}"
    return line if len(line) <= 300 else line[:297] + "..."


def _listing(jobs: Sequence[Job], schema: str) -> str:
    if not jobs:
        return (
            f"There are no jobs in {schema}.jobs on this connection: was the code under test "
            "given this connection (a job enqueued on another one is invisible here until "
            "that transaction commits)?"
        )
    head = f"{len(jobs)} job{'s' if len(jobs) != 1 else ''} in {schema}.jobs on this connection:"
    lines = [_line(job) for job in jobs[:_LISTED]]
    if len(jobs) > _LISTED:
        lines.append(f"  ... and {len(jobs) - _LISTED} more")
    return "\n".join([head, *lines])


def _check_enqueued(
    found: list[tuple[Job, bool]], where: _Filter, count: int | None, schema: str
) -> list[Job]:
    __tracebackhide__ = True
    matching = [job for job, matches in found if matches]
    if (len(matching) == count) if count is not None else bool(matching):
        return matching
    wanted = "at least one job" if count is None else f"{count} job{'s' if count != 1 else ''}"
    raise AssertionError(
        f"expected {wanted} with {where.describe()}, found {len(matching)}.\n"
        + _listing([job for job, _ in found], schema)
    )


def _check_not_enqueued(found: list[tuple[Job, bool]], where: _Filter, schema: str) -> None:
    __tracebackhide__ = True
    matching = [job for job, matches in found if matches]
    if matching:
        raise AssertionError(
            f"expected no job with {where.describe()}, found {len(matching)}:\n"
            + "\n".join(_line(job) for job in matching[:_LISTED])
        )


def enqueued(
    conn: Any,
    kind: str | None = None,
    *,
    queue: str | None = None,
    payload: Any = _ANY,
    payload_contains: Any = None,
    state: str | Iterable[str] | None = None,
    schema: str = _queries.DEFAULT_SCHEMA,
) -> list[Job]:
    """The jobs *conn* can see that match every filter given, oldest first.

    *conn* is anything :func:`pgjobs.enqueue` accepts; inside a transaction the list
    includes the jobs enqueued in it and not committed.

    :param kind: only jobs of this kind.
    :param queue: only jobs in this queue.
    :param payload: only jobs whose payload equals this, compared as ``jsonb`` (so key
        order does not matter, and a tuple matches the list it was stored as).
    :param payload_contains: only jobs whose payload contains this (``jsonb @>``): for a
        dict, these keys with these values, among others.
    :param state: only jobs in this state, or in any of these states.
    :param schema: the pgjobs schema.
    """
    where = _Filter.make(kind, queue, payload, payload_contains, state)
    found = run(psycopg_connection(conn), _list_op(where, schema))
    return [job for job, matches in found if matches]


async def enqueued_async(
    conn: psycopg.AsyncConnection[Any],
    kind: str | None = None,
    *,
    queue: str | None = None,
    payload: Any = _ANY,
    payload_contains: Any = None,
    state: str | Iterable[str] | None = None,
    schema: str = _queries.DEFAULT_SCHEMA,
) -> list[Job]:
    """:func:`enqueued` on a psycopg ``AsyncConnection``."""
    where = _Filter.make(kind, queue, payload, payload_contains, state)
    found = await run_async(conn, _list_op(where, schema))
    return [job for job, matches in found if matches]


def assert_enqueued(
    conn: Any,
    kind: str | None = None,
    *,
    queue: str | None = None,
    payload: Any = _ANY,
    payload_contains: Any = None,
    state: str | Iterable[str] | None = None,
    count: int | None = 1,
    schema: str = _queries.DEFAULT_SCHEMA,
) -> list[Job]:
    """Assert that *count* jobs (default exactly one; ``None``: at least one) match the
    filters of :func:`enqueued`, and return them.

    The AssertionError lists every job the connection can see, so a wrong payload or
    kind shows at once.
    """
    __tracebackhide__ = True
    where = _Filter.make(kind, queue, payload, payload_contains, state)
    found = run(psycopg_connection(conn), _list_op(where, schema))
    return _check_enqueued(found, where, count, schema)


async def assert_enqueued_async(
    conn: psycopg.AsyncConnection[Any],
    kind: str | None = None,
    *,
    queue: str | None = None,
    payload: Any = _ANY,
    payload_contains: Any = None,
    state: str | Iterable[str] | None = None,
    count: int | None = 1,
    schema: str = _queries.DEFAULT_SCHEMA,
) -> list[Job]:
    """:func:`assert_enqueued` on a psycopg ``AsyncConnection``."""
    __tracebackhide__ = True
    where = _Filter.make(kind, queue, payload, payload_contains, state)
    found = await run_async(conn, _list_op(where, schema))
    return _check_enqueued(found, where, count, schema)


def assert_not_enqueued(
    conn: Any,
    kind: str | None = None,
    *,
    queue: str | None = None,
    payload: Any = _ANY,
    payload_contains: Any = None,
    state: str | Iterable[str] | None = None,
    schema: str = _queries.DEFAULT_SCHEMA,
) -> None:
    """Assert that no job matches the filters of :func:`enqueued` (with none given: that
    no job at all is visible); the AssertionError lists the jobs that do."""
    __tracebackhide__ = True
    where = _Filter.make(kind, queue, payload, payload_contains, state)
    found = run(psycopg_connection(conn), _list_op(where, schema))
    _check_not_enqueued(found, where, schema)


async def assert_not_enqueued_async(
    conn: psycopg.AsyncConnection[Any],
    kind: str | None = None,
    *,
    queue: str | None = None,
    payload: Any = _ANY,
    payload_contains: Any = None,
    state: str | Iterable[str] | None = None,
    schema: str = _queries.DEFAULT_SCHEMA,
) -> None:
    """:func:`assert_not_enqueued` on a psycopg ``AsyncConnection``."""
    __tracebackhide__ = True
    where = _Filter.make(kind, queue, payload, payload_contains, state)
    found = await run_async(conn, _list_op(where, schema))
    _check_not_enqueued(found, where, schema)


def get_job(conn: Any, job_id: int, *, schema: str = _queries.DEFAULT_SCHEMA) -> Job | None:
    """The job as *conn* sees it now; None if there is no such row (completed jobs are
    deleted as they complete unless the server's config retains them)."""
    return run(psycopg_connection(conn), get_op(job_id, schema))


async def get_job_async(
    conn: psycopg.AsyncConnection[Any], job_id: int, *, schema: str = _queries.DEFAULT_SCHEMA
) -> Job | None:
    """:func:`get_job` on a psycopg ``AsyncConnection``."""
    return await run_async(conn, get_op(job_id, schema))


class TransactionClient:
    """A stand-in for :class:`pgjobs.Client` whose jobs join one connection's transaction.

    Application code that takes a client (or any :class:`pgjobs.Enqueuer`) and enqueues
    without a ``conn=`` would commit its jobs with a real client; given this one, in a
    test, they stay in the test's transaction and go when it rolls back. A ``conn=``
    passed to a method is used instead, as with a real client.

    :param conn: the connection to enqueue on; anything :func:`pgjobs.enqueue` accepts.
    """

    def __init__(
        self,
        conn: Any,
        *,
        schema: str = _queries.DEFAULT_SCHEMA,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self.conn = conn
        self.schema = _queries.check_schema_name(schema)
        self.max_payload_bytes = max_payload_bytes

    def enqueue(self, task: Task, *, conn: Any = None) -> int:
        """Enqueue *task* in the bound connection's transaction (or *conn*'s)."""
        return enqueue(
            conn or self.conn, task, schema=self.schema, max_payload_bytes=self.max_payload_bytes
        )

    def enqueue_many(self, tasks: Iterable[Task], *, conn: Any = None) -> list[int]:
        """Enqueue all *tasks*; ids in input order."""
        return enqueue_many(
            conn or self.conn, tasks, schema=self.schema, max_payload_bytes=self.max_payload_bytes
        )

    def enqueue_unique(self, task: Task, *, conn: Any = None) -> EnqueueResult:
        """Enqueue a task with a ``unique_key``; the id and whether it was a duplicate."""
        return enqueue_unique(
            conn or self.conn, task, schema=self.schema, max_payload_bytes=self.max_payload_bytes
        )

    def get(self, job_id: int, *, conn: Any = None) -> Job | None:
        """The job as stored now, or None (see :func:`get_job`)."""
        return get_job(conn or self.conn, job_id, schema=self.schema)


# --- running jobs -----------------------------------------------------------------------------


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
    def sync(self, ctx: Context) -> Iterator[psycopg.Connection[Any]]:
        if self._conn is None:
            raise RuntimeError(
                "ctx.transaction() has no connection here: this job runs under drain_async() "
                "or run_job_async(), on an AsyncConnection. Use ctx.atransaction() in an async "
                "handler, or run sync handlers with drain() or run_job() on a psycopg Connection"
            )
        with self.completing(self._conn, ctx) as conn:
            yield conn

    @asynccontextmanager
    async def asynchronous(self, ctx: Context) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self._aconn is None:
            raise RuntimeError(
                "ctx.atransaction() has no connection here: this job runs under drain() or "
                "run_job(), on a sync Connection. Run async handlers that use it with "
                "drain_async() or run_job_async() on a psycopg AsyncConnection"
            )
        async with self.acompleting(self._aconn, ctx) as conn:
            yield conn


@dataclass(slots=True)
class _Claimed:
    """A claimed job, ready to run."""

    job_id: int
    attempt: int
    max_retry: int
    timeout: float
    ctx: Context
    task: Task
    registration: Registration | None
    #: Why the job cannot run (its row cannot be decoded), as the worker fails it.
    unrunnable: BaseException | None = None


class _Session:
    """Running one server's jobs on one connection, shared by both faces: the
    statements as operations (the faces run them), the handler calls and the decisions."""

    def __init__(
        self,
        server: Server,
        *,
        conn: psycopg.Connection[Any] | None = None,
        aconn: psycopg.AsyncConnection[Any] | None = None,
    ) -> None:
        if not isinstance(server, Server):
            raise TypeError(f"expected a pgjobs.Server, got {type(server).__name__}")
        self.server = server
        self.config = server.config
        self.schema = server.config.schema
        self.queries = _queries.queries(self.schema)
        self.worker_id = str(uuid.uuid4())
        self.transactions = _SameConnection(
            self.schema,
            self.worker_id,
            delete_completed=self.config._deletes_completed,
            conn=conn,
            aconn=aconn,
        )

    # claiming

    def _claim_op(self, queue: str) -> Op[tuple[Any, ...] | None]:
        rows = yield Statement(
            self.queries["job_claim"],
            {
                "queues": [queue],
                "limits": [1],
                "worker_id": self.worker_id,
                "lease": self.config.lease,
                "grace": self.config.lease_grace,
                "unwait": False,
                "after_priorities": None,
                "after_ids": None,
            },
        )
        return rows[0] if rows else None

    def claim_next_op(self, queues: list[str] | None, run_scheduled: bool) -> Op[_Claimed | None]:
        """Claim the job a one-slot worker of *queues* would run next, if any."""
        if run_scheduled:
            yield Statement(self.queries["job_stage_early"], {"queues": queues})
        rows = yield Statement(self.queries["job_next_queue"], {"queues": queues})
        if not rows:
            return None
        row = yield from self._claim_op(rows[0][0])
        return None if row is None else self._prepare(row)

    def claim_id_op(self, job_id: int) -> Op[_Claimed]:
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
        return self._prepare((row[0], queue, *row[2:]))

    def _prepare(self, row: tuple[Any, ...]) -> _Claimed:
        job_id, queue, kind, payload, priority, attempt, max_retry, timeout, errors, trace = row
        payload, errors, unrunnable = decode_claimed(payload, errors)
        ctx = Context(job_id, kind, queue, attempt, max_retry, timeout, errors, self.transactions)
        if trace is not None:
            ctx._trace_context = trace
        task = _from_row(kind, payload, queue, max_retry, timeout, priority)
        registration = self.server.registry.find(kind)
        return _Claimed(job_id, attempt, max_retry, timeout, ctx, task, registration, unrunnable)

    # running

    def missing(self, claimed: _Claimed) -> BaseException:
        """Why *claimed* cannot run at all: its row cannot be decoded, or no handler."""
        if claimed.unrunnable is not None:
            return claimed.unrunnable
        try:
            self.server.registry.get_handler(claimed.task.kind)
        except HandlerNotFoundError as exc:
            return exc
        raise AssertionError("unreachable")  # pragma: no cover

    def call_sync(self, claimed: _Claimed) -> tuple[Any, Exception | None]:
        assert claimed.registration is not None
        try:
            result = call_handler(
                claimed.registration.func, claimed.ctx, claimed.task, self.server.middleware
            )
        except Exception as exc:
            return None, exc
        return result, None

    async def call_async(self, claimed: _Claimed) -> tuple[Any, Exception | None]:
        registration = claimed.registration
        assert registration is not None
        if not registration.is_async:
            return self.call_sync(claimed)
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
        self, claimed: _Claimed, result: Any, error: BaseException | None
    ) -> tuple[Outcome | None, Any, BaseException | None]:
        """The outcome to record (None: ``ctx.transaction()`` recorded it), and the
        result and error the attempt is reported with."""
        ctx = claimed.ctx
        if ctx._committed:
            if error is not None:
                log.error(
                    "job %d (%s) raised after its transaction completed it; the job stays "
                    "completed: %s",
                    claimed.job_id,
                    claimed.task.kind,
                    describe_error(error),
                )
            return None, ctx.result, error
        if ctx.cancelled():  # past its deadline, whatever it did: the worker's timer fired
            result, error = None, timeout_error(claimed.timeout)
        registration = claimed.registration
        backoff = (registration.backoff if registration else None) or self.config.backoff
        outcome = decide(claimed.job_id, claimed.attempt, claimed.max_retry, error, result, backoff)
        if outcome.failed and error is not None:
            call_error_hooks(self.server.error_hooks, ctx, claimed.task, error)
        return outcome, result, error

    def finish_op(self, claimed: _Claimed, outcome: Outcome | None) -> Op[Job | None]:
        if outcome is not None:
            yield Statement(
                self.queries["job_finish_many"],
                finish_params(
                    [outcome],
                    worker_id=self.worker_id,
                    delete_completed=self.config._deletes_completed,
                ),
            )
        job = yield from get_op(claimed.job_id, self.schema)
        return job

    @staticmethod
    def report(
        claimed: _Claimed,
        outcome: Outcome | None,
        result: Any,
        error: BaseException | None,
        job: Job | None,
        raise_errors: bool,
    ) -> JobRun:
        if raise_errors and error is not None and not isinstance(error, JobControl):
            raise error
        state = job.state if job is not None else outcome.state if outcome else "completed"
        task = claimed.task
        return JobRun(
            claimed.job_id, task.kind, task.queue, claimed.attempt, state, result, error, job
        )


class _PrivateLoop:
    """The event loop on which the sync face runs async handlers, made on first use."""

    def __init__(self) -> None:
        self._runner: asyncio.Runner | None = None

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
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

    def __enter__(self) -> _PrivateLoop:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            self._runner.close()


def _attempt(
    session: _Session,
    conn: psycopg.Connection[Any],
    claimed: _Claimed,
    loop: _PrivateLoop,
    raise_errors: bool,
) -> JobRun:
    registration = claimed.registration
    result: Any = None
    error: BaseException | None
    if registration is None or claimed.unrunnable is not None:
        error = session.missing(claimed)
    elif registration.is_async:
        result, error = loop.run(session.call_async(claimed))
    else:
        result, error = session.call_sync(claimed)
    outcome, result, error = session.conclude(claimed, result, error)
    job = run(conn, session.finish_op(claimed, outcome))
    return session.report(claimed, outcome, result, error, job, raise_errors)


async def _attempt_async(
    session: _Session,
    conn: psycopg.AsyncConnection[Any],
    claimed: _Claimed,
    raise_errors: bool,
) -> JobRun:
    result: Any = None
    error: BaseException | None
    if claimed.registration is None or claimed.unrunnable is not None:
        error = session.missing(claimed)
    else:
        result, error = await session.call_async(claimed)
    outcome, result, error = session.conclude(claimed, result, error)
    job = await run_async(conn, session.finish_op(claimed, outcome))
    return session.report(claimed, outcome, result, error, job, raise_errors)


def _queue_list(queue: str | Iterable[str] | None) -> list[str] | None:
    if queue is None:
        return None
    queues = [queue] if isinstance(queue, str) else list(queue)
    if not queues or not all(isinstance(q, str) for q in queues):
        raise InvalidArgumentError(
            "queue must be a queue name, names of queues, or None for every queue"
        )
    return queues


def _check_max_jobs(max_jobs: int) -> None:
    if isinstance(max_jobs, bool) or not isinstance(max_jobs, int) or max_jobs < 1:
        raise InvalidArgumentError(
            f"max_jobs must be a whole number of at least 1, not {max_jobs!r}"
        )


def run_job(server: Server, conn: Any, job_id: int, *, raise_errors: bool = False) -> JobRun:
    """Run one attempt of job *job_id* with *server*'s handler, on *conn*, now.

    The job must be ``available`` or ``scheduled`` (it runs now whatever its ``run_at``,
    so a test can step through retries one call at a time); jobs ahead of it, and a
    pause of its queue, are ignored. :class:`pgjobs.JobNotFoundError` if *conn* sees no
    such job, :class:`pgjobs.JobStateError` if it is running or finished.

    :param server: the :class:`pgjobs.Server` whose handlers, middleware, error hooks,
        backoff and retention (``config``) apply.
    :param conn: the test's connection; anything :func:`pgjobs.enqueue` accepts.
    :param raise_errors: re-raise what the handler raised (once its outcome is
        recorded), unless it is a :class:`pgjobs.JobControl` (``Snooze``, ``Cancel``,
        ``SkipRetry``): the test then fails with the handler's own traceback.
    """
    pg = psycopg_connection(conn)
    session = _Session(server, conn=pg)
    claimed = run(pg, session.claim_id_op(job_id))
    with _PrivateLoop() as loop:
        return _attempt(session, pg, claimed, loop, raise_errors)


async def run_job_async(
    server: Server,
    conn: psycopg.AsyncConnection[Any],
    job_id: int,
    *,
    raise_errors: bool = False,
) -> JobRun:
    """:func:`run_job` on a psycopg ``AsyncConnection``, for async tests: async handlers
    are awaited on the test's event loop, sync ones called in its thread."""
    session = _Session(server, aconn=conn)
    claimed = await run_async(conn, session.claim_id_op(job_id))
    return await _attempt_async(session, conn, claimed, raise_errors)


def drain(
    server: Server,
    conn: Any,
    queue: str | Iterable[str] | None = None,
    *,
    max_jobs: int = DEFAULT_MAX_JOBS,
    run_scheduled: bool = False,
    raise_errors: bool = False,
) -> list[JobRun]:
    """Run available jobs one at a time until none is left; return their attempts in order.

    Jobs are taken as a worker with one slot would take them: by priority, then oldest
    first, across the queues; paused queues are skipped. Jobs the handlers enqueue on
    this connection run too, as do retries without a delay.

    :param server: the :class:`pgjobs.Server` whose handlers, middleware, error hooks,
        backoff and retention (``config``) apply. Every queue is drained unless *queue*
        says otherwise, whatever the server's ``config.queues``.
    :param conn: the test's connection; anything :func:`pgjobs.enqueue` accepts.
    :param queue: a queue name, or names, to drain; None (default) for all.
    :param max_jobs: the most attempts to run (default 1000), after which ``drain``
        returns even if jobs are left: a stop for handlers that re-enqueue themselves.
    :param run_scheduled: also run scheduled jobs, whatever their ``run_at``: delayed
        jobs, snoozed ones and retries waiting for their backoff (which then run until
        they complete or fail for good, or *max_jobs* is reached).
    :param raise_errors: re-raise the first error a handler raises, once its outcome is
        recorded (not ``JobControl`` exceptions; see :func:`run_job`).
    """
    _check_max_jobs(max_jobs)
    queues = _queue_list(queue)
    pg = psycopg_connection(conn)
    session = _Session(server, conn=pg)
    runs: list[JobRun] = []
    with _PrivateLoop() as loop:
        while len(runs) < max_jobs:
            claimed = run(pg, session.claim_next_op(queues, run_scheduled))
            if claimed is None:
                break
            runs.append(_attempt(session, pg, claimed, loop, raise_errors))
    return runs


async def drain_async(
    server: Server,
    conn: psycopg.AsyncConnection[Any],
    queue: str | Iterable[str] | None = None,
    *,
    max_jobs: int = DEFAULT_MAX_JOBS,
    run_scheduled: bool = False,
    raise_errors: bool = False,
) -> list[JobRun]:
    """:func:`drain` on a psycopg ``AsyncConnection``, for async tests: async handlers
    are awaited on the test's event loop, sync ones called in its thread."""
    _check_max_jobs(max_jobs)
    queues = _queue_list(queue)
    session = _Session(server, aconn=conn)
    runs: list[JobRun] = []
    while len(runs) < max_jobs:
        claimed = await run_async(conn, session.claim_next_op(queues, run_scheduled))
        if claimed is None:
            break
        runs.append(await _attempt_async(session, conn, claimed, raise_errors))
    return runs
