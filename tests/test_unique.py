"""Unique jobs: one job per key while the key is held, enforced by the database.

Keys live in ``pgjobs.unique_keys``, claimed in the enqueuing transaction; these tests
cover every entry point (functions, clients, bulk, SQL), both kinds of window, rollback,
and enqueuers racing from many connections, including the snapshot race where a holder
commits while the next enqueuer waits on it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import admin
from pgjobs._enqueue import insert_many_results_op
from pgjobs._ops import run
from pgjobs.task import MAX_SECONDS, MAX_UNIQUE_KEY_LENGTH

pytestmark = pytest.mark.timeout(120)


def jobs(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute("select id, kind, state from pgjobs.jobs order by id").fetchall()


def key_row(db: psycopg.Connection[Any], key: str) -> tuple[Any, ...] | None:
    return db.execute(
        "select job_id, expires_at is null, expires_at - created_at from pgjobs.unique_keys"
        " where key = %s",
        (key,),
    ).fetchone()


def finish(db: psycopg.Connection[Any], job_id: int, state: str = "completed") -> None:
    db.execute(
        "update pgjobs.jobs set state = %s, finished_at = now() where id = %s", (state, job_id)
    )


# --- the Task fields ------------------------------------------------------------------


def test_task_unique_fields_are_validated_and_normalised() -> None:
    task = pgjobs.Task("k", unique_key="invoice:42", unique_for=timedelta(hours=1))
    assert (task.unique_key, task.unique_for) == ("invoice:42", 3600.0)
    assert pgjobs.Task("k", unique_key="a", unique_for=90).unique_for == 90.0
    assert pgjobs.Task("k", unique_key="x" * MAX_UNIQUE_KEY_LENGTH).unique_for is None
    assert pgjobs.Task("k").unique_key is None
    bad: list[tuple[dict[str, Any], str]] = [
        ({"unique_key": ""}, "unique_key must not be empty"),
        ({"unique_key": "  "}, "unique_key must not be empty"),
        ({"unique_key": 42}, "unique_key must be a string"),
        ({"unique_key": "x" * (MAX_UNIQUE_KEY_LENGTH + 1)}, "over the limit of 512"),
        ({"unique_key": "a\x00b"}, "NUL"),
        ({"unique_for": 60}, "unique_for needs a unique_key"),
        ({"unique_key": "a", "unique_for": 0}, "more than 0 seconds"),
        ({"unique_key": "a", "unique_for": -5}, "more than 0 seconds"),
        ({"unique_key": "a", "unique_for": float("nan")}, "more than 0 seconds"),
        ({"unique_key": "a", "unique_for": MAX_SECONDS * 2}, "at most"),
        ({"unique_key": "a", "unique_for": "1h"}, "number of seconds or a timedelta"),
    ]
    for fields, message in bad:
        with pytest.raises(pgjobs.InvalidTaskError, match=message):
            pgjobs.Task("k", **fields)


# --- one enqueue at a time -------------------------------------------------------------


def test_a_second_enqueue_of_a_held_key_is_a_duplicate(db) -> None:
    task = pgjobs.Task("send_invoice", {"invoice": 42}, unique_key="invoice:42")
    first = pgjobs.enqueue_unique(db, task)
    assert first == pgjobs.EnqueueResult(first.id, duplicate=False)
    second = pgjobs.enqueue_unique(
        db, pgjobs.Task("send_invoice", {"other": 1}, unique_key="invoice:42")
    )
    assert second == (first.id, True)
    # The other functions return the holder's id too.
    assert pgjobs.enqueue(db, task) == first.id
    assert pgjobs.enqueue_many(db, [task, task]) == [first.id, first.id]
    other = pgjobs.enqueue_unique(db, pgjobs.Task("send_invoice", unique_key="invoice:43"))
    assert not other.duplicate
    assert [row[0] for row in jobs(db)] == [first.id, other.id]
    # Keys are one namespace: another kind with the same key is a duplicate as well.
    assert pgjobs.enqueue_unique(db, pgjobs.Task("audit", unique_key="invoice:42")).duplicate


def test_enqueue_unique_needs_a_key(db) -> None:
    with pytest.raises(pgjobs.InvalidTaskError, match="needs a task with a unique_key"):
        pgjobs.enqueue_unique(db, pgjobs.Task("k"))
    with pytest.raises(pgjobs.InvalidTaskError, match=r"expected a pgjobs\.Task"):
        pgjobs.enqueue_unique(db, "k")  # type: ignore[arg-type]


@pytest.mark.parametrize("state", ["completed", "failed", "cancelled", "deleted"])
def test_without_unique_for_the_key_is_held_until_the_job_finishes(db, state) -> None:
    task = pgjobs.Task("refresh", unique_key="refresh:user:7")
    first = pgjobs.enqueue_unique(db, task)
    for unfinished in ("scheduled", "available", "running"):
        db.execute("update pgjobs.jobs set state = %s where id = %s", (unfinished, first.id))
        assert pgjobs.enqueue_unique(db, task) == (first.id, True), unfinished
    if state == "deleted":  # completed and not retained: the row is gone
        db.execute("delete from pgjobs.jobs where id = %s", (first.id,))
    else:
        finish(db, first.id, state)
    again = pgjobs.enqueue_unique(db, task)
    assert not again.duplicate
    assert again.id != first.id
    assert key_row(db, "refresh:user:7") == (again.id, True, None)


def test_unique_for_holds_the_key_for_its_window_whatever_the_job_does(db) -> None:
    task = pgjobs.Task("report", unique_key="report:daily", unique_for=timedelta(hours=1))
    first = pgjobs.enqueue_unique(db, task)
    assert key_row(db, "report:daily") == (first.id, False, timedelta(hours=1))
    # The job completes and its row is deleted (no retention): the window still holds.
    db.execute("delete from pgjobs.jobs where id = %s", (first.id,))
    assert pgjobs.enqueue_unique(db, task) == (first.id, True)
    # Once the window has passed, the key is taken over by a new job with a new window.
    db.execute("update pgjobs.unique_keys set expires_at = now() - interval '1 second'")
    later = pgjobs.enqueue_unique(db, task)
    assert not later.duplicate
    assert key_row(db, "report:daily") == (later.id, False, timedelta(hours=1))
    # An unfinished job does not extend the window either.
    db.execute("update pgjobs.unique_keys set expires_at = now() - interval '1 second'")
    assert pgjobs.enqueue_unique(db, task).id not in (first.id, later.id)


def test_a_key_held_until_finished_can_be_taken_with_a_window_and_back(db) -> None:
    """The key row carries its own rule: the holder's, not the newcomer's."""
    held = pgjobs.enqueue_unique(db, pgjobs.Task("k", unique_key="mixed"))
    assert pgjobs.enqueue_unique(db, pgjobs.Task("k", unique_key="mixed", unique_for=60)).duplicate
    finish(db, held.id)
    windowed = pgjobs.enqueue_unique(db, pgjobs.Task("k", unique_key="mixed", unique_for=60))
    assert not windowed.duplicate
    finish(db, windowed.id)
    assert pgjobs.enqueue_unique(db, pgjobs.Task("k", unique_key="mixed")).duplicate


def test_a_rolled_back_enqueue_leaves_no_key(dsn, db) -> None:
    task = pgjobs.Task("k", unique_key="rollback", unique_for=3600)
    with psycopg.connect(dsn) as conn:
        with conn.transaction(force_rollback=True):
            assert not pgjobs.enqueue_unique(conn, task).duplicate
        assert key_row(db, "rollback") is None
        assert jobs(db) == []
        with conn.transaction():
            assert not pgjobs.enqueue_unique(conn, task).duplicate
    assert len(jobs(db)) == 1


def test_a_scheduled_unique_job_and_the_wakeup(dsn, db) -> None:
    db.execute(
        "insert into pgjobs.workers (id, host, pid, queues, concurrency, version, waiting)"
        " values (gen_random_uuid(), 'h', 1, '{default}', 1, 't', true)"
    )
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("listen pgjobs_wakeup")
        later = pgjobs.enqueue_unique(db, pgjobs.Task("k", unique_key="later", delay=3600))
        now = pgjobs.enqueue_unique(db, pgjobs.Task("k", unique_key="now"))
        pgjobs.enqueue_unique(db, pgjobs.Task("k", unique_key="now"))  # duplicate: no NOTIFY
        notes = [n.payload for n in listener.notifies(timeout=0.5)]
    assert notes == ["default"]
    states = dict(db.execute("select id, state from pgjobs.jobs").fetchall())
    assert states == {later.id: "scheduled", now.id: "available"}


# --- bulk ---------------------------------------------------------------------------------


def test_enqueue_many_with_unique_keys(db) -> None:
    held = pgjobs.enqueue_unique(db, pgjobs.Task("k", unique_key="held"))
    done = pgjobs.enqueue_unique(db, pgjobs.Task("k", unique_key="done"))
    finish(db, done.id)
    tasks = [
        pgjobs.Task("plain"),
        pgjobs.Task("k", {"n": 1}, unique_key="new"),
        pgjobs.Task("k", unique_key="held"),
        pgjobs.Task("k", {"n": 2}, unique_key="new"),  # same batch: a duplicate of the first
        pgjobs.Task("k", unique_key="done", unique_for=60),
        pgjobs.Task("plain", delay=60),
    ]
    results = run(db, insert_many_results_op(tasks, "pgjobs", 1 << 20))
    duplicates = [r.duplicate for r in results]
    assert duplicates == [False, False, True, True, False, False]
    ids = [r.id for r in results]
    assert ids[2] == held.id
    assert ids[3] == ids[1]
    assert ids[4] != done.id
    rows = {row[0]: row[1:] for row in jobs(db)}
    assert set(rows) == {held.id, done.id, ids[0], ids[1], ids[4], ids[5]}
    assert db.execute("select payload from pgjobs.jobs where id = %s", (ids[1],)).fetchone() == (
        {"n": 1},
    )
    assert rows[ids[5]] == ("plain", "scheduled")
    assert key_row(db, "done") == (ids[4], False, timedelta(seconds=60))
    # All duplicates: nothing is copied, the ids come back.
    again = pgjobs.enqueue_many(db, [pgjobs.Task("k", unique_key="new")] * 3)
    assert again == [ids[1]] * 3


# --- SQL ------------------------------------------------------------------------------------


def test_sql_enqueue_takes_unique_key_and_unique_for(db) -> None:
    def sql(args: str) -> int:
        return db.execute(f"select pgjobs.enqueue('k', {args})".encode()).fetchone()[0]

    first = sql("unique_key => 'sql:1'")
    assert sql("unique_key => 'sql:1'") == first
    # Python and SQL share the keys.
    assert pgjobs.enqueue_unique(db, pgjobs.Task("k", unique_key="sql:1")) == (first, True)
    finish(db, first)
    second = sql("unique_key => 'sql:1'")
    assert second != first
    windowed = sql("unique_key => 'sql:2', unique_for => '10 minutes'")
    db.execute("delete from pgjobs.jobs where id = %s", (windowed,))
    assert sql("unique_key => 'sql:2', unique_for => '10 minutes'") == windowed
    assert key_row(db, "sql:2") == (windowed, False, timedelta(minutes=10))
    plain = sql("queue => 'q'")
    assert plain > second
    for args, message in (
        ("unique_key => ''", "unique_key must not be empty"),
        ("unique_key => repeat('k', 513)", "unique_key is 513 characters long"),
        ("unique_for => '1 hour'", "unique_for needs a unique_key"),
        ("unique_key => 'a', unique_for => '0 s'", "unique_for must be more than 0"),
        ("unique_key => 'a', unique_for => '-1 s'", "unique_for must be more than 0"),
        ("unique_key => 'a', unique_for => '101 years'", "unique_for must be at most"),
    ):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
            sql(args)


def test_the_enqueuer_role_can_enqueue_unique_jobs(dsn, db, admin_dsn) -> None:
    role = f"pgjobs_test_unique_{int(time.time() * 1000) % 10**9}"
    try:
        statements = admin.grant_roles(db, enqueuer=role, worker=role + "_w", reader=role + "_r")
        assert any("unique_keys" in s for s in statements)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"set role {role}".encode())
            first = pgjobs.enqueue_unique(conn, pgjobs.Task("k", unique_key="role"))
            assert pgjobs.enqueue_unique(conn, pgjobs.Task("k", unique_key="role")).duplicate
            by_sql = conn.execute("select pgjobs.enqueue('k', unique_key => 'role')").fetchone()
            assert by_sql == (first.id,)
            ids = pgjobs.enqueue_many(conn, [pgjobs.Task("k", unique_key="role"), pgjobs.Task("j")])
            assert ids[0] == first.id
    finally:
        for name in (role, role + "_w", role + "_r"):
            db.execute(f"drop owned by {name}".encode())
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            for name in (role, role + "_w", role + "_r"):
                conn.execute(f"drop role if exists {name}".encode())


# --- clients --------------------------------------------------------------------------------


def test_clients_enqueue_unique(dsn, db) -> None:
    task = pgjobs.Task("k", unique_key="client")
    with pgjobs.Client(dsn) as client:
        first = client.enqueue_unique(task)
        assert client.enqueue_unique(task) == (first.id, True)
        assert client.enqueue(task) == first.id
        assert client.enqueue_many([task, pgjobs.Task("k", unique_key="client:2")])[0] == first.id

    async def main() -> None:
        async with pgjobs.AsyncClient(dsn) as aclient:
            assert await aclient.enqueue_unique(task) == (first.id, True)
            assert await aclient.enqueue(task) == first.id
            async with await psycopg.AsyncConnection.connect(dsn) as aconn:
                async with aconn.transaction():
                    result = await pgjobs.enqueue_unique_async(
                        aconn, pgjobs.Task("k", unique_key="async")
                    )
                    assert not result.duplicate
                    again = await aclient.enqueue_unique(
                        pgjobs.Task("k", unique_key="async"), conn=aconn
                    )
                    assert again == (result.id, True)
                assert (
                    await pgjobs.enqueue_many_async(aconn, [pgjobs.Task("k", unique_key="async")])
                ) == [result.id]

    asyncio.run(main())
    assert len(jobs(db)) == 3


# --- races between connections -----------------------------------------------------------


def race(
    dsn: str,
    count: int,
    enqueue: Callable[[psycopg.Connection[Any]], Any],
    *,
    autocommit: bool = False,
) -> list[Any]:
    """Run *enqueue* on *count* connections at once, each in its own transaction (or
    with each statement committing on its own)."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def one(index: int) -> None:
        try:
            with psycopg.connect(dsn, autocommit=autocommit) as conn:
                barrier.wait(timeout=30)
                if autocommit:
                    results[index] = enqueue(conn)
                    return
                with conn.transaction():
                    results[index] = enqueue(conn)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


@pytest.mark.parametrize("unique_for", [None, 3600.0])
def test_concurrent_enqueues_of_one_key_create_one_job(dsn, db, unique_for) -> None:
    for round_ in range(10):
        key = f"race:{round_}"
        task = pgjobs.Task("k", unique_key=key, unique_for=unique_for)
        results = race(dsn, 12, lambda conn, task=task: pgjobs.enqueue_unique(conn, task))
        assert sorted(r.duplicate for r in results) == [False] + [True] * 11
        assert len({r.id for r in results}) == 1
        count = db.execute("select count(*) from pgjobs.jobs where id = %s", (results[0].id,))
        assert count.fetchone() == (1,)
    assert len(jobs(db)) == 10


def test_concurrent_bulk_enqueues_with_overlapping_keys(dsn, db) -> None:
    """Batches with the same keys in different orders: one job per key, no deadlock."""
    keys = [f"bulk:{i}" for i in range(50)]

    def enqueue(conn: psycopg.Connection[Any]) -> list[int]:
        order = keys[:] if threading.get_ident() % 2 else keys[::-1]
        by_key = pgjobs.enqueue_many(
            conn, [pgjobs.Task("k", {"key": k}, unique_key=k) for k in order]
        )
        return sorted(zip(order, by_key, strict=True))

    results = race(dsn, 8, enqueue)
    assert all(result == results[0] for result in results)
    per_key = db.execute("select payload->>'key', count(*) from pgjobs.jobs group by 1").fetchall()
    assert sorted(per_key) == sorted((k, 1) for k in keys)


def _blocked_on_locks(db: psycopg.Connection[Any], count: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        waiting = db.execute(
            "select count(*) from pg_stat_activity"
            " where datname = current_database() and wait_event_type = 'Lock'"
        ).fetchone()
        if waiting is not None and waiting[0] >= count:
            return
        assert time.monotonic() < deadline, "the enqueuers never blocked on the key"
        time.sleep(0.02)


def _waiters(dsn: str, key: str, count: int) -> tuple[list[Any], list[threading.Thread]]:
    results: list[Any] = [None] * count

    def one(index: int) -> None:
        with psycopg.connect(dsn) as conn, conn.transaction():
            results[index] = pgjobs.enqueue_unique(conn, pgjobs.Task("k", unique_key=key))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    return results, threads


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_enqueuers_waiting_on_an_uncommitted_key(dsn, db, outcome) -> None:
    """The first holder's transaction is open while three more enqueuers wait on its key.

    Committed: they must all see its job although their statements' snapshots predate
    that commit (the key is held until the job finishes, so seeing the job matters).
    Rolled back: exactly one of them takes the key.
    """
    with psycopg.connect(dsn) as holder:
        holder_tx = holder.transaction()
        holder_tx.__enter__()
        first = pgjobs.enqueue_unique(holder, pgjobs.Task("k", unique_key="wait"))
        results, threads = _waiters(dsn, "wait", 3)
        _blocked_on_locks(db, 3)
        if outcome == "commit":
            holder_tx.__exit__(None, None, None)
        else:
            holder_tx.__exit__(RuntimeError, RuntimeError("roll back"), None)
        for thread in threads:
            thread.join(timeout=30)
    if outcome == "commit":
        assert results == [(first.id, True)] * 3
        assert [row[0] for row in jobs(db)] == [first.id]
    else:
        assert sorted(r.duplicate for r in results) == [False, True, True]
        assert len({r.id for r in results}) == 1
        assert [row[0] for row in jobs(db)] == [results[0].id]


@pytest.mark.parametrize("autocommit", [False, True])
@pytest.mark.parametrize("gone", ["completed", "deleted"])
def test_enqueuers_racing_for_a_finished_holders_key_create_one_job(
    dsn, db, gone, autocommit
) -> None:
    """Every racer sees the holder finished and tries to take the key over: the first
    releases and claims it; the others wait on it, and must then see the new job
    although their statements' snapshots predate its commit."""
    task = pgjobs.Task("k", unique_key="turnover")
    for _ in range(5):
        holder = pgjobs.enqueue_unique(db, task)
        assert not holder.duplicate
        if gone == "deleted":
            db.execute("delete from pgjobs.jobs where id = %s", (holder.id,))
        else:
            finish(db, holder.id)
        results = race(
            dsn, 10, lambda conn: pgjobs.enqueue_unique(conn, task), autocommit=autocommit
        )
        assert sorted(r.duplicate for r in results) == [False] + [True] * 9
        assert len({r.id for r in results}) == 1
        assert results[0].id != holder.id
        finish(db, results[0].id)
    assert db.execute("select count(*) from pgjobs.unique_keys").fetchone() == (1,)
