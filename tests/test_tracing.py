"""OpenTelemetry tracing (pgjobs.tracing): enqueue spans, the trace context stored with
the job, and handler spans that continue the enqueuer's trace; checked with the SDK's
in-memory exporter against a real worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import pgjobs
from pgjobs import tracing
from pgjobs.errors import SchemaError
from tests.test_worker import make_config, wait_until


class Traces:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("tests")

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name in (None, s.name)]

    async def wait_for(self, name: str, count: int = 1) -> list[ReadableSpan]:
        await wait_until(lambda: len(self.spans(name)) >= count, what=f"{count} {name!r} spans")
        return self.spans(name)


@pytest.fixture
def traces() -> Iterator[Traces]:
    found = Traces()
    tracing.instrument(found.provider)
    yield found
    tracing.uninstrument()


def stored_contexts(db: psycopg.Connection[Any]) -> list[Any]:
    return [row[0] for row in db.execute("select trace_context from pgjobs.jobs order by id")]


def traceparent(span: ReadableSpan) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def ids(context: trace.SpanContext) -> tuple[int, int]:
    return context.trace_id, context.span_id


def noop_server(seen: list[Any] | None = None) -> pgjobs.Server:
    server = pgjobs.Server()

    @server.handler("work")
    async def work(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        if seen is not None:
            seen.append(trace.get_current_span().get_span_context())

    return server


async def test_a_job_continues_the_trace_of_the_request_that_enqueued_it(
    dsn, db, running, traces
) -> None:
    with traces.tracer.start_as_current_span("request") as request:
        job_id = pgjobs.enqueue(db, pgjobs.Task("work", {"n": 1}, queue="mail"))
    (send,) = traces.spans("send mail")
    assert send.kind is SpanKind.PRODUCER
    assert send.parent is not None
    assert send.parent.span_id == request.get_span_context().span_id
    assert send.context.trace_id == request.get_span_context().trace_id
    assert dict(send.attributes or {}) == {
        "messaging.system": "pgjobs",
        "messaging.operation.type": "send",
        "messaging.operation.name": "enqueue",
        "messaging.destination.name": "mail",
        "messaging.message.id": str(job_id),
        "pgjobs.job.kind": "work",
    }
    assert stored_contexts(db) == [{"traceparent": traceparent(send)}]

    seen: list[Any] = []
    await running(noop_server(seen), make_config(dsn, queues={"mail": 1}))
    (process,) = await traces.wait_for("process mail")
    assert process.kind is SpanKind.CONSUMER
    assert process.context.trace_id == request.get_span_context().trace_id
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id
    assert [ids(link.context) for link in process.links] == [ids(send.context)]
    assert dict(process.attributes or {}) == {
        "messaging.system": "pgjobs",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "mail",
        "messaging.message.id": str(job_id),
        "pgjobs.job.kind": "work",
        "pgjobs.job.attempt": 1,
    }
    assert process.status.status_code is StatusCode.UNSET
    assert seen == [process.context]  # current in the handler: its own spans nest under it


async def test_link_starts_a_trace_per_attempt_linked_to_the_enqueue(dsn, db, running) -> None:
    traces = Traces()
    tracing.instrument(traces.provider, relationship="link")
    try:
        with traces.tracer.start_as_current_span("request"):
            pgjobs.enqueue(db, pgjobs.Task("work"))
        (send,) = traces.spans("send default")
        await running(noop_server(), make_config(dsn))
        (process,) = await traces.wait_for("process default")
    finally:
        tracing.uninstrument()
    assert process.parent is None
    assert process.context.trace_id != send.context.trace_id
    assert [ids(link.context) for link in process.links] == [ids(send.context)]


async def test_a_failing_handler_records_the_exception_with_status_error(
    dsn, db, running, traces
) -> None:
    with traces.tracer.start_as_current_span("request"):
        pgjobs.enqueue(db, pgjobs.Task("fails", max_retry=1))
    server = pgjobs.Server()

    @server.handler("fails")
    def fails(ctx: pgjobs.Context, task: pgjobs.Task) -> None:  # sync: in a thread
        raise ValueError(f"boom {ctx.attempt}")

    await running(server, make_config(dsn, backoff=lambda attempt, error: 0.0))
    first, second = sorted(
        await traces.wait_for("process default", 2),
        key=lambda s: dict(s.attributes or {})["pgjobs.job.attempt"],
    )
    (send,) = traces.spans("send default")
    for attempt, span in enumerate((first, second), 1):
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == f"ValueError: boom {attempt}"
        (event,) = span.events
        assert event.name == "exception"
        assert dict(event.attributes or {})["exception.type"] == "ValueError"
        assert dict(event.attributes or {})["exception.message"] == f"boom {attempt}"
        assert span.parent is not None
        assert span.parent.span_id == send.context.span_id


async def test_enqueue_many_async_stores_one_context_for_its_jobs(
    dsn, db, aconn, running, traces
) -> None:
    with traces.tracer.start_as_current_span("request") as request:
        ids = await pgjobs.enqueue_many_async(aconn, [pgjobs.Task("work"), pgjobs.Task("work")])
    await aconn.commit()
    (send,) = traces.spans("send default")
    assert send.parent is not None
    assert send.parent.span_id == request.get_span_context().span_id
    attributes = dict(send.attributes or {})
    assert attributes["messaging.operation.name"] == "enqueue_many"
    assert attributes["messaging.batch.message_count"] == 2
    assert "messaging.message.id" not in attributes
    assert stored_contexts(db) == [{"traceparent": traceparent(send)}] * 2

    await running(noop_server(), make_config(dsn))
    spans = await traces.wait_for("process default", 2)
    assert sorted(dict(s.attributes or {})["messaging.message.id"] for s in spans) == sorted(
        map(str, ids)
    )
    assert {s.parent.span_id for s in spans if s.parent} == {send.context.span_id}


async def test_the_clients_and_unique_enqueues_are_traced(dsn, db, traces) -> None:
    with pgjobs.Client(dsn) as client, traces.tracer.start_as_current_span("request"):
        first = client.enqueue_unique(pgjobs.Task("work", unique_key="k"))
        again = client.enqueue_unique(pgjobs.Task("work", unique_key="k"))
    async with pgjobs.AsyncClient(dsn) as aclient:
        other = await aclient.enqueue(pgjobs.Task("work", queue="other"))
    unique = traces.spans("send default")
    assert [dict(s.attributes or {})["pgjobs.job.duplicate"] for s in unique] == [False, True]
    assert [dict(s.attributes or {})["messaging.message.id"] for s in unique] == [
        str(first.id),
        str(again.id),
    ]
    (send_other,) = traces.spans("send other")
    assert send_other.parent is None  # no request span was current
    assert dict(send_other.attributes or {})["messaging.message.id"] == str(other)
    assert stored_contexts(db) == [
        {"traceparent": traceparent(unique[0])},
        {"traceparent": traceparent(send_other)},
    ]


def test_a_failed_enqueue_records_the_error_on_its_span(db, traces) -> None:
    with pytest.raises(SchemaError):
        pgjobs.enqueue(db, pgjobs.Task("work"), schema="nosuch")
    (send,) = traces.spans("send default")
    assert send.status.status_code is StatusCode.ERROR
    assert (send.status.description or "").startswith("SchemaError: the pgjobs schema 'nosuch'")
    assert [event.name for event in send.events] == ["exception"]


async def test_tracing_off_writes_no_context_and_makes_no_spans(dsn, db, aconn, running) -> None:
    traces = Traces()
    tracing.instrument(traces.provider)
    tracing.uninstrument()
    assert not tracing.is_instrumented()
    with traces.tracer.start_as_current_span("request"):
        pgjobs.enqueue(db, pgjobs.Task("work"))
        pgjobs.enqueue(db, pgjobs.Task("work", run_at=datetime.now(UTC)))  # job_insert
        await pgjobs.enqueue_async(aconn, pgjobs.Task("work", priority=1))
        await aconn.commit()
        pgjobs.enqueue_many(db, [pgjobs.Task("work")])
        pgjobs.enqueue_unique(db, pgjobs.Task("work", unique_key="k"))
    assert stored_contexts(db) == [None] * 5
    done = []
    server = pgjobs.Server()

    @server.handler("work")
    async def work(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        done.append(ctx.job_id)

    await running(server, make_config(dsn))
    await wait_until(lambda: len(done) == 5, what="5 jobs")
    assert [s.name for s in traces.spans()] == ["request"]


GARBAGE = [
    '"a string"',
    "[1, 2]",
    '{"traceparent": 5}',
    '{"traceparent": "00-not-a-trace-01"}',
    '{"traceparent": "00-00000000000000000000000000000000-0000000000000000-01"}',
    "[" * 5000 + "]" * 5000,  # jsonb holds it; Python's decoder does not
]


async def test_a_garbage_trace_context_is_ignored_and_the_job_runs(
    dsn, db, running, traces
) -> None:
    for text in GARBAGE:
        db.execute(
            "insert into pgjobs.jobs (kind, trace_context) values ('work', %s::jsonb)", (text,)
        )
    done: list[int] = []
    server = pgjobs.Server()

    @server.handler("work")
    async def work(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        done.append(ctx.job_id)

    await running(server, make_config(dsn))
    spans = await traces.wait_for("process default", len(GARBAGE))
    await wait_until(
        lambda: (
            db.execute("select count(*) from pgjobs.jobs where state <> 'completed'").fetchone()[0]
            == 0
        ),
        what="every job completed",
    )
    assert len(done) == len(GARBAGE)
    assert all(s.parent is None and not s.links for s in spans)
    assert all(s.status.status_code is StatusCode.UNSET for s in spans)


def test_instrument_refuses_an_unknown_relationship() -> None:
    with pytest.raises(pgjobs.ConfigurationError, match="relationship"):
        tracing.instrument(relationship="sibling")  # type: ignore[arg-type]
    assert not tracing.is_instrumented()


def test_the_stored_context_is_the_propagators_carrier(db, traces) -> None:
    """tracestate travels with traceparent (the W3C propagator writes both)."""
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

    remote = SpanContext(
        trace_id=0x1234,
        span_id=0x99,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "v1")]),
    )
    with trace.use_span(NonRecordingSpan(remote)):
        pgjobs.enqueue(db, pgjobs.Task("work"))
    (stored,) = stored_contexts(db)
    assert stored["tracestate"] == "vendor=v1"
    assert stored["traceparent"].startswith(f"00-{0x1234:032x}-")
    assert json.dumps(stored)  # a plain JSON object of strings
