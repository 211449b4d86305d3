"""What a worker tells an observer (pgjobs.metrics is one): claims, outcomes, idle waits.

The worker holds ``observer = None`` unless one is given, and tests for None at each of
the three points below, so a worker without metrics pays one comparison per claim, per
settled attempt and per idle wait. Each method runs on the worker's event loop: it must
be quick, and must not raise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .outcome import Outcome
    from .worker import Worker

__all__ = ["Observer"]


class Observer:
    """Base class with every method a no-op; override what you need."""

    def attach(self, worker: Worker) -> None:
        """Called once, when *worker* is created with this observer (before it starts)."""

    def claimed(self, count: int) -> None:
        """One claim statement returned *count* jobs (0 when nothing was ready)."""

    def settled(self, queue: str, kind: str, outcome: Outcome, seconds: float) -> None:
        """An attempt's outcome is decided, *seconds* after its handler started: the
        outcome's state is completed, failed, cancelled, or scheduled (a retry, or a snooze
        when ``outcome.refund``)."""

    def waited(self, woken: bool) -> None:
        """An idle wait ended, by a wakeup NOTIFY (*woken*) or by its poll timeout."""
