"""What the dashboard's pages read and do, on a small pool of autocommit connections.

Reads reuse pgjobs.admin and admin.sql (the same views and functions as the CLI and
psql); the few statements only the dashboard needs are in pgjobs/sql/dashboard.sql.
Every call is a short autocommit statement, so a page holds no lock a worker waits on.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import psycopg
import psycopg_pool

from .. import _queries, admin
from .._ops import Op, Rows, Statement, run
from .._worker.leader import LEADER_NAME

__all__ = ["MAX_BULK", "MAX_PAGE", "JobFilter", "Store", "Throughput"]

#: Most jobs on one page of the list, and most jobs one bulk retry touches.
MAX_PAGE = 200
MAX_BULK = 10_000
DEFAULT_PAGE = 50
_MAX_TEXT = 255  # queue and kind names are at most this long (a CHECK in migration 0001)


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
            raise admin.InvalidArgumentError(f"unknown filter {', '.join(map(repr, unknown))}")
        text = {name: (query.get(name) or "").strip() or None for name in cls.__slots__}
        state = text["state"]
        if state is not None and state not in admin.STATES:
            raise admin.InvalidArgumentError(
                f"unknown job state {state!r}: use one of {', '.join(admin.STATES)}"
            )
        for name in ("queue", "kind", "error"):
            if len(text[name] or "") > _MAX_TEXT:
                raise admin.InvalidArgumentError(f"{name} is longer than {_MAX_TEXT} characters")
        return cls(
            state=state,
            queue=text["queue"],
            kind=text["kind"],
            error=text["error"],
            since=_parse_since(text["since"]),
            before=None if text["before"] is None else admin.check_job_id(text["before"]),
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


def _parse_since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        since = datetime.fromisoformat(text)
    except ValueError:
        raise admin.InvalidArgumentError(
            f"since {text!r} is not a date and time: use 2026-12-02T10:00 (UTC unless an "
            "offset is given)"
        ) from None
    return since if since.tzinfo else since.replace(tzinfo=UTC)


def _parse_limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_PAGE
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise admin.InvalidArgumentError(
            f"limit is a number of jobs from 1 to {MAX_PAGE}, not {text!r}"
        )
    return int(text)


@dataclass(frozen=True, slots=True)
class Throughput:
    """One queue's finished attempts per minute over the last hour, oldest minute first."""

    completed: list[int] = field(default_factory=lambda: [0] * 60)
    failed: list[int] = field(default_factory=lambda: [0] * 60)


class Store:
    """The database side of the dashboard: a lazily opened pool and one method per need."""

    def __init__(self, dsn: str, *, schema: str, pool_size: int = 4) -> None:
        self.schema = _queries.check_schema_name(schema)
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
            kwargs={"autocommit": True},
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

    def queues(self) -> tuple[list[admin.QueueSummary], dict[str, Throughput]]:
        with self.connection() as conn:
            summaries = admin.queue_summary(conn, schema=self.schema)
            rows = self._rows(conn, "dashboard_throughput")
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

    def job(self, job_id: int) -> tuple[admin.JobDetail, Any, str]:
        """The job, its result (None without one) and the why() answer."""
        with self.connection() as conn:
            job = admin.get_job(conn, job_id, schema=self.schema)
            result = self._rows(conn, "dashboard_job_result", {"id": job_id})
            return (
                job,
                (result[0][0] if result else None),
                admin.why(conn, job_id, schema=self.schema),
            )

    def workers(self) -> tuple[list[admin.WorkerInfo], tuple[Any, ...] | None]:
        """The live workers, and the leader's (worker_id, elected_at, renewed_at,
        expires_at), if there is a live one."""
        with self.connection() as conn:
            workers = admin.live_workers(conn, schema=self.schema)
            leader = self._rows(conn, "leader_get", {"name": LEADER_NAME})
        return workers, (leader[0] if leader else None)

    def health(self) -> list[admin.DoctorFinding]:
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
            admin.get_job(conn, job_id, schema=self.schema)
            return bool(self._rows(conn, "dashboard_job_delete", {"id": job_id}))

    def retry_matching(self, flt: JobFilter) -> int:
        """Retry the failed jobs *flt* matches (at most MAX_BULK); how many."""
        params = flt.params() | {"limit": MAX_BULK}
        with self.connection() as conn:
            return int(self._rows(conn, "dashboard_job_retry_matching", params)[0][0])


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)
