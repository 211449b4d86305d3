"""One attempt of a job, without I/O: from its claimed row to the outcome to record.

The worker (``pgjobs/_worker/worker.py``) and ``pgjobs.testing`` run attempts in their
own ways (slots, threads and deadline timers; one job at a time on a test's
connection), but what a claim asks for, how a claimed row becomes a handler's
arguments, and what an attempt's end means are decided here once, so the two cannot
disagree.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, NamedTuple

from ..config import Config
from ..context import Context
from ..errors import Cancel, Snooze
from ..registry import Registration, Registry
from ..task import Task, _from_row
from .outcome import Outcome, decide, describe_error
from .rows import decode_claimed

if TYPE_CHECKING:
    from .transactions import JobTransactions

__all__ = ["Started", "claim_params", "conclude", "raised_after_commit", "start", "tells_hooks"]

log = logging.getLogger("pgjobs.worker")


def claim_params(
    config: Config,
    worker_id: str,
    queues: list[str],
    limits: list[int],
    *,
    unwait: bool = False,
    after_priorities: list[int | None] | None = None,
    after_ids: list[int | None] | None = None,
) -> dict[str, Any]:
    """``job_claim``'s parameters: up to *limits* jobs of each of *queues*, leased to
    *worker_id* as *config* says (see job_claim in pgjobs/sql/jobs.sql)."""
    return {
        "queues": queues,
        "limits": limits,
        "after_priorities": after_priorities,
        "after_ids": after_ids,
        "worker_id": worker_id,
        "lease": config.lease,
        "grace": config.lease_grace,
        "unwait": unwait,
    }


class Started(NamedTuple):
    """A claimed row, made ready for its handler."""

    ctx: Context
    task: Task
    #: None when no handler is registered for the job's kind.
    registration: Registration | None
    #: Why the job cannot run at all: its row cannot be decoded.
    unrunnable: BaseException | None
    #: Seconds the attempt may take.
    timeout: float


#: The columns of a ``job_claim`` row, as :func:`start` unpacks them.
CLAIM_COLUMNS = 10


def start(
    row: tuple[Any, ...], registry: Registry, transactions: JobTransactions | None
) -> Started:
    """The context, task and handler of the claimed *row* (a ``job_claim`` row)."""
    job_id, queue, kind, payload, priority, attempt, max_retry, timeout, errors, trace = row
    payload, errors, unrunnable = decode_claimed(payload, errors)
    ctx = Context(job_id, kind, queue, attempt, max_retry, timeout, errors, transactions)
    if trace is not None:
        ctx._trace_context = trace  # read by pgjobs.tracing's middleware, if it is on
    task = _from_row(kind, payload, queue, max_retry, timeout, priority)
    return Started(ctx, task, registry.find(kind), unrunnable, timeout)


def raised_after_commit(ctx: Context, error: BaseException) -> None:
    """The handler raised after ``ctx.transaction()`` completed its job: say so, for
    the job stays completed (its work is committed)."""
    log.error(
        "job %d (%s) raised after its transaction completed it; the job stays completed: %s",
        ctx.job_id,
        ctx.kind,
        describe_error(error),
        extra={"job_id": ctx.job_id},
    )


def conclude(
    ctx: Context,
    registration: Registration | None,
    config: Config,
    result: Any,
    error: BaseException | None,
) -> Outcome:
    """The outcome of an attempt that returned *result* or raised *error*: its kind's
    backoff, else the config's, decides when a failure runs again."""
    backoff = (registration.backoff if registration else None) or config.backoff
    return decide(ctx.job_id, ctx.attempt, ctx.max_retry, error, result, backoff)


def tells_hooks(error: BaseException) -> bool:
    """Whether the error hooks hear of *error*: a Snooze or Cancel is the handler's
    decision, not a failure."""
    return not isinstance(error, Snooze | Cancel)
