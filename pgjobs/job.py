"""A job as it is stored: what ``Client.get`` and ``Client.wait`` return."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import _queries
from ._ops import Op, Statement

__all__ = ["FINISHED_STATES", "Job", "get_op"]

#: States a job does not leave by itself.
FINISHED_STATES = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class Job:
    """A snapshot of one row of ``<schema>.jobs``."""

    id: int
    queue: str
    kind: str
    payload: Any
    priority: int
    state: str
    attempt: int
    max_retry: int
    timeout: float
    run_at: datetime
    last_error: str | None
    #: One ``{"attempt", "at", "error"}`` per failed attempt, oldest first.
    errors: list[dict[str, Any]]
    #: What the handler returned, while the completed job is retained.
    result: Any
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker_id: Any

    @property
    def finished(self) -> bool:
        """True once the job is completed, failed or cancelled."""
        return self.state in FINISHED_STATES


def get_op(job_id: int, schema: str) -> Op[Job | None]:
    rows = yield Statement(_queries.queries(schema)["job_fetch"], {"id": job_id})
    return Job(*rows[0]) if rows else None
