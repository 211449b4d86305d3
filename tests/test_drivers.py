"""Enqueue through every common driver, in the caller's transaction (pgjobs/_drivers.py).

Each driver and wrapper is driven through its own transaction API, with the real library:
a job enqueued in a transaction that rolls back never exists, one that commits exists
once, a savepoint rolled back inside a committed transaction leaves none, enqueue_many
(the COPY path) and enqueue_unique work, and a bad task raises its pgjobs error before
anything is sent, leaving the transaction usable.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import psycopg2
import pytest
import sqlalchemy
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import pgjobs
from pgjobs import Task
from pgjobs.errors import InvalidTaskError, SchemaError

ROOT = Path(__file__).resolve().parent.parent

#: Values that COPY's text format and each driver's quoting must carry unchanged.
NASTY = ["tab\there", "line\nbreak", "back\\slash", "quote ' \"", "%(queue)s %s %% $1", "é ✓"]


class Rollback(Exception):
    """Raised inside a transaction block to make the library roll it back."""


def _url(dsn: str, dialect: str) -> sqlalchemy.URL:
    info = conninfo_to_dict(dsn)
    return sqlalchemy.URL.create(
        f"postgresql+{dialect}",
        username=str(info.get("user") or "root"),
        host=str(info.get("host") or "127.0.0.1"),
        port=int(info.get("port") or 5432),
        database=str(info["dbname"]),
    )


def kinds(db: psycopg.Connection[Any]) -> list[str]:
    return [k for (k,) in db.execute("select kind from pgjobs.jobs order by id")]


def orders(db: psycopg.Connection[Any]) -> list[int]:
    return [n for (n,) in db.execute("select n from app_orders order by n")]


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("create table app_orders (n int)")
        yield connection


# --- the sync drivers ------------------------------------------------------------------------
# Each yields (transaction, nested, write): transaction() is a block that commits, or rolls
# back on an exception, and yields what is passed to pgjobs; nested(obj) is a savepoint
# block inside it; write(obj, n) is an application write in the same transaction.

SyncDriver = tuple[Callable[..., Any], Callable[..., Any], Callable[[Any, int], None]]


@contextlib.contextmanager
def _psycopg(dsn: str) -> Iterator[SyncDriver]:
    conn = psycopg.connect(dsn, autocommit=True)

    @contextlib.contextmanager
    def transaction() -> Iterator[Any]:
        with conn.transaction():
            yield conn

    @contextlib.contextmanager
    def nested(obj: Any) -> Iterator[Any]:
        with contextlib.suppress(Rollback), conn.transaction():  # a savepoint inside the outer
            yield obj
            raise Rollback

    def write(obj: Any, n: int) -> None:
        obj.execute("insert into app_orders values (%s)", (n,))

    try:
        yield transaction, nested, write
    finally:
        conn.close()


@contextlib.contextmanager
def _psycopg2(dsn: str, cursor: bool) -> Iterator[SyncDriver]:
    raw = psycopg2.connect(dsn)

    @contextlib.contextmanager
    def transaction() -> Iterator[Any]:
        with raw, raw.cursor() as cur:  # commits, or rolls back on an exception
            yield cur if cursor else raw

    @contextlib.contextmanager
    def nested(obj: Any) -> Iterator[Any]:
        with raw.cursor() as cur:
            cur.execute("savepoint inner_block")
            try:
                yield obj
            finally:
                cur.execute("rollback to savepoint inner_block")

    def write(obj: Any, n: int) -> None:
        with raw.cursor() as cur:
            cur.execute("insert into app_orders values (%s)", (n,))

    try:
        yield transaction, nested, write
    finally:
        raw.close()


@contextlib.contextmanager
def _sqlalchemy(dsn: str, dialect: str, session: bool) -> Iterator[SyncDriver]:
    engine = sqlalchemy.create_engine(_url(dsn, dialect))

    @contextlib.contextmanager
    def transaction() -> Iterator[Any]:
        if session:
            with Session(engine) as s, s.begin():
                yield s
        else:
            with engine.begin() as c:
                yield c

    @contextlib.contextmanager
    def nested(obj: Any) -> Iterator[Any]:
        savepoint = obj.begin_nested()
        try:
            yield obj
        finally:
            savepoint.rollback()

    def write(obj: Any, n: int) -> None:
        obj.execute(sqlalchemy.text("insert into app_orders values (:n)"), {"n": n})

    try:
        yield transaction, nested, write
    finally:
        engine.dispose()


_django_configured = False


@contextlib.contextmanager
def _django(dsn: str) -> Iterator[SyncDriver]:
    global _django_configured
    import django
    from django.conf import settings

    if not _django_configured:
        settings.configure(DATABASES={}, INSTALLED_APPS=[], USE_TZ=True)
        django.setup()
        _django_configured = True
    from django.db import connections
    from django.db import transaction as dj
    from django.db.backends.postgresql.base import DatabaseWrapper

    info = conninfo_to_dict(dsn)
    alias = "pgjobs_test"
    configured = connections.configure_settings(
        {
            "default": {"ENGINE": "django.db.backends.dummy"},
            alias: {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": info["dbname"],
                "USER": info.get("user") or "root",
                "HOST": info.get("host") or "127.0.0.1",
                "PORT": info.get("port") or 5432,
            },
        }
    )
    connections[alias] = DatabaseWrapper(configured[alias], alias)

    def transaction() -> Any:
        @contextlib.contextmanager
        def block() -> Iterator[Any]:
            with dj.atomic(using=alias):
                yield connections[alias]

        return block()

    def nested(obj: Any) -> Any:
        @contextlib.contextmanager
        def block() -> Iterator[Any]:
            with contextlib.suppress(Rollback), dj.atomic(using=alias):
                yield obj
                raise Rollback

        return block()

    def write(obj: Any, n: int) -> None:
        with obj.cursor() as cur:
            cur.execute("insert into app_orders values (%s)", [n])

    try:
        yield transaction, nested, write
    finally:
        connections[alias].close()
        del connections[alias]


SYNC_DRIVERS = {
    "psycopg": _psycopg,
    "psycopg2": lambda dsn: _psycopg2(dsn, cursor=False),
    "psycopg2-cursor": lambda dsn: _psycopg2(dsn, cursor=True),
    "sqlalchemy-psycopg2": lambda dsn: _sqlalchemy(dsn, "psycopg2", session=False),
    "sqlalchemy-psycopg2-session": lambda dsn: _sqlalchemy(dsn, "psycopg2", session=True),
    "sqlalchemy-psycopg": lambda dsn: _sqlalchemy(dsn, "psycopg", session=False),
    "sqlalchemy-psycopg-session": lambda dsn: _sqlalchemy(dsn, "psycopg", session=True),
    "django-psycopg": _django,
}


@pytest.fixture(params=sorted(SYNC_DRIVERS))
def sync_driver(request: pytest.FixtureRequest, dsn: str) -> Iterator[SyncDriver]:
    with SYNC_DRIVERS[request.param](dsn) as driver:
        yield driver


def test_sync_rolled_back_enqueue_never_exists(
    sync_driver: SyncDriver, db: psycopg.Connection[Any]
) -> None:
    transaction, _, write = sync_driver
    with contextlib.suppress(Rollback), transaction() as obj:
        write(obj, 1)
        pgjobs.enqueue(obj, Task("rolled_back"))
        raise Rollback
    assert kinds(db) == []
    assert orders(db) == []


def test_sync_committed_enqueue_exists_once(
    sync_driver: SyncDriver, db: psycopg.Connection[Any]
) -> None:
    transaction, _, write = sync_driver
    with transaction() as obj:
        write(obj, 1)
        job_id = pgjobs.enqueue(obj, Task("committed", {"s": NASTY}, queue="q-1"))
    assert kinds(db) == ["committed"]
    assert orders(db) == [1]
    assert db.execute("select id, queue, payload from pgjobs.jobs").fetchall() == [
        (job_id, "q-1", {"s": NASTY})
    ]


def test_sync_savepoint_rolled_back_leaves_no_job(
    sync_driver: SyncDriver, db: psycopg.Connection[Any]
) -> None:
    transaction, nested, write = sync_driver
    with transaction() as obj:
        write(obj, 1)
        pgjobs.enqueue(obj, Task("outer"))
        with nested(obj) as inner:
            write(inner, 2)
            pgjobs.enqueue(inner, Task("inner"))
    assert kinds(db) == ["outer"]
    assert orders(db) == [1]


def test_sync_enqueue_many_and_unique(sync_driver: SyncDriver, db: psycopg.Connection[Any]) -> None:
    transaction, _, _ = sync_driver
    past = datetime(2000, 1, 1, tzinfo=UTC)
    with transaction() as obj:
        ids = pgjobs.enqueue_many(
            obj,
            [
                Task(s, {"s": s}, delay=60 if i % 2 else None, run_at=None)
                for i, s in enumerate(NASTY)
            ]
            + [Task("past", run_at=past), Task("u", unique_key="k"), Task("u", unique_key="k")],
        )
        first = pgjobs.enqueue_unique(obj, Task("u", unique_key="k2"))
        again = pgjobs.enqueue_unique(obj, Task("u", unique_key="k2"))
        also = pgjobs.enqueue_unique(obj, Task("u", unique_key="k"))
    assert ids[-1] == ids[-2]
    assert len(set(ids)) == len(ids) - 1
    assert (again.id, again.duplicate, first.duplicate) == (first.id, True, False)
    assert (also.id, also.duplicate) == (ids[-1], True)
    rows = db.execute(
        "select id, kind, payload, state, run_at from pgjobs.jobs where id = any(%s) order by id",
        (ids,),
    ).fetchall()
    assert [(r[0], r[1], r[2]) for r in rows[: len(NASTY)]] == [
        (i, s, {"s": s}) for i, s in zip(ids, NASTY, strict=False)
    ]
    assert [r[3] for r in rows[: len(NASTY)]] == [
        "scheduled" if i % 2 else "available" for i in range(len(NASTY))
    ]
    assert rows[len(NASTY)][4] == past


def test_sync_bad_task_sends_nothing(sync_driver: SyncDriver, db: psycopg.Connection[Any]) -> None:
    transaction, _, _ = sync_driver
    with transaction() as obj:
        with pytest.raises(InvalidTaskError):
            pgjobs.enqueue(obj, Task("bad", {"x": object()}))
        with pytest.raises(InvalidTaskError, match=r"tasks\[1\]"):
            pgjobs.enqueue_many(obj, [Task("ok"), "bad"])  # type: ignore[list-item]
        pgjobs.enqueue(obj, Task("still_usable"))
    assert kinds(db) == ["still_usable"]


def test_sync_client_accepts_the_driver(
    sync_driver: SyncDriver, db: psycopg.Connection[Any], dsn: str
) -> None:
    transaction, _, _ = sync_driver
    with pgjobs.Client(dsn) as client:
        with contextlib.suppress(Rollback), transaction() as obj:
            client.enqueue(Task("rolled_back"), conn=obj)
            raise Rollback
        with transaction() as obj:
            job_id = client.enqueue(Task("committed"), conn=obj)
            assert client.get(job_id, conn=obj) is not None
    assert kinds(db) == ["committed"]


def test_django_on_psycopg2(dsn: str, db: psycopg.Connection[Any]) -> None:
    """Django before 4.2 runs on psycopg2 only; newer ones prefer psycopg 3, which pgjobs
    always brings. A child process hides psycopg 3 from Django's import, so Django picks
    psycopg2 as an older one would."""
    info = conninfo_to_dict(dsn)
    script = textwrap.dedent(
        f"""
        import sys
        import pgjobs
        saved = sys.modules.pop("psycopg")
        sys.modules["psycopg"] = None
        from django.conf import settings
        settings.configure(INSTALLED_APPS=[], USE_TZ=True, DATABASES={{"default": {{
            "ENGINE": "django.db.backends.postgresql", "NAME": {info["dbname"]!r},
            "USER": {info.get("user") or "root"!r}, "HOST": {info.get("host") or "127.0.0.1"!r},
            "PORT": {str(info.get("port") or 5432)!r}}}}})
        import django
        django.setup()
        from django.db import connection, transaction
        connection.ensure_connection()  # imports the backend, which picks its driver
        sys.modules["psycopg"] = saved
        assert type(connection.connection).__module__ == "psycopg2.extensions"
        class Rollback(Exception): pass
        try:
            with transaction.atomic():
                pgjobs.enqueue(connection, pgjobs.Task("rolled_back"))
                raise Rollback
        except Rollback:
            pass
        with transaction.atomic():
            pgjobs.enqueue(connection, pgjobs.Task("outer"))
            try:
                with transaction.atomic():
                    pgjobs.enqueue(connection, pgjobs.Task("inner"))
                    raise Rollback
            except Rollback:
                pass
            pgjobs.enqueue_many(connection, [pgjobs.Task("many"), pgjobs.Task("many")])
            pgjobs.enqueue_unique(connection, pgjobs.Task("unique", unique_key="k"))
        from pgjobs.errors import InvalidTaskError
        with transaction.atomic():
            for bad in (
                lambda: pgjobs.enqueue(connection, pgjobs.Task("bad", {{"x": object()}})),
                lambda: pgjobs.enqueue_many(connection, [pgjobs.Task("ok"), "bad"]),
                lambda: pgjobs.enqueue_unique(connection, pgjobs.Task("no_key")),
            ):
                try:
                    bad()
                except InvalidTaskError:
                    pass
                else:
                    raise AssertionError("bad input was accepted")
            # no statement failed: the transaction goes on and commits
            pgjobs.enqueue(connection, pgjobs.Task("still_usable"))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, timeout=60)
    assert kinds(db) == ["outer", "many", "many", "unique", "still_usable"]


# --- the async drivers -----------------------------------------------------------------------

AsyncDriver = tuple[Callable[..., Any], Callable[..., Any], Callable[[Any, int], Any]]


def _asyncpg_args(dsn: str) -> dict[str, Any]:
    info = conninfo_to_dict(dsn)
    return {
        "user": info.get("user") or "root",
        "host": info.get("host") or "127.0.0.1",
        "port": int(info.get("port") or 5432),
        "database": info["dbname"],
    }


def _transactions(conn: Any) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The outer transaction and the rolled-back savepoint of a driver whose connection's
    ``transaction()`` nests as a savepoint (psycopg's AsyncConnection, asyncpg's)."""

    @contextlib.asynccontextmanager
    async def transaction() -> AsyncIterator[Any]:
        async with conn.transaction():
            yield conn

    @contextlib.asynccontextmanager
    async def nested(obj: Any) -> AsyncIterator[Any]:
        with contextlib.suppress(Rollback):
            async with conn.transaction():  # a savepoint inside the outer
                yield obj
                raise Rollback

    return transaction, nested


@contextlib.asynccontextmanager
async def _psycopg_async(dsn: str) -> AsyncIterator[AsyncDriver]:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)

    async def write(obj: Any, n: int) -> None:
        await obj.execute("insert into app_orders values (%s)", (n,))

    try:
        yield (*_transactions(conn), write)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _asyncpg(dsn: str, pool: bool) -> AsyncIterator[AsyncDriver]:
    async with contextlib.AsyncExitStack() as stack:
        if pool:
            created = await asyncpg.create_pool(min_size=1, max_size=1, **_asyncpg_args(dsn))
            stack.push_async_callback(created.close)
            conn = await stack.enter_async_context(created.acquire())
        else:
            conn = await asyncpg.connect(**_asyncpg_args(dsn))
            stack.push_async_callback(conn.close)

        async def write(obj: Any, n: int) -> None:
            await conn.execute("insert into app_orders values ($1)", n)

        yield (*_transactions(conn), write)


@contextlib.asynccontextmanager
async def _sqlalchemy_async(dsn: str, dialect: str, session: bool) -> AsyncIterator[AsyncDriver]:
    engine = create_async_engine(_url(dsn, dialect))

    @contextlib.asynccontextmanager
    async def transaction() -> AsyncIterator[Any]:
        if session:
            async with AsyncSession(engine) as s, s.begin():
                yield s
        else:
            async with engine.begin() as c:
                yield c

    @contextlib.asynccontextmanager
    async def nested(obj: Any) -> AsyncIterator[Any]:
        savepoint = await obj.begin_nested()
        try:
            yield obj
        finally:
            await savepoint.rollback()

    async def write(obj: Any, n: int) -> None:
        await obj.execute(sqlalchemy.text("insert into app_orders values (:n)"), {"n": n})

    try:
        yield transaction, nested, write
    finally:
        await engine.dispose()


ASYNC_DRIVERS = {
    "psycopg-async": _psycopg_async,
    "asyncpg": lambda dsn: _asyncpg(dsn, pool=False),
    "asyncpg-pool": lambda dsn: _asyncpg(dsn, pool=True),
    "sqlalchemy-asyncpg": lambda dsn: _sqlalchemy_async(dsn, "asyncpg", session=False),
    "sqlalchemy-asyncpg-session": lambda dsn: _sqlalchemy_async(dsn, "asyncpg", session=True),
    "sqlalchemy-psycopg-async": lambda dsn: _sqlalchemy_async(dsn, "psycopg", session=False),
    "sqlalchemy-psycopg-async-session": lambda dsn: _sqlalchemy_async(dsn, "psycopg", session=True),
}


@pytest.fixture(params=sorted(ASYNC_DRIVERS))
async def async_driver(request: pytest.FixtureRequest, dsn: str) -> AsyncIterator[AsyncDriver]:
    async with ASYNC_DRIVERS[request.param](dsn) as driver:
        yield driver


async def test_async_rolled_back_enqueue_never_exists(
    async_driver: AsyncDriver, db: psycopg.Connection[Any]
) -> None:
    transaction, _, write = async_driver
    with contextlib.suppress(Rollback):
        async with transaction() as obj:
            await write(obj, 1)
            await pgjobs.enqueue_async(obj, Task("rolled_back"))
            raise Rollback
    assert kinds(db) == []
    assert orders(db) == []


async def test_async_enqueue_first_then_rollback_never_exists(
    async_driver: AsyncDriver, db: psycopg.Connection[Any]
) -> None:
    # The enqueue is the transaction's first statement: SQLAlchemy's lazy begin must
    # still cover it.
    transaction, _, _ = async_driver
    with contextlib.suppress(Rollback):
        async with transaction() as obj:
            await pgjobs.enqueue_many_async(obj, [Task("rolled_back"), Task("rolled_back")])
            raise Rollback
    assert kinds(db) == []


async def test_async_committed_enqueue_exists_once(
    async_driver: AsyncDriver, db: psycopg.Connection[Any]
) -> None:
    transaction, _, write = async_driver
    async with transaction() as obj:
        await write(obj, 1)
        job_id = await pgjobs.enqueue_async(obj, Task("committed", {"s": NASTY}, delay=5))
    assert kinds(db) == ["committed"]
    assert orders(db) == [1]
    assert db.execute("select id, payload, state from pgjobs.jobs").fetchall() == [
        (job_id, {"s": NASTY}, "scheduled")
    ]


async def test_async_savepoint_rolled_back_leaves_no_job(
    async_driver: AsyncDriver, db: psycopg.Connection[Any]
) -> None:
    transaction, nested, write = async_driver
    async with transaction() as obj:
        await write(obj, 1)
        await pgjobs.enqueue_async(obj, Task("outer"))
        async with nested(obj) as inner:
            await write(inner, 2)
            await pgjobs.enqueue_async(inner, Task("inner"))
    assert kinds(db) == ["outer"]
    assert orders(db) == [1]


async def test_async_enqueue_many_and_unique(
    async_driver: AsyncDriver, db: psycopg.Connection[Any]
) -> None:
    transaction, _, _ = async_driver
    async with transaction() as obj:
        ids = await pgjobs.enqueue_many_async(
            obj,
            [Task(s, {"s": s}, delay=60 if i % 2 else None) for i, s in enumerate(NASTY)]
            + [Task("u", unique_key="k"), Task("u", unique_key="k")],
        )
        first = await pgjobs.enqueue_unique_async(obj, Task("u", unique_key="k2", unique_for=60))
        again = await pgjobs.enqueue_unique_async(obj, Task("u", unique_key="k2"))
    assert ids[-1] == ids[-2]
    assert len(set(ids)) == len(ids) - 1
    assert (again.id, again.duplicate, first.duplicate) == (first.id, True, False)
    rows = db.execute(
        "select id, kind, payload, state from pgjobs.jobs where id = any(%s) order by id", (ids,)
    ).fetchall()
    assert rows[: len(NASTY)] == [
        (i, s, {"s": s}, "scheduled" if n % 2 else "available")
        for n, (i, s) in enumerate(zip(ids, NASTY, strict=False))
    ]


async def test_async_bad_task_sends_nothing(
    async_driver: AsyncDriver, db: psycopg.Connection[Any]
) -> None:
    transaction, _, _ = async_driver
    async with transaction() as obj:
        with pytest.raises(InvalidTaskError):
            await pgjobs.enqueue_async(obj, Task("bad", {"x": object()}))
        with pytest.raises(InvalidTaskError):
            await pgjobs.enqueue_unique_async(obj, Task("no_key"))
        await pgjobs.enqueue_async(obj, Task("still_usable"))
    assert kinds(db) == ["still_usable"]


async def test_async_client_accepts_the_driver(
    async_driver: AsyncDriver, db: psycopg.Connection[Any], dsn: str
) -> None:
    transaction, _, _ = async_driver
    async with pgjobs.AsyncClient(dsn) as client, transaction() as obj:
        job_id = await client.enqueue(Task("committed"), conn=obj)
        job = await client.get(job_id, conn=obj)
        assert job is not None
        assert job.kind == "committed"
    assert kinds(db) == ["committed"]


# --- wrong objects, missing schema -----------------------------------------------------------


async def test_the_wrong_face_names_the_twin(dsn: str) -> None:
    raw = psycopg2.connect(dsn)
    try:
        with pytest.raises(TypeError, match=r"enqueue_async\(\) takes .*psycopg2.*enqueue\(\)"):
            await pgjobs.enqueue_async(raw, Task("k"))
    finally:
        raw.close()
    conn = await asyncpg.connect(**_asyncpg_args(dsn))
    try:
        with pytest.raises(TypeError, match=r"asyncpg.*use pgjobs.enqueue_async\(\)"):
            pgjobs.enqueue(conn, Task("k"))
        assert await conn.fetchval("select count(*) from pgjobs.jobs") == 0
    finally:
        await conn.close()


def test_an_unknown_object_is_told_what_is_accepted() -> None:
    with pytest.raises(TypeError, match=r"takes a psycopg.Connection .*psycopg2.*Django"):
        pgjobs.enqueue(object(), Task("k"))


async def test_a_missing_schema_is_a_schema_error(empty_dsn: str) -> None:
    raw = psycopg2.connect(empty_dsn)
    try:
        with pytest.raises(SchemaError, match="pgjobs migrate"):
            pgjobs.enqueue(raw, Task("k"))
    finally:
        raw.close()
    conn = await asyncpg.connect(**_asyncpg_args(empty_dsn))
    try:
        with pytest.raises(SchemaError, match="pgjobs migrate"):
            await pgjobs.enqueue_async(conn, Task("k"))
    finally:
        await conn.close()


# --- tracing through every driver ----------------------------------------------------


@pytest.fixture
def traced() -> Iterator[None]:
    from opentelemetry.sdk.trace import TracerProvider

    from pgjobs import tracing

    tracing.instrument(TracerProvider())
    yield
    tracing.uninstrument()


def traceparents(db: psycopg.Connection[Any]) -> list[bool]:
    rows = db.execute("select trace_context from pgjobs.jobs order by id").fetchall()
    return ["traceparent" in (context or {}) for (context,) in rows]


def test_sync_traced_enqueues_store_the_trace_context(
    sync_driver: SyncDriver, db: psycopg.Connection[Any], traced: None
) -> None:
    transaction, _, _ = sync_driver
    with transaction() as obj:
        pgjobs.enqueue(obj, Task("one"))
        pgjobs.enqueue_many(obj, [Task("many"), Task("many")])
        pgjobs.enqueue_unique(obj, Task("unique", unique_key="k"))
    assert traceparents(db) == [True] * 4


async def test_async_traced_enqueues_store_the_trace_context(
    async_driver: AsyncDriver, db: psycopg.Connection[Any], traced: None
) -> None:
    transaction, _, _ = async_driver
    async with transaction() as obj:
        await pgjobs.enqueue_async(obj, Task("one"))
        await pgjobs.enqueue_many_async(obj, [Task("many"), Task("many")])
        await pgjobs.enqueue_unique_async(obj, Task("unique", unique_key="k"))
    assert traceparents(db) == [True] * 4
