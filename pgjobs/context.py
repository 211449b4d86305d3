"""What a running handler knows about its job, and how it learns to stop.

A :class:`Context` carries the job's identity, its attempt and deadline, and a
cancellation signal. Cancellation has three causes, given by :attr:`Context.reason`:
``"timeout"`` (the deadline passed), ``"shutdown"`` (the worker is stopping and its
grace period ran out) and ``"cancelled"`` (an operator cancelled the job).

Async handlers are cancelled for real (``asyncio.CancelledError`` at their next await).
Sync handlers run in a thread, which Python cannot interrupt: they should poll
:meth:`Context.cancelled` or sleep with :meth:`Context.wait`, which returns early when
the job is cancelled.
"""

from __future__ import annotations

import threading
import time
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .errors import JobCancelled

if TYPE_CHECKING:
    import psycopg

    from ._worker.transactions import JobTransactions

__all__ = ["Context"]


class Context:
    """The running job's context, passed to every handler as its first argument."""

    __slots__ = (
        "_committed",
        "_event",
        "_monotonic_deadline",
        "_trace_context",  # set by the worker only for a job enqueued with tracing on
        "_transactions",
        "attempt",
        "errors",
        "job_id",
        "kind",
        "max_retry",
        "queue",
        "reason",
        "result",
    )

    _trace_context: str  # no default: most jobs have none (see pgjobs.tracing)

    def __init__(
        self,
        job_id: int,
        kind: str,
        queue: str,
        attempt: int,
        max_retry: int,
        timeout: float,
        errors: list[dict[str, Any]] | None = None,
        transactions: JobTransactions | None = None,
    ) -> None:
        self.job_id = job_id
        self.kind = kind
        self.queue = queue
        #: 1 on the first attempt.
        self.attempt = attempt
        self.max_retry = max_retry
        self._monotonic_deadline = time.monotonic() + timeout
        #: Why the job was cancelled, or None while it may run.
        self.reason: str | None = None
        self._event: threading.Event | None = None  # made on first use: most jobs never ask
        #: Errors of the previous attempts, oldest first: ``{"attempt", "at", "error"}``.
        self.errors: list[dict[str, Any]] = errors or []
        #: Stored as the job's result when :meth:`transaction` completes the job.
        self.result: Any = None
        self._transactions = transactions
        self._committed = False

    @property
    def deadline(self) -> datetime:
        """When this attempt times out (aware UTC datetime). Computed when asked: most
        handlers never ask, and the worker builds a context for every job."""
        return datetime.now(UTC) + timedelta(seconds=self.remaining())

    @property
    def retries_left(self) -> int:
        """Retries remaining after this attempt if it fails."""
        return max(0, self.max_retry + 1 - self.attempt)

    def remaining(self) -> float:
        """Seconds until the deadline (negative once past)."""
        return self._monotonic_deadline - time.monotonic()

    def cancelled(self) -> bool:
        """True once the job should stop: timed out, shutting down, or cancelled.

        The deadline is checked here too, so a handler never sees "not cancelled" past
        its deadline while the worker's timer is still on its way.
        """
        if self.reason is None and time.monotonic() >= self._monotonic_deadline:
            self.reason = "timeout"
        return self.reason is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep up to *timeout* seconds (until the deadline if None), waking early on
        cancellation. Returns True if the job was cancelled. For sync handlers."""
        if self._event is None:
            self._event = threading.Event()
            if self.reason is not None:
                self._event.set()
        limit = self.remaining() if timeout is None else min(timeout, self.remaining())
        self._event.wait(max(0.0, limit))
        return self.cancelled()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`JobCancelled` if the job was cancelled."""
        if self.cancelled():
            raise JobCancelled(self.reason)

    def transaction(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """A transaction in which the handler's database work and the job's completion
        commit together (sync handlers)::

            with ctx.transaction() as conn:
                conn.execute("insert into receipts ...")
                ctx.result = {"receipt": 42}   # optional: stored as the job's result

        When the block ends without an exception the job is marked completed in this
        transaction, and it commits. If the job is no longer this attempt's (cancelled,
        or rescued after its lease expired), it rolls back and raises JobLostError.
        """
        return self._require_transactions().transaction(self)

    def atransaction(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        """:meth:`transaction` for async handlers: ``async with ctx.atransaction() as conn``."""
        return self._require_transactions().transaction_async(self)

    def _require_transactions(self) -> JobTransactions:
        if self._transactions is None:
            raise RuntimeError("ctx.transaction() works only for a job run by a pgjobs worker")
        if self._committed:
            raise RuntimeError(f"job {self.job_id} was already completed by a transaction")
        return self._transactions

    def _cancel(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        if self._event is not None:
            self._event.set()

    def __repr__(self) -> str:
        return (
            f"<Context job_id={self.job_id} kind={self.kind!r} attempt={self.attempt}"
            f" reason={self.reason!r}>"
        )
