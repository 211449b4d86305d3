"""Rows pgjobs never writes itself, which the table still admits: every reader describes
them, and the rescuer repairs them (issue 17, item 4)."""

from __future__ import annotations

from typing import Any

import psycopg

import pgjobs
from pgjobs import _queries, admin

Q = _queries.queries()


def test_a_running_job_without_a_lease_is_reported_and_rescued(db: psycopg.Connection[Any]) -> None:
    # A new row cannot start out so (jobs_insert_guard); an UPDATE by a role that may
    # write the table can still leave one.
    job_id = pgjobs.enqueue(db, pgjobs.Task("orphan"))
    db.execute(
        "update pgjobs.jobs set state = 'running', attempt = 1, started_at = now(),"
        " lease_expires_at = null, worker_id = null where id = %s",
        (job_id,),
    )
    stuck = [f for f in admin.doctor(db) if f.check_name == "stuck jobs" and f.status == "warn"]
    assert [f.detail for f in stuck] == [
        "1 running job has no lease: a live worker's rescuer gives it back at its next pass; "
        "is any worker running?"
    ]
    text = admin.why(db, job_id)
    assert "It has no lease, so no worker holds it" in text
    assert "No worker is live to rescue it: start a worker." in text
    assert "expires at  (in )" not in text

    rescued = db.execute(Q["job_rescue_expired"], {"limit": 10, "now": None}).fetchall()
    assert [(row[0], row[1]) for row in rescued] == [(job_id, "available")]
    row = db.execute(
        "select state::text, last_error from pgjobs.jobs where id = %s", (job_id,)
    ).fetchone()
    assert row == ("available", "running without a lease: no worker held it")
