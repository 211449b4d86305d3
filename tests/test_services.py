"""The background services one pass at a time, each pass given the time it runs at.

Every service's ``run_once(conn, now)`` takes the time it treats as the present (None:
the database's clock). These tests pass a time an hour or a day ahead to see a lease
run out, a scheduled job come due, a retention pass or a leader's term end, instead of
configuring short leases and waiting for them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

import pgjobs
from pgjobs._queries import queries
from pgjobs._worker.leader import Election, Elector, ElectorConfig
from pgjobs._worker.pruner import Pruner, PrunerConfig
from pgjobs._worker.scheduler import SchedulerConfig
from pgjobs._worker.services import (
    Heartbeat,
    HeartbeatConfig,
    Rescuer,
    RescuerConfig,
    Stager,
    StagerConfig,
    WorkerServices,
    run_periodically,
)
from pgjobs._worker.signals import TestSignal
from tests.test_worker import make_config, wait_until

pytestmark = pytest.mark.timeout(60)

Q = queries()
HOUR = timedelta(hours=1)


@pytest.fixture
async def aconn(direct_dsn: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(direct_dsn, autocommit=True) as conn:
        yield conn


def db_now(db: psycopg.Connection[Any]) -> datetime:
    row = db.execute("select now()").fetchone()
    assert row is not None
    return row[0]


def claim(db: psycopg.Connection[Any], worker_id: str, *, lease: float = 60.0) -> list[int]:
    """job_claim as a worker runs it, with its lease; the ids it claimed."""
    rows = db.execute(
        Q["job_claim"],
        {
            "queues": ["default"],
            "limits": [10],
            "worker_id": worker_id,
            "lease": lease,
            "grace": 2.0,
            "unwait": False,
            "after_priorities": None,
            "after_ids": None,
        },
    ).fetchall()
    return [row[0] for row in rows]


def worker_row(worker_id: str) -> dict[str, Any]:
    """A worker's row as Worker.start writes it (worker_register, worker_heartbeat)."""
    return {
        "id": worker_id,
        "host": "box",
        "pid": 1,
        "queues": ["default"],
        "concurrency": 2,
        "version": "0",
        "kinds": ["k"],
        "weights": [1],
    }


def job(db: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute("select * from pgjobs.jobs where id = %s", (job_id,)).fetchone()
    assert row is not None
    return row


# --- configs: Config's defaults, checked when built -------------------------------------------


def test_each_services_config_defaults_to_what_config_says() -> None:
    default = pgjobs.Config()
    assert HeartbeatConfig() == HeartbeatConfig.from_config(default)
    assert StagerConfig() == StagerConfig.from_config(default)
    assert RescuerConfig() == RescuerConfig.from_config(default)
    assert PrunerConfig() == PrunerConfig.from_config(default)
    assert ElectorConfig() == ElectorConfig.from_config(default)
    assert SchedulerConfig().interval == SchedulerConfig.from_config(default, 0.0).interval
    tuned = pgjobs.Config(heartbeat_interval=2, lease=5, rescue_interval=3, failed_retention=None)
    assert RescuerConfig.from_config(tuned) == RescuerConfig(interval=3, stale_after=8)
    assert PrunerConfig.from_config(tuned).retention["failed"] is None


@pytest.mark.parametrize(
    "build",
    [
        lambda: HeartbeatConfig(interval=0),
        lambda: HeartbeatConfig(interval=40, lease=60),  # leases would lapse between beats
        lambda: StagerConfig(interval=float("nan")),
        lambda: RescuerConfig(stale_after=-1),
        lambda: PrunerConfig(retention={"running": 1.0}),
        lambda: PrunerConfig(batch=0),
        lambda: SchedulerConfig(grace=0),
        lambda: ElectorConfig(interval=0),
    ],
)
def test_a_services_config_refuses_what_cannot_work(build: Any) -> None:
    with pytest.raises(pgjobs.ConfigurationError):
        build()


# --- rescue: a lease runs out ---------------------------------------------------------------


async def test_a_lease_is_rescued_once_its_time_has_passed(db, aconn) -> None:
    retried, spent = pgjobs.enqueue_many(db, [pgjobs.Task("k"), pgjobs.Task("k", max_retry=0)])
    dead_worker = str(uuid.uuid4())
    assert sorted(claim(db, dead_worker, lease=60.0)) == [retried, spent]
    rescuer = Rescuer("pgjobs", RescuerConfig())

    nothing = await rescuer.run_once(aconn)
    assert (nothing.total, nothing.forgotten) == (0, ())
    assert nothing.next_expiry is not None
    assert 55 < nothing.next_expiry <= 60

    later = db_now(db) + timedelta(seconds=61)
    rescued = await rescuer.run_once(aconn, later)
    assert (rescued.available, rescued.failed) == ((retried,), (spent,))
    assert rescued.next_expiry is None
    again = job(db, retried)
    assert (again["state"], again["attempt"], again["worker_id"]) == ("available", 1, None)
    assert [(e["attempt"], e["error"]) for e in again["errors"]] == [(1, "lease expired")]
    assert dead_worker in again["last_error"]
    failed = job(db, spent)
    assert (failed["state"], failed["finished_at"]) == ("failed", later)
    assert (await rescuer.run_once(aconn, later)).total == 0


async def test_a_worker_without_heartbeats_is_forgotten(db, aconn) -> None:
    row = worker_row(str(uuid.uuid4()))
    heartbeat = Heartbeat("pgjobs", HeartbeatConfig(), row, lambda: ([], []))
    await heartbeat.run_once(aconn)
    rescuer = Rescuer("pgjobs", RescuerConfig(stale_after=60.0))
    assert (await rescuer.run_once(aconn)).forgotten == ()
    later = db_now(db) + timedelta(seconds=61)
    assert (await rescuer.run_once(aconn, later)).forgotten == (row["id"],)
    # A beat puts the row back (a worker cut off for a while is not gone).
    await heartbeat.run_once(aconn, later)
    assert db.execute("select heartbeat_at from pgjobs.workers").fetchall() == [(later,)]


async def test_a_heartbeat_pushes_a_long_jobs_lease_but_never_past_its_deadline(db, aconn) -> None:
    long_id, short_id = pgjobs.enqueue_many(
        db, [pgjobs.Task("k", timeout=3600), pgjobs.Task("k", timeout=90)]
    )
    worker = str(uuid.uuid4())
    claim(db, worker, lease=60.0)
    attempts = ([long_id, short_id], [1, 1])
    config = HeartbeatConfig(lease=60.0, grace=2.0)
    heartbeat = Heartbeat("pgjobs", config, worker_row(worker), lambda: attempts)
    started = job(db, long_id)["started_at"]
    beat_at = started + timedelta(seconds=50)
    assert sorted((await heartbeat.run_once(aconn, beat_at)).extended) == [long_id, short_id]
    assert job(db, long_id)["lease_expires_at"] == beat_at + timedelta(seconds=60)
    # 90 s timeout + 2 s grace: the short job's lease stops at its deadline.
    assert job(db, short_id)["lease_expires_at"] == started + timedelta(seconds=92)
    # Without beats the lease runs out, and the next pass rescues the job.
    expired = beat_at + timedelta(seconds=61)
    assert (await Rescuer("pgjobs", RescuerConfig()).run_once(aconn, expired)).total == 2


# --- stage: a scheduled job comes due ---------------------------------------------------------


async def test_a_scheduled_job_is_staged_when_its_time_comes(db, aconn) -> None:
    soon, later = pgjobs.enqueue_many(
        db, [pgjobs.Task("k", delay=3600), pgjobs.Task("k", queue="low", delay=7200)]
    )
    woken: list[str] = []
    stager = Stager("pgjobs", StagerConfig(), woken.append)
    assert (await stager.run_once(aconn)).staged == {}
    in_90_minutes = db_now(db) + timedelta(minutes=90)
    assert (await stager.run_once(aconn, in_90_minutes)).staged == {"default": 1}
    assert woken == ["default"]
    assert (job(db, soon)["state"], job(db, later)["state"]) == ("available", "scheduled")
    assert (await stager.run_once(aconn, in_90_minutes + HOUR)).total == 1
    assert woken == ["default", "low"]


# --- prune: retention runs out ----------------------------------------------------------------


async def test_a_pass_prunes_what_its_time_puts_past_retention(db, aconn) -> None:
    done = pgjobs.enqueue(db, pgjobs.Task("k"))
    db.execute(
        "update pgjobs.jobs set state = 'completed', finished_at = now() where id = %s", (done,)
    )
    db.execute("insert into pgjobs.waiters (job_id) values (%s)", (10**9,))
    db.execute(
        "insert into pgjobs.unique_keys (key, job_id, expires_at)"
        " values ('window', 1, now() + interval '10 minutes')"
    )
    db.execute(
        "insert into pgjobs.stats (minute, queue, worker_id, completed)"
        " values (date_trunc('minute', now()), 'q', gen_random_uuid(), 1)"
    )
    pruner = Pruner("pgjobs", PrunerConfig(retention={"completed": 3600.0}))
    assert (await pruner.run_once(aconn)).total == 0
    assert (await pruner.run_once(aconn, db_now(db) + timedelta(minutes=30))).deleted == {
        "stale waiters": 1,
        "completed jobs": 0,
        "expired unique keys": 1,
        "unique keys of finished jobs": 0,
        "stats rows": 0,
        "completion records": 0,
    }
    a_day_later = db_now(db) + timedelta(days=1, minutes=2)
    deleted = (await pruner.run_once(aconn, a_day_later)).deleted
    assert (deleted["completed jobs"], deleted["stats rows"]) == (1, 1)
    assert db.execute("select count(*) from pgjobs.jobs").fetchone() == (0,)


async def test_completion_records_are_pruned_after_an_hour(db, aconn) -> None:
    db.execute("insert into pgjobs.completed_recently (ids) values ('{1,2}'), ('{3}')")
    db.execute(
        "insert into pgjobs.completed_recently (finished_at, ids)"
        " values (now() - interval '50 minutes', '{4}')"
    )
    pruner = Pruner("pgjobs", PrunerConfig(batch=1))
    assert (await pruner.run_once(aconn)).deleted["completion records"] == 0
    in_20_minutes = db_now(db) + timedelta(minutes=20)
    assert (await pruner.run_once(aconn, in_20_minutes)).deleted["completion records"] == 1
    assert db.execute(
        "select array_agg(i order by i) from pgjobs.completed_recently, unnest(ids) i"
    ).fetchone() == ([1, 2, 3],)
    # Batches of one row until none is left.
    assert (await pruner.run_once(aconn, db_now(db) + HOUR)).deleted["completion records"] == 2
    assert db.execute("select count(*) from pgjobs.completed_recently").fetchone() == (0,)


async def test_the_pruner_records_the_completed_jobs_it_deletes_within_the_hour(db, aconn) -> None:
    """A completed job kept for a client that waited for it (or under a short retention)
    is deleted by the pruner: recorded like the worker's deletions while it finished less
    than an hour ago, with its own finish time."""
    recent, old, failed = pgjobs.enqueue_many(db, [pgjobs.Task("k")] * 3)
    db.execute(
        "update pgjobs.jobs set state = 'completed', finished_at = now() - interval '5 minutes'"
        " where id = %s",
        (recent,),
    )
    db.execute(
        "update pgjobs.jobs set state = 'completed', finished_at = now() - interval '2 hours'"
        " where id = %s",
        (old,),
    )
    db.execute(
        "update pgjobs.jobs set state = 'failed', finished_at = now() where id = %s", (failed,)
    )
    finished = db.execute("select finished_at from pgjobs.jobs where id = %s", (recent,))
    recent_at = finished.fetchone()[0]
    pruner = Pruner("pgjobs", PrunerConfig(retention={"completed": 0.0, "failed": 0.0}))
    deleted = (await pruner.run_once(aconn, db_now(db) + timedelta(seconds=1))).deleted
    assert (deleted["completed jobs"], deleted["failed jobs"]) == (2, 1)
    assert db.execute("select ids, finished_at from pgjobs.completed_recently").fetchall() == [
        ([recent], recent_at)
    ]


async def test_a_long_prune_pass_takes_the_connection_one_statement_at_a_time(
    db, direct_dsn
) -> None:
    """The worker's completer takes turns with the services on one connection: a pruner
    pass through a backlog gives it back between its batches, so outcomes are not held
    back (and leases left to run out) for the whole pass."""
    ids = pgjobs.enqueue_many(db, [pgjobs.Task("k") for _ in range(150)])
    db.execute(
        "update pgjobs.jobs set state = 'completed', finished_at = now() - interval '1 hour'"
        " where id = any(%s)",
        (ids,),
    )
    pruner = Pruner("pgjobs", PrunerConfig(retention={"completed": 1.0}, batch=1))
    async with AsyncConnectionPool(
        direct_dsn, min_size=1, max_size=1, kwargs={"autocommit": True}
    ) as one:
        await one.wait()  # its connection is ready: none is in use until the pass takes it
        running = asyncio.create_task(pruner.run_pass(one))
        await wait_until(
            lambda: one.get_stats().get("pool_available", 1) == 0,
            what="the pass to take the connection",
        )
        async with one.connection() as conn:
            cursor = await conn.execute("select count(*) from pgjobs.jobs")
            [left] = await cursor.fetchone() or (None,)
        result = await running
    # A pass deletes at most MAX_BATCHES (100) batches of one kind: 50 jobs stay after it.
    assert result.deleted["completed jobs"] == 100
    assert left > 50, "the connection came free only once the pass was over"


# --- the leader's term runs out ---------------------------------------------------------------


@pytest.fixture
async def pool(direct_dsn: str) -> AsyncIterator[AsyncConnectionPool[Any]]:
    async with AsyncConnectionPool(
        direct_dsn, min_size=1, max_size=2, kwargs={"autocommit": True}
    ) as connections:
        yield connections


async def test_a_term_runs_out_and_another_worker_takes_over(db, pool) -> None:
    config = ElectorConfig(interval=5.0)
    first, second = (
        Elector(pool, "pgjobs", str(uuid.uuid4()), config, lambda handover: []) for _ in range(2)
    )
    assert await first.run_once() == Election(leading=True, started=True)
    assert await second.run_once() == Election(leading=False)
    assert await first.run_once() == Election(leading=True)  # renewed: the same term
    # Nobody renews for a whole term (15 s): the first worker is as good as gone.
    after_term = db_now(db) + timedelta(seconds=config.ttl + 1)
    assert await second.run_once(after_term) == Election(leading=True, started=True)
    # The first one learns it lost at its next attempt, and stops its services.
    assert await first.run_once(after_term) == Election(leading=False, stopped=True)
    assert (first.terms, second.terms) == (1, 1)
    await first.resign()
    await second.resign()


# --- signals: a running worker's passes -------------------------------------------------------


async def test_a_workers_services_signal_each_pass(dsn, db, running) -> None:
    """A test waits for the pass that did what it expects, not for a length of time."""
    server = pgjobs.Server()
    server.register_handler("k", lambda ctx, task: None)
    await running(server, make_config(dsn, poll_interval=0.05, completed_retention=None))
    assert server.worker is not None
    services: WorkerServices = server.worker.services
    services.stager.signals.init()
    job_id = pgjobs.enqueue(db, pgjobs.Task("k", delay=0.2))
    staged = await services.stager.signals.ran.wait_for(lambda result: result.total > 0)
    assert staged.staged == {"default": 1}
    assert job(db, job_id)["state"] != "scheduled"


async def test_a_pass_that_fails_is_signalled_and_the_next_pass_runs(pool) -> None:
    working = Stager("pgjobs", StagerConfig(interval=0.01), lambda queue: None)
    broken = Stager("not_migrated", StagerConfig(interval=0.01), lambda queue: None)
    for service in (working, broken):
        service.signals.init()
    tasks = [asyncio.create_task(run_periodically(s, pool)) for s in (working, broken)]
    try:
        assert (await working.signals.ran.wait()).staged == {}
        for _ in range(2):  # the loop survives the failure and tries again
            error = await broken.signals.failed.wait()
            assert isinstance(error, psycopg.errors.UndefinedTable)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_signal_keeps_nothing_until_a_test_asks() -> None:
    signal: TestSignal[int] = TestSignal()
    signal.signal(1)  # production: dropped
    signal.init()
    signal.signal(2)
    signal.signal(3)
    assert await signal.wait_for(lambda value: value > 2) == 3
    with pytest.raises(TimeoutError):
        await signal.wait(timeout=0.01)
    fresh: TestSignal[int] = TestSignal()
    with pytest.raises(RuntimeError):
        await fresh.wait()
