"""Operate pgjobs from Python: inspect queues and jobs, retry, cancel, pause, purge, diagnose.

These are the functions behind the ``pgjobs`` operator commands (``status``, ``jobs``,
``retry``, ``cancel``, ``pause``, ``resume``, ``why``, ``doctor``, ``purge``, ``grants``).
Each one calls a view or function of the pgjobs schema (migration 0002, see
docs/sql-reference.md), so ``psql``, Python and the command line give the same answers.

Every function takes the caller's psycopg connection (or a SQLAlchemy / Django one on
psycopg 3) and runs in whatever transaction it is in: pgjobs never commits here. On an
autocommit connection each call is its own transaction::

    import psycopg
    from pgjobs import admin

    with psycopg.connect(dsn, autocommit=True) as conn:
        for queue in admin.queue_summary(conn):
            print(queue.queue, queue.available, queue.oldest_ready_age)
        print(admin.why(conn, 42))
        admin.cancel_job(conn, 42, reason="customer asked")

Errors, beside psycopg's own::

    PgjobsError
    ├── JobNotFoundError (LookupError)      no job with this id
    ├── QueueNotFoundError (LookupError)    no job, worker or setting names this queue
    ├── JobStateError                       the job's state does not allow the action
    └── InvalidArgumentError (ValueError)   a bad id, duration or state name
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import psycopg
import psycopg.errors

from . import _queries
from ._ops import Op, Rows, Statement, run
from .enqueue import psycopg_connection
from .errors import PgjobsError

__all__ = [
    "FINISHED_STATES",
    "STATES",
    "DoctorFinding",
    "InvalidArgumentError",
    "JobDetail",
    "JobNotFoundError",
    "JobStateError",
    "JobSummary",
    "QueueNotFoundError",
    "QueueSummary",
    "VacuumBlocker",
    "WorkerInfo",
    "cancel_job",
    "check_job_id",
    "count_finished",
    "doctor",
    "get_job",
    "grant_roles",
    "jsonable",
    "list_jobs",
    "live_workers",
    "parse_duration",
    "pause_queue",
    "purge_finished",
    "queue_summary",
    "resume_queue",
    "retry_failed",
    "retry_job",
    "vacuum_blockers",
    "why",
]

T = TypeVar("T")

#: Every job state, in the order a job goes through them.
STATES = ("scheduled", "available", "running", "completed", "failed", "cancelled")
#: States a job never leaves on its own; only these are purged.
FINISHED_STATES = ("completed", "failed", "cancelled")
_MAX_BIGINT = 2**63 - 1


class JobNotFoundError(PgjobsError, LookupError):
    """No job has this id: it was never enqueued, or it finished and was deleted."""


class QueueNotFoundError(PgjobsError, LookupError):
    """No job, worker or queue setting names this queue (pass ``force=True`` to pause it
    anyway)."""


class JobStateError(PgjobsError):
    """The job's state does not allow the action (cancelling a completed job, say)."""


class InvalidArgumentError(PgjobsError, ValueError):
    """An argument is malformed: a job id, a duration, a state name."""


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
class JobSummary:
    """A job as listed by :func:`list_jobs` (no payload)."""

    id: int
    queue: str
    kind: str
    state: str
    priority: int
    attempt: int
    max_retry: int
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker_id: UUID | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class JobDetail:
    """Everything about one job, as returned by :func:`get_job`."""

    id: int
    queue: str
    kind: str
    state: str
    priority: int
    attempt: int
    max_retry: int
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker_id: UUID | None
    last_error: str | None
    payload: Any
    #: Seconds one attempt may run.
    timeout: float
    lease_expires_at: datetime | None
    #: One ``{"attempt", "at", "error"}`` object per failed attempt.
    errors: list[dict[str, Any]] | None
    worker_host: str | None
    worker_pid: int | None


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


def jsonable(value: Any) -> Any:
    """*value* (a row dataclass, or lists and dicts of them) as plain JSON-ready data:
    datetimes as ISO 8601 text, durations as seconds, UUIDs as text."""
    if hasattr(value, "__dataclass_fields__"):
        value = asdict(value)
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, UUID):
        return str(value)
    return value


# --- argument checks ------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | float | timedelta) -> timedelta:
    """A duration from ``"90s"``, ``"15m"``, ``"12h"``, ``"7d"``, ``"2w"``, ``"1h30m"``,
    ``"500ms"``, or a plain number of seconds; never negative."""
    if isinstance(text, timedelta):
        seconds = text.total_seconds()
    elif isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    elif isinstance(text, str):
        compact = text.strip().replace(" ", "")
        try:
            seconds = float(compact)
        except ValueError:
            parts = _DURATION_PART.findall(compact)
            if not compact or "".join(n + u for n, u in parts).lower() != compact.lower():
                raise InvalidArgumentError(
                    f"invalid duration {text!r}: use a number and a unit, such as 90s, 15m, "
                    "12h, 7d or 1h30m (m is minutes)"
                ) from None
            seconds = sum(float(n) * _UNIT_SECONDS[u.lower()] for n, u in parts)
    else:
        raise InvalidArgumentError(f"invalid duration {text!r}")
    if not seconds >= 0:  # also NaN
        raise InvalidArgumentError(f"a duration must not be negative, not {text!r}")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise InvalidArgumentError(f"duration {text!r} is too long") from None


def check_job_id(value: int | str) -> int:
    """*value* as a job id (a positive 64-bit integer), or InvalidArgumentError."""
    if isinstance(value, bool):
        raise InvalidArgumentError(f"a job id is a positive integer, not {value!r}")
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        if not text.isdigit():
            raise InvalidArgumentError(f"a job id is a positive integer, not {value!r}")
        value = int(text)
    if not isinstance(value, int) or not 1 <= value <= _MAX_BIGINT:
        raise InvalidArgumentError(f"a job id is a positive integer, not {value!r}")
    return value


def _check_state(state: str | None, allowed: Iterable[str] = STATES) -> str | None:
    allowed = tuple(allowed)
    if state is not None and state not in allowed:
        raise InvalidArgumentError(f"unknown job state {state!r}: use one of {', '.join(allowed)}")
    return state


# --- operations (no I/O: see pgjobs._ops) ---------------------------------------------------


def _statement(schema: str, name: str, params: Mapping[str, Any] | None = None) -> Statement:
    return Statement(_queries.queries(schema)[name], params or {})


def _rows_op(schema: str, name: str, params: Mapping[str, Any] | None = None) -> Op[Rows]:
    rows = yield _statement(schema, name, params)
    return rows


def _scalar_op(schema: str, name: str, params: Mapping[str, Any] | None = None) -> Op[Any]:
    rows = yield _statement(schema, name, params)
    return rows[0][0] if rows else None


def _run(conn: Any, op: Op[T], *, missing: type[PgjobsError] = JobNotFoundError) -> T:
    """Run *op*, turning the no_data_found error of the schema's functions into *missing*."""
    try:
        return run(psycopg_connection(conn), op)
    except psycopg.errors.NoDataFound as exc:
        raise missing(exc.diag.message_primary or str(exc)) from exc


# --- public API -----------------------------------------------------------------------------


def queue_summary(conn: Any, *, schema: str = _queries.DEFAULT_SCHEMA) -> list[QueueSummary]:
    """Every queue a job, worker or setting names: jobs by state, oldest ready job,
    finished attempts in the last minute, live workers serving it."""
    rows = _run(conn, _rows_op(schema, "queue_summary"))
    return [QueueSummary(*row) for row in rows]


def live_workers(conn: Any, *, schema: str = _queries.DEFAULT_SCHEMA) -> list[WorkerInfo]:
    """Workers whose heartbeat is younger than 60 seconds."""
    rows = _run(conn, _rows_op(schema, "worker_list_live"))
    return [WorkerInfo(*row) for row in rows]


def list_jobs(
    conn: Any,
    *,
    state: str | None = None,
    queue: str | None = None,
    kind: str | None = None,
    limit: int = 50,
    schema: str = _queries.DEFAULT_SCHEMA,
) -> list[JobSummary]:
    """The newest jobs (highest id first), optionally of one state, queue and kind."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidArgumentError(f"limit must be a positive integer, not {limit!r}")
    params = {
        "state": _check_state(state),
        "queue": queue,
        "kind": kind,
        "error": None,
        "since": None,
        "before": None,
        "limit": limit,
    }
    rows = _run(conn, _rows_op(schema, "job_list", params))
    return [JobSummary(*row) for row in rows]


def get_job(conn: Any, job_id: int | str, *, schema: str = _queries.DEFAULT_SCHEMA) -> JobDetail:
    """Everything about one job, payload included; JobNotFoundError if there is none."""
    job_id = check_job_id(job_id)
    rows = _run(conn, _rows_op(schema, "job_get", {"id": job_id}))
    if not rows:
        raise JobNotFoundError(
            f"job {job_id} does not exist (never enqueued, or finished and deleted)"
        )
    return JobDetail(*rows[0])


def retry_job(conn: Any, job_id: int | str, *, schema: str = _queries.DEFAULT_SCHEMA) -> bool:
    """Make a failed, cancelled or scheduled job available now; False for other states.

    A job that used up its retries gets exactly one more attempt.
    """
    op = _scalar_op(schema, "job_retry", {"id": check_job_id(job_id)})
    return bool(_run(conn, op))


def retry_failed(
    conn: Any,
    *,
    kind: str | None = None,
    queue: str | None = None,
    schema: str = _queries.DEFAULT_SCHEMA,
) -> int:
    """Make every failed job (of *kind*, of *queue*, when given) available now; how many."""
    op = _scalar_op(schema, "job_retry_failed", {"kind": kind, "queue": queue})
    return int(_run(conn, op))


def cancel_job(
    conn: Any,
    job_id: int | str,
    *,
    reason: str | None = None,
    schema: str = _queries.DEFAULT_SCHEMA,
) -> bool:
    """Cancel a scheduled, available or running job; False if it had already finished.

    A running job is cancelled cooperatively: its row is marked cancelled at once, and its
    worker, told through NOTIFY on ``<schema>_control`` when the transaction commits,
    cancels the handler's context. *reason* becomes the job's ``last_error``.
    """
    op = _scalar_op(schema, "job_cancel", {"id": check_job_id(job_id), "reason": reason})
    return bool(_run(conn, op))


def pause_queue(
    conn: Any, queue: str, *, force: bool = False, schema: str = _queries.DEFAULT_SCHEMA
) -> bool:
    """Stop workers claiming from *queue*, from their next claim on; False if it was
    already paused. The pause is a row in ``<schema>.queues``: it holds across restarts.

    An unknown queue raises QueueNotFoundError unless *force* (to pause before first use).
    """
    op = _scalar_op(schema, "queue_pause", {"queue": queue, "force": force})
    return bool(_run(conn, op, missing=QueueNotFoundError))


def resume_queue(conn: Any, queue: str, *, schema: str = _queries.DEFAULT_SCHEMA) -> bool:
    """Let workers claim from *queue* again (waking waiting ones); False if not paused."""
    op = _scalar_op(schema, "queue_resume", {"queue": queue})
    return bool(_run(conn, op, missing=QueueNotFoundError))


def _purge_params(older_than: str | float | timedelta, states: Iterable[str]) -> dict[str, Any]:
    states = list(states)
    if not states:
        raise InvalidArgumentError("give at least one state to purge")
    for state in states:
        _check_state(state, FINISHED_STATES)
    return {"older_than": parse_duration(older_than).total_seconds(), "states": states}


def purge_finished(
    conn: Any,
    older_than: str | float | timedelta,
    *,
    max_rows: int | None = None,
    states: Iterable[str] = FINISHED_STATES,
    schema: str = _queries.DEFAULT_SCHEMA,
) -> int:
    """Delete jobs that finished (in *states*) more than *older_than* ago; how many.

    With *max_rows*, delete at most that many: call it in a loop on an autocommit
    connection to purge a large backlog in short transactions (as ``pgjobs purge`` does).
    """
    params = _purge_params(older_than, states) | {"max_rows": max_rows}
    return int(_run(conn, _scalar_op(schema, "job_purge_finished", params)))


def count_finished(
    conn: Any,
    older_than: str | float | timedelta,
    *,
    states: Iterable[str] = FINISHED_STATES,
    schema: str = _queries.DEFAULT_SCHEMA,
) -> int:
    """How many jobs :func:`purge_finished` would delete now."""
    params = _purge_params(older_than, states)
    return int(_run(conn, _scalar_op(schema, "job_count_finished", params)))


def why(conn: Any, job_id: int | str, *, schema: str = _queries.DEFAULT_SCHEMA) -> str:
    """In words, why a job is or is not running (one finding per line). For a job that
    no longer exists, what can have become of it; JobNotFoundError for an id that no
    job ever had."""
    return _run(conn, _why_op(schema, check_job_id(job_id)))


def _why_op(schema: str, job_id: int) -> Op[str]:
    rows = yield _statement(schema, "job_id_issued", {"id": job_id})
    exists, issued = rows[0]
    if not exists and issued is not None and job_id <= issued:
        return _gone(job_id, issued)
    text = yield from _scalar_op(schema, "job_why", {"id": job_id})
    return str(text)


def _gone(job_id: int, issued: int) -> str:
    return (
        f"job {job_id} no longer exists. Its id was handed out (ids up to {issued} have "
        "been, and none is reused), so the job was enqueued and later deleted. Most "
        "likely it completed: completed jobs are deleted as they complete unless workers "
        "keep them (Config.completed_retention). Otherwise the pruner deleted it after "
        "its retention (completed, failed or cancelled), `pgjobs purge` deleted it, or "
        "the transaction that enqueued it rolled back."
    )


def doctor(
    conn: Any,
    *,
    long_transaction: str | float | timedelta = timedelta(minutes=5),
    schema: str = _queries.DEFAULT_SCHEMA,
) -> list[DoctorFinding]:
    """What degrades the queue: transactions holding back vacuum (open longer than
    *long_transaction*), dead rows, stuck and overdue jobs, unserved queues, autovacuum."""
    params = {"long_transaction": parse_duration(long_transaction).total_seconds()}
    rows = _run(conn, _rows_op(schema, "doctor_run", params))
    return [DoctorFinding(*row) for row in rows]


def vacuum_blockers(
    conn: Any, *, limit: int = 10, schema: str = _queries.DEFAULT_SCHEMA
) -> list[VacuumBlocker]:
    """The transactions, replication slots and prepared transactions with the oldest
    snapshots, oldest first."""
    rows = _run(conn, _rows_op(schema, "doctor_vacuum_blockers", {"limit": limit}))
    return [VacuumBlocker(*row) for row in rows]


def grant_roles(
    conn: Any,
    *,
    enqueuer: str | None = None,
    worker: str | None = None,
    reader: str | None = None,
    create_missing: bool = True,
    schema: str = _queries.DEFAULT_SCHEMA,
) -> list[str]:
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
    rows = _run(conn, _rows_op(schema, "roles_grant", params))
    return [str(row[0]) for row in rows]
