"""pgjobs.doctor() and the vacuum_blockers view: what degrades a Postgres queue."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import admin


def findings(
    db: psycopg.Connection[Any], long_transaction: str = "5 minutes"
) -> list[tuple[str, str, str]]:
    return [
        (str(c), str(s), str(d))
        for c, s, d in db.execute(
            "select check_name, status, detail from pgjobs.doctor(%s::interval)",
            (long_transaction,),
        )
    ]


def of(found: list[tuple[str, str, str]], check: str) -> list[tuple[str, str]]:
    return [(status, detail) for name, status, detail in found if name == check]


def test_a_fresh_database_is_healthy(db) -> None:
    found = findings(db)
    names = {name for name, _, _ in found}
    assert {"vacuum horizon", "dead rows", "stuck jobs", "autovacuum"} <= names
    assert of(found, "vacuum horizon")[0][0] == "ok"
    assert of(found, "stuck jobs") == [("ok", "0 running jobs, none long past its lease")]
    assert of(found, "dead rows")[0][0] == "ok"
    assert ("ok", "pgjobs.jobs has the recommended autovacuum settings") in of(found, "autovacuum")
    # Only the server's own configuration may be flagged here (a test server may run
    # without autovacuum); nothing pgjobs is responsible for.
    warned = [f for f in found if f[1] == "warn"]
    assert all(f[0] == "autovacuum" and "server configuration" in f[2] for f in warned)


def test_a_long_transaction_is_reported_with_pid_age_and_query(dsn, db) -> None:
    # A repeatable read transaction keeps its snapshot until it ends, so vacuum must keep
    # every row version it might see; read committed drops it after each statement.
    with psycopg.connect(dsn, application_name="reporting-job") as holder:
        holder.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        holder.execute("select count(*) from pgjobs.jobs")  # idle in transaction from here
        pid = holder.info.backend_pid
        blockers = db.execute(
            "select kind, pid, state, xact_start is not null, query from pgjobs.vacuum_blockers"
        ).fetchall()
        assert (
            "backend",
            pid,
            "idle in transaction",
            True,
            "select count(*) from pgjobs.jobs",
        ) in (blockers)
        [(status, detail)] = of(findings(db, long_transaction="0 s"), "vacuum horizon")
        assert status == "warn"
        assert f"pid {pid} (user " in detail
        assert 'application "reporting-job", idle in transaction) has had a transaction open' in (
            detail
        )
        assert "Query started " in detail
        assert "select count(*) from pgjobs.jobs" in detail
        # Under the threshold it is not a finding, but the oldest one is named.
        [(status, detail)] = of(findings(db, long_transaction="1 hour"), "vacuum horizon")
        assert status == "ok"
        assert f"(oldest: pid {pid}, " in detail
    assert not [b for b in db.execute("select pid from pgjobs.vacuum_blockers") if b[0] == pid]


def test_a_writing_transaction_holds_the_horizon_with_its_xid(dsn, db) -> None:
    with psycopg.connect(dsn) as holder:
        holder.execute("insert into pgjobs.queues (name) values ('x')")
        pid = holder.info.backend_pid
        [(kind, state, age)] = db.execute(
            "select kind, state, xmin_age from pgjobs.vacuum_blockers where pid = %s", (pid,)
        ).fetchall()
        assert (kind, state) == ("backend", "idle in transaction")
        assert age >= 1
    read_only_committed = psycopg.connect(dsn)
    with read_only_committed as reader:
        reader.execute("select 1")  # read committed, read only: holds nothing when idle
        pids = [r[0] for r in db.execute("select pid from pgjobs.vacuum_blockers")]
        assert reader.info.backend_pid not in pids


def test_the_callers_own_backend_is_not_a_blocker(db) -> None:
    with db.transaction():
        pids = [r[0] for r in db.execute("select pid from pgjobs.vacuum_blockers")]
        assert db.info.backend_pid not in pids


def test_dead_rows_are_counted(db, server_version: int) -> None:
    if server_version < 150000:
        pytest.skip("pg_stat_force_next_flush() needs PostgreSQL 15")
    # Keep autovacuum from cleaning up while the test looks.
    db.execute("alter table pgjobs.jobs set (autovacuum_enabled = false)")
    pgjobs.enqueue_many(db, [pgjobs.Task("a") for _ in range(12_000)])
    db.execute("delete from pgjobs.jobs")
    db.execute("select pg_stat_force_next_flush()")
    found = findings(db)
    [(status, detail)] = of(found, "dead rows")
    assert status == "warn"
    assert "pgjobs.jobs has 12000 dead and 0 live rows" in detail
    assert "Vacuum is falling behind" in detail
    assert (
        "warn",
        "pgjobs.jobs has autovacuum_enabled = false, pgjobs recommends true: "
        "ALTER TABLE pgjobs.jobs SET (autovacuum_enabled = true)",
    ) in of(found, "autovacuum")


def test_changed_autovacuum_settings_are_reported_with_the_fix(db) -> None:
    db.execute("alter table pgjobs.jobs reset (autovacuum_vacuum_scale_factor)")
    db.execute("alter table pgjobs.jobs set (autovacuum_vacuum_cost_delay = 20)")
    found = of(findings(db), "autovacuum")
    assert (
        "warn",
        "pgjobs.jobs has autovacuum_vacuum_scale_factor = unset (server default 0.2), pgjobs "
        "recommends 0.01: ALTER TABLE pgjobs.jobs SET (autovacuum_vacuum_scale_factor = 0.01)",
    ) in found
    assert (
        "warn",
        "pgjobs.jobs has autovacuum_vacuum_cost_delay = 20, pgjobs recommends 0: "
        "ALTER TABLE pgjobs.jobs SET (autovacuum_vacuum_cost_delay = 0)",
    ) in found
    assert not [f for f in found if f[0] == "ok"]


def test_jobs_stuck_past_their_lease(db) -> None:
    worker = uuid.uuid4()
    for _ in range(2):
        pgjobs.enqueue(db, pgjobs.Task("a"))
    db.execute(
        "update pgjobs.jobs set state = 'running', attempt = 1, started_at = now() - interval"
        " '1 hour', worker_id = %s, lease_expires_at = now() - interval '10 minutes'",
        (worker,),
    )
    [(status, detail)] = of(findings(db), "stuck jobs")
    assert status == "warn"
    assert detail.startswith("2 running jobs are past their lease (the oldest by 10 min")
    # A lease that just ran out is the rescuer's business, not yet a finding.
    db.execute("update pgjobs.jobs set lease_expires_at = now() - interval '5 seconds'")
    assert of(findings(db), "stuck jobs") == [("ok", "2 running jobs, none long past its lease")]


def test_overdue_scheduled_jobs(db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("a", delay=60))
    assert of(findings(db), "overdue jobs") == []
    db.execute("update pgjobs.jobs set run_at = now() - interval '1 hour' where id = %s", (job_id,))
    [(status, detail)] = of(findings(db), "overdue jobs")
    assert status == "warn"
    assert detail.startswith("1 scheduled job is overdue (the oldest by 1 h 0 min)")


def test_queues_with_work_but_no_worker_and_paused_queues(db) -> None:
    pgjobs.enqueue(db, pgjobs.Task("a", queue="orphan"))
    pgjobs.enqueue(db, pgjobs.Task("a", queue="served"))
    pgjobs.enqueue(db, pgjobs.Task("a", queue="held"))
    db.execute("select pgjobs.pause_queue('held')")
    db.execute(
        "insert into pgjobs.workers (id, host, pid, queues, concurrency, version)"
        " values (%s, 'h', 1, '{served}', 1, 'x')",
        (uuid.uuid4(),),
    )
    found = of(findings(db), "queues")
    assert len(found) == 2
    assert found[0][0] == "info"
    assert found[0][1].startswith('queue "held" is paused since ')
    assert found[0][1].endswith(", 1 job ready")
    assert found[1][0] == "warn"
    assert found[1][1].startswith('queue "orphan" has 1 job ready (the oldest for ')
    assert found[1][1].endswith(") and no live worker serves it")


def test_kinds_no_live_worker_of_the_queue_can_run(db) -> None:
    # Issue 18: a kind no worker has a handler for is claimed and failed, attempt after
    # attempt; doctor names it, and why says so of each such job.
    pgjobs.enqueue(db, pgjobs.Task("known"))
    lost = [pgjobs.enqueue(db, pgjobs.Task("renamed")) for _ in range(2)]
    pgjobs.enqueue(db, pgjobs.Task("renamed", queue="elsewhere"))  # served by no one
    for queues, kinds in ((["default"], ["known"]), (["other"], ["renamed"])):
        db.execute(
            "insert into pgjobs.workers (id, host, pid, queues, concurrency, version, kinds)"
            " values (%s, 'h', 1, %s, 1, 'x', %s)",
            (uuid.uuid4(), queues, kinds),
        )
    assert of(findings(db), "kinds") == [
        (
            "warn",
            '2 jobs of kind "renamed" in queue "default" are waiting, and no live worker '
            "serving the queue has a handler for the kind: each attempt fails (no handler) "
            "until a worker that registers it runs",
        )
    ]
    why = db.execute("select pgjobs.why(%s)", (lost[0],)).fetchone()[0]
    assert 'No live worker serving queue "default" has a handler for kind "renamed"' in why
    # A worker that does not say which kinds it runs (kinds NULL) may run any.
    db.execute(
        "insert into pgjobs.workers (id, host, pid, queues, concurrency, version)"
        " values (%s, 'h', 1, '{default}', 1, 'x')",
        (uuid.uuid4(),),
    )
    assert of(findings(db), "kinds") == []


async def test_a_worker_registers_the_kinds_it_runs_and_its_weights(dsn, db, running) -> None:
    server = pgjobs.Server()

    @server.handler("b_kind")
    async def b(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        pass

    @server.handler("a_kind")
    def a(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        pass

    queues = {"critical": 6, "default": 3, "low": 1}
    await running(server, pgjobs.Config(dsn=dsn, poll_interval=30.0, queues=queues))
    kinds = db.execute("select kinds from pgjobs.workers").fetchall()
    assert [sorted(row[0]) for row in kinds] == [["a_kind", "b_kind"]]
    assert db.execute("select queues, weights from pgjobs.workers").fetchall() == [
        (["critical", "default", "low"], [6, 3, 1])
    ]
    (worker,) = admin.live_workers(db)
    assert worker.shares() == "critical=6, default=3, low=1"
