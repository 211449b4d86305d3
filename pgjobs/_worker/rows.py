"""Reading a claimed row: one job's bad data fails that job, never the claim.

``job_claim`` returns a job's payload and errors as JSON text, decoded here one row at a
time. jsonb holds values that Python's decoder refuses (arrays nested thousands deep, an
integer of thousands of digits); decoded by the driver, one such row made the whole
claim's fetch raise, killing the worker and leaving the rest of its batch running until
their lease ran out. Decoded here, it fails its own job for good, with the reason as its
error, and the rest of the batch runs.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import SkipRetry

__all__ = ["UnrunnableJobError", "decode_claimed"]

_loads = json.loads


class UnrunnableJobError(SkipRetry):
    """A claimed job whose row cannot be turned into a Task. A SkipRetry: every attempt
    would read the same row, so the job fails at once, whatever retries remain."""


def decode_claimed(
    payload: str, errors: str | None
) -> tuple[Any, list[dict[str, Any]] | None, UnrunnableJobError | None]:
    """The payload and errors of a claimed row from their JSON text, and None; or, if
    they cannot be decoded, None, None and the error to fail the job with."""
    try:
        return _loads(payload), None if errors is None else _loads(errors), None
    except Exception as exc:  # RecursionError, ValueError, MemoryError: the row's fault
        return None, None, UnrunnableJobError(f"its row cannot be decoded: {_reason(exc)}")


def _reason(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= 200 else text[:200] + "..."
