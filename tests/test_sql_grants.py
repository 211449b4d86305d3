"""Least privilege: grant_roles() and what each of its three roles can and cannot do.

Roles belong to the whole server, so each test makes its own, uniquely named, and drops
them afterwards. Sessions take a role with SET ROLE (or the ``role`` startup option for
the worker), which checks privileges exactly as a login role that is a member would.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg.errors
import pytest
from psycopg.conninfo import make_conninfo

import pgjobs
from pgjobs import _queries, admin
from pgjobs._worker.outcome import Outcome, finish_params
from tests.test_sql_why import claim
from tests.test_worker import wait_until

Q = _queries.queries()
Denied = psycopg.errors.InsufficientPrivilege


def assert_denied(conn: psycopg.Connection[Any], *statements: str) -> None:
    """Each of *statements* is refused to *conn*'s role for want of a privilege."""
    for statement in statements:
        with pytest.raises(Denied):
            conn.execute(statement.encode())


@pytest.fixture
def roles(dsn: str, admin_dsn: str) -> Iterator[dict[str, str]]:
    suffix = secrets.token_hex(4)
    names = {kind: f"pgjobs_test_{kind}_{suffix}" for kind in ("enqueuer", "worker", "reader")}
    yield names
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in names.values():
            exists = conn.execute("select from pg_roles where rolname = %s", (name,)).fetchone()
            if exists is not None:
                conn.execute(f"drop owned by {name}".encode())
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f"drop role if exists {name}".encode())


@pytest.fixture
def granted(db: psycopg.Connection[Any], roles: dict[str, str]) -> dict[str, str]:
    admin.grant_roles(db, **roles)
    return roles


def as_role(dsn: str, role: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(f"set role {role}".encode())
    return conn


def test_grant_roles_creates_the_roles_and_is_idempotent(db, roles) -> None:
    first = admin.grant_roles(db, **roles)
    assert first[:3] == [
        f"CREATE ROLE {roles[k]} NOLOGIN" for k in ("enqueuer", "worker", "reader")
    ]
    assert any(s.startswith("GRANT EXECUTE ON FUNCTION pgjobs.enqueue(") for s in first)
    second = admin.grant_roles(db, **roles)
    assert second == first[3:]  # nothing to create the second time
    logins = db.execute(
        "select rolname, rolcanlogin from pg_roles where rolname = any(%s) order by 1",
        (list(roles.values()),),
    ).fetchall()
    assert [login for _, login in logins] == [False, False, False]


def test_grant_roles_without_create_needs_existing_roles(db, roles) -> None:
    with pytest.raises(psycopg.errors.UndefinedObject):
        admin.grant_roles(db, create_missing=False, **roles)


def test_the_enqueuer_can_enqueue_every_way(dsn, db, granted) -> None:
    # A waiting worker, so that the wakeup check (which reads workers) runs too.
    db.execute(
        "insert into pgjobs.workers (id, host, pid, queues, concurrency, version, waiting)"
        " values (gen_random_uuid(), 'h', 1, '{default}', 1, 'x', true)"
    )
    with as_role(dsn, granted["enqueuer"]) as conn:
        by_function = conn.execute("select pgjobs.enqueue('a', '{\"n\": 1}')").fetchone()[0]
        by_python = pgjobs.enqueue(conn, pgjobs.Task("b", {"n": 2}, delay=60))
        by_bulk = pgjobs.enqueue_many(conn, [pgjobs.Task("c"), pgjobs.Task("c")])
        by_insert = conn.execute(
            "insert into pgjobs.jobs (kind, payload, queue) values ('d', '{}', 'low') returning id"
        ).fetchone()[0]
    kinds = dict(db.execute("select id, kind from pgjobs.jobs").fetchall())
    assert [kinds[i] for i in (by_function, by_python, *by_bulk, by_insert)] == [
        "a",
        "b",
        "c",
        "c",
        "d",
    ]


def test_the_enqueuer_can_enqueue_every_way_with_tracing_on(dsn, db, granted) -> None:
    """A traced enqueue also writes the trace context, which the enqueuer may write."""
    from opentelemetry.sdk.trace import TracerProvider

    from pgjobs import tracing

    tracing.instrument(TracerProvider())
    try:
        with as_role(dsn, granted["enqueuer"]) as conn:
            pgjobs.enqueue(conn, pgjobs.Task("a"))
            pgjobs.enqueue_many(conn, [pgjobs.Task("b")])
            pgjobs.enqueue_unique(conn, pgjobs.Task("c", unique_key="k"))
    finally:
        tracing.uninstrument()
    contexts = db.execute("select trace_context from pgjobs.jobs").fetchall()
    assert len(contexts) == 3
    assert all("traceparent" in context for (context,) in contexts)


@pytest.mark.parametrize(
    "statement",
    [
        "select payload from pgjobs.jobs",
        "select * from pgjobs.jobs",
        "select kind from pgjobs.jobs",
        "select count(*) from pgjobs.jobs where payload ? 'secret'",
        "select * from pgjobs.queue_summary",
        "select * from pgjobs.failed_jobs",
        "update pgjobs.jobs set state = 'cancelled'",
        "update pgjobs.jobs set payload = '{}' where id = %(id)s",
        "delete from pgjobs.jobs",
        "select pgjobs.cancel_job(%(id)s)",
        "select pgjobs.retry_job(%(id)s)",
        "select pgjobs.why(%(id)s)",
        "select pgjobs.pause_queue('default')",
        "select pgjobs.purge_finished('0 s')",
        "insert into pgjobs.jobs (kind, worker_id) values ('x', gen_random_uuid())",
        "insert into pgjobs.jobs (kind, attempt) values ('x', 25)",
        "insert into pgjobs.jobs (kind, lease_expires_at) values ('x', now() + interval '1 day')",
        "insert into pgjobs.jobs (kind, errors) values ('x', '[]')",
        "insert into pgjobs.queues (name, paused_at) values ('default', now())",
        "delete from pgjobs.workers",
    ],
)
def test_the_enqueuer_cannot_read_payloads_or_change_jobs(dsn, db, granted, statement) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("a", {"secret": "card 4242"}))
    with as_role(dsn, granted["enqueuer"]) as conn, pytest.raises(Denied):
        conn.execute(statement.encode(), {"id": job_id})
    assert db.execute("select state::text, payload from pgjobs.jobs").fetchall() == [
        ("available", {"secret": "card 4242"})
    ]


def test_the_enqueuer_cannot_claim(dsn, db, granted) -> None:
    pgjobs.enqueue(db, pgjobs.Task("a"))
    params = {
        "queues": ["default"],
        "limits": [10],
        "grace": 10,
        "lease": 60,
        "worker_id": "00000000-0000-0000-0000-000000000001",
        "unwait": False,
        "after_priorities": None,
        "after_ids": None,
    }
    with as_role(dsn, granted["enqueuer"]) as conn, pytest.raises(Denied):
        conn.execute(Q["job_claim"], params)
    assert db.execute("select state::text from pgjobs.jobs").fetchone()[0] == "available"


def test_the_enqueuer_sees_ids_and_states_but_no_kinds(dsn, db, granted) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
    with as_role(dsn, granted["enqueuer"]) as conn:
        rows = conn.execute("select id, queue, state::text from pgjobs.jobs").fetchall()
    assert rows == [(job_id, "default", "available")]


def test_the_reader_inspects_but_changes_nothing(dsn, db, granted) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("a", {"n": 1}))
    with as_role(dsn, granted["reader"]) as conn:
        assert admin.get_job(conn, job_id).payload == {"n": 1}
        assert [q.queue for q in admin.queue_summary(conn)] == ["default"]
        assert admin.list_jobs(conn)[0].id == job_id
        assert "is ready to run" in admin.why(conn, job_id)
        assert admin.doctor(conn)
        assert admin.live_workers(conn) == []
        conn.execute("select * from pgjobs.running_jobs, pgjobs.failed_jobs")
        assert_denied(
            conn,
            "select pgjobs.enqueue('x')",
            "insert into pgjobs.jobs (kind) values ('x')",
            "update pgjobs.jobs set priority = 1",
            "delete from pgjobs.jobs",
            f"select pgjobs.cancel_job({job_id})",
            "select pgjobs.pause_queue('default')",
        )
    assert db.execute("select state::text, priority from pgjobs.jobs").fetchall() == [
        ("available", 0)
    ]


def test_client_wait_needs_the_reader_role_and_waiters(dsn, db, granted) -> None:
    # Client.get reads with the reader role; Client.wait also registers in waiters while
    # it waits, which the reader role may not do until it is granted (operations.md).
    job_id = pgjobs.enqueue(db, pgjobs.Task("a", {"n": 1}))
    admin.cancel_job(db, job_id)
    reader_dsn = make_conninfo(dsn, options=f"-c role={granted['reader']}")
    with pgjobs.Client(reader_dsn) as client:
        assert client.get(job_id).state == "cancelled"
        with pytest.raises(Denied, match="waiters"):
            client.wait(job_id, timeout=5)
        db.execute(f"grant insert, delete on pgjobs.waiters to {granted['reader']}".encode())
        assert client.wait(job_id, timeout=5).state == "cancelled"
    assert db.execute("select count(*) from pgjobs.waiters").fetchone()[0] == 0


def test_completion_records_written_by_the_worker_read_by_the_reader(dsn, db, granted) -> None:
    """completed_recently: the worker's completions write it and its pruner deletes from
    it; the reader reads it (why); the enqueuer can do neither."""
    job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
    worker_id = "00000000-0000-0000-0000-000000000001"
    with as_role(dsn, granted["worker"]) as conn:
        assert claim(conn, uuid.UUID(worker_id), "default", 10) == [job_id]
        outcome = Outcome(job_id, 1, "completed")
        params = finish_params([outcome], worker_id=worker_id, delete_completed=True)
        assert [row[0] for row in conn.execute(Q["job_finish_many"], params)] == [job_id]
    assert db.execute("select ids from pgjobs.completed_recently").fetchall() == [([job_id],)]
    with as_role(dsn, granted["reader"]) as conn:
        assert admin.why(conn, job_id).startswith(f"job {job_id} completed at ")
        assert_denied(
            conn,
            "insert into pgjobs.completed_recently (ids) values ('{1}')",
            "delete from pgjobs.completed_recently",
        )
    with as_role(dsn, granted["enqueuer"]) as conn:
        assert_denied(
            conn,
            "select * from pgjobs.completed_recently",
            "insert into pgjobs.completed_recently (ids) values ('{1}')",
        )
    with as_role(dsn, granted["worker"]) as conn:
        params = {"keep": -60.0, "now": None, "limit": 10}  # every record is past keeping
        assert conn.execute(Q["completed_recently_prune"], params).fetchone() == (1,)
    assert db.execute("select count(*) from pgjobs.completed_recently").fetchone() == (0,)


def test_public_cannot_call_the_definer_rights_enqueue(dsn, db, roles, admin_dsn) -> None:
    # A role with USAGE on the schema but no grant of its own.
    outsider = roles["reader"]
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"create role {outsider} nologin".encode())
    db.execute(f"grant usage on schema pgjobs to {outsider}".encode())
    with (
        as_role(dsn, outsider) as conn,
        pytest.raises(Denied, match="permission denied for function enqueue"),
    ):
        conn.execute("select pgjobs.enqueue('a')")


async def test_a_worker_runs_jobs_with_only_the_worker_role(dsn, db, granted) -> None:
    ran = asyncio.Event()
    payloads: list[Any] = []
    failing = pgjobs.enqueue(db, pgjobs.Task("flaky", max_retry=1))
    job_id = pgjobs.enqueue(db, pgjobs.Task("work", {"n": 7}))
    server = pgjobs.Server()

    @server.handler("work")
    async def work(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        payloads.append(task.payload)
        ran.set()

    @server.handler("flaky")
    async def flaky(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise ValueError("nope")

    worker_dsn = make_conninfo(dsn, options=f"-c role={granted['worker']}")
    config = pgjobs.Config(dsn=worker_dsn, poll_interval=0.05, completed_retention=None)
    await server.start(config)
    try:
        await asyncio.wait_for(ran.wait(), 30)
        for _ in range(600):
            states = dict(db.execute("select id, state::text from pgjobs.jobs").fetchall())
            if states.get(job_id) == "completed" and states.get(failing) in ("failed", "scheduled"):
                break
            await asyncio.sleep(0.05)
    finally:
        await server.stop(timeout=2)
    assert payloads == [{"n": 7}]
    assert states[job_id] == "completed"
    assert states[failing] in ("failed", "scheduled")
    who = db.execute(
        "select count(*) from pgjobs.stats where completed > 0 or failed > 0 or retried > 0"
    ).fetchone()[0]
    assert who >= 1


@pytest.fixture
def worker_login(granted, admin_dsn) -> Iterator[Any]:
    """A login role in the worker role, and a function that sets its CONNECTION LIMIT:
    the server then refuses the worker connections as it would at max_connections."""
    login = f"{granted['worker']}_login"

    def limit(connections: int) -> None:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f"alter role {login} connection limit {connections}".encode())

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"create role {login} login in role {granted['worker']}".encode())
    yield login, limit
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            b"select pg_terminate_backend(pid) from pg_stat_activity where usename = %s",
            [login],
        )
        conn.execute(f"drop role if exists {login}".encode())


@pytest.mark.slow
async def test_a_worker_refused_connections_snoozes_handlers_then_recovers(
    dsn, db, granted, worker_login, caplog
) -> None:
    """The server refuses the worker any connection beyond those it holds (CONNECTION
    LIMIT on its login role, set to what it holds once it has started): handlers in
    ctx.transaction() get none, so their attempts are given back (snoozed) rather than
    failed, and the worker stays up. Once the server lets it have more, every job
    completes, each on its first counted attempt."""
    login, limit = worker_login
    server = pgjobs.Server()

    @server.handler("tx")
    def tx(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        with ctx.transaction() as conn:
            conn.execute("select 1")

    caplog.set_level("WARNING", logger="pgjobs.worker")
    worker_dsn = make_conninfo(dsn, user=login, options=f"-c role={granted['worker']}")
    config = pgjobs.Config(dsn=worker_dsn, concurrency=4, poll_interval=0.1)
    await server.start(config)
    # The limit is the worker's whole own share (docs/deployment.md: two pool connections
    # and LISTEN), so only handlers are refused.
    limit(3 if config.listen else 2)
    jobs = pgjobs.enqueue_many(db, [pgjobs.Task("tx", max_retry=0) for _ in range(4)])
    try:
        await wait_until(
            lambda: all(
                f"job {job_id}: no database connection for ctx.transaction()" in caplog.text
                for job_id in jobs
            ),
            what="every job's attempt to be given back",
        )
        # max_retry=0: an attempt that counted would have failed its job for good.
        assert db.execute(
            "select count(*) from pgjobs.jobs where state = 'failed' or attempt > 1"
        ).fetchone() == (0,)
        limit(10)
        await wait_until(
            lambda: (
                db.execute("select count(*) from pgjobs.jobs where id = any(%s)", [jobs]).fetchone()
                == (0,)
            ),
            what="every job to complete",
        )
        worker = server.worker
        assert worker is not None
        # ctx.transaction() completes a job in the handler's own commit, on its thread:
        # the worker counts it once the result has come back to its event loop.
        await wait_until(lambda: worker.processed == 4, what="the worker to count every job")
        assert worker.failed == 0
    finally:
        await server.stop(timeout=2)


async def test_a_worker_out_of_connections_at_start_waits_for_one(
    dsn, db, granted, worker_login, caplog
) -> None:
    """The server refuses the worker's first connection (its role is at its connection
    limit): the worker waits, saying why, and starts once the server lets it in."""
    login, limit = worker_login
    limit(0)
    job_id = pgjobs.enqueue(db, pgjobs.Task("work"))
    server = pgjobs.Server()
    server.register_handler("work", lambda ctx, task: None)
    caplog.set_level("WARNING", logger="pgjobs.worker")
    worker_dsn = make_conninfo(dsn, user=login, options=f"-c role={granted['worker']}")
    starting = asyncio.ensure_future(server.start(pgjobs.Config(dsn=worker_dsn)))
    try:
        await wait_until(lambda: "too many connections" in caplog.text, what="the worker to wait")
        assert not starting.done()
        limit(10)
        await asyncio.wait_for(starting, 30)
        await wait_until(
            lambda: (
                db.execute("select count(*) from pgjobs.jobs where id = %s", [job_id]).fetchone()
                == (0,)
            ),
            what="the job to complete",
        )
    finally:
        if not starting.done():
            starting.cancel()
        await server.stop(timeout=2)


async def test_forged_control_messages_do_not_cancel_a_running_job(
    dsn, db, granted, admin_dsn
) -> None:
    # NOTIFY needs no privilege: a role with no pgjobs grant at all, and the enqueuer
    # role, send every control message there is at a running job. The worker acts only
    # on the job's row, which neither of them can write.
    outsider = f"pgjobs_test_outsider_{secrets.token_hex(4)}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"create role {outsider} nologin".encode())
    release, started = asyncio.Event(), asyncio.Event()
    server = pgjobs.Server()

    @server.handler("long")
    async def long(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        started.set()
        await release.wait()

    def state(job_id: int) -> str:
        row = db.execute("select state::text from pgjobs.jobs where id = %s", (job_id,))
        return str(row.fetchone()[0])

    job_id = pgjobs.enqueue(db, pgjobs.Task("long"))
    await server.start(pgjobs.Config(dsn=dsn, poll_interval=30.0, completed_retention=None))
    worker = server.worker
    assert worker is not None
    assert worker._listener is not None
    try:
        await asyncio.wait_for(started.wait(), 20)
        messages = [
            f'{{"action": "cancel", "job_id": {job_id}}}',
            f'{{"action": "cancel", "job_id": "{job_id}"}}',
            f'{{"action": "cancel", "job_id": {job_id}, "attempt": 1}}',
            f'{{"action": "stop", "job_id": {job_id}}}',
            '{"action": "cancel"}',
            # A job id no int can hold: int() raises OverflowError, not ValueError.
            '{"action": "cancel", "job_id": 1e400}',
            '{"action": "cancel", "job_id": -Infinity}',
            '{"action": "cancel", "job_id": NaN}',
            f'{{"action": "cancel", "job_id": {"9" * 5000}}}',
            "not json",
            "[" * 5000,
        ]
        for role in (outsider, granted["enqueuer"]):
            with as_role(dsn, role) as conn:
                for message in messages:
                    conn.execute("select pg_notify('pgjobs_control', %s)", (message,))
                    # A wakeup only makes an idle worker claim: harmless, whatever it says.
                    conn.execute("select pg_notify('pgjobs_wakeup', %s)", (message,))
        # Notifications reach the listener in commit order: once a marker sent after them
        # has been handled, so have they, and then the checks they started.
        handled = asyncio.Event()
        on_control = worker._listener._on_control

        def spy(payload: str) -> None:
            on_control(payload)
            if payload == "marker":
                handled.set()

        worker._listener._on_control = spy
        db.execute("select pg_notify('pgjobs_control', 'marker')")
        await asyncio.wait_for(handled.wait(), 20)
        check = getattr(worker, "_cancel_check", None)
        if check is not None:
            await check
        assert state(job_id) == "running"
        assert job_id in worker._running
        assert not worker._failed.is_set()
        release.set()
        await wait_until(
            lambda: state(job_id) == "completed", what="the job to complete", limit=20.0
        )

        # cancel_job, which writes the row under its grant, still cancels.
        release.clear()
        started.clear()
        second = pgjobs.enqueue(db, pgjobs.Task("long"))
        await asyncio.wait_for(started.wait(), 20)
        assert admin.cancel_job(db, second) is True
        await wait_until(
            lambda: second not in worker._running,
            what="the cancel to reach the handler",
            limit=20.0,
        )
        assert state(second) == "cancelled"
    finally:
        release.set()
        await server.stop(timeout=2)
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f"drop role {outsider}".encode())


@pytest.mark.parametrize(
    "state", ["running", "completed", "failed", "cancelled", "available", "scheduled"]
)
def test_the_enqueuer_creates_only_new_jobs(dsn, db, granted, state) -> None:
    # It may set a new job's state (a delayed job is scheduled), but none of the columns
    # that a running or finished job has, so only a scheduled or available job is made.
    new = state in ("available", "scheduled")
    with as_role(dsn, granted["enqueuer"]) as conn:
        insert = "insert into pgjobs.jobs (kind, state) values ('x', %s) returning state::text"
        if new:
            assert conn.execute(insert, (state,)).fetchone() == (state,)
        else:
            with pytest.raises(psycopg.errors.CheckViolation, match="needs"):
                conn.execute(insert, (state,))


def test_the_enqueuer_cannot_plant_ids_ahead_of_the_sequence(dsn, db, granted) -> None:
    planted = "insert into pgjobs.jobs (id, kind) values (%s, 'x')"
    with as_role(dsn, granted["enqueuer"]) as conn:
        # In a session that drew no id, any explicit id is refused.
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="currval"):
            conn.execute(planted, (1,))
        drawn = conn.execute("select nextval('pgjobs.jobs_id_seq')").fetchone()[0]
        for ahead in range(1, 6):
            with pytest.raises(psycopg.errors.CheckViolation, match="ahead of the ids"):
                conn.execute(planted, (drawn + ahead,))
        conn.execute(planted, (drawn,))  # the id it drew is its own to use (enqueue_many)
    ids = [pgjobs.enqueue(db, pgjobs.Task("owner")) for _ in range(5)]
    assert ids == list(range(drawn + 1, drawn + 6))
