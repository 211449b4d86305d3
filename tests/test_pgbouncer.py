"""pgjobs through a real PgBouncer in transaction mode, a DSN that points at it the only
change: what breaks through one (prepared statements, session settings, LISTEN) and how
pgjobs avoids or degrades around it.

The worker's, enqueue's, the CLI's, periodic jobs' and retention's own tests also run
through PgBouncer (``through_pgbouncer`` in conftest.py); this module holds what is
specific to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import admin
from pgjobs._pooler import pooled
from tests.pgbouncer import PgBouncer
from tests.test_worker import make_config, wait_until

pytestmark = pytest.mark.timeout(120)

#: More than psycopg's prepare_threshold (5): enough runs of one statement to prepare it.
REPEATS = 12


@pytest.fixture
def bouncer_dsn(pgbouncer: PgBouncer, direct_dsn: str) -> str:
    return pgbouncer.dsn(direct_dsn)


@pytest.fixture
def single_server(pgbouncer: PgBouncer, admin_dsn: str) -> Iterator[PgBouncer]:
    """A PgBouncer whose pool has one server connection: every client's transactions run
    on the same backend, so a session setting left by one is seen by the next. (It asks
    for ``pgbouncer`` only to skip where that one does.)"""
    bouncer = PgBouncer(admin_dsn, pool_size=1).start()
    yield bouncer
    bouncer.stop()


def test_a_pooler_is_detected_and_a_direct_connection_is_not(bouncer_dsn, direct_dsn) -> None:
    with psycopg.connect(bouncer_dsn, autocommit=True) as conn:
        assert pooled(conn)
        assert conn.prepare_threshold is None
    with psycopg.connect(direct_dsn, autocommit=True) as conn:
        assert not pooled(conn)
        assert conn.prepare_threshold == 5


def test_clients_never_prepare_through_pgbouncer(bouncer_dsn, db) -> None:
    # Two clients take turns: each one's transactions land on server connections the other
    # used, so a statement prepared by one is unknown where its next run lands.
    with pgjobs.Client(bouncer_dsn) as first, pgjobs.Client(bouncer_dsn) as second:
        for n in range(REPEATS):
            with first._pool.connection() as held, held.transaction():
                held.execute("select 1")  # pins a server connection while the other runs
                second.enqueue(pgjobs.Task("b", {"n": n}))
            first.enqueue(pgjobs.Task("a", {"n": n}))
            first.enqueue_many([pgjobs.Task("a"), pgjobs.Task("a")])
            second.enqueue_unique(pgjobs.Task("u", unique_key=f"k{n}"))
            assert first.get(1) is not None
    row = db.execute("select count(*) from pgjobs.jobs").fetchone()
    assert row == (REPEATS * 5,)


async def test_async_clients_never_prepare_through_pgbouncer(bouncer_dsn, db) -> None:
    async with pgjobs.AsyncClient(bouncer_dsn) as first, pgjobs.AsyncClient(bouncer_dsn) as other:
        for n in range(REPEATS):
            async with first._pool.connection() as held, held.transaction():
                await held.execute("select 1")
                await other.enqueue(pgjobs.Task("b", {"n": n}))
            await first.enqueue(pgjobs.Task("a", {"n": n}))
            await other.enqueue_unique(pgjobs.Task("u", unique_key=f"k{n}"))
    row = db.execute("select count(*) from pgjobs.jobs").fetchone()
    assert row == (REPEATS * 3,)


async def test_the_workers_asynchronous_commit_stays_out_of_other_clients(
    single_server: PgBouncer, direct_dsn: str, running
) -> None:
    dsn = single_server.dsn(direct_dsn)
    await running(pgjobs.Server(), make_config(dsn))
    with psycopg.connect(dsn, autocommit=True) as app:
        # The application's enqueue runs on the very server connection the worker set up.
        assert app.execute("show synchronous_commit").fetchone() == ("on",)


async def test_nothing_pgjobs_runs_leaves_a_listen_on_a_server_connection(
    single_server: PgBouncer, direct_dsn: str, running
) -> None:
    # A LISTEN through a pooler stays on the server connection that ran it, and the
    # notifications then come in on whichever client uses it next: PgBouncer 1.18 once
    # handed a worker's claim the reply to its own server_check_query that way. With a pool
    # of one, every statement below runs on the one backend that the last one asks.
    dsn = single_server.dsn(direct_dsn)
    await running(pgjobs.Server(), make_config(dsn, poll_interval=0.2))
    with pgjobs.Client(dsn) as client, pytest.raises(TimeoutError):
        client.wait(client.enqueue(pgjobs.Task("nobody")), timeout=0.05)
    async with pgjobs.AsyncClient(dsn) as aclient:
        with pytest.raises(TimeoutError):
            await aclient.wait(await aclient.enqueue(pgjobs.Task("nobody")), timeout=0.05)
    with psycopg.connect(dsn, autocommit=True) as conn:
        pooled(conn)
        assert conn.execute("select pg_listening_channels()").fetchall() == []


async def test_the_worker_notices_listen_is_deaf_and_polls(
    bouncer_dsn, db, running, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="pgjobs.worker")
    done = asyncio.Event()
    server = pgjobs.Server()

    @server.handler("work")
    async def work(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        done.set()

    await running(server, make_config(bouncer_dsn, poll_interval=0.2))
    assert server.worker is not None
    assert server.worker._listener is not None
    assert server.worker._listener.deaf
    assert any("goes through a pooler" in r.getMessage() for r in caplog.records)
    pgjobs.enqueue(db, pgjobs.Task("work"))
    await asyncio.wait_for(done.wait(), 30)


async def test_a_direct_worker_hears_its_own_check(dsn, running, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="pgjobs.worker")
    server = await running(pgjobs.Server(), make_config(dsn))
    assert server.worker is not None
    assert server.worker._listener is not None
    assert server.worker._listener.listening
    assert not server.worker._listener.deaf
    assert not any("polling for work" in r.getMessage() for r in caplog.records)


async def test_wait_polls_through_pgbouncer(bouncer_dsn, running) -> None:
    server = pgjobs.Server()

    @server.handler("answer")
    async def answer(ctx: pgjobs.Context, task: pgjobs.Task) -> int:
        return 42

    await running(server, make_config(bouncer_dsn, poll_interval=0.2, completed_retention=None))

    def wait_in_a_thread() -> None:  # the worker runs on this test's event loop
        with pgjobs.Client(bouncer_dsn) as client:
            for _ in range(3):  # the wait's own statements repeat past the prepare threshold
                job = client.wait(client.enqueue(pgjobs.Task("answer")), timeout=30)
                assert job is not None
                assert (job.state, job.result) == ("completed", 42)

    await asyncio.to_thread(wait_in_a_thread)
    async with pgjobs.AsyncClient(bouncer_dsn) as aclient:
        job = await aclient.wait(await aclient.enqueue(pgjobs.Task("answer")), timeout=30)
        assert job is not None
        assert job.result == 42


def test_admin_functions_through_pgbouncer(bouncer_dsn, db) -> None:
    ids = pgjobs.enqueue_many(db, [pgjobs.Task("a", queue="q") for _ in range(REPEATS)])
    with psycopg.connect(bouncer_dsn, autocommit=True) as conn:
        pooled(conn)
        for job_id in ids:
            assert admin.get_job(conn, job_id).id == job_id
            assert admin.why(conn, job_id)
            assert admin.cancel_job(conn, job_id)
            assert admin.retry_job(conn, job_id)
            assert admin.queue_summary(conn)
            assert admin.list_jobs(conn, queue="q")
            assert admin.pause_queue(conn, "q") in (True, False)
            assert admin.resume_queue(conn, "q") in (True, False)
            admin.purge_finished(conn, older_than=0)
            admin.doctor(conn)
            admin.live_workers(conn)


async def test_a_fleet_through_pgbouncer_drains_everything_once(bouncer_dsn, db, running) -> None:
    total = 600
    seen: list[int] = []
    server_count = 3
    for _ in range(server_count):
        server = pgjobs.Server()

        @server.handler("count")
        async def count(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
            seen.append(task.payload["n"])

        await running(server, make_config(bouncer_dsn, poll_interval=0.2, concurrency=20))
    with pgjobs.Client(bouncer_dsn) as client:
        for start in range(0, total, 50):
            client.enqueue_many([pgjobs.Task("count", {"n": n}) for n in range(start, start + 50)])

    def left() -> Any:
        return db.execute("select count(*) from pgjobs.jobs").fetchone()

    await wait_until(lambda: len(seen) >= total and left() == (0,), what="the fleet to drain")
    assert sorted(seen) == list(range(total))
