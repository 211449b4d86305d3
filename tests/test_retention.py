"""Retention and pruning: Config's retention settings, the pruner's passes (one at a time,
on a real Postgres), and the pruner running on the leader only."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs._worker import pruner as pruner_module
from pgjobs._worker.pruner import Pruner, PrunerConfig
from pgjobs._worker.services import BATCH
from pgjobs.config import DEFAULT_FAILED_RETENTION
from tests.test_worker import make_config, wait_until

pytestmark = pytest.mark.timeout(120)

WEEK = 7 * 24 * 3600.0


# --- Config ---------------------------------------------------------------------------------


def test_retention_defaults_and_forms() -> None:
    config = pgjobs.Config()
    assert (config.completed_retention, config.failed_retention, config.cancelled_retention) == (
        0.0,
        WEEK,
        WEEK,
    )
    assert DEFAULT_FAILED_RETENTION == WEEK
    assert (config.leader_interval, config.prune_interval) == (5.0, 60.0)
    kept = pgjobs.Config(completed_retention=timedelta(hours=1), failed_retention=None)
    assert kept.retention("completed") == 3600.0
    assert kept.retention("failed") is None
    assert kept.retention("cancelled") == WEEK
    # Rebuilding with replace() keeps the meaning.
    assert dataclasses.replace(kept, concurrency=2).retention("completed") == 3600.0


def test_completed_retention_is_the_one_way_to_say_it() -> None:
    """No second switch to disagree with it: replace() can set any retention, 0 included
    (the CLI builds its config with replace())."""
    assert not hasattr(pgjobs.Config(), "retain_completed")
    with pytest.raises(TypeError, match="retain_completed"):
        pgjobs.Config(retain_completed=True)  # type: ignore[call-arg]
    kept = pgjobs.Config(completed_retention=60)
    for retention in (0, None, 5):
        again = dataclasses.replace(kept, completed_retention=retention)
        assert again.retention("completed") == (None if retention is None else retention)
    assert pgjobs.Config()._deletes_completed
    assert not kept._deletes_completed
    assert not pgjobs.Config(completed_retention=None)._deletes_completed


@pytest.mark.parametrize(
    "field", ["completed_retention", "failed_retention", "cancelled_retention"]
)
@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), True, "7d", timedelta(-1)])
def test_bad_retentions_are_refused(field: str, value: Any) -> None:
    with pytest.raises(pgjobs.ConfigurationError, match=field):
        pgjobs.Config(**{field: value})


@pytest.mark.parametrize("field", ["leader_interval", "prune_interval"])
@pytest.mark.parametrize("value", [0, -1, float("nan"), "5"])
def test_bad_intervals_are_refused(field: str, value: Any) -> None:
    with pytest.raises(pgjobs.ConfigurationError, match=field):
        pgjobs.Config(**{field: value})


# --- one pass of the pruner -------------------------------------------------------------


def add_job(db: psycopg.Connection[Any], state: str, finished_ago: str | None = None) -> int:
    # A running job has a start and a lease (the table refuses one without).
    row = db.execute(
        "insert into pgjobs.jobs (kind, state, finished_at, started_at, lease_expires_at)"
        " select 'k', s, now() - %s::interval,"
        "        case when s = 'running' then now() end,"
        "        case when s = 'running' then now() + interval '1 hour' end"
        " from (select %s::pgjobs.job_state as s) t returning id",
        (finished_ago, state),
    ).fetchone()
    assert row is not None
    return int(row[0])


def add_key(
    db: psycopg.Connection[Any], key: str, job_id: int, expires_in: str | None = None
) -> None:
    db.execute(
        "insert into pgjobs.unique_keys (key, job_id, expires_at)"
        " values (%s, %s, now() + %s::interval)",
        (key, job_id, expires_in),
    )


async def prune(dsn: str, service: Pruner) -> int:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        return (await service.run_once(conn)).total


def pruner(retention: dict[str, float | None], batch: int = BATCH) -> Pruner:
    return Pruner("pgjobs", PrunerConfig(retention=retention, batch=batch))


def remaining(db: psycopg.Connection[Any]) -> set[int]:
    return {row[0] for row in db.execute("select id from pgjobs.jobs")}


def keys(db: psycopg.Connection[Any]) -> set[str]:
    return {row[0] for row in db.execute("select key from pgjobs.unique_keys")}


async def test_a_pass_deletes_what_is_past_its_retention(dsn, db) -> None:
    old = {
        state: [add_job(db, state, "2 hours") for _ in range(7)]
        for state in ("completed", "failed", "cancelled")
    }
    young = {
        state: add_job(db, state, "10 minutes") for state in ("completed", "failed", "cancelled")
    }
    unfinished = [add_job(db, state) for state in ("scheduled", "available", "running")]
    # Unique keys: windows passed and not; held until finished, finished or not.
    add_key(db, "expired", 1, "-1 second")
    add_key(db, "open", 1, "1 hour")
    add_key(db, "held:done", old["completed"][0])
    add_key(db, "held:gone", 10**9)
    add_key(db, "held:running", unfinished[2])
    db.execute(
        "insert into pgjobs.stats (minute, queue, worker_id, completed)"
        " select now() - make_interval(hours => h), 'q', gen_random_uuid(), 1"
        " from generate_series(0, 47) h"
    )
    # Waiters: a client that died mid-wait leaves its row; a live one removes its own.
    waiters = [
        (old["cancelled"][0], "1 hour"),  # job finished: pruned
        (10**9, "1 hour"),  # job gone: pruned
        (unfinished[2], "1 hour"),  # job running: kept
        (old["cancelled"][1], "5 seconds"),  # too young to be sure: kept
    ]
    for job_id, age in waiters:
        db.execute(
            "insert into pgjobs.waiters (job_id, since) values (%s, now() - %s::interval)",
            (job_id, age),
        )
    retention = {"completed": 3600.0, "failed": 3600.0, "cancelled": None}
    small = pruner(retention, batch=3)  # small batches: several per kind
    deleted = await prune(dsn, small)
    left = remaining(db)
    assert not left & set(old["completed"] + old["failed"])
    assert set(old["cancelled"]) <= left  # kept forever
    assert set(young.values()) <= left
    assert set(unfinished) <= left
    assert keys(db) == {"open", "held:running"}
    stats = db.execute("select count(*) from pgjobs.stats").fetchone()
    assert stats is not None
    assert stats[0] in (24, 25)  # a day's worth (the boundary hour may go either way)
    left_waiting = {row[0] for row in db.execute("select job_id from pgjobs.waiters")}
    assert left_waiting == {unfinished[2], old["cancelled"][1]}
    assert deleted == 14 + 3 + (48 - stats[0]) + 2
    assert await prune(dsn, small) == 0


async def test_a_retried_or_locked_job_is_not_pruned(dsn, db) -> None:
    retried = add_job(db, "failed", "2 hours")
    locked = add_job(db, "failed", "2 hours")
    db.execute("update pgjobs.jobs set state = 'available' where id = %s", (retried,))
    with psycopg.connect(dsn) as other, other.transaction():
        other.execute("select from pgjobs.jobs where id = %s for update", (locked,))
        # SKIP LOCKED: the pass neither waits for the lock nor deletes the row.
        assert await prune(dsn, pruner({"failed": 60.0})) == 0
    assert remaining(db) == {retried, locked}
    assert await prune(dsn, pruner({"failed": 60.0})) == 1
    assert remaining(db) == {retried}


async def test_held_keys_are_walked_in_slices_across_passes(dsn, db, monkeypatch) -> None:
    monkeypatch.setattr(pruner_module, "HELD_KEY_BATCHES", 2)
    done = add_job(db, "completed", "1 second")
    running = add_job(db, "running")
    for i in range(10):
        add_key(db, f"k{i}", done if i % 2 else running)
    walker = pruner({}, batch=2)
    assert await prune(dsn, walker) == 2  # k0..k3 examined: k1 and k3 freed
    assert await prune(dsn, walker) == 2  # k5, k7
    assert await prune(dsn, walker) == 1  # k9, then the walk starts over
    assert keys(db) == {f"k{i}" for i in range(0, 10, 2)}
    assert await prune(dsn, walker) == 0


async def test_a_pass_is_bounded_and_the_next_continues(dsn, db, monkeypatch) -> None:
    monkeypatch.setattr(pruner_module, "MAX_BATCHES", 2)
    for _ in range(10):
        add_job(db, "failed", "1 day")
    bounded = pruner({"failed": 60.0}, batch=3)
    assert await prune(dsn, bounded) == 6
    assert await prune(dsn, bounded) == 4


# --- on the leader only -------------------------------------------------------------------


@pytest.mark.through_pgbouncer
async def test_completed_jobs_are_kept_for_their_retention_then_pruned_by_the_leader(
    dsn, db, running
) -> None:
    config = make_config(
        dsn,
        completed_retention=0.5,
        failed_retention=None,
        leader_interval=0.1,
        prune_interval=0.1,
    )
    servers = [pgjobs.Server(), pgjobs.Server()]
    for server in servers:

        @server.handler("work")
        async def work(ctx: pgjobs.Context, task: pgjobs.Task) -> str:
            if task.payload.get("fail"):
                raise pgjobs.SkipRetry("no")
            return "ok"

    for server in servers:
        await running(server, config)
    completed = pgjobs.enqueue(db, pgjobs.Task("work"))
    failed = pgjobs.enqueue(db, pgjobs.Task("work", {"fail": True}))

    def state(job_id: int) -> str | None:
        row = db.execute("select state from pgjobs.jobs where id = %s", (job_id,)).fetchone()
        return None if row is None else str(row[0])

    # Completed, kept with its result for a while, then pruned; failed kept for good.
    await wait_until(lambda: state(completed) == "completed", what="the job to complete")
    await wait_until(lambda: state(completed) is None, what="the completed job to be pruned")
    assert state(failed) == "failed"
    # Exactly one of the two workers runs the pruner.
    electors = [server.worker._elector for server in servers if server.worker is not None]
    assert sorted(e.leading for e in electors) == [False, True]
    for e in electors:
        names = {task.get_name() for task in e._tasks}
        assert names == ({"pgjobs leader pruner"} if e.leading else set())
