"""Handler-facing features (issue 6): results, Snooze, Cancel, previous errors,
middleware and error hooks, transactional completion, Client.get and Client.wait."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from datetime import datetime
from typing import Any

import psycopg
import pytest

import pgjobs
import pgjobs.client
from pgjobs.backoff import constant
from tests.test_worker import backends, job_row, make_config, wait_for_state, wait_until

pytestmark = pytest.mark.timeout(120)


async def test_a_return_value_is_stored_as_the_result(dsn, db, running) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("square", {"n": 7}))
    server = pgjobs.Server()

    @server.handler("square")
    async def square(ctx: pgjobs.Context, task: pgjobs.Task) -> dict[str, int]:
        return {"square": task.payload["n"] ** 2}

    await running(server, make_config(dsn, completed_retention=None))
    row = await wait_for_state(db, job_id, "completed")
    assert row["result"] == {"square": 49}


async def test_a_result_json_cannot_hold_completes_without_one(dsn, db, running) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("odd"))
    server = pgjobs.Server()
    server.register_handler("odd", lambda ctx, task: object())
    await running(server, make_config(dsn, completed_retention=None))
    row = await wait_for_state(db, job_id, "completed")
    assert row["result"] is None


async def test_snooze_reschedules_without_using_an_attempt(dsn, db, running) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("later", max_retry=0))
    seen: list[int] = []
    server = pgjobs.Server()

    @server.handler("later")
    async def later(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        seen.append(ctx.attempt)
        if len(seen) < 3:
            raise pgjobs.Snooze(0)

    await running(server, make_config(dsn, completed_retention=None, poll_interval=0.05))
    row = await wait_for_state(db, job_id, "completed")
    # max_retry=0 allows one attempt: snoozes did not use it up, nor count as errors.
    assert seen == [1, 1, 1]
    assert row["attempt"] == 1
    assert row["errors"] is None


async def test_snooze_waits_its_delay(dsn, db, running) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("later"))
    server = pgjobs.Server()

    @server.handler("later")
    async def later(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise pgjobs.Snooze(3600)

    await running(server, make_config(dsn))
    row = await wait_for_state(db, job_id, "scheduled")
    assert row["attempt"] == 0
    waits = db.execute(
        "select extract(epoch from run_at - now()) from pgjobs.jobs where id = %s", (job_id,)
    ).fetchone()
    assert waits is not None
    assert 3500 < waits[0] <= 3600


async def test_cancel_from_the_handler_ends_the_job_cancelled(dsn, db, running) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("obsolete", max_retry=5))
    server = pgjobs.Server()

    @server.handler("obsolete")
    def obsolete(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise pgjobs.Cancel("the order was refunded")

    await running(server, make_config(dsn))
    row = await wait_for_state(db, job_id, "cancelled")
    assert row["attempt"] == 1
    assert row["last_error"] == "Cancel: the order was refunded"
    assert row["finished_at"] is not None


async def test_the_context_shows_previous_errors(dsn, db, running) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("flaky", max_retry=3))
    history: list[list[int]] = []
    server = pgjobs.Server()

    @server.handler("flaky", backoff=constant(0))
    async def flaky(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        history.append([e["attempt"] for e in ctx.errors])
        if ctx.attempt < 3:
            raise RuntimeError(f"attempt {ctx.attempt}")
        assert ctx.errors[-1]["error"].startswith("RuntimeError: attempt 2")

    await running(server, make_config(dsn, completed_retention=None, poll_interval=0.05))
    await wait_for_state(db, job_id, "completed")
    assert history == [[], [1], [1, 2]]


async def test_middleware_wraps_sync_and_async_handlers_in_order(dsn, db, running) -> None:
    events: list[str] = []
    lock = threading.Lock()
    server = pgjobs.Server()

    @server.use
    def outer(ctx: pgjobs.Context, task: pgjobs.Task):  # type: ignore[no-untyped-def]
        with lock:
            events.append(f"outer>{task.kind}")
        try:
            yield
        except ValueError:
            with lock:
                events.append(f"outer saw error {task.kind}")
            raise
        finally:
            with lock:
                events.append(f"outer<{task.kind}")

    @server.use
    def inner(ctx: pgjobs.Context, task: pgjobs.Task):  # type: ignore[no-untyped-def]
        with lock:
            events.append(f"inner>{task.kind}")
        yield
        with lock:
            events.append(f"inner<{task.kind}")

    @server.handler("a_sync")
    def a_sync(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        with lock:
            events.append("a_sync ran")

    @server.handler("an_async")
    async def an_async(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        events.append("an_async ran")
        raise ValueError("no")

    await running(server, make_config(dsn, concurrency=1))
    first = pgjobs.enqueue(db, pgjobs.Task("a_sync"))
    await wait_until(lambda: "outer<a_sync" in events, what="the sync job")
    pgjobs.enqueue(db, pgjobs.Task("an_async", max_retry=0))
    await wait_until(lambda: "outer<an_async" in events, what="the async job")
    assert events == [
        "outer>a_sync",
        "inner>a_sync",
        "a_sync ran",
        "inner<a_sync",
        "outer<a_sync",
        "outer>an_async",
        "inner>an_async",
        "an_async ran",
        "outer saw error an_async",
        "outer<an_async",
    ]
    assert db.execute("select count(*) from pgjobs.jobs where id = %s", (first,)).fetchone() == (0,)


async def test_a_middleware_may_swallow_an_error(dsn, db, running) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("broken"))
    server = pgjobs.Server()

    @server.use
    def forgive(ctx: pgjobs.Context, task: pgjobs.Task):  # type: ignore[no-untyped-def]
        with contextlib.suppress(RuntimeError):
            yield

    @server.handler("broken")
    async def broken(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise RuntimeError("forgiven")

    await running(server, make_config(dsn, completed_retention=None))
    await wait_for_state(db, job_id, "completed")


def test_async_middleware_is_refused() -> None:
    server = pgjobs.Server()

    async def nope(ctx: pgjobs.Context, task: pgjobs.Task) -> None: ...

    with pytest.raises(pgjobs.ConfigurationError, match="synchronous"):
        server.use(nope)


async def test_error_hooks_see_every_failure_but_not_snoozes(dsn, db, running) -> None:
    pgjobs.enqueue(db, pgjobs.Task("fails", max_retry=1))
    snoozer = pgjobs.enqueue(db, pgjobs.Task("snoozes"))
    seen: list[tuple[int, int, str]] = []
    server = pgjobs.Server()

    @server.on_error
    def hook(ctx: pgjobs.Context, task: pgjobs.Task, error: BaseException) -> None:
        seen.append((ctx.job_id, ctx.attempt, type(error).__name__))

    @server.on_error
    def broken_hook(ctx: pgjobs.Context, task: pgjobs.Task, error: BaseException) -> None:
        raise RuntimeError("a broken hook must not break the worker")

    @server.handler("fails", backoff=constant(0))
    async def fails(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise KeyError("missing")

    @server.handler("snoozes")
    async def snoozes(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise pgjobs.Snooze(3600)

    await running(server, make_config(dsn, poll_interval=0.05))
    await wait_until(lambda: len(seen) == 2, what="two failed attempts")
    await wait_for_state(db, snoozer, "scheduled")
    assert [(attempt, name) for _, attempt, name in seen] == [(1, "KeyError"), (2, "KeyError")]


# --- transactional completion ---------------------------------------------------------


async def test_sync_work_and_completion_commit_together(dsn, db, running) -> None:
    db.execute("create table receipts (job_id bigint primary key, amount int)")
    job_id = pgjobs.enqueue(db, pgjobs.Task("receipt", {"amount": 12}))
    server = pgjobs.Server()

    @server.handler("receipt")
    def receipt(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        with ctx.transaction() as conn:
            conn.execute(
                "insert into receipts values (%s, %s)", (ctx.job_id, task.payload["amount"])
            )
            ctx.result = {"receipt": ctx.job_id}

    await running(server, make_config(dsn, completed_retention=None))
    row = await wait_for_state(db, job_id, "completed")
    assert row["result"] == {"receipt": job_id}
    assert db.execute("select amount from receipts").fetchall() == [(12,)]


async def test_async_work_rolls_back_when_the_handler_fails(dsn, db, running) -> None:
    db.execute("create table receipts (job_id bigint primary key)")
    job_id = pgjobs.enqueue(db, pgjobs.Task("receipt", max_retry=0))
    server = pgjobs.Server()

    @server.handler("receipt")
    async def receipt(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        async with ctx.atransaction() as conn:
            await conn.execute("insert into receipts values (%s)", (ctx.job_id,))
            raise RuntimeError("the payment provider said no")

    await running(server, make_config(dsn))
    await wait_for_state(db, job_id, "failed")
    assert db.execute("select count(*) from receipts").fetchone() == (0,)


async def test_a_cancelled_job_rolls_back_its_transaction(dsn, db, running) -> None:
    db.execute("create table receipts (job_id bigint primary key)")
    job_id = pgjobs.enqueue(db, pgjobs.Task("receipt"))
    inside = threading.Event()
    proceed = threading.Event()
    outcome: list[BaseException] = []
    server = pgjobs.Server()

    @server.handler("receipt")
    def receipt(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        try:
            with ctx.transaction() as conn:
                conn.execute("insert into receipts values (%s)", (ctx.job_id,))
                inside.set()
                proceed.wait(30)  # ignores the cancellation: the commit must refuse
        except pgjobs.JobLostError as exc:
            outcome.append(exc)
            raise

    await running(server, make_config(dsn))
    await wait_until(inside.is_set, what="the handler's transaction")
    # An operator cancels the job meanwhile (what the cancel function does).
    db.execute("update pgjobs.jobs set state = 'cancelled' where id = %s", (job_id,))
    proceed.set()
    await wait_until(lambda: bool(outcome), what="the transaction to refuse")
    assert db.execute("select count(*) from receipts").fetchone() == (0,)
    assert job_row(db, job_id)["state"] == "cancelled"


async def test_handler_connections_are_bounded_by_the_pool_not_by_concurrency(
    dsn, db, running, caplog
) -> None:
    """Twelve sync handlers at once, each in ctx.transaction(), with handler_pool_size 3:
    three hold a connection, the others wait for one (counted and logged) instead of each
    opening its own, and every job completes once connections come free."""
    jobs = pgjobs.enqueue_many(db, [pgjobs.Task("tx") for _ in range(12)])
    inside = threading.Semaphore(0)
    proceed = threading.Event()
    server = pgjobs.Server()

    @server.handler("tx")
    def tx(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        with ctx.transaction() as conn:
            conn.execute("select 1")
            inside.release()
            proceed.wait(30)

    caplog.set_level("WARNING", logger="pgjobs.worker")
    await running(server, make_config(dsn, concurrency=12, handler_pool_size=3))
    for _ in range(3):
        await asyncio.to_thread(inside.acquire, timeout=30)
    worker = server.worker
    assert worker is not None
    pool = worker._transactions._sync_pool  # type: ignore[union-attr]
    assert pool is not None
    await wait_until(
        lambda: pool.get_stats().get("requests_waiting", 0) == 9,
        what="nine handlers waiting for a connection",
    )
    assert pool.get_stats()["pool_size"] == 3
    assert not inside.acquire(timeout=0.2)  # nobody beyond the three got in
    proceed.set()
    await wait_until(
        lambda: (
            db.execute("select count(*) from pgjobs.jobs where id = any(%s)", [jobs]).fetchone()
            == (0,)
        ),
        what="every job to complete",
    )
    assert worker._transactions.waits >= 9  # type: ignore[union-attr]
    assert "handlers waited for a database connection" in caplog.text
    assert "all 3 of handler_pool_size are in use" in caplog.text


async def test_sync_and_async_handlers_each_have_a_pool_of_handler_pool_size(
    dsn, db, running
) -> None:
    """The connection budget docs/worker.md gives: a worker whose sync and async handlers
    both use ctx.transaction() holds up to handler_pool_size connections for each kind,
    twice handler_pool_size in all, and never more; the rest of its handlers wait."""
    name = "pgjobs-two-pools-test"
    size = 3
    jobs = pgjobs.enqueue_many(db, [pgjobs.Task(k) for k in ("sync", "async") for _ in range(6)])
    inside_sync = threading.Semaphore(0)
    inside_async = asyncio.Semaphore(0)
    proceed, proceed_async = threading.Event(), asyncio.Event()
    server = pgjobs.Server()

    @server.handler("sync")
    def sync(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        with ctx.transaction() as conn:
            conn.execute("select 1")
            inside_sync.release()
            proceed.wait(30)

    @server.handler("async")
    async def in_async(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        async with ctx.atransaction() as conn:
            await conn.execute("select 1")
            inside_async.release()
            await proceed_async.wait()

    def connections() -> int:
        return backends(db, name)

    worker_dsn = psycopg.conninfo.make_conninfo(dsn, application_name=name)
    await running(server, make_config(worker_dsn, concurrency=12, handler_pool_size=size))
    for _ in range(size):
        await asyncio.to_thread(inside_sync.acquire, timeout=30)
        await asyncio.wait_for(inside_async.acquire(), 30)
    worker = server.worker
    assert worker is not None
    pools = worker._transactions._sync_pool, worker._transactions._async_pool  # type: ignore[union-attr]
    assert None not in pools
    await wait_until(
        lambda: all(pool.get_stats().get("requests_waiting", 0) == 6 - size for pool in pools),
        what="the handlers beyond each pool's size waiting",
    )
    assert [pool.get_stats()["pool_size"] for pool in pools] == [size, size]
    assert not inside_sync.acquire(timeout=0.2)
    assert inside_async.locked()
    own = 3 if worker.config.listen else 2
    assert 2 * size <= connections() <= own + 2 * size
    proceed.set()
    proceed_async.set()
    await wait_until(
        lambda: (
            db.execute("select count(*) from pgjobs.jobs where id = any(%s)", [jobs]).fetchone()
            == (0,)
        ),
        what="every job to complete",
    )


def test_transaction_outside_a_worker_is_refused() -> None:
    ctx = pgjobs.Context(1, "k", "default", 1, 0, 10.0)
    with pytest.raises(RuntimeError, match="worker"):
        ctx.transaction()


# --- Client.get and Client.wait -----------------------------------------------------------


def gated_sum() -> tuple[pgjobs.Server, asyncio.Event]:
    """A server whose slow_sum jobs return the sum of their payload once released."""
    release = asyncio.Event()
    server = pgjobs.Server()

    @server.handler("slow_sum")
    async def slow_sum(ctx: pgjobs.Context, task: pgjobs.Task) -> int:
        await release.wait()
        return sum(task.payload)

    return server, release


def wait_has_read(db: psycopg.Connection[Any], since: datetime) -> bool:
    """Whether a Client.wait that connected after *since* has read its job and sits
    waiting for a notification (its connection idle after job_get)."""
    row = db.execute(
        "select count(*) from pg_stat_activity"
        " where datname = current_database() and backend_start > %s"
        " and state = 'idle' and query like %s",
        (since, "%job_time(j.finished_at)%"),
    ).fetchone()
    return row is not None and row[0] > 0


async def test_get_and_wait_for_a_result(dsn, db, running, monkeypatch) -> None:
    # wait() also re-reads its job now and then, for finishes that send no NOTIFY (and at
    # its timeout): with no timeout and that re-read an hour away, only the NOTIFY can
    # end the wait below.
    monkeypatch.setattr(pgjobs.client, "WAIT_RECHECK", 3600.0)
    server, release = gated_sum()
    await running(server, make_config(dsn, completed_retention=None))
    async with pgjobs.AsyncClient(dsn) as client:
        job_id = await client.enqueue(pgjobs.Task("slow_sum", [1, 2, 3]))
        job = await client.get(job_id)
        assert job is not None
        assert job.state in {"available", "running"}
        assert not job.finished
        with pytest.raises(TimeoutError):
            await client.wait(job_id, timeout=0.3)
        since = db.execute("select clock_timestamp()").fetchone()[0]  # type: ignore[index]
        waiter = asyncio.ensure_future(client.wait(job_id))
        await wait_until(lambda: wait_has_read(db, since), what="wait() to read the job")
        release.set()
        done = await asyncio.wait_for(waiter, 20)
    assert done is not None
    assert done.state == "completed"
    assert done.result == 6
    assert db.execute("select count(*) from pgjobs.waiters").fetchone() == (0,)


async def test_sync_wait_sees_a_failure_and_a_deleted_job(dsn, db, running) -> None:
    server = pgjobs.Server()

    @server.handler("bad")
    def bad(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise pgjobs.SkipRetry("never")

    server.register_handler("good", lambda ctx, task: 1)
    await running(server, make_config(dsn))
    with pgjobs.Client(dsn) as client:
        bad_id = client.enqueue(pgjobs.Task("bad"))
        good_id = client.enqueue(pgjobs.Task("good"))
        failed = await asyncio.to_thread(client.wait, bad_id, 30)
        await wait_until(lambda: client.get(good_id) is None, what="good's row deleted")
        gone = await asyncio.to_thread(client.wait, good_id, 30)
        assert client.get(123456789) is None
    assert failed is not None
    assert failed.state == "failed"
    assert "never" in (failed.last_error or "")
    assert gone is None  # completed and deleted before anyone waited for it


def waiters(db: psycopg.Connection[Any]) -> int:
    row = db.execute("select count(*) from pgjobs.waiters").fetchone()
    assert row is not None
    return int(row[0])


async def test_a_cancelled_wait_removes_its_waiter(dsn, db) -> None:
    """Client.wait's waiter row goes with the wait however it ends: by its timeout (the
    operation raises), or cancelled while it waits for a notification (the runner
    raises, and still runs the operation's cleanup)."""
    async with pgjobs.AsyncClient(dsn) as client:
        job_id = await client.enqueue(pgjobs.Task("nobody_runs_this"))
        with pytest.raises(TimeoutError):
            await client.wait(job_id, timeout=0.2)
        assert waiters(db) == 0
        waiting = asyncio.ensure_future(client.wait(job_id))
        await wait_until(lambda: waiters(db) == 1, what="the client to register")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    assert waiters(db) == 0


async def prune_once(dsn: str, config: pgjobs.Config) -> None:
    from pgjobs._worker.pruner import Pruner, PrunerConfig

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await Pruner("pgjobs", PrunerConfig.from_config(config)).run_once(conn)


async def test_wait_gets_the_result_without_retention(dsn, db, running) -> None:
    """With the default completed_retention=0 a client that waits before the job ends
    gets it with its result: the completing statement keeps the row for it, and the
    leader's pruner deletes the row once the client has read it."""
    server, release = gated_sum()
    config = make_config(dsn)
    assert config.completed_retention == 0
    await running(server, config)
    with pgjobs.Client(dsn) as client:
        job_id = client.enqueue(pgjobs.Task("slow_sum", [1, 2, 3]))
        waiter = asyncio.ensure_future(asyncio.to_thread(client.wait, job_id, 30))
        await wait_until(lambda: waiters(db) == 1, what="the client to register")
        release.set()
        done = await waiter
    assert done is not None
    assert (done.state, done.result) == ("completed", 6)
    assert waiters(db) == 0
    await prune_once(dsn, config)
    assert db.execute("select id from pgjobs.jobs where id = %s", (job_id,)).fetchone() is None


async def test_a_crashed_waiter_keeps_no_row_for_ever(dsn, db, running) -> None:
    """A client that died waiting leaves its waiters row: the job is kept while the row
    is younger than a minute, then one pruning pass deletes both."""
    server = pgjobs.Server()
    server.register_handler("quick", lambda ctx, task: "done")
    config = make_config(dsn)
    job_id = pgjobs.enqueue(db, pgjobs.Task("quick"))
    db.execute("insert into pgjobs.waiters (job_id) values (%s)", (job_id,))  # then it died
    await running(server, config)
    await wait_for_state(db, job_id, "completed")
    await prune_once(dsn, config)
    assert job_row(db, job_id)["result"] == "done"  # a live waiter may still read it
    db.execute("update pgjobs.waiters set since = now() - interval '2 minutes'")
    await prune_once(dsn, config)
    assert (waiters(db), db.execute("select count(*) from pgjobs.jobs").fetchone()) == (0, (0,))


def test_only_waited_jobs_send_finish_notifications(dsn, db) -> None:
    """The completion NOTIFY (and its commit lock) is paid only for jobs someone waits on."""
    from pgjobs._queries import queries

    q = queries()
    listener = psycopg.connect(dsn, autocommit=True)
    listener.execute("listen pgjobs_finished")
    a, b = pgjobs.enqueue_many(db, [pgjobs.Task("k"), pgjobs.Task("k")])
    db.execute("insert into pgjobs.waiters (job_id) values (%s)", (b,))
    db.execute("update pgjobs.jobs set state = 'running', attempt = 1")
    params: dict[str, Any] = {
        "ids": [a, b],
        "attempts": [1, 1],
        "states": ["completed"] * 2,
        "delays": [0.0] * 2,
        "errors": [None] * 2,
        "results": [None] * 2,
        "refunds": [False] * 2,
        "delete_completed": True,
        "worker_id": "00000000-0000-0000-0000-000000000000",
    }
    db.execute(q["job_finish_many"], params)
    payloads = [n.payload for n in listener.notifies(timeout=1.0)]
    listener.close()
    assert payloads == [str(b)]
