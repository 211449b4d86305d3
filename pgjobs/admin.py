"""Operate pgjobs from Python: inspect queues and jobs, retry, cancel, pause, purge, diagnose.

These are the operations behind the ``pgjobs`` operator commands (``status``, ``jobs``,
``retry``, ``cancel``, ``pause``, ``resume``, ``why``, ``doctor``, ``purge``, ``grants``)
and the dashboard. Each one calls a view or function of the pgjobs schema (migration
0002, see docs/sql-reference.md), so ``psql``, Python and the command line give the same
answers.

Every operation takes the caller's psycopg 3 connection first (or a SQLAlchemy / Django
one on psycopg 3) and runs in whatever transaction it is in: pgjobs never commits here.
On an autocommit connection each call is its own transaction. Each has an async twin,
named with ``_async``, that takes a psycopg ``AsyncConnection`` (or a SQLAlchemy
``AsyncConnection`` on psycopg)::

    import psycopg
    from pgjobs import admin

    with psycopg.connect(dsn, autocommit=True) as conn:
        for queue in admin.queue_summary(conn):
            print(queue.queue, queue.available, queue.oldest_ready_age)
        print(admin.why(conn, 42))
        admin.cancel_job(conn, 42, reason="customer asked")

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as aconn:
        await admin.retry_job_async(aconn, 42)

Both faces run one implementation: each operation is written once, as a generator of
statements (see :mod:`pgjobs._ops`), and :func:`_faces` makes the two functions that run
it. Errors, beside psycopg's own, are those of :mod:`pgjobs.errors`:
``InvalidArgumentError`` for a malformed argument, ``JobNotFoundError`` for an operation
on a job that does not exist (:func:`get_job` returns None instead),
``QueueNotFoundError`` and ``JobStateError``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import FunctionType
from typing import Any, Concatenate, ParamSpec, TypeVar, cast
from uuid import UUID

import psycopg
import psycopg.errors

from . import _queries
from ._enqueue import psycopg_connection
from ._ops import Op, Rows, Statement, run, run_async
from .errors import (
    InvalidArgumentError,
    JobNotFoundError,
    PgjobsError,
    QueueNotFoundError,
)
from .job import FINISHED_STATES, Job, JobState, _JobFields, checked_id, get_op

__all__ = [
    "DoctorFinding",
    "JobSummary",
    "QueueSummary",
    "VacuumBlocker",
    "WorkerInfo",
    "cancel_job",
    "cancel_job_async",
    "count_finished",
    "count_finished_async",
    "doctor",
    "doctor_async",
    "get_job",
    "get_job_async",
    "grant_roles",
    "grant_roles_async",
    "list_jobs",
    "list_jobs_async",
    "live_workers",
    "live_workers_async",
    "pause_queue",
    "pause_queue_async",
    "purge_finished",
    "purge_finished_async",
    "queue_summary",
    "queue_summary_async",
    "resume_queue",
    "resume_queue_async",
    "retry_failed",
    "retry_failed_async",
    "retry_job",
    "retry_job_async",
    "vacuum_blockers",
    "vacuum_blockers_async",
    "why",
    "why_async",
]

P = ParamSpec("P")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_SCHEMA = _queries.DEFAULT_SCHEMA


# --- rows ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueSummary:
    """One row of ``<schema>.queue_summary``: a queue's jobs by state and its throughput."""

    queue: str
    paused: bool
    paused_at: datetime | None
    scheduled: int
    available: int
    running: int
    completed: int
    failed: int
    cancelled: int
    #: How long the oldest ready job (available, or scheduled and due) has waited.
    oldest_ready_age: timedelta | None
    #: Finished attempts in the last 60 seconds (failed includes cancelled).
    completed_last_minute: int
    failed_last_minute: int
    retried_last_minute: int
    #: Live workers serving the queue, and their concurrency added up.
    workers: int
    concurrency: int


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One row of ``<schema>.live_workers``."""

    id: UUID
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    version: str
    started_at: datetime
    heartbeat_at: datetime
    waiting: bool
    running: int
    #: The weight of each of ``queues``, in order (None for a worker older than 0007).
    weights: list[int] | None = None

    def shares(self) -> str:
        """``critical=6, default=3, low=1``, or the queue names alone without weights."""
        if self.weights is None or len(self.weights) != len(self.queues):
            return ", ".join(self.queues)
        return ", ".join(f"{q}={w}" for q, w in zip(self.queues, self.weights, strict=True))


@dataclass(frozen=True, slots=True)
class JobSummary(_JobFields):
    """A job as :func:`list_jobs` lists it: the fields of :class:`pgjobs.Job` that a
    listing shows, without the payload, result and errors (which can be large)."""

    worker_id: UUID | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class DoctorFinding:
    """One finding of ``<schema>.doctor()``; *status* is ``ok``, ``info`` or ``warn``."""

    check_name: str
    status: str
    detail: str


@dataclass(frozen=True, slots=True)
class VacuumBlocker:
    """One row of ``<schema>.vacuum_blockers``: something holding back vacuum."""

    kind: str
    pid: int | None
    database: str | None
    username: str | None
    name: str | None
    state: str | None
    xact_start: datetime | None
    query_start: datetime | None
    xact_duration: timedelta | None
    xmin_age: int | None
    query: str | None


#: The dataclass each statement's rows are read into. Rows are tuples (the runners are
#: shared with the hot path); the statements name their columns as the fields, in order,
#: and tests/test_sql_operations.py checks each one by name.
ROW_TYPES: dict[str, type[Any]] = {
    "queue_summary": QueueSummary,
    "worker_list_live": WorkerInfo,
    "job_list": JobSummary,
    "job_get": Job,
    "doctor_run": DoctorFinding,
    "doctor_vacuum_blockers": VacuumBlocker,
}


# --- the two faces ----------------------------------------------------------------------------
# Each operation below is followed by its public sync face and async twin, made by _faces.


def _faces(
    build: Callable[P, Op[T]], *, missing: type[PgjobsError] = JobNotFoundError
) -> tuple[Callable[Concatenate[Any, P], T], Callable[Concatenate[Any, P], Awaitable[T]]]:
    """The public sync and async functions of the operation *build* makes (``_why``
    gives ``why`` and ``why_async``): each takes a connection, then *build*'s arguments,
    and drives the operation with its face's runner. The no_data_found error of the
    schema's functions (an unknown job, or queue) becomes *missing*."""
    name = build.__name__.removeprefix("_")
    entry = f"pgjobs.admin.{name}"

    def sync(conn: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
        op = build(*args, **kwargs)
        try:
            return run(psycopg_connection(conn), op, entry)
        except psycopg.errors.NoDataFound as exc:
            raise missing(exc.diag.message_primary or str(exc)) from exc

    async def asynchronous(conn: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
        op = build(*args, **kwargs)
        try:
            return await run_async(await _async_psycopg(conn, f"{entry}_async"), op)
        except psycopg.errors.NoDataFound as exc:
            raise missing(exc.diag.message_primary or str(exc)) from exc

    return _public(sync, name, build), _public(asynchronous, f"{name}_async", build)


def _public(face: F, name: str, build: Callable[..., Any]) -> F:
    """*face* as the public function *name* of this module, documented as *build* is.

    Its code is renamed too, so that tracebacks show ``why``."""
    function = cast(FunctionType, face)
    function.__code__ = function.__code__.replace(co_name=name, co_qualname=name)
    function.__name__ = function.__qualname__ = name
    function.__doc__ = build.__doc__
    signature = inspect.signature(build)
    returns = str(signature.return_annotation)  # "Op[bool]": annotations are text here
    conn = inspect.Parameter("conn", inspect.Parameter.POSITIONAL_ONLY, annotation="Any")
    function.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[conn, *signature.parameters.values()],
        return_annotation=returns.removeprefix("Op[").removesuffix("]"),
    )
    return face


async def _async_psycopg(conn: Any, entry: str) -> psycopg.AsyncConnection[Any]:
    """The psycopg ``AsyncConnection`` under *conn*: a SQLAlchemy ``AsyncConnection`` on
    psycopg is unwrapped; other drivers are refused, as :func:`psycopg_connection` does."""
    if isinstance(conn, psycopg.AsyncConnection):
        return conn
    from ._drivers import async_driver

    driver = await async_driver(conn, entry)  # refuses a sync connection, naming the sync face
    if isinstance(driver, psycopg.AsyncConnection):
        return driver
    raise TypeError(
        f"pgjobs.admin needs psycopg 3: pass a psycopg.AsyncConnection, or a SQLAlchemy "
        f"AsyncConnection that uses psycopg, not a {type(conn).__name__}"
    )


# --- arguments --------------------------------------------------------------------------------


def _state(state: str | None, allowed: Iterable[JobState] = JobState) -> str | None:
    """*state* as the text the statements take (None: any state)."""
    allowed = tuple(allowed)
    if state is not None and state not in allowed:
        raise InvalidArgumentError(f"unknown job state {state!r}: use one of {', '.join(allowed)}")
    return None if state is None else str(state)


def _seconds(value: float | timedelta, what: str) -> float:
    """*value* (a timedelta, or seconds) in seconds; InvalidArgumentError if negative."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidArgumentError(f"{what} is a timedelta or a number of seconds, not {value!r}")
    if not 0 <= seconds < float("inf"):  # also NaN
        raise InvalidArgumentError(f"{what} must be 0 seconds or more, not {value!r}")
    return seconds


def _positive(value: int | None, what: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidArgumentError(f"{what} must be a positive integer, not {value!r}")
    return value


# --- the operations ---------------------------------------------------------------------------


def _rows(schema: str, name: str, params: Mapping[str, Any] | None = None) -> Op[Rows]:
    rows = yield Statement(_queries.queries(schema)[name], params or {})
    return rows


def _scalar(schema: str, name: str, params: Mapping[str, Any] | None = None) -> Op[Any]:
    rows = yield from _rows(schema, name, params)
    return rows[0][0] if rows else None


def _queue_summary(*, schema: str = DEFAULT_SCHEMA) -> Op[list[QueueSummary]]:
    """Every queue a job, worker or setting names: jobs by state, oldest ready job,
    finished attempts in the last minute, live workers serving it."""
    rows = yield from _rows(schema, "queue_summary")
    return [QueueSummary(*row) for row in rows]


queue_summary, queue_summary_async = _faces(_queue_summary)


def _live_workers(*, schema: str = DEFAULT_SCHEMA) -> Op[list[WorkerInfo]]:
    """Workers whose heartbeat is younger than 60 seconds."""
    rows = yield from _rows(schema, "worker_list_live")
    return [WorkerInfo(*row) for row in rows]


live_workers, live_workers_async = _faces(_live_workers)


def _list_jobs(
    *,
    state: JobState | str | None = None,
    queue: str | None = None,
    kind: str | None = None,
    limit: int = 50,
    schema: str = DEFAULT_SCHEMA,
) -> Op[list[JobSummary]]:
    """The newest jobs (highest id first), optionally of one state, queue and kind."""
    params = {
        "state": _state(state),
        "queue": queue,
        "kind": kind,
        "error": None,
        "since": None,
        "before": None,
        "limit": _positive(limit, "limit"),
    }
    rows = yield from _rows(schema, "job_list", params)
    return [JobSummary(*row) for row in rows]


list_jobs, list_jobs_async = _faces(_list_jobs)


def _get_job(job_id: int, *, schema: str = DEFAULT_SCHEMA) -> Op[Job | None]:
    """Everything about one job (payload, result, errors, lease, worker); None if there
    is no such job (never enqueued, or finished and deleted). The same :class:`pgjobs.Job`
    as ``Client.get`` returns."""
    job = yield from get_op(job_id, schema)
    return job


get_job, get_job_async = _faces(_get_job)


def _retry_job(job_id: int, *, schema: str = DEFAULT_SCHEMA) -> Op[bool]:
    """Make a failed, cancelled or scheduled job available now; False for other states.

    A job that used up its retries gets exactly one more attempt.
    """
    retried = yield from _scalar(schema, "job_retry", {"id": checked_id(job_id)})
    return bool(retried)


retry_job, retry_job_async = _faces(_retry_job)


def _retry_failed(
    *, kind: str | None = None, queue: str | None = None, schema: str = DEFAULT_SCHEMA
) -> Op[int]:
    """Make every failed job (of *kind*, of *queue*, when given) available now; how many."""
    count = yield from _scalar(schema, "job_retry_failed", {"kind": kind, "queue": queue})
    return int(count)


retry_failed, retry_failed_async = _faces(_retry_failed)


def _cancel_job(
    job_id: int, *, reason: str | None = None, schema: str = DEFAULT_SCHEMA
) -> Op[bool]:
    """Cancel a scheduled, available or running job; False if it had already finished.

    A running job is cancelled cooperatively: its row is marked cancelled at once, and its
    worker, told through NOTIFY on ``<schema>_control`` when the transaction commits,
    cancels the handler's context. *reason* becomes the job's ``last_error``.
    """
    params = {"id": checked_id(job_id), "reason": reason}
    cancelled = yield from _scalar(schema, "job_cancel", params)
    return bool(cancelled)


cancel_job, cancel_job_async = _faces(_cancel_job)


def _pause_queue(queue: str, *, force: bool = False, schema: str = DEFAULT_SCHEMA) -> Op[bool]:
    """Stop workers claiming from *queue*, from their next claim on; False if it was
    already paused. The pause is a row in ``<schema>.queues``: it holds across restarts.

    An unknown queue raises QueueNotFoundError unless *force* (to pause before first use).
    """
    paused = yield from _scalar(schema, "queue_pause", {"queue": queue, "force": force})
    return bool(paused)


pause_queue, pause_queue_async = _faces(_pause_queue, missing=QueueNotFoundError)


def _resume_queue(queue: str, *, schema: str = DEFAULT_SCHEMA) -> Op[bool]:
    """Let workers claim from *queue* again (waking waiting ones); False if not paused."""
    resumed = yield from _scalar(schema, "queue_resume", {"queue": queue})
    return bool(resumed)


resume_queue, resume_queue_async = _faces(_resume_queue, missing=QueueNotFoundError)


def _finished_params(older_than: float | timedelta, states: Iterable[str]) -> dict[str, Any]:
    names = [_state(state, FINISHED_STATES) for state in states]
    if not names:
        raise InvalidArgumentError("give at least one state to purge")
    return {"older_than": _seconds(older_than, "older_than"), "states": names}


def _purge_finished(
    older_than: float | timedelta,
    *,
    max_rows: int | None = None,
    states: Iterable[JobState | str] = FINISHED_STATES,
    schema: str = DEFAULT_SCHEMA,
) -> Op[int]:
    """Delete jobs that finished (in *states*) more than *older_than* (a timedelta, or
    seconds) ago; how many.

    With *max_rows*, delete at most that many: call it in a loop on an autocommit
    connection to purge a large backlog in short transactions (as ``pgjobs purge`` does).
    """
    params = _finished_params(older_than, states) | {"max_rows": _positive(max_rows, "max_rows")}
    deleted = yield from _scalar(schema, "job_purge_finished", params)
    return int(deleted)


purge_finished, purge_finished_async = _faces(_purge_finished)


def _count_finished(
    older_than: float | timedelta,
    *,
    states: Iterable[JobState | str] = FINISHED_STATES,
    schema: str = DEFAULT_SCHEMA,
) -> Op[int]:
    """How many jobs :func:`purge_finished` would delete now."""
    count = yield from _scalar(schema, "job_count_finished", _finished_params(older_than, states))
    return int(count)


count_finished, count_finished_async = _faces(_count_finished)


def _why(job_id: int, *, schema: str = DEFAULT_SCHEMA) -> Op[str]:
    """In words, why a job is or is not running (one finding per line). For a job that
    no longer exists, whether it completed within the last hour (workers record the
    completed jobs they delete), or else what can have become of it; JobNotFoundError
    for an id that no job ever had."""
    job_id = checked_id(job_id)
    rows = yield from _rows(schema, "job_id_issued", {"id": job_id})
    exists, issued, standby = rows[0]
    if not exists and issued is not None and job_id <= issued:
        if not standby:
            completed = yield from _rows(schema, "job_why_completed", {"id": job_id})
            if completed:
                return str(completed[0][0])
        return _gone(job_id, issued, standby=standby)
    text = yield from _scalar(schema, "job_why", {"id": job_id})
    return str(text)


why, why_async = _faces(_why)


def _gone(job_id: int, issued: int, *, standby: bool) -> str:
    head = (
        f"job {job_id} no longer exists. Its id was handed out (ids up to {issued} have "
        "been, and none is reused), so the job was enqueued and later deleted."
    )
    if standby:
        return (
            f"{head} This server is a standby, which has no record of the completed jobs "
            "workers deleted (they keep one for an hour, on the primary): ask the primary "
            "whether it completed. Otherwise the pruner deleted it after its retention, "
            "the transaction that enqueued it rolled back, or an operator deleted it."
        )
    return (
        f"{head} It did not complete within the last hour, or a worker would have recorded "
        "it (workers keep the ids of the completed jobs they delete for an hour; see "
        "Config.completed_retention). So the pruner deleted it after its retention "
        "(failed, cancelled, or completed over an hour ago), the transaction that enqueued "
        "it rolled back, or an operator deleted it (`pgjobs purge`, or the dashboard: "
        "those keep no record, whatever the job's state)."
    )


def _doctor(
    *, long_transaction: float | timedelta = timedelta(minutes=5), schema: str = DEFAULT_SCHEMA
) -> Op[list[DoctorFinding]]:
    """What degrades the queue: transactions holding back vacuum (open longer than
    *long_transaction*, a timedelta or seconds), dead rows, stuck and overdue jobs,
    unserved queues, autovacuum."""
    params = {"long_transaction": _seconds(long_transaction, "long_transaction")}
    rows = yield from _rows(schema, "doctor_run", params)
    return [DoctorFinding(*row) for row in rows]


doctor, doctor_async = _faces(_doctor)


def _vacuum_blockers(*, limit: int = 10, schema: str = DEFAULT_SCHEMA) -> Op[list[VacuumBlocker]]:
    """The transactions, replication slots and prepared transactions with the oldest
    snapshots, oldest first."""
    params = {"limit": _positive(limit, "limit")}
    rows = yield from _rows(schema, "doctor_vacuum_blockers", params)
    return [VacuumBlocker(*row) for row in rows]


vacuum_blockers, vacuum_blockers_async = _faces(_vacuum_blockers)


def _grant_roles(
    *,
    enqueuer: str | None = None,
    worker: str | None = None,
    reader: str | None = None,
    create_missing: bool = True,
    schema: str = DEFAULT_SCHEMA,
) -> Op[list[str]]:
    """Create (unless *create_missing* is false) and grant the three pgjobs roles;
    return the statements run. Names default to ``<schema>_enqueuer``, ``<schema>_worker``
    and ``<schema>_reader``. Needs CREATEROLE to create roles, and the right to grant
    on the schema's objects (its owner has it)."""
    params = {
        "enqueuer": enqueuer or f"{schema}_enqueuer",
        "worker": worker or f"{schema}_worker",
        "reader": reader or f"{schema}_reader",
        "create_missing": create_missing,
    }
    rows = yield from _rows(schema, "roles_grant", params)
    return [str(row[0]) for row in rows]


grant_roles, grant_roles_async = _faces(_grant_roles)
