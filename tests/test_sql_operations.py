"""The operator functions (migrations/schema.sql): retry, cancel, pause/resume, purge.

Running jobs are made by the worker's own claim statement (job_claim), and a worker's
outcome is written with its own job_finish_many, so these tests hold the functions to
the contracts the worker relies on.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import uuid
from typing import Any

import psycopg
import psycopg.errors
import pytest

import pgjobs
from pgjobs import _queries, admin, testing

Q = _queries.queries()


def state(db: psycopg.Connection[Any], job_id: int) -> str:
    return str(db.execute("select state from pgjobs.jobs where id = %s", (job_id,)).fetchone()[0])


def add_worker(
    db: psycopg.Connection[Any], queues: list[str], *, waiting: bool = False
) -> uuid.UUID:
    worker_id = uuid.uuid4()
    db.execute(
        Q["worker_register"],
        {
            "id": worker_id,
            "host": "test-host",
            "pid": 4242,
            "queues": queues,
            "concurrency": 4,
            "version": "test",
            "kinds": None,
            "weights": None,
        },
    )
    db.execute(Q["worker_set_waiting"], {"id": worker_id, "waiting": waiting})
    return worker_id


def claim(db: psycopg.Connection[Any], worker_id: uuid.UUID, queue: str = "default") -> list[int]:
    """What a worker does to start jobs: the real job_claim statement."""
    rows = db.execute(
        Q["job_claim"],
        {
            "queues": [queue],
            "limits": [100],
            "grace": 10,
            "lease": 60,
            "worker_id": worker_id,
            "unwait": False,
            "after_priorities": None,
            "after_ids": None,
        },
    ).fetchall()
    return [row[0] for row in rows]


def finish(
    db: psycopg.Connection[Any], worker_id: uuid.UUID, job_id: int, attempt: int, outcome: str
) -> list[int]:
    """What a worker does when a handler returns: the real job_finish_many statement."""
    rows = db.execute(
        Q["job_finish_many"],
        {
            "ids": [job_id],
            "attempts": [attempt],
            "states": [outcome],
            "delays": [0.0],
            "errors": [None if outcome == "completed" else "boom"],
            "results": [None],
            "refunds": [False],
            "delete_completed": False,
            "worker_id": worker_id,
        },
    ).fetchall()
    return [row[0] for row in rows]


def fail(db: psycopg.Connection[Any], job_id: int, error: str = "boom") -> None:
    db.execute(
        "update pgjobs.jobs set state = 'failed', finished_at = now(), last_error = %s,"
        " attempt = max_retry + 1 where id = %s",
        (error, job_id),
    )


def sql(db: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    return db.execute(query.encode(), params).fetchone()[0]


@pytest.fixture
def control(dsn: str) -> Any:
    """A connection listening on pgjobs_control, as every worker does."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("listen pgjobs_control")
        yield conn


def received(
    listener: psycopg.Connection[Any], sender: psycopg.Connection[Any], channel: str
) -> list[str]:
    """Payloads received on *channel* so far; a sentinel marks the end, so nothing waits
    on a timeout for a notification that should not come."""
    sender.execute(f"select pg_notify('{channel}', 'end-of-test')".encode())
    payloads = []
    for note in listener.notifies(timeout=10):
        if note.payload == "end-of-test":
            break
        payloads.append(note.payload)
    return payloads


def test_every_statement_is_short_enough_for_psycopgs_query_cache() -> None:
    # psycopg converts a query at every execute, prepared or not, and caches the result
    # only up to this length: above it, job_finish_many was parsed at every outcome batch.
    from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH

    long = {name: len(body) for name, body in Q.items() if len(body) > MAX_CACHED_STATEMENT_LENGTH}
    assert long == {}
    assert b"\n--" not in Q["job_finish_many"]  # the files' comment lines are not sent


# --- retry ----------------------------------------------------------------------------------


def test_finish_many_reads_columns_sent_as_null_as_their_defaults(db) -> None:
    """The completer sends a column that holds only its default as NULL (finish_params):
    a batch of plain completions is ids and attempts alone. Mixed batches send them all."""
    from pgjobs._worker.outcome import Outcome, finish_params

    worker_id = add_worker(db, ["default"])
    ids = [pgjobs.enqueue(db, pgjobs.Task("a")) for _ in range(5)]
    assert sorted(claim(db, worker_id)) == ids

    def write(outcomes: list[Outcome]) -> dict[str, Any]:
        params = finish_params(outcomes, worker_id=str(worker_id), delete_completed=False)
        db.execute(Q["job_finish_many"], params)
        return params

    plain = write([Outcome(ids[0], 1, "completed"), Outcome(ids[1], 1, "completed")])
    assert [plain[k] for k in ("states", "delays", "errors", "results", "refunds")] == [None] * 5
    mixed = write(
        [
            Outcome(ids[2], 1, "completed", result="7"),
            Outcome(ids[3], 1, "scheduled", delay=60.0, error="boom"),
            Outcome(ids[4], 1, "scheduled", refund=True),  # a snooze of 0 s
        ]
    )
    assert mixed["states"] == ["completed", "scheduled", "scheduled"]
    assert mixed["refunds"] == [False, False, True]
    rows = db.execute(
        "select id, state::text, attempt, result, last_error, run_at > now() + interval '30 s'"
        " from pgjobs.jobs order by id"
    ).fetchall()
    assert rows == [
        (ids[0], "completed", 1, None, None, False),
        (ids[1], "completed", 1, None, None, False),
        (ids[2], "completed", 1, 7, None, False),
        (ids[3], "scheduled", 1, None, "boom", True),
        (ids[4], "available", 0, None, None, False),
    ]


def test_retry_a_failed_job_gives_it_one_more_attempt(db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("a", max_retry=2))
    fail(db, job_id)
    assert sql(db, "select pgjobs.retry_job(%s)", job_id) is True
    row = db.execute(
        "select state, attempt, max_retry, finished_at, run_at <= now(), last_error"
        " from pgjobs.jobs where id = %s",
        (job_id,),
    ).fetchone()
    # attempt 3 of 3 was used: max_retry goes to 3, so attempt 4 is allowed, and no more.
    assert row == ("available", 3, 3, None, True, "boom")


def test_retry_keeps_unused_retries(db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("a", max_retry=5))
    db.execute(
        "update pgjobs.jobs set state = 'failed', attempt = 1, finished_at = now() where id = %s",
        (job_id,),
    )
    assert sql(db, "select pgjobs.retry_job(%s)", job_id) is True
    assert sql(db, "select max_retry from pgjobs.jobs where id = %s", job_id) == 5


def test_retry_a_cancelled_or_scheduled_job_runs_it_now(db) -> None:
    cancelled = pgjobs.enqueue(db, pgjobs.Task("a"))
    sql(db, "select pgjobs.cancel_job(%s)", cancelled)
    scheduled = pgjobs.enqueue(db, pgjobs.Task("a", delay=3600))
    assert sql(db, "select pgjobs.retry_job(%s)", cancelled) is True
    assert sql(db, "select pgjobs.retry_job(%s)", scheduled) is True
    assert state(db, cancelled) == state(db, scheduled) == "available"


def test_retry_refuses_available_running_and_completed_jobs(db) -> None:
    worker = add_worker(db, ["default"])
    running = pgjobs.enqueue(db, pgjobs.Task("a"))
    claim(db, worker)
    completed = pgjobs.enqueue(db, pgjobs.Task("a"))
    db.execute("update pgjobs.jobs set state = 'completed' where id = %s", (completed,))
    available = pgjobs.enqueue(db, pgjobs.Task("a"))
    for job_id, before in (
        (running, "running"),
        (completed, "completed"),
        (available, "available"),
    ):
        assert sql(db, "select pgjobs.retry_job(%s)", job_id) is False
        assert state(db, job_id) == before


def test_unknown_jobs_raise_no_data_found(db) -> None:
    for function in ("retry_job(%s)", "cancel_job(%s)", "why(%s)"):
        with pytest.raises(psycopg.errors.NoDataFound, match="job 987 does not exist"):
            sql(db, f"select pgjobs.{function}", 987)


def test_retry_wakes_a_waiting_worker(dsn, db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("a", queue="email"))
    fail(db, job_id)
    add_worker(db, ["email"], waiting=True)
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("listen pgjobs_wakeup")
        sql(db, "select pgjobs.retry_job(%s)", job_id)
        assert received(listener, db, "pgjobs_wakeup") == ["email"]


def test_retry_failed_by_kind_and_queue(db) -> None:
    jobs = {
        (kind, queue): pgjobs.enqueue(db, pgjobs.Task(kind, queue=queue))
        for kind in ("a", "b")
        for queue in ("q1", "q2")
    }
    for job_id in jobs.values():
        fail(db, job_id)
    still_available = pgjobs.enqueue(db, pgjobs.Task("a", queue="q1"))

    assert sql(db, "select pgjobs.retry_failed(kind => 'a', queue => 'q1')") == 1
    assert state(db, jobs["a", "q1"]) == "available"
    assert sql(db, "select pgjobs.retry_failed(kind => 'b')") == 2
    assert sql(db, "select pgjobs.retry_failed(queue => 'q2')") == 1  # (a, q2) is left
    assert sql(db, "select pgjobs.retry_failed()") == 0
    assert {state(db, job_id) for job_id in jobs.values()} == {"available"}
    assert state(db, still_available) == "available"


# --- cancel ---------------------------------------------------------------------------------


def test_cancel_an_available_or_scheduled_job(db, control) -> None:
    available = pgjobs.enqueue(db, pgjobs.Task("a"))
    scheduled = pgjobs.enqueue(db, pgjobs.Task("a", delay=60))
    assert sql(db, "select pgjobs.cancel_job(%s)", available) is True
    assert sql(db, "select pgjobs.cancel_job(%s, 'duplicate order')", scheduled) is True
    rows = db.execute(
        "select id, state, last_error, finished_at is not null from pgjobs.jobs order by id"
    ).fetchall()
    assert rows == [
        (available, "cancelled", "cancelled by operator", True),
        (scheduled, "cancelled", "duplicate order", True),
    ]
    # Nobody runs them, so no worker is told.
    assert received(control, db, "pgjobs_control") == []


def test_cancel_a_running_job_tells_its_worker(db, control) -> None:
    worker = add_worker(db, ["default"])
    job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
    assert claim(db, worker) == [job_id]

    assert sql(db, "select pgjobs.cancel_job(%s, 'stop')", job_id) is True
    row = db.execute(
        "select state, last_error, lease_expires_at, finished_at is not null, worker_id"
        " from pgjobs.jobs where id = %s",
        (job_id,),
    ).fetchone()
    assert row == ("cancelled", "stop", None, True, worker)
    messages = [json.loads(p) for p in received(control, db, "pgjobs_control")]
    assert messages == [{"action": "cancel", "job_id": job_id}]


def test_the_workers_late_outcome_cannot_overwrite_a_cancel(db) -> None:
    worker = add_worker(db, ["default"])
    job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
    claim(db, worker)
    sql(db, "select pgjobs.cancel_job(%s)", job_id)
    for outcome in ("completed", "failed", "scheduled"):
        assert finish(db, worker, job_id, 1, outcome) == []
    assert state(db, job_id) == "cancelled"


def test_cancel_notifies_only_when_the_transaction_commits(dsn, db, control) -> None:
    worker = add_worker(db, ["default"])
    job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
    claim(db, worker)
    with psycopg.connect(dsn) as conn:
        conn.execute("select pgjobs.cancel_job(%s)", (job_id,))
        conn.rollback()
    assert state(db, job_id) == "running"
    assert received(control, db, "pgjobs_control") == []


def test_finished_jobs_cannot_be_cancelled(db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
    for finished in ("completed", "failed", "cancelled"):
        db.execute(
            "update pgjobs.jobs set state = %s, last_error = 'x' where id = %s",
            (finished, job_id),
        )
        assert sql(db, "select pgjobs.cancel_job(%s)", job_id) is False
        assert state(db, job_id) == finished


def test_cancel_many_in_one_statement(db) -> None:
    ids = [pgjobs.enqueue(db, pgjobs.Task("spam")) for _ in range(3)]
    done = pgjobs.enqueue(db, pgjobs.Task("spam"))
    db.execute("update pgjobs.jobs set state = 'completed' where id = %s", (done,))
    results = db.execute(
        "select pgjobs.cancel_job(id) from pgjobs.jobs where kind = 'spam' order by id"
    ).fetchall()
    assert [r[0] for r in results] == [True, True, True, False]
    assert {state(db, i) for i in ids} == {"cancelled"}


# --- pause and resume -----------------------------------------------------------------------


def test_a_paused_queue_is_skipped_by_the_claim_and_resumed(db) -> None:
    worker = add_worker(db, ["default"])
    job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
    assert sql(db, "select pgjobs.pause_queue('default')") is True
    assert sql(db, "select pgjobs.pause_queue('default')") is False  # already paused
    assert claim(db, worker) == []
    paused = db.execute("select paused_at is not null from pgjobs.queues where name = 'default'")
    assert paused.fetchone()[0] is True

    assert sql(db, "select pgjobs.resume_queue('default')") is True
    assert sql(db, "select pgjobs.resume_queue('default')") is False  # not paused any more
    assert claim(db, worker) == [job_id]


def test_the_pause_holds_across_connections(dsn, db) -> None:
    pgjobs.enqueue(db, pgjobs.Task("a", queue="low"))
    with psycopg.connect(dsn, autocommit=True) as other:
        sql(other, "select pgjobs.pause_queue('low')")
    with psycopg.connect(dsn, autocommit=True) as later:
        worker = add_worker(later, ["low"])
        assert claim(later, worker, "low") == []


def test_pausing_an_unknown_queue_needs_force(db) -> None:
    with pytest.raises(psycopg.errors.NoDataFound, match='queue "emial" is unknown'):
        sql(db, "select pgjobs.pause_queue('emial')")
    with pytest.raises(psycopg.errors.NoDataFound, match='queue "emial" is unknown'):
        sql(db, "select pgjobs.resume_queue('emial')")
    assert sql(db, "select pgjobs.pause_queue('reports', force => true)") is True
    assert sql(db, "select pgjobs.resume_queue('reports')") is True  # known now, by its row


def test_a_queue_is_known_by_its_jobs_or_workers(db) -> None:
    pgjobs.enqueue(db, pgjobs.Task("a", queue="by-job"))
    add_worker(db, ["by-worker"])
    assert sql(db, "select pgjobs.pause_queue('by-job')") is True
    assert sql(db, "select pgjobs.pause_queue('by-worker')") is True


def test_resume_wakes_waiting_workers_when_work_is_ready(dsn, db) -> None:
    pgjobs.enqueue(db, pgjobs.Task("a", queue="email"))
    sql(db, "select pgjobs.pause_queue('email')")
    sql(db, "select pgjobs.pause_queue('empty', force => true)")
    add_worker(db, ["email", "empty"], waiting=True)
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("listen pgjobs_wakeup")
        sql(db, "select pgjobs.resume_queue('empty')")  # nothing to do there: no wakeup
        sql(db, "select pgjobs.resume_queue('email')")
        assert received(listener, db, "pgjobs_wakeup") == ["email"]


# --- purge ----------------------------------------------------------------------------------


def finished_ago(db: psycopg.Connection[Any], job_state: str, age: str) -> int:
    job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
    db.execute(
        "update pgjobs.jobs set state = %s, finished_at = now() - %s::interval where id = %s",
        (job_state, age, job_id),
    )
    return job_id


def test_purge_deletes_finished_jobs_older_than_the_interval(db) -> None:
    old = [finished_ago(db, s, "8 days") for s in ("completed", "failed", "cancelled")]
    recent = [finished_ago(db, s, "1 day") for s in ("completed", "failed", "cancelled")]
    live = [pgjobs.enqueue(db, pgjobs.Task("a")), pgjobs.enqueue(db, pgjobs.Task("a", delay=9))]
    assert sql(db, "select pgjobs.purge_finished('7 days')") == 3
    left = {r[0] for r in db.execute("select id from pgjobs.jobs")}
    assert left == set(recent + live)
    assert not left & set(old)


def test_purge_by_state_and_in_batches(db) -> None:
    completed = [finished_ago(db, "completed", "2 hours") for _ in range(5)]
    failed = finished_ago(db, "failed", "2 hours")
    assert sql(db, "select pgjobs.purge_finished('1 hour', 2, '{completed}')") == 2
    assert sql(db, "select pgjobs.purge_finished('1 hour', 2, '{completed}')") == 2
    assert sql(db, "select pgjobs.purge_finished('1 hour', 2, '{completed}')") == 1
    assert sql(db, "select pgjobs.purge_finished('1 hour', 2, '{completed}')") == 0
    assert [r[0] for r in db.execute("select id from pgjobs.jobs")] == [failed]
    assert completed


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("pgjobs.purge_finished('-1 day')", "older_than must be 0 or more"),
        ("pgjobs.purge_finished(NULL)", "older_than must be 0 or more"),
        ("pgjobs.purge_finished('1 day', NULL, '{running}')", "states must be some of"),
        ("pgjobs.purge_finished('1 day', NULL, '{}')", "states must be some of"),
    ],
)
def test_purge_refuses_bad_arguments(db, call: str, message: str) -> None:
    finished_ago(db, "completed", "2 days")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        sql(db, f"select {call}")


# --- rows read into dataclasses, and the async face --------------------------------------------

#: Parameters that make each statement of admin.ROW_TYPES run (and return no row or some).
ROW_TYPE_PARAMS: dict[str, dict[str, Any]] = {
    "queue_summary": {},
    "worker_list_live": {},
    "job_list": dict.fromkeys(("state", "queue", "kind", "error", "since", "before"))
    | {"limit": 1},
    "job_get": {"ids": []},
    "doctor_run": {"long_transaction": 300},
    "doctor_vacuum_blockers": {"limit": 1},
}


@pytest.mark.parametrize("name", sorted(admin.ROW_TYPES))
def test_each_statement_names_its_columns_as_its_dataclass_fields(db, name: str) -> None:
    """Rows become dataclasses by position on the shared runners; this holds each position
    to its name, so that a column added or moved in the SQL cannot shift the fields."""
    with db.cursor() as cur:
        cur.execute(Q[name], ROW_TYPE_PARAMS[name])
        columns = [column.name for column in cur.description or ()]
    assert columns == [field.name for field in dataclasses.fields(admin.ROW_TYPES[name])]


def test_get_returns_one_job_type_everywhere(db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("k", {"n": 1}, delay=60))
    job = admin.get_job(db, job_id)
    assert job == testing.get_job(db, job_id)
    assert isinstance(job, pgjobs.Job)
    assert job.state is pgjobs.JobState.SCHEDULED
    assert (job.payload, job.errors, job.worker_host, job.finished) == ({"n": 1}, [], None, False)
    assert admin.get_job(db, job_id + 1) is None


async def test_every_operation_has_an_async_face(db, aconn) -> None:
    await aconn.set_autocommit(True)  # each operation its own transaction, as on the CLI
    job_id = pgjobs.enqueue(db, pgjobs.Task("k", queue="q"))
    assert await admin.cancel_job_async(aconn, job_id, reason="no") is True
    job = await admin.get_job_async(aconn, job_id)
    assert job is not None
    assert (job.state, job.last_error) == ("cancelled", "no")
    assert await admin.retry_job_async(aconn, job_id) is True
    assert [j.id for j in await admin.list_jobs_async(aconn, state="available")] == [job_id]
    assert await admin.pause_queue_async(aconn, "q") is True
    assert "paused" in await admin.why_async(aconn, job_id)
    with pytest.raises(pgjobs.JobNotFoundError):
        await admin.retry_job_async(aconn, job_id + 1)
    with pytest.raises(pgjobs.QueueNotFoundError):
        await admin.pause_queue_async(aconn, "nowhere")
    for name in admin.__all__:
        if name.endswith("_async"):
            assert inspect.iscoroutinefunction(getattr(admin, name)), name
            assert callable(getattr(admin, name.removesuffix("_async"))), name


def test_job_state_is_the_schemas_enum_in_order(db) -> None:
    [labels] = db.execute("select enum_range(null::pgjobs.job_state)::text[]").fetchone()
    assert labels == [state.value for state in pgjobs.JobState]
    assert [s for s in pgjobs.JobState if s.finished] == ["completed", "failed", "cancelled"]
