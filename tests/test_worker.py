"""The worker, run in-process against a real Postgres: shares, wakeups, retries, timeouts.

Each test starts a Server on its own fresh database and waits on events the handlers
set, or polls the database with a generous bound; nothing asserts a duration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs._worker.observer import Observer
from pgjobs._worker.outcome import Outcome
from pgjobs.backoff import constant
from tests.pgbouncer import routed

pytestmark = [pytest.mark.timeout(120), pytest.mark.through_pgbouncer]

WEIGHTS = {"critical": 6, "default": 3, "low": 1}


def make_config(dsn: str, **overrides: Any) -> pgjobs.Config:
    # A long poll interval proves that wakeups come from NOTIFY, not from polling; through
    # PgBouncer no NOTIFY arrives, and a short one proves that polling finds the jobs.
    poll_interval = 0.2 if routed(dsn) else 30.0
    settings: dict[str, Any] = {"dsn": dsn, "poll_interval": poll_interval, "shutdown_timeout": 2.0}
    settings.update(overrides)
    return pgjobs.Config(**settings)


async def wait_until(check: Callable[[], bool], *, what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {limit}s waiting for {what}")
        await asyncio.sleep(0.02)


def backends(db: psycopg.Connection[Any], application_name: str) -> int:
    """Server connections to *db*'s database open under *application_name* (another
    test run on the same server may use the same name)."""
    row = db.execute(
        "select count(*) from pg_stat_activity"
        " where application_name = %s and datname = current_database()",
        (application_name,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def job_row(db: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute("select * from pgjobs.jobs where id = %s", (job_id,)).fetchone()
    assert row is not None, f"job {job_id} is gone"
    return row


async def wait_for_state(db: psycopg.Connection[Any], job_id: int, state: str) -> dict[str, Any]:
    await wait_until(lambda: job_row(db, job_id)["state"] == state, what=f"job {job_id} {state}")
    return job_row(db, job_id)


class Watcher(Observer):
    """What a worker did, for tests that must show something did *not* happen: they wait
    for the claims that would have done it, and check the outcomes the worker decided,
    instead of sleeping for a while that is usually long enough."""

    def __init__(self) -> None:
        self.claims = 0
        self.outcomes: list[Outcome] = []

    def claimed(self, count: int) -> None:
        self.claims += 1

    def settled(self, queue: str, kind: str, outcome: Outcome, seconds: float) -> None:
        self.outcomes.append(outcome)

    async def wait_for_claims(self, count: int) -> None:
        """Return once the worker has run *count* more claim statements."""
        target = self.claims + count
        await wait_until(lambda: self.claims >= target, what=f"{count} more claims")


# --- weighted queues ------------------------------------------------------------------


async def test_weighted_shares_follow_the_weights(dsn, db, running) -> None:
    per_queue = 3000
    pgjobs.enqueue_many(
        db, [pgjobs.Task("record", queue=q) for q in WEIGHTS for _ in range(per_queue)]
    )
    order: list[str] = []
    enough = asyncio.Event()
    server = pgjobs.Server()

    @server.handler("record")
    async def record(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        order.append(task.queue)
        if len(order) >= 3000:
            enough.set()

    await running(server, make_config(dsn, queues=WEIGHTS, concurrency=10))
    await asyncio.wait_for(enough.wait(), 60)
    # Every queue still had backlog during the first 3,000 jobs, so shares are the weights.
    shares = Counter(order[:3000])
    for queue, weight in WEIGHTS.items():
        assert abs(shares[queue] / 3000 - weight / 10) <= 0.05, shares


async def test_an_empty_queue_lends_its_share(dsn, db, running) -> None:
    """Only `low` (weight 1 of 10) has work: the worker still fills every slot with it."""
    concurrency = 8
    pgjobs.enqueue_many(db, [pgjobs.Task("hold", queue="low") for _ in range(40)])
    active = 0
    peak = 0
    done = 0
    all_done = asyncio.Event()
    server = pgjobs.Server()

    @server.handler("hold")
    async def hold(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        nonlocal active, peak, done
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        active -= 1
        done += 1
        if done == 40:
            all_done.set()

    await running(server, make_config(dsn, queues=WEIGHTS, concurrency=concurrency))
    await asyncio.wait_for(all_done.wait(), 60)
    assert peak == concurrency


async def test_lending_keeps_the_ratio_between_busy_queues(dsn, db, running) -> None:
    """`critical` is empty; `default` and `low` share its slots 3:1."""
    pgjobs.enqueue_many(
        db, [pgjobs.Task("record", queue=q) for q in ("default", "low") for _ in range(2000)]
    )
    order: list[str] = []
    enough = asyncio.Event()
    server = pgjobs.Server()

    @server.handler("record")
    async def record(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        order.append(task.queue)
        if len(order) >= 2000:
            enough.set()

    await running(server, make_config(dsn, queues=WEIGHTS, concurrency=10))
    await asyncio.wait_for(enough.wait(), 60)
    shares = Counter(order[:2000])
    assert abs(shares["default"] / 2000 - 0.75) <= 0.05, shares


async def test_strict_priority_drains_heavier_queues_first(dsn, db, running) -> None:
    pgjobs.enqueue_many(
        db,
        [pgjobs.Task("record", queue=q) for q in ("low", "default", "critical") for _ in range(50)],
    )
    order: list[str] = []
    all_done = asyncio.Event()
    server = pgjobs.Server()

    @server.handler("record")
    async def record(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        order.append(task.queue)
        if len(order) == 150:
            all_done.set()

    config = make_config(dsn, queues=WEIGHTS, strict_priority=True, concurrency=1)
    await running(server, config)
    await asyncio.wait_for(all_done.wait(), 60)
    assert order == ["critical"] * 50 + ["default"] * 50 + ["low"] * 50


async def test_priority_orders_jobs_within_a_queue(dsn, db, running) -> None:
    pgjobs.enqueue_many(db, [pgjobs.Task("record", {"p": p}, priority=p) for p in (5, -1, 3, 0, 2)])
    seen: list[int] = []
    all_done = asyncio.Event()
    server = pgjobs.Server()

    @server.handler("record")
    async def record(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        seen.append(task.payload["p"])
        if len(seen) == 5:
            all_done.set()

    await running(server, make_config(dsn, concurrency=1))
    await asyncio.wait_for(all_done.wait(), 30)
    assert seen == [-1, 0, 2, 3, 5]


async def test_a_paused_queue_is_not_claimed(dsn, db, running) -> None:
    db.execute("insert into pgjobs.queues (name, paused_at) values ('low', now())")
    pgjobs.enqueue(db, pgjobs.Task("record", queue="low"))
    marker = pgjobs.enqueue(db, pgjobs.Task("record", queue="default"))
    ran: list[int] = []
    server = pgjobs.Server()

    @server.handler("record")
    async def record(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        ran.append(ctx.job_id)

    server.observer = watcher = Watcher()
    await running(server, make_config(dsn, queues=WEIGHTS, poll_interval=0.05))
    await wait_until(lambda: marker in ran, what="the default-queue job")
    # Each claim asks every queue for jobs (with all slots free, low's share is one).
    await watcher.wait_for_claims(3)
    assert ran == [marker]


# --- wakeups --------------------------------------------------------------------------


@pytest.mark.direct_only("NOTIFY wakeups; through PgBouncer the worker polls")
async def test_a_commit_wakes_an_idle_worker(dsn, running) -> None:
    started = asyncio.Event()
    server = pgjobs.Server()

    @server.handler("ping")
    async def ping(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        started.set()

    await running(server, make_config(dsn, poll_interval=60.0))
    worker = server.worker
    assert worker is not None
    await wait_until(lambda: worker._waiting, what="the worker to wait for work")
    async with await psycopg.AsyncConnection.connect(dsn) as conn, conn.transaction():
        await pgjobs.enqueue_async(conn, pgjobs.Task("ping"))
    # With a 60 s poll interval, only the NOTIFY can start the job this soon.
    await asyncio.wait_for(started.wait(), 10)


def listen(dsn: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("listen pgjobs_wakeup")
    return conn


def notifications(conn: psycopg.Connection[Any], wait: float) -> list[str]:
    return [n.payload for n in conn.notifies(timeout=wait)]


@pytest.mark.direct_only("it LISTENs on the dsn")
def test_notify_only_when_a_worker_waits_and_never_on_rollback(dsn, db) -> None:
    listener = listen(dsn)
    try:
        # Nobody waits: enqueueing sends no NOTIFY (and takes no commit-time lock).
        pgjobs.enqueue(db, pgjobs.Task("k", queue="default"))
        assert notifications(listener, 0.3) == []
        db.execute(
            "insert into pgjobs.workers (id, host, pid, queues, concurrency, version, waiting)"
            " values (gen_random_uuid(), 'h', 1, '{default}', 1, 't', true)"
        )
        with psycopg.connect(dsn) as conn:
            with conn.transaction():
                pgjobs.enqueue(conn, pgjobs.Task("k", queue="other"))  # nobody serves it
            assert notifications(listener, 0.3) == []
            try:
                with conn.transaction():
                    pgjobs.enqueue(conn, pgjobs.Task("k", queue="default"))
                    raise RuntimeError("roll back")
            except RuntimeError:
                pass
            assert notifications(listener, 0.3) == []
            with conn.transaction():
                pgjobs.enqueue(conn, pgjobs.Task("k", queue="default"))
            assert notifications(listener, 2.0) == ["default"]
            # A delayed job wakes nobody until it is due.
            with conn.transaction():
                pgjobs.enqueue(conn, pgjobs.Task("k", queue="default", delay=60))
            assert notifications(listener, 0.3) == []
    finally:
        listener.close()


async def test_scheduled_jobs_run_when_due(dsn, db, running) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("ping", delay=0.5))
    assert job_row(db, job_id)["state"] == "scheduled"
    started = asyncio.Event()
    server = pgjobs.Server()

    @server.handler("ping")
    async def ping(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        started.set()

    await running(server, make_config(dsn, poll_interval=0.2))
    await asyncio.wait_for(started.wait(), 30)


async def test_no_listen_mode_polls(dsn, db, running) -> None:
    started = asyncio.Event()
    server = pgjobs.Server()

    @server.handler("ping")
    async def ping(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        started.set()

    await running(server, make_config(dsn, listen=False, poll_interval=0.1))
    assert server.worker is not None
    assert server.worker._listener is None
    pgjobs.enqueue(db, pgjobs.Task("ping"))
    await asyncio.wait_for(started.wait(), 30)
    waiting = db.execute("select waiting from pgjobs.workers").fetchone()
    assert waiting == (False,)  # a polling worker never asks for NOTIFYs


# --- outcomes, retries and errors -------------------------------------------------------


async def test_success_deletes_the_job_or_keeps_it_completed(dsn, db, running) -> None:
    gone = pgjobs.enqueue(db, pgjobs.Task("ok"))
    server = pgjobs.Server()
    server.register_handler("ok", lambda ctx, task: None)
    await running(server, make_config(dsn))
    await wait_until(
        lambda: db.execute("select count(*) from pgjobs.jobs").fetchone() == (0,),
        what=f"job {gone} deleted",
    )
    await server.stop()

    kept = pgjobs.enqueue(db, pgjobs.Task("ok"))
    await running(server, make_config(dsn, completed_retention=None))
    row = await wait_for_state(db, kept, "completed")
    assert row["attempt"] == 1
    assert row["finished_at"] is not None
    assert row["lease_expires_at"] is None
    assert row["worker_id"] is None


async def test_retries_count_attempts_exactly_then_fail(dsn, db, running) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("flaky", max_retry=3))
    attempts: list[int] = []
    server = pgjobs.Server()

    @server.handler("flaky", backoff=constant(0))
    def flaky(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        attempts.append(ctx.attempt)
        raise ValueError(f"attempt {ctx.attempt} broke")

    await running(server, make_config(dsn, poll_interval=0.05))
    row = await wait_for_state(db, job_id, "failed")
    assert attempts == [1, 2, 3, 4]
    assert row["attempt"] == 4
    assert row["last_error"].startswith("ValueError: attempt 4 broke")
    assert [e["attempt"] for e in row["errors"]] == [1, 2, 3, 4]
    assert row["finished_at"] is not None


async def test_a_retry_waits_out_its_backoff(dsn, db, running) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("flaky", max_retry=5))
    server = pgjobs.Server()

    @server.handler("flaky", backoff=constant(3600))
    async def flaky(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise RuntimeError("later")

    await running(server, make_config(dsn))
    row = await wait_for_state(db, job_id, "scheduled")
    assert row["attempt"] == 1
    waits = db.execute(
        "select extract(epoch from run_at - now()) from pgjobs.jobs where id = %s", (job_id,)
    ).fetchone()
    assert waits is not None
    assert 3500 < waits[0] <= 3600


async def test_skip_retry_fails_at_once(dsn, db, running) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("doomed", max_retry=10))
    server = pgjobs.Server()

    @server.handler("doomed")
    async def doomed(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise pgjobs.SkipRetry("the order no longer exists")

    await running(server, make_config(dsn))
    row = await wait_for_state(db, job_id, "failed")
    assert row["attempt"] == 1
    assert "the order no longer exists" in row["last_error"]


async def test_an_unknown_kind_fails_the_attempt_and_names_the_kind(dsn, db, running) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("mystery", max_retry=0))
    server = pgjobs.Server()
    server.register_handler("known", lambda ctx, task: None)
    await running(server, make_config(dsn))
    row = await wait_for_state(db, job_id, "failed")
    assert "no handler registered for kind 'mystery'" in row["last_error"]


async def test_default_backoff_is_used_when_none_is_registered(dsn, db, running) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("flaky"))
    server = pgjobs.Server()

    @server.handler("flaky")
    async def flaky(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise RuntimeError("no")

    await running(server, make_config(dsn))
    await wait_for_state(db, job_id, "scheduled")
    waits = db.execute(
        "select extract(epoch from run_at - now()) from pgjobs.jobs where id = %s", (job_id,)
    ).fetchone()
    assert waits is not None
    assert 10 < waits[0] <= 45


# --- timeouts and cancellation -----------------------------------------------------------


async def test_a_timeout_cancels_an_async_handler(dsn, db, running) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("slow", timeout=0.3, max_retry=0))
    cancelled = asyncio.Event()
    server = pgjobs.Server()

    @server.handler("slow")
    async def slow(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            assert ctx.reason == "timeout"
            cancelled.set()
            raise

    await running(server, make_config(dsn))
    row = await wait_for_state(db, job_id, "failed")
    assert row["last_error"].startswith("TimeoutError: timed out after 0.3s")
    await asyncio.wait_for(cancelled.wait(), 10)


async def test_one_deadline_serves_a_batch_whose_jobs_end_at_different_times(
    dsn, db, running
) -> None:
    """Jobs claimed together with the same timeout share one timer (Deadline): the ones
    that finish early must not disarm it for the one still running, and the one that
    runs over must not take the others down with it."""
    tasks = [pgjobs.Task("quick", {"n": n}, timeout=0.5, max_retry=0) for n in range(3)]
    tasks.append(pgjobs.Task("slow", timeout=0.5, max_retry=0))
    quick_ids = pgjobs.enqueue_many(db, tasks)
    slow_id = quick_ids.pop()
    server = pgjobs.Server()

    @server.handler("quick")
    async def quick(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        await asyncio.sleep(0.05)

    @server.handler("slow")
    async def slow(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        await asyncio.sleep(60)

    # One queue, so that one claim takes all four.
    await running(server, make_config(dsn, completed_retention=None, queues={"default": 1}))
    row = await wait_for_state(db, slow_id, "failed")
    assert row["last_error"].startswith("TimeoutError: timed out after 0.5s")
    assert [job_row(db, job_id)["state"] for job_id in quick_ids] == ["completed"] * 3


async def test_a_timeout_cancels_a_sync_handlers_context(dsn, db, running) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("slow", timeout=0.3, max_retry=0))
    woke = threading.Event()
    server = pgjobs.Server()

    @server.handler("slow")
    def slow(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        if ctx.wait(60):  # returns early, True, once the context is cancelled
            assert ctx.cancelled()
            assert ctx.reason == "timeout"
            woke.set()
            ctx.raise_if_cancelled()

    await running(server, make_config(dsn))
    row = await wait_for_state(db, job_id, "failed")
    assert "timed out" in row["last_error"]
    await wait_until(woke.is_set, what="the sync handler to see its cancellation")


async def test_a_sync_handler_that_ignores_its_timeout_keeps_its_slot(dsn, db, running) -> None:
    stuck_id = pgjobs.enqueue(db, pgjobs.Task("stuck", timeout=0.2, max_retry=0))
    release = threading.Event()
    second_ran = asyncio.Event()
    server = pgjobs.Server()

    @server.handler("stuck")
    def stuck(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        release.wait(30)  # ignores ctx entirely

    @server.handler("next")
    async def next_job(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        second_ran.set()

    await running(server, make_config(dsn, concurrency=1, poll_interval=0.05))
    worker = server.worker
    assert worker is not None
    await wait_for_state(db, stuck_id, "failed")  # the attempt fails at its deadline
    # The deadline was handled before its outcome was written: had it freed the slot,
    # the slot would be free now (a claim that finds nothing does not take it back).
    assert worker._free == 0, "the stuck thread's slot was given away"
    pgjobs.enqueue(db, pgjobs.Task("next"))
    release.set()
    await asyncio.wait_for(second_ran.wait(), 30)


@pytest.mark.direct_only("the cancel is a NOTIFY")
async def test_an_operator_cancel_reaches_the_running_handler(dsn, db, running) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("long"))
    started = asyncio.Event()
    cancelled = asyncio.Event()
    server = pgjobs.Server()

    @server.handler("long")
    async def long(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            if ctx.reason == "cancelled":
                cancelled.set()
            raise

    server.observer = watcher = Watcher()
    await running(server, make_config(dsn))
    await asyncio.wait_for(started.wait(), 10)
    # What the operators' cancel function does: mark it cancelled, then tell the worker.
    db.execute(
        "update pgjobs.jobs set state = 'cancelled', finished_at = now() where id = %s", (job_id,)
    )
    db.execute(
        "select pg_notify('pgjobs_control', json_build_object('action', 'cancel',"
        " 'job_id', %s::bigint)::text)",
        (job_id,),
    )
    await asyncio.wait_for(cancelled.wait(), 10)
    worker = server.worker
    assert worker is not None
    # Once the handler's task has returned its slot, the attempt is over: any outcome
    # would have been decided (and handed to the completer) before.
    await wait_until(lambda: job_id not in worker._running, what="the handler to return")
    assert watcher.outcomes == [], "the worker decided an outcome over the cancel"
    assert job_row(db, job_id)["state"] == "cancelled"


# --- the registry and configuration -----------------------------------------------------


def test_registry_refuses_a_second_handler_for_a_kind() -> None:
    server = pgjobs.Server()
    server.register_handler("a", lambda ctx, task: None)
    with pytest.raises(pgjobs.DuplicateHandlerError, match="'a'"):
        server.register_handler("a", lambda ctx, task: None)
    with pytest.raises(pgjobs.DuplicateHandlerError):
        server.handler("a")(lambda ctx, task: None)


def test_get_handler_finds_functions_objects_and_reports_missing_kinds() -> None:
    class Mailer:
        def handle(self, ctx: pgjobs.Context, task: pgjobs.Task) -> str:
            return "sent"

    class AsyncMailer:
        async def handle(self, ctx: pgjobs.Context, task: pgjobs.Task) -> None: ...

    async def coroutine(ctx: pgjobs.Context, task: pgjobs.Task) -> None: ...

    server = pgjobs.Server()
    server.register_handler("sync_object", Mailer())
    server.register_handler("async_object", AsyncMailer())
    server.register_handler("async_func", coroutine)
    assert server.get_handler("sync_object").is_async is False
    assert server.get_handler("async_object").is_async is True
    assert server.get_handler("async_func").is_async is True
    with pytest.raises(pgjobs.HandlerNotFoundError, match="'nope'"):
        server.get_handler("nope")
    with pytest.raises(pgjobs.ConfigurationError):
        server.register_handler("bad", 42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("concurrency", 0),
        ("concurrency", 1.5),
        ("queues", {}),
        ("queues", {"default": 0}),
        ("queues", {"": 1}),
        ("shutdown_timeout", -1),
        ("poll_interval", 0),
        ("lease", float("nan")),
        ("heartbeat_interval", 40.0),  # more than half the default 60 s lease
        ("schema", "Bad-Name"),
    ],
)
def test_config_rejects_bad_values(field: str, value: Any) -> None:
    with pytest.raises(pgjobs.ConfigurationError):
        pgjobs.Config(**{field: value})


def test_config_defaults_and_queue_parsing() -> None:
    config = pgjobs.Config()
    assert config.concurrency == 10
    assert config.queues == {"critical": 6, "default": 3, "low": 1}
    assert config.strict_priority is False
    assert config.shutdown_timeout == 10.0
    assert dataclasses.replace(config, concurrency=3).concurrency == 3
    from pgjobs.config import parse_queues

    assert parse_queues("critical=6, default=3,low") == {"critical": 6, "default": 3, "low": 1}
    for bad in ("critical=x", "a=1,a=2", "a=0", ",", "=3"):
        with pytest.raises(pgjobs.ConfigurationError):
            parse_queues(bad)


def test_planner_lends_and_stays_exact_over_small_batches() -> None:
    from pgjobs._weights import QueuePlanner

    planner = QueuePlanner(WEIGHTS)
    picks = Counter[str]()
    for _ in range(1000):
        picks.update(planner.first_round(1))
    assert picks == {"critical": 600, "default": 300, "low": 100}
    dry: set[str] = set()
    asked = {"critical": 6, "default": 3, "low": 1}
    lent = planner.next_round(5, asked, {"critical": 6, "default": 0, "low": 0}, dry)
    assert dry == {"default", "low"}
    assert lent == {"critical": 5}
    assert planner.next_round(2, lent, {"critical": 3}, dry) == {}
    strict = QueuePlanner(WEIGHTS, strict=True)
    assert strict.first_round(4) == {"critical": 4}
    dry = set()
    assert strict.next_round(3, {"critical": 4}, {"critical": 1}, dry) == {"default": 3}


async def test_a_job_behind_the_scan_point_is_not_starved(dsn, db, running) -> None:
    """Claims start where the previous claim of the queue ended (past the dead index
    entries that claimed jobs leave behind). A job that lands behind that point while a
    backlog drains, here a higher priority one, must still be found by a rescan from the
    front, not wait for the backlog to run out."""
    backlog = 3000
    pgjobs.enqueue_many(db, [pgjobs.Task("work", {"n": n}, priority=5) for n in range(backlog)])
    order: list[str] = []
    some_done = asyncio.Event()
    server = pgjobs.Server()

    @server.handler("work")
    async def work(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        order.append("work")
        if len(order) == 100:
            some_done.set()
        await asyncio.sleep(0.005)  # concurrency 10: the backlog takes 1.5 s at least

    @server.handler("urgent")
    async def urgent(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        order.append("urgent")

    await running(server, make_config(dsn, concurrency=10))
    await asyncio.wait_for(some_done.wait(), 60)
    pgjobs.enqueue(db, pgjobs.Task("urgent", priority=0))
    await wait_until(lambda: "urgent" in order, what="the urgent job")
    assert order.index("urgent") < backlog - 100, f"ran as job {order.index('urgent')}"


def test_planner_shares_stay_within_one_slot_for_any_batch() -> None:
    """Quotas for many slots are computed in one pass, not slot by slot (100 queues made
    that a third of a claim's time); the shares must still never drift by a whole slot."""
    import random

    from pgjobs._weights import QueuePlanner

    rng = random.Random(5)
    for _ in range(50):
        weights = {f"q{i}": rng.randint(1, 12) for i in range(rng.randint(1, 40))}
        total = sum(weights.values())
        planner = QueuePlanner(weights)
        got = Counter[str]()
        slots = 0
        for _ in range(100):
            batch = rng.choice([1, 2, 3, 7, 50, 500])
            quotas = planner.first_round(batch)
            assert sum(quotas.values()) == batch
            assert all(quota > 0 for quota in quotas.values())
            got.update(quotas)
            slots += batch
            for queue, weight in weights.items():
                assert abs(got[queue] - slots * weight / total) < 1 + 1e-9, (queue, got, slots)


@pytest.mark.direct_only("it kills the backend by pid")
async def test_jobs_of_a_lost_claim_reply_are_given_back_on_reconnect(dsn, db, running) -> None:
    """A claim that committed but whose reply was lost with the connection leaves rows
    'running' under this worker's id that it never started. After reconnecting, the worker
    gives them back with the attempt refunded, instead of letting the lease run out and
    count a failed attempt for a job that never ran."""
    ran: list[int] = []
    server = pgjobs.Server()

    @server.handler("ping")
    async def ping(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        ran.append(ctx.attempt)

    await running(server, make_config(dsn, completed_retention=None, poll_interval=0.05))
    assert server.worker is not None
    job_id = pgjobs.enqueue(db, pgjobs.Task("ping", max_retry=0))
    # What the lost claim left behind: claimed for this worker, with a long lease.
    db.execute("update pgjobs.workers set waiting = false")
    db.execute(
        "update pgjobs.jobs set state = 'running', attempt = 1, worker_id = %s,"
        " lease_expires_at = now() + interval '1 hour' where id = %s",
        (server.worker.id, job_id),
    )
    db.execute(
        "select pg_terminate_backend(pid) from pg_stat_activity"
        " where datname = current_database() and pid <> pg_backend_pid()"
    )
    row = await wait_for_state(db, job_id, "completed")
    assert row["attempt"] == 1
    assert ran == [1]


async def test_a_claim_reply_of_another_shape_is_a_lost_one(
    dsn, db, running, monkeypatch, caplog
) -> None:
    """A reply with other columns than a claim's (a pooler that mixed up its server
    connections' replies) closes the connection and counts as a lost reply: the worker
    stays up, and the jobs that claim took are given back and run once."""
    from pgjobs._worker import attempt, claiming

    caplog.set_level(logging.WARNING, logger="pgjobs.worker")
    ran: list[int] = []
    server = pgjobs.Server()

    @server.handler("ping")
    async def ping(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        ran.append(ctx.attempt)

    job_id = pgjobs.enqueue(db, pgjobs.Task("ping", max_retry=0))
    # Every claim's reply looks foreign until the claim loop has said so once.
    monkeypatch.setattr(claiming, "CLAIM_COLUMNS", attempt.CLAIM_COLUMNS + 1)
    await running(server, make_config(dsn, completed_retention=None, poll_interval=0.05))

    def mismatched() -> bool:
        return any("mixed up" in record.getMessage() for record in caplog.records)

    await wait_until(mismatched, what="a claim to find its reply foreign")
    monkeypatch.setattr(claiming, "CLAIM_COLUMNS", attempt.CLAIM_COLUMNS)
    row = await wait_for_state(db, job_id, "completed")
    assert row["attempt"] == 1
    assert ran == [1]
    assert any("gave back" in record.getMessage() for record in caplog.records)


async def test_a_busy_completer_leaves_the_connection_to_the_services_between_batches(
    dsn,
) -> None:
    """The completer shares the pool's second connection with the heartbeat and the
    leader's election: under a stream of outcomes that never lets its queue empty, a
    service still gets the connection between two batches."""
    from psycopg_pool import AsyncConnectionPool

    from pgjobs._worker.completer import Completer

    async with AsyncConnectionPool(
        dsn, min_size=1, max_size=1, kwargs={"autocommit": True}
    ) as pool:
        completer = Completer(pool, "pgjobs", str(uuid.uuid4()), delete_completed=True)
        running = asyncio.create_task(completer.run())
        stop = asyncio.Event()

        async def stream() -> None:  # outcomes of jobs that do not exist: never recorded
            n = 0
            while not stop.is_set():
                n += 1
                completer.add(Outcome(n, 1, "completed"))
                await asyncio.sleep(0)

        streaming = asyncio.create_task(stream())
        try:
            await wait_until(lambda: completer.discarded > 0, what="a first batch")
            async with pool.connection(timeout=5.0) as conn:  # what a heartbeat pass does
                await conn.execute("select 1")
            assert completer.pending > 0  # the stream never let the completer run dry
        finally:
            stop.set()
            await streaming
            completer.close()
            await asyncio.wait_for(running, 30)


async def test_an_outcome_batch_whose_reply_was_lost_is_written_again_and_not_discarded(
    dsn, db, running, monkeypatch, caplog
) -> None:
    """The batch's statement ran but its reply looked foreign: the retry finds the jobs
    already finished, which is no sign that they were cancelled or rescued."""
    from pgjobs._worker import completer

    caplog.set_level(logging.INFO, logger="pgjobs.worker")
    server = pgjobs.Server()

    @server.handler("ping")
    async def ping(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        pass

    job_id = pgjobs.enqueue(db, pgjobs.Task("ping"))
    monkeypatch.setattr(completer, "FINISH_COLUMNS", completer.FINISH_COLUMNS + 1)
    await running(server, make_config(dsn, completed_retention=None, poll_interval=0.05))

    def said(text: str) -> bool:
        return any(text in record.getMessage() for record in caplog.records)

    await wait_until(lambda: said("mixed up"), what="an outcome batch to find its reply foreign")
    monkeypatch.setattr(completer, "FINISH_COLUMNS", completer.FINISH_COLUMNS - 1)
    await wait_until(lambda: said("not recorded by the retry"), what="the batch's retry")
    assert server.worker is not None
    assert server.worker._completer is not None
    assert server.worker._completer.discarded == 0
    row = await wait_for_state(db, job_id, "completed")
    assert row["attempt"] == 1


async def test_a_reply_is_checked_against_its_statements_columns(dsn) -> None:
    from pgjobs._worker.retry import ReplyMismatch, check_reply

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute("select 1, 2")
        await check_reply(conn, cursor, 2, "a pair")  # its own shape: nothing happens
        assert await cursor.fetchall() == [(1, 2)]
        cursor = await conn.execute("select 1")
        with pytest.raises(ReplyMismatch, match="the reply to a pair has 1 columns, not 2"):
            await check_reply(conn, cursor, 2, "a pair")
        assert conn.closed  # one reply behind for good: the pool must replace it


@pytest.mark.direct_only("not through a pooler: see test_pgbouncer.py")
@pytest.mark.parametrize(("durable", "expected"), [(False, "off"), (True, "on")])
async def test_worker_writes_skip_the_wal_flush_unless_asked(
    dsn, running, durable, expected
) -> None:
    server = pgjobs.Server()
    await running(server, make_config(dsn, synchronous_commit=durable))
    assert server.worker is not None
    assert server.worker._pool is not None
    async with server.worker._pool.connection() as conn:
        cursor = await conn.execute("show synchronous_commit")
        assert await cursor.fetchone() == (expected,)


# --- the connection budget ------------------------------------------------------------


@pytest.mark.direct_only  # through PgBouncer, server connections are the pool's to count
async def test_a_worker_holds_at_most_three_connections_of_its_own(dsn, db, running) -> None:
    """Claiming, completing, listening, the periodic services and the leader's, all busy
    at once, fit in three server connections (docs/deployment.md, connection budget)."""
    name = "pgjobs-budget-test"
    pgjobs.enqueue_many(db, [pgjobs.Task("count") for _ in range(5000)])
    done = 0
    seen: list[int] = []

    def connections() -> int:
        return backends(db, name)

    server = pgjobs.Server()

    @server.handler("count")
    async def count(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        nonlocal done
        done += 1

    worker_dsn = psycopg.conninfo.make_conninfo(dsn, application_name=name)
    await running(server, make_config(worker_dsn, heartbeat_interval=0.05, leader_interval=0.1))
    assert server.worker is not None
    await asyncio.wait_for(server.worker._elector.leading_event.wait(), 30)
    while done < 5000:
        seen.append(connections())
        await asyncio.sleep(0)
    seen.append(connections())
    assert max(seen) <= 3, seen
    assert 3 in seen, seen  # the count sees the worker at all


# --- the rescuer's timing ---------------------------------------------------------------


async def test_rescuer_passes_at_start_and_learns_the_next_lease_expiry(dsn: str) -> None:
    """A rescue pass rescues what expired and reports when the next lease runs out, so the
    worker can wait for that instead of a whole interval; with nothing running it waits
    the interval (±10 %), and it never spins faster than RESCUE_MIN_GAP."""
    from pgjobs._worker.services import RESCUE_MIN_GAP, Rescuer, RescuerConfig

    rescuer = Rescuer("pgjobs", RescuerConfig(interval=15.0, stale_after=60.0))
    assert rescuer.run_at_start
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        expired, soon = [await pgjobs.enqueue_async(conn, pgjobs.Task("x")) for _ in range(2)]
        await conn.execute(
            "update pgjobs.jobs set state = 'running', attempt = 1, worker_id = gen_random_uuid(),"
            " started_at = now(), lease_expires_at = now() + make_interval(secs => %s)"
            " where id = %s",
            [-1, expired],
        )
        await conn.execute(
            "update pgjobs.jobs set state = 'running', attempt = 1, worker_id = gen_random_uuid(),"
            " started_at = now(), lease_expires_at = now() + interval '3 s' where id = %s",
            [soon],
        )
        assert (await rescuer.run_once(conn)).available == (expired,)
        assert rescuer.next_expiry is not None
        assert 2.0 < rescuer.next_expiry <= 3.0
        assert 2.0 < rescuer.next_delay() <= 3.2

        rescuer.next_expiry = -5.0  # expired, but locked by another pass: no spinning
        assert rescuer.next_delay() == RESCUE_MIN_GAP

        await conn.execute("delete from pgjobs.jobs")
        assert (await rescuer.run_once(conn)).total == 0
        assert rescuer.next_expiry is None
        assert 13.5 <= rescuer.next_delay() <= 16.5
