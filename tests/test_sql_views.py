"""The inspection views (migrations/schema.sql): queue_summary, running_jobs, failed_jobs,
live_workers."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import _queries

Q = _queries.queries()


def rows(db: psycopg.Connection[Any], query: str) -> list[dict[str, Any]]:
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(query.encode()).fetchall()


def add_worker(
    db: psycopg.Connection[Any],
    queues: list[str],
    *,
    concurrency: int = 4,
    heartbeat_age: str = "0 s",
) -> uuid.UUID:
    worker_id = uuid.uuid4()
    db.execute(
        "insert into pgjobs.workers (id, host, pid, queues, concurrency, version, heartbeat_at)"
        " values (%s, 'host-a', 77, %s, %s, '1.0', now() - %s::interval)",
        (worker_id, queues, concurrency, heartbeat_age),
    )
    return worker_id


def claim(db: psycopg.Connection[Any], worker_id: uuid.UUID, queue: str) -> list[int]:
    params = {
        "queues": [queue],
        "limits": [100],
        "grace": 10,
        "lease": 60,
        "worker_id": worker_id,
        "unwait": False,
        "after_priorities": None,
        "after_ids": None,
    }
    return [row[0] for row in db.execute(Q["job_claim"], params).fetchall()]


def by_queue(db: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    return {row["queue"]: row for row in rows(db, "select * from pgjobs.queue_summary")}


def test_queue_summary_counts_every_state_per_queue(db) -> None:
    for _ in range(3):
        pgjobs.enqueue(db, pgjobs.Task("a", queue="email"))
    pgjobs.enqueue(db, pgjobs.Task("a", queue="email", delay=3600))
    worker = add_worker(db, ["email"])
    pgjobs.enqueue(db, pgjobs.Task("a", queue="other"))
    claim(db, worker, "other")
    for final in ("completed", "failed", "failed", "cancelled"):
        job_id = pgjobs.enqueue(db, pgjobs.Task("a", queue="other"))
        db.execute("update pgjobs.jobs set state = %s where id = %s", (final, job_id))

    summary = by_queue(db)
    assert set(summary) == {"email", "other"}
    counts = ("scheduled", "available", "running", "completed", "failed", "cancelled")
    assert [summary["email"][c] for c in counts] == [1, 3, 0, 0, 0, 0]
    assert [summary["other"][c] for c in counts] == [0, 0, 1, 1, 2, 1]
    assert summary["email"]["workers"] == 1
    assert summary["email"]["concurrency"] == 4
    assert summary["other"]["workers"] == 0  # its running job's worker serves only email
    assert summary["email"]["paused"] is False


def test_queue_summary_lists_paused_and_served_queues_without_jobs(db) -> None:
    db.execute("select pgjobs.pause_queue('reports', force => true)")
    add_worker(db, ["critical", "default"])
    add_worker(db, ["gone"], heartbeat_age="5 minutes")  # not live: not listed
    summary = by_queue(db)
    assert set(summary) == {"reports", "critical", "default"}
    assert summary["reports"]["paused"] is True
    assert summary["reports"]["paused_at"] is not None
    assert summary["critical"]["available"] == 0
    assert summary["critical"]["oldest_ready_age"] is None


def test_oldest_ready_age_counts_available_and_overdue_jobs(db) -> None:
    ready = pgjobs.enqueue(db, pgjobs.Task("a"))
    db.execute(
        "update pgjobs.jobs set run_at = now() - interval '10 minutes' where id = %s", (ready,)
    )
    overdue = pgjobs.enqueue(db, pgjobs.Task("a", queue="late", delay=60))
    db.execute(
        "update pgjobs.jobs set run_at = now() - interval '1 hour' where id = %s", (overdue,)
    )
    pgjobs.enqueue(db, pgjobs.Task("a", queue="future", delay=3600))
    summary = by_queue(db)
    assert timedelta(minutes=10) <= summary["default"]["oldest_ready_age"] < timedelta(minutes=11)
    assert timedelta(hours=1) <= summary["late"]["oldest_ready_age"] < timedelta(minutes=61)
    assert summary["future"]["oldest_ready_age"] is None


def test_throughput_counts_the_last_sixty_seconds(db) -> None:
    worker, other = uuid.uuid4(), uuid.uuid4()
    # One transaction, so that now() is one instant for the rows and the view.
    with db.transaction():
        db.execute(
            "insert into pgjobs.stats (minute, queue, worker_id, completed, failed, retried)"
            " values (date_trunc('minute', now()), 'q', %(w)s, 30, 3, 1),"
            " (date_trunc('minute', now()), 'q', %(o)s, 10, 0, 0),"
            " (date_trunc('minute', now()) - interval '1 minute', 'q', %(w)s, 600, 60, 0),"
            " (date_trunc('minute', now()) - interval '2 minutes', 'q', %(w)s, 999, 999, 999)",
            {"w": worker, "o": other},
        )
        share = float(
            db.execute(
                "select 1 - extract(epoch from now() - date_trunc('minute', now())) / 60"
            ).fetchone()[0]
        )
        row = by_queue(db)["q"]
    # This minute in full, and the previous minute's share still inside the window; the
    # minute before that is out.
    assert row["completed_last_minute"] == round(40 + 600 * share)
    assert row["failed_last_minute"] == round(3 + 60 * share)
    assert row["retried_last_minute"] == 1
    assert row["available"] == 0


def test_running_jobs_shows_worker_attempt_and_lease(db) -> None:
    worker = add_worker(db, ["default"])
    job_id = pgjobs.enqueue(db, pgjobs.Task("resize", timeout=120))
    pgjobs.enqueue(db, pgjobs.Task("waiting"))
    claim(db, worker, "default")
    [row] = [r for r in rows(db, "select * from pgjobs.running_jobs") if r["id"] == job_id]
    assert (row["kind"], row["queue"], row["attempt"], row["max_retry"]) == (
        "resize",
        "default",
        1,
        25,
    )
    assert (row["worker_id"], row["worker_host"], row["worker_pid"]) == (worker, "host-a", 77)
    assert row["worker_live"] is True
    assert row["lease_expired"] is False
    assert row["deadline"] == row["started_at"] + timedelta(seconds=120)
    assert row["lease_expires_at"] > row["started_at"]


def test_running_jobs_flags_dead_workers_and_expired_leases(db) -> None:
    worker = add_worker(db, ["default"])
    pgjobs.enqueue(db, pgjobs.Task("a"))
    claim(db, worker, "default")
    db.execute("update pgjobs.workers set heartbeat_at = now() - interval '2 minutes'")
    db.execute("update pgjobs.jobs set lease_expires_at = now() - interval '1 second'")
    [row] = rows(db, "select * from pgjobs.running_jobs")
    assert (row["worker_live"], row["lease_expired"]) == (False, True)
    db.execute("delete from pgjobs.workers")
    [row] = rows(db, "select * from pgjobs.running_jobs")
    assert (row["worker_host"], row["worker_live"]) == (None, False)


def test_failed_jobs_newest_first_with_errors(db) -> None:
    first = pgjobs.enqueue(db, pgjobs.Task("a"))
    second = pgjobs.enqueue(db, pgjobs.Task("b"))
    pgjobs.enqueue(db, pgjobs.Task("c"))  # not failed
    errors = '[{"attempt": 1, "at": "2026-01-01T00:00:00Z", "error": "boom"}]'
    for job_id, age in ((first, "2 hours"), (second, "1 hour")):
        db.execute(
            "update pgjobs.jobs set state = 'failed', last_error = 'boom', errors = %s,"
            " finished_at = now() - %s::interval, attempt = 1 where id = %s",
            (errors, age, job_id),
        )
    found = rows(db, "select id, kind, last_error, errors from pgjobs.failed_jobs")
    assert [r["id"] for r in found] == [second, first]
    assert found[0]["errors"][0]["error"] == "boom"


@pytest.mark.parametrize(("age", "live"), [("0 s", True), ("59 s", True), ("61 s", False)])
def test_live_workers_have_a_heartbeat_younger_than_a_minute(db, age: str, live: bool) -> None:
    worker = add_worker(db, ["default"], heartbeat_age=age)
    found = rows(db, "select * from pgjobs.live_workers")
    assert [r["id"] for r in found] == ([worker] if live else [])


def test_live_workers_count_their_running_jobs(db) -> None:
    busy = add_worker(db, ["default"])
    idle = add_worker(db, ["low"])
    for _ in range(2):
        pgjobs.enqueue(db, pgjobs.Task("a"))
    claim(db, busy, "default")
    found = {r["id"]: r for r in rows(db, "select * from pgjobs.live_workers")}
    assert (found[busy]["running"], found[idle]["running"]) == (2, 0)
    assert found[busy]["queues"] == ["default"]
    assert (found[busy]["host"], found[busy]["pid"], found[busy]["version"]) == (
        "host-a",
        77,
        "1.0",
    )
