"""OpenTelemetry tracing for enqueues and handlers (needs the ``otel`` extra:
``pip install "pgjobs[otel]"``, which is ``opentelemetry-api``).

Off until :func:`instrument` is called, like the ``opentelemetry-instrumentation-*``
packages: until then an enqueue pays one comparison for it and a worker nothing. Then:

* every enqueue (``pgjobs.enqueue``, ``enqueue_many``, ``enqueue_unique``, their async
  twins and the clients' methods) runs in a PRODUCER span, ``send <queue>``, a child of
  whatever span is current (the web request's), and stores that span's context with
  its jobs (``jobs.trace_context``: the propagator's carrier, W3C ``traceparent`` and
  ``tracestate`` by default) in the enqueuing transaction;
* every handler run by a worker created afterwards runs in a CONSUMER span,
  ``process <queue>``, which continues the enqueuer's trace.

How a handler's span relates to its enqueue span (``relationship``)::

    request ── send default (PRODUCER) ──┐ trace_context, in the job's row
                   ▲                     ▼
                   └──── process default (CONSUMER), attempt 1, 2, ...
                         "child": its parent, and a link; "link": a link only

``"child"`` (the default) puts each attempt in the request's trace, so the trace shows
the jobs the request caused, as PGQueuer and Hatchet do. ``"link"`` starts a trace per
attempt with a link to the enqueue span, as otelriver and opentelemetry_oban do by
default: a job that runs hours or days later, or is retried for a week, then does not
stretch the request's trace. The link is there in both, as OpenTelemetry's messaging
conventions ask of a process span.

Attributes follow those conventions where they fit: ``messaging.system`` ``pgjobs``,
``messaging.operation.type`` ``send`` or ``process`` (``send`` is what the conventions
call ``publish`` since 1.26), ``messaging.destination.name`` the queue,
``messaging.message.id`` the job id (not on a bulk enqueue's span, which has
``messaging.batch.message_count``), and ``pgjobs.job.kind``, ``pgjobs.job.attempt``.
An exception is recorded on the span as an event, with status ERROR; a handler's
:class:`~pgjobs.Snooze` and :class:`~pgjobs.Cancel` are decisions, not errors.

A trace context the worker cannot read (not JSON, not a carrier, an invalid
``traceparent``) is ignored: the handler's span then has no parent or link, and the job
runs as any other.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, TypeVar

from opentelemetry import propagate, trace
from opentelemetry.context import Context as OtelContext
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from . import _tracing
from ._ops import Op
from ._version import __version__
from .context import Context
from .errors import Cancel, ConfigurationError, Snooze
from .task import Task

__all__ = ["instrument", "is_instrumented", "uninstrument"]

T = TypeVar("T")
Relationship = Literal["child", "link"]
SYSTEM = "pgjobs"


def instrument(
    tracer_provider: trace.TracerProvider | None = None,
    *,
    relationship: Relationship = "child",
) -> None:
    """Trace every enqueue from now on, and every handler of the workers created from
    now on (call it before ``Server.start`` or ``pgjobs worker`` starts one).

    :param tracer_provider: defaults to the global one (``trace.set_tracer_provider``).
    :param relationship: ``"child"``: a handler's span is a child of its enqueue span
        (same trace); ``"link"``: it starts a trace of its own, linked to it.
    """
    if relationship not in ("child", "link"):
        raise ConfigurationError(f"relationship must be 'child' or 'link', not {relationship!r}")
    tracer = trace.get_tracer("pgjobs", __version__, tracer_provider=tracer_provider)
    _tracing.hook = _Tracing(tracer, relationship)


def uninstrument() -> None:
    """Stop tracing enqueues, and handlers of workers created from now on."""
    _tracing.hook = None


def is_instrumented() -> bool:
    return _tracing.hook is not None


class _Tracing:
    """The hook pgjobs' enqueue operations and workers call (see pgjobs/_tracing.py)."""

    def __init__(self, tracer: trace.Tracer, relationship: Relationship) -> None:
        self._tracer = tracer
        self._child = relationship == "child"
        self.middleware = contextlib.contextmanager(self._process)

    def send(
        self, operation: str, tasks: Sequence[Task], make_op: Callable[[str | None], Op[T]]
    ) -> Op[T]:
        queues = {task.queue for task in tasks}
        kinds = {task.kind for task in tasks}
        queue = queues.pop() if len(queues) == 1 else None
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": operation,
        }
        if queue is not None:
            attributes["messaging.destination.name"] = queue
        if len(kinds) == 1:
            attributes["pgjobs.job.kind"] = kinds.pop()
        if operation == "enqueue_many":
            attributes["messaging.batch.message_count"] = len(tasks)
        # Not made current: the op may be driven across awaits, and current spans are
        # tracked per context; the stored context names this span all the same.
        span = self._tracer.start_span(
            f"send {queue}" if queue is not None else "send",
            kind=SpanKind.PRODUCER,
            attributes=attributes,
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        try:
            result = yield from make_op(json.dumps(carrier) if carrier else None)
        except GeneratorExit:
            # Closed unfinished: its runner did not say why (see pgjobs._ops.unwind_async).
            span.set_status(Status(StatusCode.ERROR, "the enqueue did not complete"))
            raise
        except BaseException as exc:
            _record(span, exc)
            raise
        else:
            _describe_result(span, result)
            return result
        finally:
            span.end()

    def _process(self, ctx: Context, task: Task) -> Iterator[None]:
        """The middleware: the handler runs in its span, which is current meanwhile."""
        parent: OtelContext | None = None
        links: list[Link] = []
        created = _creation_context(ctx)
        if created is not None:
            context, span_context = created
            links.append(Link(span_context))
            if self._child:
                parent = context
        with self._tracer.start_as_current_span(
            f"process {ctx.queue}",
            context=parent,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": ctx.queue,
                "messaging.message.id": str(ctx.job_id),
                "pgjobs.job.kind": ctx.kind,
                "pgjobs.job.attempt": ctx.attempt,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield
            except (Snooze, Cancel) as decision:
                span.set_attribute("pgjobs.job.decision", type(decision).__name__.lower())
                raise
            except BaseException as exc:
                _record(span, exc, ctx.reason)
                raise


def _record(span: Span, error: BaseException, reason: str | None = None) -> None:
    """*error* on *span*: an exception event, and status ERROR."""
    if isinstance(error, Exception):
        span.record_exception(error)
    description = f"{type(error).__name__}: {error}"
    if reason is not None:  # the worker cancelled it: its deadline, or an operator
        description = f"{reason}: {description}"
    span.set_status(Status(StatusCode.ERROR, description[:500]))


def _describe_result(span: Span, result: object) -> None:
    """The job id of a single enqueue; whether a unique one was a duplicate."""
    if isinstance(result, int):
        span.set_attribute("messaging.message.id", str(result))
    elif isinstance(result, tuple) and len(result) == 2:  # EnqueueResult
        span.set_attribute("messaging.message.id", str(result[0]))
        span.set_attribute("pgjobs.job.duplicate", bool(result[1]))


def _creation_context(ctx: Context) -> tuple[OtelContext, trace.SpanContext] | None:
    """The context stored with the job, and its span's context; None if there is none or
    it cannot be read: a row's trace context is data from whoever wrote the row, and
    never keeps its job from running."""
    text = getattr(ctx, "_trace_context", None)  # unset unless the row had one
    if text is None:
        return None
    try:
        carrier = json.loads(text)
        if not isinstance(carrier, dict):
            return None
        context = propagate.extract(
            {k: v for k, v in carrier.items() if isinstance(k, str) and isinstance(v, str)}
        )
        span_context = trace.get_current_span(context).get_span_context()
    except Exception:  # RecursionError, ValueError, a propagator's own error
        return None
    return (context, span_context) if span_context.is_valid else None
