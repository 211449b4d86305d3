"""pgjobs.enqueue() in SQL: the options, defaults and validation of pgjobs.Task, the same
wakeup rule as the Python insert, and the trigger example of docs/operations.md."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
import pytest

import pgjobs
from pgjobs.task import DEFAULT_MAX_RETRY, DEFAULT_TIMEOUT

DOCS = Path(__file__).resolve().parent.parent / "docs"


def job(db: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute("select * from pgjobs.jobs where id = %s", (job_id,)).fetchone()
    assert row is not None
    return row


def add_worker(db: psycopg.Connection[Any], queues: list[str], *, waiting: bool) -> uuid.UUID:
    worker_id = uuid.uuid4()
    db.execute(
        "insert into pgjobs.workers (id, host, pid, queues, concurrency, version, waiting)"
        " values (%s, 'test-host', 1, %s, 4, 'test', %s)",
        (worker_id, queues, waiting),
    )
    return worker_id


def notifications(listener: psycopg.Connection[Any], sender: psycopg.Connection[Any]) -> list[str]:
    """Payloads on pgjobs_wakeup so far, in commit order. A sentinel sent afterwards marks
    the end, so no timeout has to guess how long to wait for nothing."""
    sender.execute("select pg_notify('pgjobs_wakeup', 'end-of-test')")
    received = []
    for note in listener.notifies(timeout=10):
        if note.payload == "end-of-test":
            break
        received.append(note.payload)
    return received


@pytest.fixture
def listener(dsn: str) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("listen pgjobs_wakeup")
        yield conn


def test_defaults_match_the_python_task(db) -> None:
    job_id = db.execute("select pgjobs.enqueue('send_email')").fetchone()[0]
    row = job(db, job_id)
    task = pgjobs.Task("send_email")
    assert row["kind"] == task.kind
    assert row["payload"] == task.payload
    assert row["queue"] == task.queue
    assert row["priority"] == task.priority
    assert row["max_retry"] == task.max_retry == DEFAULT_MAX_RETRY
    assert row["timeout"] == timedelta(seconds=DEFAULT_TIMEOUT)
    assert row["state"] == "available"
    assert row["attempt"] == 0


def test_every_option_is_stored(db) -> None:
    job_id = db.execute(
        "select pgjobs.enqueue('resize', '{\"w\": 640}', queue => 'images', priority => -5,"
        " max_retry => 3, timeout => '90 seconds')"
    ).fetchone()[0]
    row = job(db, job_id)
    assert (row["kind"], row["payload"], row["queue"]) == ("resize", {"w": 640}, "images")
    assert (row["priority"], row["max_retry"]) == (-5, 3)
    assert row["timeout"] == timedelta(seconds=90)


def test_delay_and_run_at_schedule_the_job(db) -> None:
    delayed = db.execute("select pgjobs.enqueue('a', delay => '1 hour')").fetchone()[0]
    at = db.execute("select pgjobs.enqueue('a', run_at => now() + interval '1 day')").fetchone()[0]
    past = db.execute("select pgjobs.enqueue('a', run_at => now() - interval '1 day')").fetchone()[
        0
    ]
    zero = db.execute("select pgjobs.enqueue('a', delay => '0 s')").fetchone()[0]
    assert job(db, delayed)["state"] == "scheduled"
    assert job(db, delayed)["run_at"] > job(db, delayed)["created_at"] + timedelta(minutes=59)
    assert job(db, at)["state"] == "scheduled"
    assert job(db, past)["state"] == "available"
    assert job(db, zero)["state"] == "available"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("pgjobs.enqueue('')", "kind must not be empty"),
        ("pgjobs.enqueue(E' \\t ')", "kind must not be empty"),
        ("pgjobs.enqueue(NULL)", "kind must not be empty"),
        ("pgjobs.enqueue(repeat('k', 256))", "kind is 256 characters long, over the limit of 255"),
        ("pgjobs.enqueue('a', queue => '')", "queue must not be empty"),
        ("pgjobs.enqueue('a', queue => repeat('q', 300))", "queue is 300 characters long"),
        ("pgjobs.enqueue('a', NULL)", "payload must not be NULL"),
        ("pgjobs.enqueue('a', priority => 40000)", "priority must be between -32768 and 32767"),
        ("pgjobs.enqueue('a', priority => NULL)", "priority must be between"),
        ("pgjobs.enqueue('a', max_retry => -1)", "max_retry must be between 0 and 2147483646"),
        ("pgjobs.enqueue('a', max_retry => 2147483647)", "max_retry must be between 0 and"),
        ("pgjobs.enqueue('a', timeout => '101 years')", "timeout must be at most 3155760000"),
        ("pgjobs.enqueue('a', delay => '101 years')", "delay must be at most 3155760000"),
        ("pgjobs.enqueue('a', run_at => 'infinity')", "run_at must be from"),
        ("pgjobs.enqueue('a', timeout => '0 s')", "timeout must be more than 0 seconds"),
        ("pgjobs.enqueue('a', timeout => '-5 s')", "timeout must be more than 0 seconds"),
        ("pgjobs.enqueue('a', delay => '-1 s')", "delay must be 0 seconds or more"),
        (
            "pgjobs.enqueue('a', run_at => now(), delay => '1 s')",
            "give run_at or delay, not both",
        ),
    ],
)
def test_invalid_arguments_raise_the_python_apis_message(db, call: str, message: str) -> None:
    with pytest.raises(psycopg.Error, match=re.escape(message)):
        db.execute(f"select {call}".encode())
    assert db.execute("select count(*) from pgjobs.jobs").fetchone()[0] == 0


def test_the_python_api_refuses_the_same_things(db) -> None:
    for bad in (
        {"kind": ""},
        {"kind": "a", "priority": 40000},
        {"kind": "a", "max_retry": -1},
        {"kind": "a", "max_retry": 2**31 - 1},
        {"kind": "a", "timeout": 101 * 366 * 86400},
        {"kind": "a", "delay": 101 * 366 * 86400},
    ):
        with pytest.raises(pgjobs.InvalidTaskError):
            pgjobs.Task(**bad)  # type: ignore[arg-type]


def test_payload_over_one_mebibyte_is_refused(db) -> None:
    with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="over the limit of 1048576"):
        db.execute("select pgjobs.enqueue('a', jsonb_build_object('x', repeat('y', 1048576)))")
    ok = db.execute("select pgjobs.enqueue('a', jsonb_build_object('x', repeat('y', 1000000)))")
    assert ok.fetchone()[0] > 0


def test_json_null_and_scalars_are_payloads_too(db) -> None:
    for literal, expected in (("'null'", None), ("'3'", 3), ("'\"s\"'", "s"), ("'[1]'", [1])):
        job_id = db.execute(f"select pgjobs.enqueue('a', {literal}::jsonb)".encode()).fetchone()[0]
        assert job(db, job_id)["payload"] == expected


def test_wakeup_only_when_a_waiting_worker_serves_the_queue(db, listener) -> None:
    db.execute("select pgjobs.enqueue('a')")  # no worker at all
    add_worker(db, ["default"], waiting=False)
    db.execute("select pgjobs.enqueue('a')")  # a worker, but busy
    add_worker(db, ["email"], waiting=True)
    db.execute("select pgjobs.enqueue('a')")  # waiting, but on another queue
    db.execute("select pgjobs.enqueue('a', queue => 'email', delay => '1 h')")  # not ready
    db.execute("select pgjobs.enqueue('a', queue => 'email')")  # this one wakes
    assert notifications(listener, db) == ["email"]


def test_sql_and_python_enqueue_wake_alike(db, listener) -> None:
    add_worker(db, ["default"], waiting=True)
    pgjobs.enqueue(db, pgjobs.Task("a"))
    db.execute("select pgjobs.enqueue('a')")
    assert notifications(listener, db) == ["default", "default"]


def test_enqueue_joins_the_callers_transaction(dsn, db) -> None:
    with psycopg.connect(dsn) as conn:
        with conn.transaction():
            kept = conn.execute("select pgjobs.enqueue('kept')").fetchone()[0]
        with conn.transaction() as tx:
            conn.execute("select pgjobs.enqueue('lost')")
            raise psycopg.Rollback(tx)  # the application's transaction fails
    assert [r[0] for r in db.execute("select id from pgjobs.jobs")] == [kept]


def test_enqueue_runs_with_a_fixed_search_path(db) -> None:
    # A caller's search_path cannot redirect the definer-rights function to other objects.
    db.execute("create schema evil")
    db.execute("create table evil.jobs (id bigint)")
    db.execute("set search_path = evil, public")
    job_id = db.execute("select pgjobs.enqueue('a')").fetchone()[0]
    assert db.execute("select count(*) from evil.jobs").fetchone()[0] == 0
    assert job(db, job_id)["kind"] == "a"
    proconfig = db.execute(
        "select proconfig, prosecdef from pg_proc where oid = 'pgjobs.enqueue'::regproc"
    ).fetchone()
    assert proconfig == (["search_path=pg_catalog, pg_temp"], True)


# --- the trigger example of docs/operations.md ----------------------------------------------


def docs_block(first_line: str) -> str:
    """The fenced ```sql block of docs/operations.md that starts with *first_line*."""
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    found = re.search(rf"```sql\n({re.escape(first_line)}\n.*?)```", text, re.DOTALL)
    assert found, f"docs/operations.md has no sql block starting {first_line!r}"
    return found.group(1)


def test_the_documented_trigger_enqueues_in_the_same_transaction(dsn, db) -> None:
    db.execute(docs_block("CREATE TABLE orders (").encode())
    with psycopg.connect(dsn) as conn:
        with conn.transaction():
            order_id = conn.execute(
                "insert into orders (customer_email, total) values ('ada@example.com', 42.50)"
                " returning id"
            ).fetchone()[0]
            # Inside the transaction the job already exists, beside the order.
            inside = conn.execute(
                "select count(*) from pgjobs.jobs where kind = 'send_receipt'"
            ).fetchone()[0]
            assert inside == 1
        with conn.transaction() as tx:
            conn.execute("insert into orders (customer_email, total) values ('bob@example.com', 1)")
            raise psycopg.Rollback(tx)  # the application's transaction fails
    rows = db.execute("select kind, queue, payload, state from pgjobs.jobs").fetchall()
    assert rows == [
        (
            "send_receipt",
            "email",
            {"order_id": order_id, "email": "ada@example.com"},
            "available",
        )
    ]
