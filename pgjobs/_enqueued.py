"""What ``pgjobs.testing``'s assertions ask and say: the filters of :func:`enqueued`,
the statement that lists the jobs a connection sees, and the messages of a failed
assertion, which list what *was* enqueued."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import _queries
from ._ops import Op, Statement
from .job import Job, get_many_op
from .task import encode_payload

__all__ = ["ANY", "Filter", "check_enqueued", "check_not_enqueued", "list_op"]

#: Jobs listed at most in an assertion's message.
_LISTED = 30


class _AnyValue:
    def __repr__(self) -> str:
        return "<any>"


#: The default of ``payload=``: any payload matches (``payload=None`` matches JSON null).
ANY: Any = _AnyValue()


@dataclass(frozen=True, slots=True)
class Filter:
    kind: str | None
    queue: str | None
    payload: Any
    payload_contains: Any
    states: list[str] | None

    @classmethod
    def make(
        cls,
        kind: str | None,
        queue: str | None,
        payload: Any,
        payload_contains: Any,
        state: str | Iterable[str] | None,
    ) -> Filter:
        states = [state] if isinstance(state, str) else None if state is None else list(state)
        return cls(kind, queue, payload, payload_contains, states)

    def params(self) -> dict[str, Any]:
        def encoded(value: Any) -> str | None:
            return None if value is ANY else encode_payload(value, sys.maxsize)

        return {
            "kind": self.kind,
            "queue": self.queue,
            "states": self.states,
            "payload": encoded(self.payload),
            "contains": None if self.payload_contains is None else encoded(self.payload_contains),
        }

    def describe(self) -> str:
        parts = [f"kind={self.kind!r}"] if self.kind is not None else []
        if self.queue is not None:
            parts.append(f"queue={self.queue!r}")
        if self.payload is not ANY:
            parts.append(f"payload={self.payload!r}")
        if self.payload_contains is not None:
            parts.append(f"payload containing {self.payload_contains!r}")
        if self.states is not None:
            one = len(self.states) == 1
            parts.append(f"state={self.states[0]!r}" if one else f"state in {self.states!r}")
        return ", ".join(parts) if parts else "any kind"


def list_op(where: Filter, schema: str) -> Op[list[tuple[Job, bool]]]:
    rows = yield Statement(_queries.queries(schema)["job_list_matching"], where.params())
    matching = {job_id: bool(matches) for job_id, matches in rows}
    jobs = yield from get_many_op(matching, schema)
    return [(job, matching[job.id]) for job in jobs]


def _line(job: Job) -> str:
    line = f"  #{job.id} {job.kind} queue={job.queue!r} state={job.state} payload={job.payload!r}"
    return line if len(line) <= 300 else line[:297] + "..."


def _listing(jobs: Sequence[Job], schema: str) -> str:
    if not jobs:
        return (
            f"There are no jobs in {schema}.jobs on this connection: was the code under test "
            "given this connection (a job enqueued on another one is invisible here until "
            "that transaction commits)?"
        )
    head = f"{len(jobs)} job{'s' if len(jobs) != 1 else ''} in {schema}.jobs on this connection:"
    lines = [_line(job) for job in jobs[:_LISTED]]
    if len(jobs) > _LISTED:
        lines.append(f"  ... and {len(jobs) - _LISTED} more")
    return "\n".join([head, *lines])


def check_enqueued(
    found: list[tuple[Job, bool]], where: Filter, count: int | None, schema: str
) -> list[Job]:
    __tracebackhide__ = True
    matching = [job for job, matches in found if matches]
    if (len(matching) == count) if count is not None else bool(matching):
        return matching
    wanted = "at least one job" if count is None else f"{count} job{'s' if count != 1 else ''}"
    raise AssertionError(
        f"expected {wanted} with {where.describe()}, found {len(matching)}.\n"
        + _listing([job for job, _ in found], schema)
    )


def check_not_enqueued(found: list[tuple[Job, bool]], where: Filter, schema: str) -> None:
    __tracebackhide__ = True
    matching = [job for job, matches in found if matches]
    if matching:
        raise AssertionError(
            f"expected no job with {where.describe()}, found {len(matching)}:\n"
            + "\n".join(_line(job) for job in matching[:_LISTED])
        )
