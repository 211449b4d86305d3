"""Errors a new user meets first, each saying what to do: an unreachable database, a schema
never migrated, a worker started before its database, a connection of the wrong face."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import pgjobs
from pgjobs import admin, testing
from tests.apps.procs import REPO

Task = pgjobs.Task
WORKER = [sys.executable, "-m", "pgjobs", "worker"]


def closed_port() -> int:
    """A local port nothing listens on (bound once to pick it, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def unreachable_dsn() -> str:
    return f"postgresql://nobody@127.0.0.1:{closed_port()}/nothing"


# --- a client on an unreachable database ------------------------------------------------


def test_client_on_an_unreachable_database_fails_with_the_cause(unreachable_dsn: str) -> None:
    """Not a PoolTimeout after the pool's 30 s: libpq's own reason, at once."""
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match="refused"):
        pgjobs.Client(unreachable_dsn).enqueue(Task("k"))
    assert time.monotonic() - started < 10


async def test_async_client_on_an_unreachable_database_fails_with_the_cause(
    unreachable_dsn: str,
) -> None:
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match="refused"):
        await pgjobs.AsyncClient(unreachable_dsn).enqueue(Task("k"))
    assert time.monotonic() - started < 10


# --- a schema never migrated ------------------------------------------------------------

SYNC_CALLS: dict[str, Callable[[Any], Any]] = {
    "enqueue": lambda conn: pgjobs.enqueue(conn, Task("k")),
    "enqueue_many": lambda conn: pgjobs.enqueue_many(conn, [Task("k")]),
    "enqueue_unique": lambda conn: pgjobs.enqueue_unique(conn, Task("k", unique_key="u")),
    "Client.enqueue": lambda conn: pgjobs.Client("unused").enqueue(Task("k"), conn=conn),
    "admin.queue_summary": admin.queue_summary,
    "admin.why": lambda conn: admin.why(conn, 1),
    "testing.enqueued": lambda conn: testing.enqueued(conn, "k"),
    "testing.drain": lambda conn: testing.drain(pgjobs.Server(), conn),
}

ASYNC_CALLS: dict[str, Callable[[Any], Awaitable[Any]]] = {
    "enqueue_async": lambda conn: pgjobs.enqueue_async(conn, Task("k")),
    "enqueue_many_async": lambda conn: pgjobs.enqueue_many_async(conn, [Task("k")]),
    "enqueue_unique_async": lambda conn: pgjobs.enqueue_unique_async(
        conn, Task("k", unique_key="u")
    ),
    "AsyncClient.enqueue": lambda conn: pgjobs.AsyncClient("unused").enqueue(Task("k"), conn=conn),
    "admin.queue_summary_async": admin.queue_summary_async,
    "admin.why_async": lambda conn: admin.why_async(conn, 1),
    "testing.enqueued_async": lambda conn: testing.enqueued_async(conn, "k"),
    "testing.drain_async": lambda conn: testing.drain_async(pgjobs.Server(), conn),
}


@pytest.mark.parametrize("call", SYNC_CALLS.values(), ids=SYNC_CALLS.keys())
def test_an_unmigrated_database_says_to_migrate(empty_dsn: str, call: Callable[[Any], Any]) -> None:
    migrate = r"run `python -m pgjobs migrate`$"
    with (
        psycopg.connect(empty_dsn) as conn,
        pytest.raises(pgjobs.SchemaError, match=migrate) as raised,
    ):
        call(conn)
    assert isinstance(raised.value.__cause__, psycopg.ProgrammingError)  # what Postgres said


@pytest.mark.parametrize("call", ASYNC_CALLS.values(), ids=ASYNC_CALLS.keys())
async def test_an_unmigrated_database_says_to_migrate_async(
    empty_dsn: str, call: Callable[[Any], Awaitable[Any]]
) -> None:
    async with await psycopg.AsyncConnection.connect(empty_dsn) as conn:
        with pytest.raises(pgjobs.SchemaError, match=r"run `python -m pgjobs migrate`$"):
            await call(conn)


def test_the_migrate_hint_names_a_schema_other_than_the_default(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        with pytest.raises(pgjobs.SchemaError, match=r"migrate --schema jobs_alt`$"):
            pgjobs.enqueue(conn, Task("k"), schema="jobs_alt")
        conn.rollback()
    with pgjobs.Client(dsn, schema="jobs_alt") as client, pytest.raises(pgjobs.SchemaError):
        client.enqueue(Task("k"))


# --- a connection of the wrong face -------------------------------------------------------

SYNC_TWINS = {
    "enqueue": "pgjobs.enqueue_async()",
    "enqueue_many": "pgjobs.enqueue_many_async()",
    "enqueue_unique": "pgjobs.enqueue_unique_async()",
    "Client.enqueue": "pgjobs.AsyncClient.enqueue()",
    "admin.queue_summary": "pgjobs.admin.queue_summary_async()",
    "admin.why": "pgjobs.admin.why_async()",
    "testing.enqueued": "pgjobs.testing.enqueued_async()",
    "testing.drain": "pgjobs.testing.drain_async()",
}

ASYNC_TWINS = {
    "enqueue_async": "pgjobs.enqueue()",
    "enqueue_many_async": "pgjobs.enqueue_many()",
    "enqueue_unique_async": "pgjobs.enqueue_unique()",
    "AsyncClient.enqueue": "pgjobs.Client.enqueue()",
    "admin.queue_summary_async": "pgjobs.admin.queue_summary()",
    "admin.why_async": "pgjobs.admin.why()",
    "testing.enqueued_async": "pgjobs.testing.enqueued()",
    "testing.drain_async": "pgjobs.testing.drain()",
}


@pytest.mark.parametrize("name", SYNC_CALLS)
async def test_a_sync_function_refuses_an_async_connection(
    aconn: psycopg.AsyncConnection[Any], name: str
) -> None:
    with pytest.raises(TypeError, match="AsyncConnection") as raised:
        SYNC_CALLS[name](aconn)
    assert SYNC_TWINS[name] in str(raised.value)
    # Nothing was sent: the connection is still usable.
    assert await (await aconn.execute("select 1")).fetchone() == (1,)


@pytest.mark.parametrize("name", ASYNC_CALLS)
async def test_an_async_function_refuses_a_sync_connection(
    conn: psycopg.Connection[Any], name: str
) -> None:
    with pytest.raises(TypeError, match=r"takes a psycopg\.AsyncConnection") as raised:
        await ASYNC_CALLS[name](conn)
    assert ASYNC_TWINS[name] in str(raised.value)
    assert conn.execute("select count(*) from pgjobs.jobs").fetchone() == (0,)


# --- a worker started before its database -----------------------------------------------------


class LateDatabase:
    """A local port that refuses connections until :meth:`open`, then forwards them to the
    test server: a database that comes up after its worker, as under docker compose."""

    def __init__(self, dsn: str) -> None:
        target = conninfo_to_dict(dsn)
        self.target = (str(target.get("host") or "127.0.0.1"), int(target.get("port") or 5432))
        self.port = closed_port()
        self.dsn = make_conninfo(dsn, host="127.0.0.1", port=str(self.port))
        self._server: asyncio.Server | None = None

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self.target)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pump(reader, server_writer), pump(server_reader, writer))


@pytest.fixture
async def late_database(dsn: str) -> AsyncIterator[LateDatabase]:
    if str(conninfo_to_dict(dsn).get("host", "")).startswith("/"):
        pytest.skip("the test server is reached through a Unix socket")
    database = LateDatabase(dsn)
    yield database
    await database.close()


async def test_a_worker_started_before_its_database_waits_for_it(
    late_database: LateDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    server = pgjobs.Server(pgjobs.Config(dsn=late_database.dsn, wait_for_db=60))
    with caplog.at_level(logging.WARNING, "pgjobs.worker"):
        starting = asyncio.ensure_future(server.start())
        deadline = time.monotonic() + 30
        while "cannot reach the database yet" not in caplog.text:
            assert not starting.done(), starting.exception()
            assert time.monotonic() < deadline, "no log line about the database"
            await asyncio.sleep(0.05)
        await late_database.open()
        await asyncio.wait_for(starting, timeout=30)
    try:
        assert server.worker is not None
        assert "refused" in caplog.text
    finally:
        await server.stop(timeout=1.0)


async def test_a_worker_gives_up_after_wait_for_db(
    unreachable_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = pgjobs.Server(pgjobs.Config(dsn=unreachable_dsn, wait_for_db=0.5))
    with (
        caplog.at_level(logging.WARNING, "pgjobs.worker"),
        pytest.raises(psycopg.OperationalError, match="refused"),
    ):
        await server.start()
    assert "cannot reach the database yet" in caplog.text


async def test_a_server_that_refuses_the_login_is_not_waited_for(dsn: str) -> None:
    missing = make_conninfo(dsn, dbname="pgjobs_no_such_database")
    server = pgjobs.Server(pgjobs.Config(dsn=missing, wait_for_db=600))
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        await asyncio.wait_for(server.start(), timeout=60)


@pytest.mark.slow
def test_the_worker_command_waits_as_told(unreachable_dsn: str) -> None:
    result = subprocess.run(
        [*WORKER, "tests.apps.jobs:server", "--dsn", unreachable_dsn, "--wait-for-db", "0.5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "WARNING pgjobs.worker: cannot reach the database yet" in lines[0]
    assert lines[-1].startswith("pgjobs: error: cannot reach the database:")
