"""What became of an attempt, in the shape the completer writes in batches."""

from __future__ import annotations

import traceback
from dataclasses import dataclass

__all__ = ["MAX_ERROR_CHARS", "Outcome", "describe_error"]

#: Longest error text kept in a row: the message and the innermost frames.
MAX_ERROR_CHARS = 4000


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one attempt of one job.

    *state* is the job's next state: ``completed``, ``failed``, ``cancelled``, or
    ``scheduled`` for a retry after *delay* seconds.
    """

    job_id: int
    attempt: int
    state: str
    delay: float = 0.0
    error: str | None = None


def describe_error(error: BaseException, *, frames: int = 5) -> str:
    """``Type: message`` and a short traceback (innermost frames), bounded in size."""
    head = f"{type(error).__name__}: {error}".rstrip(": ")
    tb = traceback.extract_tb(error.__traceback__)[-frames:] if error.__traceback__ else []
    if tb:
        head += "\n" + "".join(traceback.format_list(tb)).rstrip()
    if len(head) > MAX_ERROR_CHARS:
        head = head[: MAX_ERROR_CHARS - 15] + "\n[... cut ...]"
    return head
