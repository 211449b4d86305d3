"""Transactional enqueue on a real Postgres: visibility, bad input, literal strings, scheduling.

A second connection (the ``db`` fixture, autocommit) looks at the table from outside the
transaction under test, so "visible" and "invisible" mean what another session sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
import sqlalchemy
from psycopg import errors as pgerrors
from psycopg import pq
from psycopg.rows import dict_row
from sqlalchemy.orm import Session

import pgjobs
from pgjobs.errors import InvalidTaskError, PayloadError, PayloadTooLargeError
from pgjobs.task import DEFAULT_MAX_PAYLOAD_BYTES

pytestmark = pytest.mark.through_pgbouncer

Task = pgjobs.Task


class Boom(Exception):
    """The application's own failure, which rolls its transaction back."""


def kinds(db: psycopg.Connection[Any]) -> list[str]:
    return [row[0] for row in db.execute("select kind from pgjobs.jobs order by id")]


def job_count(db: psycopg.Connection[Any]) -> int:
    row = db.execute("select count(*) from pgjobs.jobs").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def client(dsn: str) -> Iterator[pgjobs.Client]:
    with pgjobs.Client(dsn, max_connections=2) as owned:
        yield owned


@pytest.fixture
async def aclient(dsn: str) -> AsyncIterator[pgjobs.AsyncClient]:
    async with pgjobs.AsyncClient(dsn, max_connections=2) as owned:
        yield owned


@pytest.fixture
def engine(dsn: str) -> Iterator[sqlalchemy.Engine]:
    """SQLAlchemy on psycopg 3, connecting exactly as the test does."""
    created = sqlalchemy.create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(dsn)
    )
    yield created
    created.dispose()


# --- commit and rollback, seen from another connection ------------------------------------

# Every way to enqueue into a caller's sync transaction: (client, conn, task) -> id.
SyncFace = Callable[[pgjobs.Client, Any, pgjobs.Task], int]
SYNC_FACES: dict[str, SyncFace] = {
    "enqueue": lambda _client, conn, task: pgjobs.enqueue(conn, task),
    "enqueue_many": lambda _client, conn, task: pgjobs.enqueue_many(conn, [task])[0],
    "Client.enqueue(conn=)": lambda client, conn, task: client.enqueue(task, conn=conn),
    "Client.enqueue_many(conn=)": lambda client, conn, task: client.enqueue_many([task], conn=conn)[
        0
    ],
}


@pytest.mark.parametrize("face", SYNC_FACES.keys())
def test_sync_commit_is_visible_once_and_rollback_never(
    face: str, dsn: str, db: psycopg.Connection[Any], client: pgjobs.Client
) -> None:
    put = SYNC_FACES[face]
    with psycopg.connect(dsn) as conn:
        with conn.transaction():
            conn.execute("select 1")  # the application's own work
            job_id = put(client, conn, Task("committed", {"n": 1}))
            assert job_count(db) == 0, "visible before the caller committed"
        assert db.execute("select id, kind, payload from pgjobs.jobs").fetchall() == [
            (job_id, "committed", {"n": 1})
        ]
        with contextlib.suppress(Boom), conn.transaction():
            put(client, conn, Task("rolled_back"))
            raise Boom
    assert kinds(db) == ["committed"]


def test_enqueue_never_commits_an_implicit_transaction(
    dsn: str, db: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(dsn) as conn:  # not autocommit: psycopg opens a transaction
        pgjobs.enqueue(conn, Task("a"))
        pgjobs.enqueue_many(conn, [Task("b"), Task("c")])
        assert job_count(db) == 0
        conn.rollback()
        assert job_count(db) == 0
        pgjobs.enqueue(conn, Task("d"))
        conn.commit()
    assert kinds(db) == ["d"]


def test_autocommit_connection_commits_each_call(dsn: str, db: psycopg.Connection[Any]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        pgjobs.enqueue(conn, Task("a"))
        assert kinds(db) == ["a"]


AsyncFace = Callable[[pgjobs.AsyncClient, Any, pgjobs.Task], Awaitable[int]]


async def _enqueue_many_async_one(_client: Any, conn: Any, task: pgjobs.Task) -> int:
    return (await pgjobs.enqueue_many_async(conn, [task]))[0]


async def _aclient_many_one(client: pgjobs.AsyncClient, conn: Any, task: pgjobs.Task) -> int:
    return (await client.enqueue_many([task], conn=conn))[0]


ASYNC_FACES: dict[str, AsyncFace] = {
    "enqueue_async": lambda _client, conn, task: pgjobs.enqueue_async(conn, task),
    "enqueue_many_async": _enqueue_many_async_one,
    "AsyncClient.enqueue(conn=)": lambda client, conn, task: client.enqueue(task, conn=conn),
    "AsyncClient.enqueue_many(conn=)": _aclient_many_one,
}


@pytest.mark.parametrize("face", ASYNC_FACES.keys())
async def test_async_commit_is_visible_once_and_rollback_never(
    face: str,
    aconn: psycopg.AsyncConnection[Any],
    db: psycopg.Connection[Any],
    aclient: pgjobs.AsyncClient,
) -> None:
    put = ASYNC_FACES[face]
    async with aconn.transaction():
        job_id = await put(aclient, aconn, Task("committed"))
        assert job_count(db) == 0, "visible before the caller committed"
    assert db.execute("select id, kind from pgjobs.jobs").fetchall() == [(job_id, "committed")]
    with contextlib.suppress(Boom):
        async with aconn.transaction():
            await put(aclient, aconn, Task("rolled_back"))
            raise Boom
    assert kinds(db) == ["committed"]


def test_client_without_conn_commits_its_own_transaction(
    client: pgjobs.Client, db: psycopg.Connection[Any]
) -> None:
    job_id = client.enqueue(Task("one"))
    assert db.execute("select id from pgjobs.jobs").fetchall() == [(job_id,)]
    ids = client.enqueue_many([Task("two"), Task("three")])
    assert kinds(db) == ["one", "two", "three"]
    assert ids == sorted(ids)
    assert job_id < ids[0]


async def test_async_client_without_conn_commits_its_own_transaction(
    aclient: pgjobs.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    job_id = await aclient.enqueue(Task("one"))
    assert db.execute("select id from pgjobs.jobs").fetchall() == [(job_id,)]
    await aclient.enqueue_many([Task("two"), Task("three")])
    assert kinds(db) == ["one", "two", "three"]


def _traced_statements(client: pgjobs.Client, out: Any) -> None:
    """Trace the protocol messages of the client's one pooled connection to *out*."""
    with client._pool.connection() as conn:
        conn.pgconn.trace(out.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)


def test_a_client_enqueue_is_one_round_trip_and_many_is_one_transaction(
    dsn: str, db: psycopg.Connection[Any], tmp_path: Any
) -> None:
    trace = tmp_path / "trace"
    with pgjobs.Client(dsn, max_connections=1) as client, trace.open("w") as out:
        _traced_statements(client, out)
        client.enqueue(Task("one"))
        out.flush()
        one = trace.read_text()
        client.enqueue_many([Task("two"), Task("three")])
        out.flush()
        many = trace.read_text()[len(one) :]
        with client._pool.connection() as conn:
            conn.pgconn.untrace()
    # A round trip ends with the client's Sync (a statement) or is a Query (BEGIN, COMMIT).
    trips = [line for line in one.splitlines() if line.startswith("F") and "Sync" in line]
    trips += [line for line in one.splitlines() if line.startswith("F") and "Query" in line]
    assert len(trips) == 1, one
    assert "begin" not in one.lower()
    # The reserve, COPY and wake-up of enqueue_many commit together.
    assert '"begin"' in many
    assert '"commit"' in many
    assert kinds(db) == ["one", "two", "three"]


def test_client_opens_lazily_and_closes(dsn: str, db: psycopg.Connection[Any]) -> None:
    client = pgjobs.Client(dsn)
    try:
        client.enqueue(Task("lazy"))  # opens the pool on first use
    finally:
        client.close()
    assert kinds(db) == ["lazy"]


def test_client_takes_its_dsn_from_the_environment(
    dsn: str, db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGJOBS_DSN", raising=False)
    monkeypatch.setenv("DATABASE_URL", dsn)
    with pgjobs.Client() as client:
        assert client.dsn == dsn
        client.enqueue(Task("from_env"))
    assert kinds(db) == ["from_env"]


def test_client_configuration_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGJOBS_DSN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(pgjobs.ConfigurationError, match="PGJOBS_DSN"):
        pgjobs.Client()
    with pytest.raises(pgjobs.ConfigurationError, match="schema"):
        pgjobs.Client("postgresql://localhost/x", schema="Not Valid")
    with pytest.raises(pgjobs.ConfigurationError, match="max_payload_bytes"):
        pgjobs.AsyncClient("postgresql://localhost/x", max_payload_bytes=0)


def test_clients_satisfy_the_enqueuer_protocols(dsn: str) -> None:
    client, aclient = pgjobs.Client(dsn), pgjobs.AsyncClient(dsn)
    assert isinstance(client, pgjobs.Enqueuer)
    assert isinstance(aclient, pgjobs.AsyncEnqueuer)


# --- bulk ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_enqueue_many_100k_in_one_call(conn: psycopg.Connection[Any]) -> None:
    n = 100_000
    tasks = (
        Task(
            f"kind_{i % 7}",
            {"n": i},
            queue=("high", "default", "low")[i % 3],
            priority=i % 5,
            delay=3600 if i % 10 == 0 else None,
        )
        for i in range(n)  # a generator: any iterable will do
    )
    with conn.transaction():
        ids = pgjobs.enqueue_many(conn, tasks)
    assert len(ids) == n
    assert len(set(ids)) == n
    rows = conn.execute(
        "select id, (payload->>'n')::int, queue, priority, state::text from pgjobs.jobs"
    ).fetchall()
    assert len(rows) == n
    by_id = {row[0]: row[1:] for row in rows}
    for i, job_id in enumerate(ids):  # ids[i] is the job made from tasks[i]
        assert by_id[job_id] == (
            i,
            ("high", "default", "low")[i % 3],
            i % 5,
            "scheduled" if i % 10 == 0 else "available",
        )


def test_enqueue_many_returns_ids_in_input_order(conn: psycopg.Connection[Any]) -> None:
    names = [f"task_{i}" for i in (5, 3, 9, 1, 7)]
    ids = pgjobs.enqueue_many(conn, [Task(name) for name in names])
    found = dict(conn.execute("select id, kind from pgjobs.jobs").fetchall())
    assert [found[job_id] for job_id in ids] == names


def test_enqueue_many_of_nothing_sends_nothing(dsn: str) -> None:
    conn = psycopg.connect(dsn)
    conn.close()  # any statement would fail now
    assert pgjobs.enqueue_many(conn, []) == []


async def test_enqueue_many_async_bulk(aconn: psycopg.AsyncConnection[Any]) -> None:
    ids = await pgjobs.enqueue_many_async(aconn, [Task("k", i) for i in range(1000)])
    await aconn.commit()
    cursor = await aconn.execute("select id, payload from pgjobs.jobs")
    found = dict(await cursor.fetchall())
    assert [found[job_id] for job_id in ids] == list(range(1000))


# --- bad input: a typed error, nothing written, the caller's transaction intact -----------

LIMIT = 1000  # the configured max_payload_bytes in these tests

# Each makes the bad task (or not-a-task) when called, inside the caller's transaction.
BAD_INPUTS: dict[str, tuple[Callable[[], Any], type[InvalidTaskError]]] = {
    "non-JSON payload": (lambda: Task("k", {"x": object()}), PayloadError),
    "NaN in payload": (lambda: Task("k", {"x": float("nan")}), PayloadError),
    "NUL in payload": (lambda: Task("k", {"x": "a\x00b"}), PayloadError),
    "lone surrogate in payload": (lambda: Task("k", ["\ud83d"]), PayloadError),
    "payload over max_payload_bytes": (lambda: Task("k", "x" * LIMIT), PayloadTooLargeError),
    "empty kind": (lambda: Task(""), InvalidTaskError),
    "whitespace kind": (lambda: Task("   "), InvalidTaskError),
    "over-long kind": (lambda: Task("k" * 256), InvalidTaskError),
    "empty queue": (lambda: Task("k", queue=""), InvalidTaskError),
    "whitespace queue": (lambda: Task("k", queue=" \t "), InvalidTaskError),
    "over-long queue": (lambda: Task("k", queue="q" * 256), InvalidTaskError),
    "negative max_retry": (lambda: Task("k", max_retry=-1), InvalidTaskError),
    "max_retry beyond integer": (lambda: Task("k", max_retry=2**31), InvalidTaskError),
    "zero timeout": (lambda: Task("k", timeout=0), InvalidTaskError),
    "negative timeout": (lambda: Task("k", timeout=-5), InvalidTaskError),
    "infinite timeout": (lambda: Task("k", timeout=float("inf")), InvalidTaskError),
    "delay beyond interval": (lambda: Task("k", delay=1e300), InvalidTaskError),
    "run_at and delay": (
        lambda: Task("k", run_at=datetime.now(UTC), delay=1),
        InvalidTaskError,
    ),
    "naive run_at": (lambda: Task("k", run_at=datetime(2030, 1, 1)), InvalidTaskError),
    "not a Task": (lambda: {"kind": "k"}, InvalidTaskError),
}


@pytest.mark.parametrize("case", BAD_INPUTS.keys())
def test_bad_input_sync(case: str, dsn: str, db: psycopg.Connection[Any]) -> None:
    make, error = BAD_INPUTS[case]
    ways: list[Callable[[psycopg.Connection[Any], pgjobs.Client], object]] = [
        lambda conn, _c: pgjobs.enqueue(conn, make(), max_payload_bytes=LIMIT),
        lambda conn, _c: pgjobs.enqueue_many(
            conn, [Task("ok"), make(), Task("ok")], max_payload_bytes=LIMIT
        ),
        lambda conn, client: client.enqueue(make(), conn=conn),
        lambda conn, client: client.enqueue_many([Task("ok"), make()], conn=conn),
    ]
    with pgjobs.Client(dsn, max_payload_bytes=LIMIT) as client, psycopg.connect(dsn) as conn:
        with conn.transaction():
            conn.execute("create table app_orders (id int)")
            for way in ways:
                with pytest.raises(error):
                    way(conn, client)
                # The transaction is still usable: no statement failed inside it.
                conn.execute("insert into app_orders values (1)")
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            pgjobs.enqueue(conn, Task("after"))
        with pytest.raises(error):
            client.enqueue(make())  # in the client's own transaction
        with pytest.raises(error):
            client.enqueue_many([Task("ok"), make()])
    assert kinds(db) == ["after"]
    assert db.execute("select count(*) from app_orders").fetchone() == (len(ways),)


@pytest.mark.parametrize("case", BAD_INPUTS.keys())
async def test_bad_input_async(
    case: str, dsn: str, aconn: psycopg.AsyncConnection[Any], db: psycopg.Connection[Any]
) -> None:
    make, error = BAD_INPUTS[case]
    async with pgjobs.AsyncClient(dsn, max_payload_bytes=LIMIT) as client:
        async with aconn.transaction():
            with pytest.raises(error):
                await pgjobs.enqueue_async(aconn, make(), max_payload_bytes=LIMIT)
            with pytest.raises(error):
                await pgjobs.enqueue_many_async(
                    aconn, [Task("ok"), make()], max_payload_bytes=LIMIT
                )
            with pytest.raises(error):
                await client.enqueue(make(), conn=aconn)
            with pytest.raises(error):
                await client.enqueue_many([make()], conn=aconn)
            await aconn.execute("select 1")
            await pgjobs.enqueue_async(aconn, Task("after"))
        with pytest.raises(error):
            await client.enqueue(make())
        with pytest.raises(error):
            await client.enqueue_many([make(), Task("ok")])
    assert kinds(db) == ["after"]


def test_default_payload_limit_applies(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(PayloadTooLargeError):
        pgjobs.enqueue(conn, Task("k", "x" * DEFAULT_MAX_PAYLOAD_BYTES))
    big = "x" * (DEFAULT_MAX_PAYLOAD_BYTES - 2)  # exactly the limit with its quotes
    pgjobs.enqueue(conn, Task("k", big))
    assert conn.execute("select length(payload #>> '{}') from pgjobs.jobs").fetchone() == (
        len(big),
    )


def test_bulk_error_names_the_bad_task(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(PayloadError, match=r"tasks\[2\]"):
        pgjobs.enqueue_many(conn, [Task("a"), Task("b"), Task("c", {1j})])
    with pytest.raises(InvalidTaskError, match=r"tasks\[1\]: expected a pgjobs.Task"):
        pgjobs.enqueue_many(conn, [Task("a"), "b"])  # type: ignore[list-item]


def test_unsupported_connection_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="psycopg 3"):
        pgjobs.enqueue(object(), Task("k"))
    sqlite = sqlalchemy.create_engine("sqlite://")
    with sqlite.connect() as other, pytest.raises(TypeError, match="psycopg 3"):
        pgjobs.enqueue(other, Task("k"))
    sqlite.dispose()


# --- stored literally ---------------------------------------------------------------------

NASTY = [
    "x'); drop table pgjobs.jobs; --",
    'quote " double',
    "O'Brien",
    "%(queue)s %s %% $1 {schema} :name ?",
    "back\\slash\\",
    "semi;colon -- comment /* c */",
    "ünïcødé 漢字 🎉",
    "  padded  ",
]


def test_kind_and_queue_are_stored_literally(conn: psycopg.Connection[Any]) -> None:
    single = [pgjobs.enqueue(conn, Task(s, {s: s}, queue=s)) for s in NASTY]
    many = pgjobs.enqueue_many(conn, [Task(s, {s: s}, queue=s) for s in NASTY])
    conn.commit()
    for ids in (single, many):
        for job_id, s in zip(ids, NASTY, strict=True):
            row = conn.execute(
                "select kind, queue, payload from pgjobs.jobs where id = %s", (job_id,)
            ).fetchone()
            assert row == (s, s, {s: s})
    assert conn.execute("select to_regclass('pgjobs.jobs') is not null").fetchone() == (True,)


# --- scheduled or available ---------------------------------------------------------------


def _scheduling_tasks() -> list[pgjobs.Task]:
    est = timezone(timedelta(hours=-5))
    return [
        Task("now"),
        Task("zero_delay", delay=0),
        Task("delay_60", delay=60),
        Task("delay_timedelta", delay=timedelta(hours=2)),
        Task("past", run_at=datetime(2000, 1, 1, tzinfo=UTC)),
        Task("future", run_at=datetime(2100, 1, 1, 7, tzinfo=est)),
    ]


# kind -> (state, run_at - now() or the exact run_at); now() is the transaction's start.
EXPECTED_SCHEDULE: dict[str, tuple[str, timedelta | datetime]] = {
    "now": ("available", timedelta(0)),
    "zero_delay": ("available", timedelta(0)),
    "delay_60": ("scheduled", timedelta(seconds=60)),
    "delay_timedelta": ("scheduled", timedelta(hours=2)),
    "past": ("available", datetime(2000, 1, 1, tzinfo=UTC)),
    "future": ("scheduled", datetime(2100, 1, 1, 12, tzinfo=UTC)),
}


def _check_schedule(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute(
        "select kind, state::text, run_at, run_at - now() from pgjobs.jobs"
    ).fetchall()
    assert {row[0] for row in rows} == set(EXPECTED_SCHEDULE)
    for kind, state, run_at, offset in rows:
        expected_state, when = EXPECTED_SCHEDULE[kind]
        assert state == expected_state, kind
        assert (run_at if isinstance(when, datetime) else offset) == when, kind


@pytest.mark.parametrize("bulk", [False, True], ids=["enqueue", "enqueue_many"])
def test_delay_and_run_at_decide_the_state(conn: psycopg.Connection[Any], bulk: bool) -> None:
    with conn.transaction():  # now() is fixed for the transaction: offsets are exact
        if bulk:
            pgjobs.enqueue_many(conn, _scheduling_tasks())
        else:
            for task in _scheduling_tasks():
                pgjobs.enqueue(conn, task)
        _check_schedule(conn)


async def test_delay_and_run_at_decide_the_state_async(
    aconn: psycopg.AsyncConnection[Any], dsn: str
) -> None:
    async with aconn.transaction():
        for task in _scheduling_tasks():
            await pgjobs.enqueue_async(aconn, task)
        cursor = await aconn.execute(
            "select kind, state::text, run_at, run_at - now() from pgjobs.jobs"
        )
        rows = await cursor.fetchall()
    assert {kind: state for kind, state, *_ in rows} == {
        kind: state for kind, (state, _) in EXPECTED_SCHEDULE.items()
    }


def test_columns_hold_what_the_task_says(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        default_id = pgjobs.enqueue(conn, Task("defaults"))
        custom_id = pgjobs.enqueue(
            conn,
            Task("custom", [1, "two"], queue="q", max_retry=0, timeout=90.5, priority=-3),
        )
        row = conn.execute(
            """select queue, kind, payload, priority, state::text, attempt, max_retry, timeout,
                      run_at = now(), created_at = now(), last_error, started_at, finished_at,
                      lease_expires_at, worker_id
               from pgjobs.jobs where id = %s""",
            (default_id,),
        ).fetchone()
        assert row == (
            "default", "defaults", {}, 0, "available", 0, 25, timedelta(minutes=30),
            True, True, None, None, None, None, None,
        )  # fmt: skip
        # A Task left at its defaults leaves them to the table (job_insert_defaults), so
        # the table's defaults must be the Task's.
        defaults = Task("defaults")
        assert (row[3], row[6], row[7]) == (
            defaults.priority, defaults.max_retry, timedelta(seconds=defaults.timeout),
        )  # fmt: skip
        custom = conn.execute(
            "select queue, payload, priority, max_retry, timeout from pgjobs.jobs where id = %s",
            (custom_id,),
        ).fetchone()
        assert custom == ("q", [1, "two"], -3, 0, timedelta(seconds=90.5))


# --- the database enforces the same limits ------------------------------------------------

RAW_BAD_ROWS: dict[str, tuple[str, Any]] = {
    "empty kind": ("kind", ""),
    "blank kind": ("kind", "   "),
    "over-long kind": ("kind", "k" * 256),
    "empty queue": ("queue", ""),
    "blank queue": ("queue", " "),
    "over-long queue": ("queue", "q" * 256),
    "negative max_retry": ("max_retry", -1),
    "zero timeout": ("timeout", timedelta(0)),
    "negative timeout": ("timeout", timedelta(seconds=-1)),
    "negative attempt": ("attempt", -1),
}


@pytest.mark.parametrize("case", RAW_BAD_ROWS.keys())
def test_check_constraints_reject_raw_sql(case: str, db: psycopg.Connection[Any]) -> None:
    column, value = RAW_BAD_ROWS[case]
    row = {"kind": "k", "queue": "q", column: value}
    names = ", ".join(row)
    placeholders = ", ".join(f"%({name})s" for name in row)
    with pytest.raises(pgerrors.CheckViolation):
        db.execute(f"insert into pgjobs.jobs ({names}) values ({placeholders})".encode(), row)
    assert job_count(db) == 0
    longest = {"kind": "k" * 255, "queue": "q" * 255, "max_retry": 0}
    db.execute(
        "insert into pgjobs.jobs (kind, queue, max_retry) "
        "values (%(kind)s, %(queue)s, %(max_retry)s)",
        longest,
    )
    assert job_count(db) == 1


def test_state_accepts_only_known_values(db: psycopg.Connection[Any]) -> None:
    with pytest.raises(pgerrors.InvalidTextRepresentation):
        db.execute("insert into pgjobs.jobs (kind, state) values ('k', 'done')")


# --- SQLAlchemy and Django ----------------------------------------------------------------


def test_sqlalchemy_connection_before_any_statement(
    engine: sqlalchemy.Engine, db: psycopg.Connection[Any]
) -> None:
    # SQLAlchemy begins lazily; the enqueue must join (begin) its transaction, or commit()
    # would commit nothing and the pool would roll the job back.
    with engine.connect() as sa:
        pgjobs.enqueue(sa, Task("first_statement"))
        assert sa.in_transaction()
        assert job_count(db) == 0
        sa.commit()
    assert kinds(db) == ["first_statement"]
    with engine.connect() as sa:
        pgjobs.enqueue_many(sa, [Task("rolled_back")])
        sa.rollback()
    with engine.connect() as sa:
        pgjobs.enqueue(sa, Task("closed_without_commit"))
    assert kinds(db) == ["first_statement"]


def test_sqlalchemy_connection_joins_its_transaction(
    engine: sqlalchemy.Engine, db: psycopg.Connection[Any]
) -> None:
    db.execute("create table app_orders (id int)")
    with engine.begin() as sa:
        sa.execute(sqlalchemy.text("insert into app_orders values (1)"))
        job_id = pgjobs.enqueue(sa, Task("with_order"))
        assert job_count(db) == 0
    with contextlib.suppress(Boom), engine.begin() as sa:
        sa.execute(sqlalchemy.text("insert into app_orders values (2)"))
        pgjobs.enqueue_many(sa, [Task("lost"), Task("lost")])
        raise Boom
    assert db.execute("select id, kind from pgjobs.jobs").fetchall() == [(job_id, "with_order")]
    assert db.execute("select id from app_orders").fetchall() == [(1,)]


def test_sqlalchemy_session_joins_its_transaction(
    engine: sqlalchemy.Engine, db: psycopg.Connection[Any], client: pgjobs.Client
) -> None:
    db.execute("create table app_orders (id int)")
    with Session(engine) as session:
        pgjobs.enqueue(session, Task("session_first"))  # the session's first statement
        session.execute(sqlalchemy.text("insert into app_orders values (1)"))
        client.enqueue(Task("via_client"), conn=session)
        assert job_count(db) == 0
        session.commit()
    assert kinds(db) == ["session_first", "via_client"]
    with Session(engine) as session:
        session.execute(sqlalchemy.text("insert into app_orders values (2)"))
        pgjobs.enqueue_many(session, [Task("lost")])
        session.rollback()
    with contextlib.suppress(Boom), Session(engine) as session, session.begin():
        pgjobs.enqueue(session, Task("lost"))
        raise Boom
    assert kinds(db) == ["session_first", "via_client"]
    assert db.execute("select id from app_orders").fetchall() == [(1,)]


class DjangoLikeConnection:
    """What pgjobs uses of Django's ``django.db.connection``: ensure_connection() and
    .connection (the psycopg connection, None until connected). Like Django's default
    (server_side_binding off), the connection binds parameters client-side. Django
    itself is not a test dependency; the database under it is real."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.connection: psycopg.Connection[Any] | None = None

    def ensure_connection(self) -> None:
        if self.connection is None:
            self.connection = psycopg.connect(self.dsn, cursor_factory=psycopg.ClientCursor)


def test_django_style_connection(dsn: str, db: psycopg.Connection[Any]) -> None:
    django = DjangoLikeConnection(dsn)
    pgjobs.enqueue(django, Task("from_django", {"s": NASTY}, queue=NASTY[0], delay=60))
    assert django.connection is not None
    ids = pgjobs.enqueue_many(
        django,
        [Task(s, {"s": s}, run_at=datetime(2000, 1, 1, tzinfo=UTC) if i % 2 else None)
         for i, s in enumerate(NASTY)],
    )  # fmt: skip
    assert job_count(db) == 0
    django.connection.commit()
    django.connection.close()
    assert kinds(db) == ["from_django", *NASTY]
    rows = db.execute("select id, kind, payload from pgjobs.jobs where id = any(%s)", (ids,))
    assert sorted(rows.fetchall()) == [(i, s, {"s": s}) for i, s in zip(ids, NASTY, strict=True)]
    assert db.execute("select queue, payload from pgjobs.jobs order by id limit 1").fetchone() == (
        NASTY[0],
        {"s": NASTY},
    )


# --- wakeups: NOTIFY only when a worker of the queue is waiting ---------------------------


def _register_worker(db: psycopg.Connection[Any], queues: list[str], waiting: bool) -> None:
    db.execute(
        "insert into pgjobs.workers (id, host, pid, queues, concurrency, version, waiting) "
        "values (%s, 'test', 1, %s, 1, 'test', %s)",
        (uuid.uuid4(), queues, waiting),
    )


def _wakeups_until_sentinel(dsn: str, enqueue: Callable[[psycopg.Connection[Any]], None]) -> list:
    """The wakeup payloads that a committed enqueue sends, in order.

    A sentinel NOTIFY committed afterwards marks the end (notifications arrive in commit
    order), so "no wakeup" is observed without waiting for a timeout.
    """
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("listen pgjobs_wakeup")
        with psycopg.connect(dsn) as conn:
            with conn.transaction():
                enqueue(conn)
            conn.execute("select pg_notify('pgjobs_wakeup', '<sentinel>')")
            conn.commit()
        payloads = []
        for notify in listener.notifies(timeout=30):
            if notify.payload == "<sentinel>":
                return payloads
            payloads.append(notify.payload)
    raise AssertionError("the sentinel notification never arrived")


@pytest.mark.direct_only("it LISTENs on the dsn")
def test_no_wakeup_without_a_waiting_worker(dsn: str, db: psycopg.Connection[Any]) -> None:
    _register_worker(db, ["default"], waiting=False)
    _register_worker(db, ["other"], waiting=True)
    sent = _wakeups_until_sentinel(
        dsn,
        lambda conn: (
            pgjobs.enqueue(conn, Task("k")),
            pgjobs.enqueue_many(conn, [Task("k"), Task("k")]),
        ),
    )
    assert sent == []


@pytest.mark.direct_only("it LISTENs on the dsn")
def test_wakeup_when_a_worker_of_the_queue_waits(dsn: str, db: psycopg.Connection[Any]) -> None:
    _register_worker(db, ["default", "mail"], waiting=True)
    assert _wakeups_until_sentinel(dsn, lambda conn: pgjobs.enqueue(conn, Task("k"))) == ["default"]
    sent = _wakeups_until_sentinel(
        dsn,
        lambda conn: pgjobs.enqueue_many(
            conn, [Task("k", queue="mail"), Task("k"), Task("k", queue="mail")]
        ),
    )
    assert sorted(sent) == ["default", "mail"]


@pytest.mark.direct_only("it LISTENs on the dsn")
@pytest.mark.parametrize(
    "task",
    [Task("k"), Task("k", max_retry=3), Task("k", delay=0)],
    ids=["job_insert_defaults", "job_insert_available", "job_insert"],
)
def test_each_insert_statement_wakes_a_waiting_worker(
    dsn: str, db: psycopg.Connection[Any], task: Task
) -> None:
    _register_worker(db, ["default"], waiting=True)
    assert _wakeups_until_sentinel(dsn, lambda conn: pgjobs.enqueue(conn, task)) == ["default"]


@pytest.mark.direct_only("it LISTENs on the dsn")
def test_no_wakeup_for_scheduled_or_rolled_back_jobs(dsn: str, db: psycopg.Connection[Any]) -> None:
    _register_worker(db, ["default"], waiting=True)
    assert (
        _wakeups_until_sentinel(
            dsn,
            lambda conn: (
                pgjobs.enqueue(conn, Task("k", delay=60)),
                pgjobs.enqueue_many(conn, [Task("k", delay=60)]),
            ),
        )
        == []
    )

    def rolled_back(conn: psycopg.Connection[Any]) -> None:
        with contextlib.suppress(Boom), conn.transaction():
            pgjobs.enqueue(conn, Task("k"))
            raise Boom

    assert _wakeups_until_sentinel(dsn, rolled_back) == []


# --- one connection, many callers ---------------------------------------------------------


def _markers(db: psycopg.Connection[Any]) -> dict[int, int]:
    """Each job's id -> the marker its payload carries."""
    rows = db.execute("select id, (payload->>'marker')::int from pgjobs.jobs").fetchall()
    return dict(rows)


def test_threads_sharing_a_connection_each_get_their_own_ids(
    dsn: str, db: psycopg.Connection[Any]
) -> None:
    """psycopg lets threads share a connection; an enqueue must return the id of the job
    it wrote, never that of a job another thread wrote at the same moment."""
    with psycopg.connect(dsn, autocommit=True) as shared:

        def enqueue_some(thread: int) -> list[tuple[int, int]]:
            markers = range(thread * 1000, thread * 1000 + 150)
            return [(pgjobs.enqueue(shared, Task("k", {"marker": m})), m) for m in markers]

        with ThreadPoolExecutor(4) as pool:
            returned = [pair for pairs in pool.map(enqueue_some, range(4)) for pair in pairs]
    assert len(returned) == 600
    assert dict(returned) == _markers(db)


async def test_tasks_sharing_an_async_connection_each_get_their_own_ids(
    aconn: psycopg.AsyncConnection[Any], db: psycopg.Connection[Any]
) -> None:
    await aconn.set_autocommit(True)

    async def enqueue_one(marker: int) -> tuple[int, int]:
        return await pgjobs.enqueue_async(aconn, Task("k", {"marker": marker})), marker

    returned = await asyncio.gather(*(enqueue_one(marker) for marker in range(300)))
    assert dict(returned) == _markers(db)


def test_a_connection_with_another_row_factory(dsn: str, db: psycopg.Connection[Any]) -> None:
    """The application's row factory is its own business: ids still come back as ints."""
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        one = pgjobs.enqueue(conn, Task("k"))
        many = pgjobs.enqueue_many(conn, [Task("k"), Task("k")])
        unique = pgjobs.enqueue_unique(conn, Task("k", unique_key="u"))
        assert conn.execute("select 1 as one").fetchone() == {"one": 1}
    assert [one, *many, unique.id] == [
        row[0] for row in db.execute("select id from pgjobs.jobs order by id")
    ]
    assert all(isinstance(job_id, int) for job_id in [one, *many, unique.id])
