"""Alembic environment for pgjobs' own schema.

pgjobs keeps its migration history in ``<schema>.pgjobs_version``, never in the host
application's ``alembic_version``, so an application's own alembic history and pgjobs'
never see each other. Migrations are raw SQL; the runner is :mod:`pgjobs.migrate`.
"""

from __future__ import annotations

from alembic import context

from pgjobs.migrate import LOCK_KEY, VERSION_TABLE, connect_engine

config = context.config
schema: str = config.attributes["schema"]
options = {
    "version_table": VERSION_TABLE,
    "version_table_schema": schema,
    "transactional_ddl": True,
    "transaction_per_migration": False,
}


def _prepare() -> None:
    # The version table lives in the schema, so the schema must exist before alembic
    # creates that table. The advisory lock makes concurrent `migrate` runs wait in turn.
    context.execute(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")
    context.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")


if context.is_offline_mode():
    context.configure(dialect_name="postgresql", as_sql=True, literal_binds=True, **options)
    with context.begin_transaction():
        _prepare()
        context.run_migrations()
else:
    engine = connect_engine(config.attributes["dsn"])
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, **options)
            with context.begin_transaction():
                _prepare()
                context.run_migrations()
    finally:
        engine.dispose()
