"""What the worker says about each attempt: one line on the ``pgjobs.jobs`` logger.

=========  =========  ==================================================================
level      outcome    line
=========  =========  ==================================================================
INFO       completed  ``job 42 (send_email) completed in 3.1ms, attempt 1, queue default``
WARNING    retry      ``job 42 (send_email) attempt 1 failed after 2.00s, retry in 16s: ...``
ERROR      failed     ``job 42 (send_email) failed on attempt 3 (no retries left) ...``
INFO       cancelled  the handler raised Cancel
DEBUG      snoozed    the handler raised Snooze
=========  =========  ==================================================================

Every record carries ``job_id``, ``kind``, ``queue``, ``attempt``, ``duration``
(seconds) and ``outcome`` as attributes, and failures ``error`` (type, message and
the innermost frames) and ``retry_in``: the JSON log format writes them as keys. A
text line shows the error's first line; the full traceback comes with the line when
``pgjobs.jobs`` logs at DEBUG.

Turn the success lines off with ``logging.getLogger("pgjobs.jobs").setLevel("WARNING")``
(``--jobs-log-level WARNING`` on the command line); a disabled level costs one
``isEnabledFor`` per job.

A retry storm must not flood the log: of the failures (retried or final) with the same
kind, exception type and message, the first :data:`FAILURES_SHOWN` in a :data:`FAILURE_WINDOW` are
logged, the others counted, and when the window ends one line says ``and 9,998 more
like it in the last 10 s``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ..context import Context
from ..errors import Cancel, SkipRetry, Snooze
from .outcome import Outcome

__all__ = ["FailureLimiter", "JobLog"]

log = logging.getLogger("pgjobs.jobs")

#: Seconds over which identical failures are counted together.
FAILURE_WINDOW = 10.0
#: Identical failures logged one by one in a window; the rest are counted.
FAILURES_SHOWN = 3

#: (kind, exception type, first line of the message): what makes failures "identical".
FailureKey = tuple[str, str, str]


class _Window:
    __slots__ = ("opened", "seen")

    def __init__(self, opened: float) -> None:
        self.opened = opened
        self.seen = 0


class FailureLimiter:
    """Which failures to log one by one, and how many were only counted. No I/O; the
    caller asks :meth:`ended` for the windows that closed (a timer, and at the end)."""

    def __init__(
        self,
        window: float = FAILURE_WINDOW,
        shown: int = FAILURES_SHOWN,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.window = window
        self.shown = shown
        self._clock = clock or _loop_time
        self._windows: dict[FailureKey, _Window] = {}

    def admit(self, key: FailureKey) -> tuple[bool, bool]:
        """Count one failure: (log it?, did it open a new window?)."""
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(self._clock())
            window.seen = 1
            return True, True
        window.seen += 1
        return window.seen <= self.shown, False

    def ended(self, *, all: bool = False) -> list[tuple[FailureKey, int, float]]:
        """Close the windows that ran their length (every one with *all*): each key
        whose failures were not all logged, with how many were not, over how long."""
        now = self._clock()
        summaries = []
        for key, window in list(self._windows.items()):
            elapsed = now - window.opened
            if all or elapsed >= self.window:
                del self._windows[key]
                if window.seen > self.shown:
                    summaries.append((key, window.seen - self.shown, min(elapsed, self.window)))
        return summaries


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


def _loop_call_later(delay: float, func: Callable[[], None]) -> None:
    asyncio.get_running_loop().call_later(delay, func)


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f}ms" if seconds < 1 else f"{seconds:.2f}s"


class JobLog:
    """The per-job lines of one worker."""

    def __init__(
        self,
        clock: Callable[[], float] | None = None,
        call_later: Callable[[float, Callable[[], None]], Any] | None = None,
        limiter: FailureLimiter | None = None,
    ) -> None:
        # By default the running event loop's: the worker's start times are its.
        self._clock = clock or _loop_time
        self._call_later = call_later or _loop_call_later
        self.limiter = limiter or FailureLimiter(clock=self._clock)

    def completed(self, ctx: Context, started: float) -> None:
        if log.isEnabledFor(logging.INFO):
            duration = self._clock() - started
            log.info(
                "job %d (%s) completed in %s, attempt %d, queue %s",
                ctx.job_id,
                ctx.kind,
                _duration(duration),
                ctx.attempt,
                ctx.queue,
                extra=_fields(ctx, duration, "completed"),
            )

    def failed(self, ctx: Context, started: float, error: BaseException, outcome: Outcome) -> None:
        """A handler raised (or timed out): say what became of the attempt."""
        duration = self._clock() - started
        if isinstance(error, Snooze | Cancel):
            # Handler decisions, not failures: neither counted nor rate-limited.
            level = logging.DEBUG if isinstance(error, Snooze) else logging.INFO
            if log.isEnabledFor(level):
                outcome_name, what = (
                    ("snoozed", f"snoozed for {outcome.delay:.3g}s")
                    if isinstance(error, Snooze)
                    else ("cancelled", f"cancelled by its handler: {error.reason}")
                )
                log.log(
                    level,
                    "job %d (%s) %s",
                    ctx.job_id,
                    ctx.kind,
                    what,
                    extra=_fields(ctx, duration, outcome_name),
                )
            return
        summary = (outcome.error or "").splitlines()[0]
        show, opened = self.limiter.admit((ctx.kind, type(error).__name__, summary))
        if opened:
            self._call_later(self.limiter.window, self.flush)
        if not show:
            return
        fields = _fields(ctx, duration, "failed" if outcome.state == "failed" else "retry")
        fields["error"] = outcome.error
        # The full traceback rides along only when someone reads DEBUG.
        exc_info = error if log.isEnabledFor(logging.DEBUG) else None
        took = _duration(duration)
        if outcome.state == "failed":
            why = "SkipRetry" if isinstance(error, SkipRetry) else "no retries left"
            level, message = logging.ERROR, "job %d (%s) failed on attempt %d (%s) after %s: %s"
            args: tuple[Any, ...] = (ctx.job_id, ctx.kind, ctx.attempt, why, took, summary)
        else:
            fields["retry_in"] = outcome.delay
            level, message = (
                logging.WARNING,
                "job %d (%s) attempt %d failed after %s, retry in %.3gs: %s",
            )
            args = (ctx.job_id, ctx.kind, ctx.attempt, took, outcome.delay, summary)
        log.log(level, message, *args, extra=fields, exc_info=exc_info)

    def flush(self, *, all: bool = False) -> None:
        """Log the counts of the failure windows that ended (every one with *all*)."""
        for (kind, error_type, summary), count, elapsed in self.limiter.ended(all=all):
            log.warning(
                "%s failures (%s): and %s more like it in the last %.0f s",
                kind,
                summary,
                f"{count:,}",
                max(elapsed, 1.0),
                extra={
                    "kind": kind,
                    "error_type": error_type,
                    "error": summary,
                    "outcome": "suppressed",
                    "suppressed": count,
                    "window": round(elapsed, 3),
                },
            )


def _fields(ctx: Context, duration: float, outcome: str) -> dict[str, Any]:
    return {
        "job_id": ctx.job_id,
        "kind": ctx.kind,
        "queue": ctx.queue,
        "attempt": ctx.attempt,
        "duration": round(duration, 6),
        "outcome": outcome,
    }
