"""pgjobs.why(job_id): why a job is or is not running, in words, for every situation."""

from __future__ import annotations

import re
import uuid
from typing import Any

import psycopg
import psycopg.errors
import pytest

import pgjobs
from pgjobs import _queries
from pgjobs._worker.outcome import Outcome, finish_params

Q = _queries.queries()


def why(db: psycopg.Connection[Any], job_id: int) -> str:
    return str(db.execute("select pgjobs.why(%s)", (job_id,)).fetchone()[0])


def add_worker(
    db: psycopg.Connection[Any], queues: list[str], *, concurrency: int = 2, age: str = "0 s"
) -> uuid.UUID:
    worker_id = uuid.uuid4()
    db.execute(
        "insert into pgjobs.workers (id, host, pid, queues, concurrency, version, heartbeat_at)"
        " values (%s, 'box-1', 321, %s, %s, '1.0', now() - %s::interval)",
        (worker_id, queues, concurrency, age),
    )
    return worker_id


def claim(db: psycopg.Connection[Any], worker_id: uuid.UUID, queue: str, n: int = 100) -> list[int]:
    params = {
        "queues": [queue],
        "limits": [n],
        "grace": 10,
        "lease": 60,
        "worker_id": worker_id,
        "unwait": False,
        "after_priorities": None,
        "after_ids": None,
    }
    return [row[0] for row in db.execute(Q["job_claim"], params).fetchall()]


def test_unknown_job(db) -> None:
    with pytest.raises(psycopg.errors.NoDataFound, match="job 5 does not exist"):
        why(db, 5)


def test_scheduled_for_later(db) -> None:
    add_worker(db, ["default"])
    job_id = pgjobs.enqueue(db, pgjobs.Task("report", delay=7200))
    text = why(db, job_id)
    assert text.startswith(f'job {job_id} (report, queue "default") is scheduled to run at ')
    assert "(in 1 h 59 min)" in text or "(in 2 h 0 min)" in text


def test_waiting_for_a_retry(db) -> None:
    add_worker(db, ["default"])
    job_id = pgjobs.enqueue(db, pgjobs.Task("a", max_retry=4))
    db.execute(
        "update pgjobs.jobs set state = 'scheduled', attempt = 2, last_error = 'timeout talking"
        " to smtp', run_at = now() + interval '90 seconds' where id = %s",
        (job_id,),
    )
    text = why(db, job_id)
    assert "is waiting to be retried: attempt 2 failed, and attempt 3 of 5 is scheduled" in text
    assert "Last error: timeout talking to smtp" in text


def test_due_but_not_staged(db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("a", delay=60))
    db.execute(
        "update pgjobs.jobs set run_at = now() - interval '5 minutes' where id = %s", (job_id,)
    )
    text = why(db, job_id)
    assert "was due at" in text
    assert "has not been made available yet: a live worker's maintenance pass does that" in text
    assert "No worker is running: none has registered" in text


def test_paused_queue(db) -> None:
    add_worker(db, ["default"])
    job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
    db.execute("select pgjobs.pause_queue('default')")
    text = why(db, job_id)
    assert "is ready to run since" in text
    assert 'Its queue "default" is paused (since ' in text
    assert "select pgjobs.resume_queue('default');" in text
    assert "pgjobs resume default" in text


def test_no_live_worker_serves_the_queue(db) -> None:
    add_worker(db, ["default", "low"])
    add_worker(db, ["critical"])
    add_worker(db, ["email"], age="10 minutes")  # stopped heartbeating
    job_id = pgjobs.enqueue(db, pgjobs.Task("a", queue="email"))
    text = why(db, job_id)
    assert 'No live worker serves queue "email": the 2 live workers serve' in text
    assert 'serve "critical", "default", "low".\n' in text


def test_no_worker_at_all(db) -> None:
    add_worker(db, ["default"], age="3 hours")
    job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
    text = why(db, job_id)
    assert "No worker is running: the last heartbeat was 3 h 0 min ago." in text


def test_waiting_behind_jobs_ahead_by_priority_then_age(db) -> None:
    worker = add_worker(db, ["default"], concurrency=1)
    pgjobs.enqueue(db, pgjobs.Task("busy"))
    claim(db, worker, "default")
    ahead = [pgjobs.enqueue(db, pgjobs.Task("a", priority=p)) for p in (0, 0, -1)]
    job_id = pgjobs.enqueue(db, pgjobs.Task("mine"))
    pgjobs.enqueue(db, pgjobs.Task("behind"))  # same priority, newer: not ahead
    pgjobs.enqueue(db, pgjobs.Task("later", priority=1))  # lower priority: not ahead
    pgjobs.enqueue(db, pgjobs.Task("other", queue="other", priority=-5))  # another queue
    text = why(db, job_id)
    assert f'It is waiting behind {len(ahead)} jobs ahead of it in queue "default"' in text
    assert "1 job of that queue is running." in text
    assert "All 1 slots of the 1 live worker serving the queue are busy." in text


def test_next_in_line_with_free_slots(db) -> None:
    add_worker(db, ["default"], concurrency=8)
    add_worker(db, ["default"], concurrency=2)
    job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
    text = why(db, job_id)
    assert 'It is next in line in queue "default".' in text
    assert "2 live workers serving the queue have 10 free slots of 10" in text


def test_running_on_a_live_worker(db) -> None:
    worker = add_worker(db, ["default"])
    job_id = pgjobs.enqueue(db, pgjobs.Task("resize", timeout=600, max_retry=2))
    claim(db, worker, "default")
    text = why(db, job_id)
    assert "is running: started " in text
    assert f"on worker {worker} (host box-1, pid 321); 1 attempt of 3 allowed." in text
    assert "Its timeout is 10 min 0 s (deadline " in text
    assert "its lease runs until" in text


def test_running_on_a_silent_worker(db) -> None:
    worker = add_worker(db, ["default"])
    job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
    claim(db, worker, "default")
    db.execute("update pgjobs.workers set heartbeat_at = now() - interval '2 minutes'")
    text = why(db, job_id)
    assert re.search(r"Its worker has not sent a heartbeat for 2 min \d+ s", text)
    assert "the job is rescued when its lease expires at" in text


def test_running_past_its_lease(db) -> None:
    worker = add_worker(db, ["default"])
    job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
    claim(db, worker, "default")
    db.execute("delete from pgjobs.workers")
    db.execute("update pgjobs.jobs set lease_expires_at = now() - interval '5 minutes'")
    text = why(db, job_id)
    assert "which is no longer registered" in text
    assert re.search(r"Its lease expired 5 min \d+ s ago: its worker is presumed dead", text)
    assert "No worker is live to rescue it: start a worker." in text


def test_failed_with_its_error(db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("charge", max_retry=1))
    db.execute(
        "update pgjobs.jobs set state = 'failed', attempt = 2, finished_at = now(),"
        " last_error = 'CardDeclined: insufficient funds' where id = %s",
        (job_id,),
    )
    text = why(db, job_id)
    assert text.startswith(f'job {job_id} (charge, queue "default") failed at ')
    assert "after 2 attempts of 2 allowed." in text
    assert "Last error: CardDeclined: insufficient funds" in text
    assert f"select pgjobs.retry_job({job_id});" in text


def test_completed_and_cancelled(db) -> None:
    done = pgjobs.enqueue(db, pgjobs.Task("a"))
    db.execute(
        "update pgjobs.jobs set state = 'completed', attempt = 1, finished_at = now()"
        " where id = %s",
        (done,),
    )
    assert "completed at" in why(db, done)
    assert "after 1 attempt of 26 allowed." in why(db, done)
    stopped = pgjobs.enqueue(db, pgjobs.Task("a"))
    db.execute("select pgjobs.cancel_job(%s, 'customer withdrew')", (stopped,))
    assert "was cancelled at" in why(db, stopped)
    assert why(db, stopped).endswith(": customer withdrew.")


# --- a job whose row is gone ----------------------------------------------------------------


def complete(db: psycopg.Connection[Any], job_ids: list[int], *, delete: bool = True) -> None:
    """Claim the jobs and record them completed with the worker's own statement, which
    deletes them when *delete* (completed_retention 0)."""
    worker_id = add_worker(db, ["default"])
    assert sorted(claim(db, worker_id, "default")) == sorted(job_ids)
    outcomes = [Outcome(job_id, 1, "completed") for job_id in job_ids]
    params = finish_params(outcomes, worker_id=str(worker_id), delete_completed=delete)
    assert sorted(r[0] for r in db.execute(Q["job_finish_many"], params)) == sorted(job_ids)


def records(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute(
        "select ids, finished_at = now() from pgjobs.completed_recently order by finished_at"
    ).fetchall()


def test_a_job_deleted_as_it_completed_is_said_to_have_completed(db) -> None:
    first, second = pgjobs.enqueue_many(db, [pgjobs.Task("a"), pgjobs.Task("a")])
    with db.transaction():  # now() is the completion's time throughout
        complete(db, [first, second])
        assert db.execute("select count(*) from pgjobs.jobs").fetchone() == (0,)
        # One row for the statement, not one per job, timed as the completion.
        assert [(sorted(ids), same) for ids, same in records(db)] == [([first, second], True)]
        stamp = db.execute("select to_char(now(), 'YYYY-MM-DD HH24:MI:SS TZ')").fetchone()[0]
        text = why(db, second)
    assert text.startswith(f"job {second} completed at {stamp} (")
    assert "and was deleted" in text
    assert "completed_retention" in text


def test_a_batch_that_deletes_no_job_records_nothing(db) -> None:
    kept = pgjobs.enqueue(db, pgjobs.Task("a"))
    complete(db, [kept], delete=False)  # retained: the row says it completed
    retried = pgjobs.enqueue(db, pgjobs.Task("a"))
    worker_id = add_worker(db, ["default"])
    assert claim(db, worker_id, "default") == [retried]
    outcome = Outcome(retried, 1, "scheduled", delay=60.0, error="boom")
    params = finish_params([outcome], worker_id=str(worker_id), delete_completed=True)
    assert [r[0] for r in db.execute(Q["job_finish_many"], params)] == [retried]
    assert records(db) == []
    assert "completed at" in why(db, kept)


def test_a_job_without_a_completion_record_is_still_unknown(db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
    complete(db, [job_id])
    db.execute("delete from pgjobs.completed_recently")  # as the pruner does after an hour
    with pytest.raises(psycopg.errors.NoDataFound, match=f"job {job_id} does not exist"):
        why(db, job_id)
