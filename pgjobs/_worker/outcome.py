"""What became of an attempt: decided here, without I/O, written by the completer.

:func:`decide` is the one place that maps a handler's return value or exception to the
job's next state, so the worker and ``pgjobs.testing`` cannot disagree about it.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NamedTuple

from ..backoff import Backoff, default_backoff
from ..errors import Cancel, PayloadError, SkipRetry, Snooze
from ..task import MAX_SECONDS, encode_payload

__all__ = [
    "MAX_ERROR_CHARS",
    "Outcome",
    "decide",
    "describe_error",
    "encode_result",
    "finish_params",
]

log = logging.getLogger("pgjobs.worker")

#: Longest error text kept in a row: the message and the innermost frames.
MAX_ERROR_CHARS = 4000


class Outcome(NamedTuple):
    """The result of one attempt of one job, as ``job_finish_many`` takes it. A named
    tuple: one is made per job on the worker's hot path.

    *state* is the job's next state: ``completed``, ``failed``, ``cancelled``, or
    ``scheduled`` for a retry or snooze after *delay* seconds. *refund* gives the attempt
    back (a snooze). *result* is the handler's return value as JSON text.
    """

    job_id: int
    attempt: int
    state: str
    delay: float = 0.0
    error: str | None = None
    result: str | None = None
    refund: bool = False

    @property
    def failed(self) -> bool:
        return self.error is not None and self.state != "cancelled"


def describe_error(error: BaseException, *, frames: int = 5) -> str:
    """``Type: message`` and a short traceback (innermost frames), bounded in size, as
    text Postgres can store whatever the exception holds."""
    try:
        message = str(error)
    except Exception:  # an exception's __str__ is the handler author's code
        message = f"<unprintable {type(error).__name__} object>"
    head = f"{type(error).__name__}: {message}".rstrip(": ")
    tb = traceback.extract_tb(error.__traceback__)[-frames:] if error.__traceback__ else []
    if tb:
        head += "\n" + "".join(traceback.format_list(tb)).rstrip()
    if len(head) > MAX_ERROR_CHARS:
        head = head[: MAX_ERROR_CHARS - 15] + "\n[... cut ...]"
    return _storable(head)


def _storable(text: str) -> str:
    """*text* without what a Postgres text value cannot hold: NUL, and lone surrogates
    (which have no UTF-8 form), both written as backslash escapes."""
    if text.isascii():
        return text.replace("\x00", "\\x00")
    text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def encode_result(job_id: int, value: Any) -> str | None:
    """The handler's return value as JSON text; None stores nothing.

    The job's work is done by then, so a value jsonb cannot hold (not JSON, nested too
    deeply, holding itself, NUL characters, lone surrogates) does not fail the job: it
    completes without a result, and the error is logged.
    """
    if value is None:
        return None
    try:
        return encode_payload(value, max_bytes=sys.maxsize)
    except PayloadError as exc:
        log.error(
            "job %d: result not stored, jsonb cannot hold it: %s",
            job_id,
            exc,
            extra={"job_id": job_id},
        )
        return None


def decide(
    job_id: int,
    attempt: int,
    max_retry: int,
    error: BaseException | None,
    result: Any = None,
    backoff: Backoff = default_backoff,
) -> Outcome:
    """The outcome of attempt *attempt* (1-based) that returned *result* or raised *error*."""
    if error is None:
        return Outcome(job_id, attempt, "completed", result=encode_result(job_id, result))
    if isinstance(error, Snooze):
        return Outcome(job_id, attempt, "scheduled", delay=_bounded(error.seconds), refund=True)
    if isinstance(error, Cancel):
        return Outcome(job_id, attempt, "cancelled", error=_storable(f"Cancel: {error.reason}"))
    text = describe_error(error)
    if isinstance(error, SkipRetry) or attempt > max_retry:
        return Outcome(job_id, attempt, "failed", error=text)
    try:
        delay = float(backoff(attempt, error))
    except Exception:
        log.exception("job %d: its backoff function failed; using the default", job_id)
        delay = default_backoff(attempt, error)
    return Outcome(job_id, attempt, "scheduled", delay=_bounded(delay), error=text)


def _bounded(delay: float) -> float:
    """*delay* within what the database can add to now(): 0 to MAX_SECONDS (NaN is 0)."""
    return min(delay, MAX_SECONDS) if delay > 0.0 else 0.0


def finish_params(
    outcomes: Sequence[Outcome], *, worker_id: str, delete_completed: bool
) -> dict[str, Any]:
    """The parameters of ``job_finish_many`` (pgjobs/sql/jobs.sql) for *outcomes*.

    A column whose every value is its default goes as NULL, which the statement reads
    as that default: a batch of plain completions sends its ids and attempts only.
    """
    return {
        "ids": [o.job_id for o in outcomes],
        "attempts": [o.attempt for o in outcomes],
        "states": _unless_all([o.state for o in outcomes], "completed"),
        "delays": _unless_all([float(o.delay) for o in outcomes], 0.0),
        "errors": _unless_all([o.error for o in outcomes], None),
        "results": _unless_all([o.result for o in outcomes], None),
        "refunds": _unless_all([o.refund for o in outcomes], False),
        "delete_completed": delete_completed,
        "worker_id": worker_id,
    }


def _unless_all(values: list[Any], default: Any) -> list[Any] | None:
    """*values*, or None if every one of them is *default*."""
    return None if values.count(default) == len(values) else values
