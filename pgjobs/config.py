"""Worker configuration: one frozen object, validated when it is built.

``pgjobs.Config()`` is the default configuration; every field has a documented default
and an invalid value raises :class:`~pgjobs.errors.ConfigurationError` at once rather
than when the worker starts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from ._queries import DEFAULT_SCHEMA, check_schema_name
from .backoff import Backoff, default_backoff
from .errors import ConfigurationError
from .task import DEFAULT_QUEUE, MAX_NAME_LENGTH

__all__ = ["Config", "parse_queues"]


#: The queues of ``Config()``: asynq's classic example, and the one pgjobs documents.
DEFAULT_QUEUES = {"critical": 6, DEFAULT_QUEUE: 3, "low": 1}


def _default_queues() -> dict[str, int]:
    return dict(DEFAULT_QUEUES)


#: How long failed and cancelled jobs are kept by default: a week to look into them.
DEFAULT_FAILED_RETENTION = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Config:
    """How a :class:`~pgjobs.Server` runs.

    :param dsn: the database; ``None`` means ``$PGJOBS_DSN``, then ``$DATABASE_URL``.
    :param concurrency: jobs run at once by this worker (async tasks and threads alike).
    :param queues: queue name -> weight. Under load each queue gets its weight's share of
        the worker; a queue without work lends its share to the others.
    :param strict_priority: drain queues strictly by descending weight instead.
    :param shutdown_timeout: seconds a graceful stop waits for running jobs before it
        cancels them and returns them to their queue.
    :param wait_for_db: seconds a starting worker keeps trying a database it cannot
        reach (a server not up yet, as under ``docker compose up``), with a log line
        each try, before it gives up; ``0`` gives up at once. A server that answers and
        refuses (password, database name) is not waited for.
    :param schema: the pgjobs schema.
    :param listen: wake up on LISTEN/NOTIFY; ``False`` only polls (for PgBouncer in
        transaction mode, where LISTEN cannot work).
    :param poll_interval: seconds between polls when idle; it bounds the delay of a
        missed notification and of scheduled jobs coming due.
    :param lease: seconds a claimed job stays leased without a heartbeat; a job whose
        lease ran out is presumed lost with its worker and runs again. A job's lease is
        also never longer than its own timeout plus ``lease_grace``.
    :param lease_grace: seconds past a job's deadline before another worker may rescue it.
        It only has to cover the worker's own write of the timed-out attempt: a live
        worker records a timeout at the deadline, so the grace matters only when the
        worker is gone, and then it is time a short job waits to run again.
    :param heartbeat_interval: seconds between heartbeats (worker row, long jobs' leases).
    :param rescue_interval: seconds between passes that rescue expired leases.
    :param claim_batch: most jobs claimed in one statement (also bounded by free slots).
    :param handler_pool_size: most database connections the handlers of this worker hold
        at once through ``ctx.transaction()`` (never more than *concurrency*), for each
        of its two pools: one for sync handlers, one for async ones, so a worker whose
        handlers are of both kinds may hold twice as many. Handlers beyond it wait for
        one, and the worker logs that they did; it bounds what a worker costs the
        database however high *concurrency* goes.
    :param completed_retention: seconds (or a timedelta) completed jobs are kept, with
        their result; ``0`` (the default) deletes them as they complete, ``None`` keeps
        them forever. A deleted completed job's id is kept for an hour, so that ``why``
        can still say it completed.
    :param failed_retention: seconds failed jobs are kept (default 7 days); ``None``: forever.
    :param cancelled_retention: seconds cancelled jobs are kept (default 7 days); ``None``:
        forever.
    :param leader_interval: seconds between leader elections. One worker per schema is the
        leader and runs periodic jobs and the pruner; it renews its term every interval
        and loses it after three intervals without renewal.
    :param prune_interval: seconds between the leader's pruning passes, which delete jobs
        past their retention, expired unique keys and day-old throughput counters.
    :param synchronous_commit: ``False`` (the default) lets the worker's own writes
        (claims, outcomes, heartbeats) commit without waiting for their WAL flush, so
        they stop competing with your application's commits for it. A Postgres crash can
        then forget the last fraction of a second of them: a claimed job is available
        again, a finished one runs again after its lease; both are within at-least-once
        delivery, and ``ctx.transaction()`` always commits durably. Set ``True`` to keep
        retry counts exact across a server crash, or when the worker's connections go
        through PgBouncer in transaction mode (the setting is a session ``SET``).
    :param backoff: default retry delay for kinds registered without their own.

    The retention settings, and the periodic schedules, of the worker that is leader
    are the ones that apply: give every worker the same.
    """

    dsn: str | None = None
    concurrency: int = 10
    queues: Mapping[str, int] = field(default_factory=_default_queues)
    strict_priority: bool = False
    shutdown_timeout: float = 10.0
    wait_for_db: float = 30.0
    schema: str = DEFAULT_SCHEMA
    listen: bool = True
    poll_interval: float = 1.0
    lease: float = 60.0
    lease_grace: float = 2.0
    heartbeat_interval: float = 15.0
    rescue_interval: float = 15.0
    claim_batch: int = 500
    handler_pool_size: int = 10
    synchronous_commit: bool = False
    completed_retention: float | timedelta | None = 0.0
    failed_retention: float | timedelta | None = DEFAULT_FAILED_RETENTION
    cancelled_retention: float | timedelta | None = DEFAULT_FAILED_RETENTION
    leader_interval: float = 5.0
    prune_interval: float = 60.0
    backoff: Backoff = default_backoff

    def __post_init__(self) -> None:
        _positive_int(self.concurrency, "concurrency")
        _positive_int(self.claim_batch, "claim_batch")
        _positive_int(self.handler_pool_size, "handler_pool_size")
        for name in (
            "poll_interval",
            "lease",
            "heartbeat_interval",
            "rescue_interval",
            "leader_interval",
            "prune_interval",
        ):
            _positive_number(getattr(self, name), name)
        for name in ("shutdown_timeout", "lease_grace", "wait_for_db"):
            _positive_number(getattr(self, name), name, allow_zero=True)
        if self.heartbeat_interval * 2 > self.lease:
            raise ConfigurationError(
                f"heartbeat_interval ({self.heartbeat_interval}s) must be at most half the "
                f"lease ({self.lease}s), or leases would lapse between heartbeats"
            )
        check_schema_name(self.schema)
        object.__setattr__(self, "queues", _check_queues(self.queues))
        if not callable(self.backoff):
            raise ConfigurationError("backoff must be callable as backoff(attempt, error)")
        for name in ("completed_retention", "failed_retention", "cancelled_retention"):
            object.__setattr__(self, name, _retention(getattr(self, name), name))

    @property
    def _deletes_completed(self) -> bool:
        """Whether a completed job's row goes in the statement that completes it."""
        return self.completed_retention == 0

    def retention(self, state: Literal["completed", "failed", "cancelled"]) -> float | None:
        """Seconds jobs finished in *state* are kept (``None``: forever)."""
        value = getattr(self, f"{state}_retention")
        assert value is None or isinstance(value, float)
        return value


def _positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a whole number of at least 1, not {value!r}")


def _positive_number(value: Any, name: str, *, allow_zero: bool = False) -> None:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
    )
    if not ok:
        bound = "0 or more" if allow_zero else "more than 0"
        raise ConfigurationError(f"{name} must be a number of seconds, {bound}, not {value!r}")


def _retention(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    _positive_number(value, name, allow_zero=True)
    return float(value)


def _check_queues(queues: Mapping[str, int]) -> dict[str, int]:
    if not isinstance(queues, Mapping) or not queues:
        raise ConfigurationError("queues must map at least one queue name to its weight")
    checked: dict[str, int] = {}
    for name, weight in queues.items():
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
            raise ConfigurationError(f"invalid queue name {name!r}")
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
            raise ConfigurationError(
                f"queue {name!r}: weight must be a whole number of at least 1, not {weight!r}"
            )
        checked[name] = weight
    return checked


def parse_queues(spec: str) -> dict[str, int]:
    """Parse ``"critical=6,default=3,low"`` (weight 1 when omitted) into a queue mapping."""
    queues: dict[str, int] = {}
    for part in spec.split(","):
        name, sep, weight_text = part.strip().partition("=")
        name = name.strip()
        if not name:
            raise ConfigurationError(f"invalid queue list {spec!r}: an empty queue name")
        try:
            weight = int(weight_text) if sep else 1
        except ValueError:
            raise ConfigurationError(
                f"invalid weight {weight_text.strip()!r} for queue {name!r}: "
                "use a whole number, as in critical=6"
            ) from None
        if name in queues:
            raise ConfigurationError(f"queue {name!r} is listed twice")
        queues[name] = weight
    return _check_queues(queues)
