"""A job as it is stored, and the states it goes through.

:class:`Job` is what every read of one job returns: ``Client.get`` and ``Client.wait``,
``pgjobs.admin.get_job`` (behind ``pgjobs jobs show`` and the dashboard's job page) and
``pgjobs.testing``. All of them run :func:`get_op`, one statement (``job_get`` in
pgjobs/sql/admin.sql) whose column names are the fields of :class:`Job`.

"No such job" is the same everywhere: a read returns None (the row is gone, which is the
normal end of a completed job unless it is retained), and an operation that acts on the
job (retry, cancel, why, ``testing.run_job``) raises
:class:`pgjobs.errors.JobNotFoundError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from . import _queries
from ._ops import Op, Statement
from .errors import InvalidArgumentError, JobNotFoundError

__all__ = [
    "FINISHED_STATES",
    "JOB_COLUMNS",
    "Job",
    "JobState",
    "checked_id",
    "get_many_op",
    "get_op",
    "not_found",
    "parse_id",
]

_MAX_ID = 2**63 - 1  # ids are bigint


class JobState(StrEnum):
    """Where a job is: the ``state`` column of ``<schema>.jobs``, as a ``str`` enum (a
    member equals its text, ``JobState.FAILED == "failed"``).

    Each state says which part of pgjobs moves a job into it and out of it::

        enqueue ─┬─(run_at ≤ now)────────────────────────────► AVAILABLE ◄────────────┐
                 └─(delay, future run_at)─► SCHEDULED ─(due)─►   │                    │
                                               ▲                 │ claim              │
                                  retry after  │                 ▼                    │
                                  its backoff  └──────────── RUNNING ─(lease expired, │
                                                                 │    or shutdown)────┘
                                                                 ├──► COMPLETED
                                                                 ├──► FAILED
                                                                 └──► CANCELLED

        operator: retry   FAILED, CANCELLED, SCHEDULED ──► AVAILABLE
                  cancel  SCHEDULED, AVAILABLE, RUNNING ──► CANCELLED

    The last three are :data:`FINISHED_STATES`: a job leaves them only when an
    operator retries it, or when it is deleted.
    """

    #: Waiting for its ``run_at``: a delayed job, a snoozed one, or a retry waiting out
    #: its backoff. A worker's maintenance pass makes it available once due; an
    #: operator may cancel it or retry it now.
    SCHEDULED = "scheduled"
    #: Ready to run. A worker claims it (``FOR UPDATE SKIP LOCKED``); an operator may
    #: cancel it.
    AVAILABLE = "available"
    #: Claimed by a worker that holds its lease. That worker records the outcome; if the
    #: lease runs out (the worker died), another worker's rescue pass makes it available
    #: again, or failed when no retry is left. A graceful shutdown gives it back as
    #: available without counting the attempt.
    RUNNING = "running"
    #: The handler returned. Deleted at once unless workers retain completed jobs
    #: (``Config.completed_retention``); then the leader's pruner deletes it later.
    COMPLETED = "completed"
    #: Out of retries, or the handler raised ``SkipRetry``. Kept for
    #: ``Config.failed_retention``; an operator may retry it.
    FAILED = "failed"
    #: Cancelled by an operator or by its handler (``Cancel``). Kept for
    #: ``Config.cancelled_retention``; an operator may retry it.
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True for the states a job does not leave by itself."""
        return self in FINISHED_STATES


#: The states a job does not leave by itself, in the order pgjobs lists them: only an
#: operator's retry or a deletion (the pruner, ``pgjobs purge``) ends them.
FINISHED_STATES: tuple[JobState, ...] = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True, slots=True)
class _JobFields:
    """The fields that open every read of a job, :class:`Job` and a listing's
    :class:`pgjobs.admin.JobSummary` alike, in their columns' order."""

    id: int
    queue: str
    kind: str
    state: JobState
    priority: int
    #: Attempts started so far (a claim adds one); at most ``max_retry + 1``.
    attempt: int
    max_retry: int
    #: When it runs (next): for a finished job, when it last became due.
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    def __post_init__(self) -> None:
        if type(self.state) is not JobState:
            object.__setattr__(self, "state", JobState(self.state))

    @property
    def finished(self) -> bool:
        """True once the job is completed, failed or cancelled."""
        return self.state in FINISHED_STATES


@dataclass(frozen=True, slots=True)
class Job(_JobFields):
    """A snapshot of one row of ``<schema>.jobs``, with its worker."""

    payload: Any
    #: What the handler returned, while the completed job is retained.
    result: Any
    #: Seconds one attempt may run.
    timeout: float
    last_error: str | None
    #: One ``{"attempt", "at", "error"}`` per failed attempt, oldest first.
    errors: list[dict[str, Any]]
    #: The worker running it (or that ran it last), and how long its lease holds.
    worker_id: UUID | None
    lease_expires_at: datetime | None
    #: Where that worker runs, while its row in ``<schema>.workers`` exists.
    worker_host: str | None
    worker_pid: int | None


#: The columns of ``job_get`` (and of every statement that reads jobs as :class:`Job`),
#: named and ordered as the fields: tests/test_sql_operations.py holds the SQL to it.
JOB_COLUMNS = tuple(field.name for field in fields(Job))


def checked_id(value: int) -> int:
    """*value* if it can be a job id (a positive 64-bit integer), else InvalidArgumentError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_ID:
        raise InvalidArgumentError(f"a job id is a positive integer, not {value!r}")
    return value


def parse_id(text: str) -> int:
    """A job id as an operator types it (``42``, or ``#42`` as lists show it), in a
    command or a URL; InvalidArgumentError for anything but a positive 64-bit integer."""
    digits = text.strip().removeprefix("#")
    if digits.isascii() and digits.isdigit():
        with contextlib.suppress(InvalidArgumentError):
            return checked_id(int(digits))
    raise InvalidArgumentError(f"a job id is a positive integer, not {text!r}")


def not_found(job_id: int, seen_by: str = "") -> JobNotFoundError:
    """The error of an operation on job *job_id*, which does not exist (*seen_by*: as
    seen by what, when that matters)."""
    return JobNotFoundError(
        f"job {job_id} does not exist{seen_by} (never enqueued, enqueued in a transaction "
        "not committed yet, or finished and deleted)"
    )


def get_op(job_id: int, schema: str) -> Op[Job | None]:
    """Job *job_id*, or None if there is no such row."""
    jobs = yield from get_many_op([checked_id(job_id)], schema)
    return jobs[0] if jobs else None


def get_many_op(ids: Iterable[int], schema: str) -> Op[list[Job]]:
    """The jobs of *ids* that exist, by id."""
    rows = yield Statement(_queries.queries(schema)["job_get"], {"ids": list(ids)})
    return [Job(*row) for row in rows]
