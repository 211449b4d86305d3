"""How long a failed job waits before its next attempt.

The default is asynq's: ``n**4 + 15 + random(0..29) * (n + 1)`` seconds, where *n* is
the number of retries so far. It starts at 15-45 s, reaches about 3 minutes by the
fourth retry and about a week by the 25th; the jitter keeps a burst of failures from
retrying in lockstep. Override it per kind (``register_handler(..., backoff=fn)``) or
for a whole server (``Config(backoff=fn)``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeAlias

__all__ = ["Backoff", "constant", "default_backoff", "exponential"]

#: ``backoff(attempt, error) -> seconds``; *attempt* is the attempt that just failed (1-based).
Backoff: TypeAlias = Callable[[int, BaseException], float]


def default_backoff(attempt: int, error: BaseException) -> float:
    """asynq's retry delay for the *attempt* (1-based) that just failed."""
    retried = attempt - 1
    return float(retried**4 + 15 + random.randrange(30) * (retried + 1))


def exponential(base: float = 2.0, start: float = 1.0, cap: float = 3600.0) -> Backoff:
    """``start * base**(attempt-1)`` seconds, at most *cap*, with up to 10% jitter."""

    def backoff(attempt: int, error: BaseException) -> float:
        delay = min(cap, start * base ** (attempt - 1))
        return delay * (1 + random.random() / 10)

    return backoff


def constant(seconds: float) -> Backoff:
    """The same delay after every failure."""

    def backoff(attempt: int, error: BaseException) -> float:
        return seconds

    return backoff
