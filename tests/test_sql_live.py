"""The operator functions against a live worker: cancel_job reaches the running handler,
pause_queue is honoured at the next claim, resume_queue wakes a waiting worker.

The worker polls only every 30 seconds here, so anything that happens sooner was caused
by a NOTIFY; the tests wait on events and database states, never on a fixed sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import admin

pytestmark = pytest.mark.timeout(120)


def job_state(db: psycopg.Connection[Any], job_id: int) -> str:
    return str(db.execute("select state from pgjobs.jobs where id = %s", (job_id,)).fetchone()[0])


async def wait_until(check: Callable[[], bool], what: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {limit}s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Any]]:
    servers: list[pgjobs.Server] = []

    async def starter(server: pgjobs.Server, dsn: str, **settings: Any) -> pgjobs.Server:
        config = pgjobs.Config(
            dsn=dsn, poll_interval=30.0, completed_retention=None, shutdown_timeout=2.0, **settings
        )
        await server.start(config)
        servers.append(server)
        return server

    yield starter
    for server in servers:
        await server.stop(timeout=2.0)


async def test_cancel_job_reaches_the_running_handler(dsn, db, start) -> None:
    started = asyncio.Event()
    saw_cancel = asyncio.Event()
    server = pgjobs.Server()

    @server.handler("long")
    async def long(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            if ctx.reason == "cancelled":
                saw_cancel.set()
            raise

    @server.handler("marker")
    async def marker(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        pass

    job_id = pgjobs.enqueue(db, pgjobs.Task("long"))
    await start(server, dsn, concurrency=1)
    await asyncio.wait_for(started.wait(), 20)

    assert admin.cancel_job(db, job_id, reason="operator said stop") is True
    await asyncio.wait_for(saw_cancel.wait(), 20)

    # The slot is free again: a later job runs, and by the time its outcome is written the
    # cancelled attempt's has been handled too. The cancel must still stand.
    later = pgjobs.enqueue(db, pgjobs.Task("marker"))
    await wait_until(lambda: job_state(db, later) == "completed", "the next job to complete")
    row = db.execute(
        "select state::text, last_error from pgjobs.jobs where id = %s", (job_id,)
    ).fetchone()
    assert row == ("cancelled", "operator said stop")


async def test_a_paused_queue_is_not_claimed_and_resume_wakes_the_worker(dsn, db, start) -> None:
    ran: list[str] = []
    server = pgjobs.Server()

    @server.handler("record")
    async def record(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        ran.append(task.queue)

    await start(server, dsn, queues={"default": 1, "low": 1})
    assert admin.pause_queue(db, "low") is True  # known: the live worker serves it
    held = pgjobs.enqueue(db, pgjobs.Task("record", queue="low"))
    marker = pgjobs.enqueue(db, pgjobs.Task("record", queue="default"))
    await wait_until(lambda: job_state(db, marker) == "completed", "the default-queue job")
    # The worker was woken for both jobs and claimed the later one: the paused one stays.
    assert job_state(db, held) == "available"
    assert ran == ["default"]

    assert admin.resume_queue(db, "low") is True
    # Far sooner than the 30 s poll: the resume's NOTIFY woke the waiting worker.
    await wait_until(lambda: job_state(db, held) == "completed", "the resumed job", limit=15)
    assert ran == ["default", "low"]


async def test_pause_takes_effect_while_the_worker_is_busy(dsn, db, start) -> None:
    gate = asyncio.Event()
    ran: list[int] = []
    server = pgjobs.Server()

    @server.handler("step")
    async def step(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        ran.append(ctx.job_id)
        if task.payload.get("wait"):
            await gate.wait()

    first = pgjobs.enqueue(db, pgjobs.Task("step", {"wait": True}))
    await start(server, dsn, concurrency=1)
    await wait_until(lambda: ran == [first], "the first job to start")
    second = pgjobs.enqueue(db, pgjobs.Task("step"))
    admin.pause_queue(db, "default")
    gate.set()
    await wait_until(lambda: job_state(db, first) == "completed", "the first job to finish")
    assert job_state(db, second) == "available"
    assert "is paused" in admin.why(db, second)
    admin.resume_queue(db, "default")
    await wait_until(lambda: job_state(db, second) == "completed", "the second job", limit=15)
