"""An application with its own alembic environment and pgjobs' migrate share a database
without disturbing each other: separate version tables (``public.alembic_version``,
``pgjobs.pgjobs_version``), and the application's autogenerate does not see pgjobs'
tables (docs/howto-integrations.md, "alembic")."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from pgjobs import migrate
from tests.urls import database_url

#: The application's models.
METADATA = sqlalchemy.MetaData()
sqlalchemy.Table(
    "app_orders",
    METADATA,
    sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True),
    sqlalchemy.Column("email", sqlalchemy.Text),
)
sqlalchemy.Table(
    "app_customers", METADATA, sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True)
)

#: The application's env.py, as alembic's template writes it (online only).
ENV = """
from alembic import context
from sqlalchemy import create_engine

from tests.test_alembic_alongside import METADATA

engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=METADATA)
    with context.begin_transaction():
        context.run_migrations()
"""

REVISION = """
from alembic import op
import sqlalchemy as sa

revision = {revision!r}
down_revision = {down!r}

def upgrade():
    op.create_table({table!r}, {columns})

def downgrade():
    op.drop_table({table!r})
"""


def _app(tmp_path: Path, dsn: str) -> Config:
    """An application's alembic environment: two revisions, two tables."""
    (tmp_path / "versions").mkdir()
    (tmp_path / "env.py").write_text(ENV)
    (tmp_path / "script.py.mako").write_text("")
    for revision, down, table, columns in [
        ("a1", None, "app_orders", "sa.Column('id', sa.Integer, primary_key=True), "
         "sa.Column('email', sa.Text)"),
        ("a2", "a1", "app_customers", "sa.Column('id', sa.Integer, primary_key=True)"),
    ]:  # fmt: skip
        text = REVISION.format(revision=revision, down=down, table=table, columns=columns)
        (tmp_path / "versions" / f"{revision}.py").write_text(textwrap.dedent(text))
    config = Config()
    config.set_main_option("script_location", str(tmp_path))
    # configparser reads % as interpolation: the URL's escapes are doubled.
    config.set_main_option(
        "sqlalchemy.url", database_url(dsn, "postgresql+psycopg").replace("%", "%%")
    )
    return config


def _versions(dsn: str) -> tuple[Any, Any]:
    with psycopg.connect(dsn) as conn:
        app = conn.execute(
            "select version_num from public.alembic_version"
            " where to_regclass('public.alembic_version') is not null"
        ).fetchall()
        return [v for (v,) in app], migrate.current_revision(conn)


def _tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "select schemaname || '.' || tablename from pg_tables"
            " where schemaname in ('public', 'pgjobs')"
        )
        return {name for (name,) in rows}


def test_an_app_alembic_env_and_pgjobs_migrate_share_a_database(
    empty_dsn: str, tmp_path: Path
) -> None:
    app = _app(tmp_path, empty_dsn)
    head = migrate.head_revision()
    migrate.upgrade(empty_dsn)
    command.upgrade(app, "head")
    assert _versions(empty_dsn) == (["a2"], head)
    assert {"public.app_orders", "public.app_customers", "pgjobs.jobs"} <= _tables(empty_dsn)

    # The application's autogenerate compares its own schema only: nothing of pgjobs'.
    engine = sqlalchemy.create_engine(database_url(empty_dsn, "postgresql+psycopg"))
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), METADATA) == []
    engine.dispose()

    # Each side's downgrade leaves the other alone.
    command.downgrade(app, "base")
    assert _versions(empty_dsn) == ([], head)
    assert "pgjobs.jobs" in _tables(empty_dsn)
    command.upgrade(app, "head")
    migrate.downgrade(empty_dsn, "base")
    assert _versions(empty_dsn) == (["a2"], None)
    assert {"public.app_orders", "public.app_customers"} <= _tables(empty_dsn)
    migrate.upgrade(empty_dsn)
    assert _versions(empty_dsn) == (["a2"], head)


def test_migrate_sql_still_prints_the_ddl() -> None:
    ddl = migrate.upgrade(None, sql=True)
    assert ddl is not None
    assert "create table" in ddl.lower()
    assert "pgjobs_version" in ddl
