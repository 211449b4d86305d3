"""Create and upgrade the pgjobs schema with alembic, apart from the host application's.

The migrations live in the repository's top-level ``migrations/`` and inside the wheel
at ``pgjobs/migrations``: ``schema.sql`` declares the schema as the newest revision leaves
it, and each revision in ``versions/`` runs ``.sql`` files, with a ``{schema}``
placeholder for the schema's name, under an advisory lock, recording its revision in
``<schema>.pgjobs_version``.

Typical use is the CLI (``python -m pgjobs migrate``); the functions here are the same
thing for code that sets up its own database, such as test fixtures.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

import psycopg

from ._ops import Op, Statement, run
from ._queries import DEFAULT_SCHEMA, check_schema_name, queries
from .errors import MigrationError, SchemaError

__all__ = [
    "LOCK_KEY",
    "VERSION_TABLE",
    "current_revision",
    "current_revision_op",
    "downgrade",
    "head_revision",
    "migrations_dir",
    "read_sql",
    "require_current",
    "require_current_op",
    "run_sql_file",
    "upgrade",
]

VERSION_TABLE = "pgjobs_version"
#: Advisory lock key held while migrating: 'pgjobs' read as a 48-bit number.
LOCK_KEY = int.from_bytes(b"pgjobs", "big")
# alembic keeps its running environment in module globals (alembic.context, alembic.op),
# so two migrations in one process must not overlap; between processes the advisory
# lock (see env.py) makes them take turns.
_ALEMBIC_LOCK = threading.Lock()


def migrations_dir() -> Path:
    """Where the migration scripts are: inside the installed package, or the source tree."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "migrations", here.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise MigrationError(f"pgjobs migrations not found next to {here}; is the package complete?")


def _config(schema: str, dsn: str | None, output: IO[str] | None) -> Any:
    from alembic.config import Config

    config = Config(stdout=cast(Any, output or sys.stdout))
    if output is not None:
        config.output_buffer = cast(Any, output)  # alembic writes --sql output here
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["schema"] = check_schema_name(schema)
    config.attributes["dsn"] = dsn
    return config


@contextlib.contextmanager
def _running_alembic() -> Iterator[None]:
    """Run one alembic command at a time, and make what it raises look like pgjobs.

    An unknown revision becomes :class:`MigrationError`; a database error comes out as
    psycopg's own exception (as everywhere in pgjobs) instead of SQLAlchemy's wrapper.
    """
    from alembic.util import CommandError
    from sqlalchemy.exc import DBAPIError

    try:
        with _ALEMBIC_LOCK:
            yield
    except CommandError as exc:
        raise MigrationError(str(exc)) from exc
    except DBAPIError as exc:
        if isinstance(exc.orig, psycopg.Error):
            raise exc.orig from exc
        raise


def upgrade(
    dsn: str | None,
    *,
    schema: str = DEFAULT_SCHEMA,
    revision: str = "head",
    sql: bool = False,
    output: IO[str] | None = None,
) -> str | None:
    """Upgrade the schema to *revision*; with ``sql=True`` return the DDL instead of running it.

    Running it again when the schema is current changes nothing.
    """
    from alembic import command

    buffer = io.StringIO() if sql and output is None else output
    with _running_alembic():
        command.upgrade(_config(schema, dsn, buffer), revision, sql=sql)
    return buffer.getvalue() if isinstance(buffer, io.StringIO) else None


def downgrade(
    dsn: str | None,
    revision: str,
    *,
    schema: str = DEFAULT_SCHEMA,
    sql: bool = False,
    output: IO[str] | None = None,
) -> str | None:
    """Downgrade the schema to *revision* (``"base"`` removes every pgjobs object but the
    schema and its version table)."""
    from alembic import command

    buffer = io.StringIO() if sql and output is None else output
    # Offline downgrades need a starting point: "from:to".
    target = f"head:{revision}" if sql and ":" not in revision else revision
    with _running_alembic():
        command.downgrade(_config(schema, dsn, buffer), target, sql=sql)
    return buffer.getvalue() if isinstance(buffer, io.StringIO) else None


_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*=\s*(None|['\"]([^'\"]+)['\"])", re.M)


@functools.cache
def head_revision() -> str:
    """The newest revision this version of pgjobs ships.

    Read from the scripts' ``revision`` / ``down_revision`` lines rather than through
    alembic, which costs a worker a second of imports at every start just to learn this.
    ``tests/test_migrate.py`` checks it against alembic's own answer.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (migrations_dir() / "versions").glob("*.py"):
        fields = {m[0]: m[2] for m in _REVISION_LINE.findall(script.read_text(encoding="utf-8"))}
        if fields.get("revision"):
            revisions.add(fields["revision"])
        if fields.get("down_revision"):
            parents.add(fields["down_revision"])
    heads = revisions - parents
    if len(heads) != 1:
        raise MigrationError(f"pgjobs migrations should have one head, found {sorted(heads)}")
    return heads.pop()


def current_revision_op(schema: str = DEFAULT_SCHEMA) -> Op[str | None]:
    """The revision the database is at, or None when pgjobs was never migrated there."""
    check_schema_name(schema)
    exists = yield Statement(b"select to_regclass(%s) is not null", (f"{schema}.{VERSION_TABLE}",))
    if not exists[0][0]:
        return None
    rows = yield Statement(queries(schema)["schema_version"])
    return str(rows[0][0]) if rows else None


def require_current_op(schema: str = DEFAULT_SCHEMA) -> Op[None]:
    """Raise SchemaError unless the database schema is at this version's head: what a
    worker checks as it starts, and ``python -m pgjobs migrate --check``."""
    current, head = (yield from current_revision_op(schema)), head_revision()
    if current != head:
        found = "not installed" if current is None else f"at revision {current}"
        raise SchemaError(
            f"the pgjobs schema {schema!r} is {found}, this pgjobs needs revision {head}: "
            f"run `python -m pgjobs migrate --schema {schema}`"
        )


def current_revision(conn: psycopg.Connection[Any], schema: str = DEFAULT_SCHEMA) -> str | None:
    """The revision the database is at, or None when pgjobs was never migrated there."""
    return run(conn, current_revision_op(schema))


def require_current(conn: psycopg.Connection[Any], schema: str = DEFAULT_SCHEMA) -> None:
    """Raise SchemaError unless the database schema is at this version's head."""
    run(conn, require_current_op(schema))


# --- used by the migration scripts and env.py -------------------------------------------


def connect_engine(dsn: str | None) -> Any:
    """A SQLAlchemy engine for alembic that connects with psycopg exactly as pgjobs does,
    so every DSN form libpq accepts (URLs, key=value, PG* variables) works here too."""
    import sqlalchemy

    def creator() -> Any:
        return psycopg.connect(dsn or "")

    return sqlalchemy.create_engine(
        "postgresql+psycopg://", creator=creator, poolclass=sqlalchemy.pool.NullPool
    )


def read_sql(name: str, schema: str) -> str:
    """The SQL file *name* (a path under the migrations directory), with ``{schema}``
    filled in: the only thing pgjobs ever substitutes (see :func:`check_schema_name`)."""
    path = migrations_dir() / name
    return path.read_text(encoding="utf-8").replace("{schema}", check_schema_name(schema))


def run_sql_file(name: str) -> None:
    """Run a migration's SQL file (see :func:`read_sql`) as one script.

    Online it goes to psycopg unparsed (SQLAlchemy's text() would read ``:name`` and
    ``%`` as parameters); offline (``--sql``) it is printed as is for a DBA to review.
    """
    from alembic import context, op

    sql = read_sql(name, context.config.attributes["schema"]).strip()
    if not sql:
        return
    if context.is_offline_mode():
        op.get_context().impl.static_output(sql + "\n")
    else:
        driver = op.get_bind().connection.driver_connection
        assert driver is not None
        driver.execute(sql.encode())
