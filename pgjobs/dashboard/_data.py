"""What the dashboard's pages read and do, on a small pool of autocommit connections.

Reads reuse pgjobs.admin and admin.sql (the same views and functions as the CLI and
psql); the few statements only the dashboard needs are in pgjobs/sql/dashboard.sql.
Every call is a short autocommit statement, so a page holds no lock a worker waits on.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import psycopg_pool

from .. import _queries, admin
from .._ops import Op, Rows, Statement, run
from .._worker.leader import LEADER_NAME
from ..errors import InvalidArgumentError
from ..job import Job, JobState, not_found, parse_id

log = logging.getLogger("pgjobs.dashboard")

__all__ = [
    "COUNT_CAP",
    "MAX_BULK",
    "MAX_PAGE",
    "Count",
    "Findings",
    "JobFilter",
    "QueueCounts",
    "Store",
    "Throughput",
    "check_text",
]

#: Most jobs on one page of the list, and most jobs one bulk retry touches.
MAX_PAGE = 200
MAX_BULK = 10_000
#: The queues page counts up to this many jobs (see dashboard_queue_counts) and shows
#: "10000+" beyond: a bounded read however many jobs are retained.
COUNT_CAP = 10_000
#: How long the health page shows one run of doctor() before starting the next, and how
#: long a request waits for a run in progress before showing the previous one.
HEALTH_TTL = 30.0
HEALTH_WAIT = 1.0
DEFAULT_PAGE = 50
_MAX_TEXT = 255  # queue and kind names are at most this long (their domains' rule)


@dataclass(frozen=True, slots=True)
class JobFilter:
    """The jobs list's filter, as it appears in the URL's query string."""

    state: str | None = None
    queue: str | None = None
    kind: str | None = None
    error: str | None = None
    since: datetime | None = None
    before: int | None = None
    limit: int = DEFAULT_PAGE

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> JobFilter:
        """The filter in *query*; InvalidArgumentError (a 400 page) for a bad value."""
        unknown = sorted(set(query) - {*cls.__slots__, "csrf"})
        if unknown:
            raise InvalidArgumentError(f"unknown filter {', '.join(map(repr, unknown))}")
        text = {name: (query.get(name) or "").strip() or None for name in cls.__slots__}
        state = text["state"]
        if state is not None and state not in list(JobState):
            raise InvalidArgumentError(
                f"unknown job state {state!r}: use one of {', '.join(JobState)}"
            )
        for name in ("queue", "kind", "error"):
            check_text(name, text[name])
        return cls(
            state=state,
            queue=text["queue"],
            kind=text["kind"],
            error=text["error"],
            since=_parse_since(text["since"]),
            before=None if text["before"] is None else parse_id(text["before"]),
            limit=_parse_limit(text["limit"]),
        )

    def query(self, **changes: Any) -> dict[str, str]:
        """The filter (with *changes*) as query-string items, empty ones left out."""
        values = {name: getattr(replace(self, **changes), name) for name in self.__slots__}
        if values["limit"] == DEFAULT_PAGE:
            values["limit"] = None
        if isinstance(values["since"], datetime):
            values["since"] = values["since"].isoformat(timespec="minutes")
        return {name: str(value) for name, value in values.items() if value is not None}

    def params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def check_text(name: str, value: str | None) -> None:
    """InvalidArgumentError for a name or search text no job can hold: longer than a
    queue or kind name may be, or with a NUL character (a Postgres text never has one;
    psycopg refuses to send it)."""
    if value is None:
        return
    if len(value) > _MAX_TEXT:
        raise InvalidArgumentError(f"{name} is longer than {_MAX_TEXT} characters")
    if "\x00" in value:
        raise InvalidArgumentError(f"{name} has a NUL character")


def _parse_since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        since = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgumentError(
            f"since {text!r} is not a date and time: use 2026-12-02T10:00 (UTC unless an "
            "offset is given)"
        ) from None
    return since if since.tzinfo else since.replace(tzinfo=UTC)


def _parse_limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_PAGE
    # isascii: str.isdigit also accepts digits int() refuses, such as '²'.
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_PAGE:
        raise InvalidArgumentError(f"limit is a number of jobs from 1 to {MAX_PAGE}, not {text!r}")
    return int(text)


@dataclass(frozen=True, slots=True)
class Throughput:
    """One queue's finished attempts per minute over the last hour, oldest minute first."""

    completed: list[int] = field(default_factory=lambda: [0] * 60)
    failed: list[int] = field(default_factory=lambda: [0] * 60)


@dataclass(frozen=True, slots=True)
class Count:
    """A number of jobs that is exact, or (capped) at least *value*."""

    value: int
    capped: bool = False

    def __str__(self) -> str:
        return f"{self.value}+" if self.capped else str(self.value)


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """One row of the queues page (dashboard_queue_counts): bounded counts, not
    queue_summary's full ones."""

    queue: str
    paused: bool
    paused_at: datetime | None
    scheduled: Count
    available: Count
    running: Count
    failed: Count
    cancelled: Count
    #: How long the oldest ready job has waited; at least that long when
    #: oldest_ready_exact is false (more available jobs than the page counts).
    oldest_ready_age: timedelta | None
    oldest_ready_exact: bool
    completed_last_minute: int
    failed_last_minute: int
    retried_last_minute: int
    workers: int
    concurrency: int


@dataclass(frozen=True, slots=True)
class Findings:
    """The latest doctor() run: its findings (None before the first one ends), when it
    ended, and whether a newer run is under way."""

    findings: list[admin.DoctorFinding] | None
    checked_at: datetime | None
    running: bool
    error: str | None = None


class _Background:
    """The latest result of a slow read, refreshed in a thread at most every *ttl*
    seconds, so that no request waits longer than *wait* for it."""

    def __init__(self, read: Callable[[], list[admin.DoctorFinding]], ttl: float) -> None:
        self._read = read
        self._ttl = ttl
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._result: Findings = Findings(None, None, running=False)
        self._refreshed = -math.inf

    def get(self, wait: float) -> Findings:
        with self._lock:
            if self._thread is None and time.monotonic() - self._refreshed >= self._ttl:
                self._done.clear()
                self._thread = threading.Thread(
                    target=self._refresh, name="pgjobs-dashboard-doctor", daemon=True
                )
                self._thread.start()
        self._done.wait(wait)
        with self._lock:
            return replace(self._result, running=self._thread is not None)

    def _refresh(self) -> None:
        try:
            findings = self._read()
        except Exception as exc:  # shown on the page; the next request tries again
            log.warning("pgjobs dashboard: doctor() failed: %s", exc)
            result = replace(self._result, error=str(exc))
        else:
            result = Findings(findings, datetime.now(UTC), running=False)
        with self._lock:
            self._result = result
            self._refreshed = time.monotonic()
            self._thread = None
            self._done.set()


class Store:
    """The database side of the dashboard: a lazily opened pool and one method per need."""

    def __init__(
        self, dsn: str, *, schema: str, pool_size: int = 4, count_cap: int = COUNT_CAP
    ) -> None:
        self.schema = _queries.check_schema_name(schema)
        self.count_cap = count_cap
        self._doctor = _Background(self._run_doctor, HEALTH_TTL)
        self._queries = _queries.queries(schema)
        self._dsn = dsn
        self._pool_size = pool_size
        self._pool = self._new_pool()
        self._opened = False
        self._lock = threading.Lock()

    def _new_pool(self) -> psycopg_pool.ConnectionPool[Any]:
        return psycopg_pool.ConnectionPool(
            self._dsn,
            min_size=1,
            max_size=self._pool_size,
            # JIT compiling costs more than a second on the queues page's plan, whose
            # costs the planner overestimates; every dashboard query is short.
            kwargs={"autocommit": True, "options": "-c jit=off"},
            open=False,
            name="pgjobs-dashboard",
        )

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        # Opened at the first request, not at construction: an app mounted in another
        # Starlette app gets no lifespan events of its own.
        if not self._opened:
            with self._lock:
                if not self._opened:
                    self._pool.open()
                    self._opened = True
        with self._pool.connection() as conn:
            yield conn

    def close(self) -> None:
        with self._lock:
            if self._opened:
                # A closed pool cannot be opened again, and the app may be served again
                # (a test client per test, a server restarted in-process).
                self._pool.close()
                self._pool = self._new_pool()
                self._opened = False

    def _rows(self, conn: psycopg.Connection[Any], name: str, params: Any = None) -> Rows:
        def op() -> Op[Rows]:
            rows = yield Statement(self._queries[name], params or {})
            return rows

        return run(conn, op())

    # --- reads ------------------------------------------------------------------------

    def queues(self) -> tuple[list[QueueCounts], dict[str, Throughput]]:
        with self.connection() as conn:
            counts = self._rows(conn, "dashboard_queue_counts", {"cap": self.count_cap})
            rows = self._rows(conn, "dashboard_throughput")
        summaries = [_queue_counts(row) for row in counts]
        this_minute = _minute(datetime.now(UTC))
        series: dict[str, Throughput] = {}
        for queue, minute, completed, failed, _retried in rows:
            slot = 59 - int((this_minute - _minute(minute)).total_seconds() // 60)
            if 0 <= slot < 60:
                throughput = series.setdefault(queue, Throughput())
                throughput.completed[slot] += completed
                throughput.failed[slot] += failed
        return summaries, series

    def jobs(self, flt: JobFilter) -> tuple[list[admin.JobSummary], int | None]:
        """A page of jobs, and the keyset of the next page (None on the last one)."""
        params = flt.params() | {"limit": flt.limit + 1}
        with self.connection() as conn:
            rows = self._rows(conn, "job_list", params)
        jobs = [admin.JobSummary(*row) for row in rows[: flt.limit]]
        return jobs, (jobs[-1].id if len(rows) > flt.limit else None)

    def job(self, job_id: int) -> tuple[Job, str]:
        """The job and the why() answer; JobNotFoundError if there is no such job."""
        with self.connection() as conn:
            return _existing(conn, job_id, self.schema), admin.why(conn, job_id, schema=self.schema)

    def workers(self) -> tuple[list[admin.WorkerInfo], tuple[Any, ...] | None]:
        """The live workers, and the leader's (worker_id, elected_at, renewed_at,
        expires_at), if there is a live one."""
        with self.connection() as conn:
            workers = admin.live_workers(conn, schema=self.schema)
            leader = self._rows(conn, "leader_get", {"name": LEADER_NAME})
        return workers, (leader[0] if leader else None)

    def health(self) -> Findings:
        """The latest doctor() run, refreshed in the background: its checks read the
        whole jobs table, seconds on millions of jobs."""
        return self._doctor.get(HEALTH_WAIT)

    def _run_doctor(self) -> list[admin.DoctorFinding]:
        with self.connection() as conn:
            return admin.doctor(conn, schema=self.schema)

    def queue_depths(self) -> list[admin.QueueSummary]:
        with self.connection() as conn:
            return admin.queue_summary(conn, schema=self.schema)

    # --- actions ----------------------------------------------------------------------

    def pause(self, queue: str) -> bool:
        with self.connection() as conn:
            return admin.pause_queue(conn, queue, schema=self.schema)

    def resume(self, queue: str) -> bool:
        with self.connection() as conn:
            return admin.resume_queue(conn, queue, schema=self.schema)

    def retry(self, job_id: int) -> bool:
        with self.connection() as conn:
            return admin.retry_job(conn, job_id, schema=self.schema)

    def cancel(self, job_id: int) -> bool:
        with self.connection() as conn:
            return admin.cancel_job(
                conn, job_id, reason="cancelled from the dashboard", schema=self.schema
            )

    def delete(self, job_id: int) -> bool:
        """Delete a job that is not running; JobNotFoundError if there is none."""
        with self.connection() as conn:
            _existing(conn, job_id, self.schema)
            return bool(self._rows(conn, "dashboard_job_delete", {"id": job_id}))

    def retry_matching(self, flt: JobFilter) -> int:
        """Retry the failed jobs *flt* matches (at most MAX_BULK); how many."""
        params = flt.params() | {"limit": MAX_BULK}
        with self.connection() as conn:
            return int(self._rows(conn, "dashboard_job_retry_matching", params)[0][0])


def _existing(conn: psycopg.Connection[Any], job_id: int, schema: str) -> Job:
    job = admin.get_job(conn, job_id, schema=schema)
    if job is None:
        raise not_found(job_id)
    return job


def _queue_counts(row: tuple[Any, ...]) -> QueueCounts:
    (queue, paused, paused_at, scheduled, available, available_capped, running, failed,
     cancelled, oldest_ready_age, *rest, capped_states) = row  # fmt: skip
    capped = set(capped_states)
    return QueueCounts(
        queue,
        paused,
        paused_at,
        Count(scheduled, "scheduled" in capped),
        Count(available, available_capped),
        Count(running, "running" in capped),
        Count(failed, "failed" in capped),
        Count(cancelled, "cancelled" in capped),
        oldest_ready_age,
        not (available_capped or "scheduled" in capped),
        *rest,
    )


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)
