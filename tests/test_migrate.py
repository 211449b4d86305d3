"""Migrations: up, down, up again; offline SQL; concurrency; schema names; and the schema
that migrations build checked against what the code expects of it."""

from __future__ import annotations

import re
import secrets
import threading
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import _queries, migrate
from pgjobs.errors import ConfigurationError, MigrationError, SchemaError

# The columns an operator reads in psql are part of the contract (issue 2).
CONTRACT_COLUMNS = {
    "id": "bigint",
    "queue": "text",
    "kind": "text",
    "payload": "jsonb",
    "priority": "smallint",
    "state": "job_state",
    "attempt": "integer",
    "max_retry": "integer",
    "timeout": "interval",
    "run_at": "timestamp with time zone",
    "last_error": "text",
    "created_at": "timestamp with time zone",
    "started_at": "timestamp with time zone",
    "finished_at": "timestamp with time zone",
    "trace_context": "jsonb",
}
STATES = ["scheduled", "available", "running", "completed", "failed", "cancelled"]


def objects(conn: psycopg.Connection[Any], schema: str) -> set[tuple[str, str]]:
    """Every relation, type and function in *schema*, as (kind, name)."""
    rows = conn.execute(
        """
        select 'rel:' || c.relkind::text, c.relname::text from pg_class c
        join pg_namespace n on n.oid = c.relnamespace where n.nspname = %(s)s
        union all
        select 'type:' || t.typtype::text, t.typname::text from pg_type t
        join pg_namespace n on n.oid = t.typnamespace
        where n.nspname = %(s)s and t.typtype <> 'c' and t.typname not like '\\_%%'
        union all
        select 'func', p.proname::text from pg_proc p
        join pg_namespace n on n.oid = p.pronamespace where n.nspname = %(s)s
        """,
        {"s": schema},
    ).fetchall()
    return set(rows)


def schema_signature(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
    """What a schema looks like: columns, constraints, indexes, comments, enum labels."""
    columns = conn.execute(
        """select table_name, column_name, data_type, udt_name, is_nullable, column_default
           from information_schema.columns where table_schema = %s
           order by table_name, ordinal_position""",
        (schema,),
    ).fetchall()
    constraints = conn.execute(
        """select conrelid::regclass::text, conname, pg_get_constraintdef(c.oid)
           from pg_constraint c join pg_namespace n on n.oid = c.connamespace
           where n.nspname = %s order by 1, 2""",
        (schema,),
    ).fetchall()
    indexes = conn.execute(
        "select indexname, indexdef from pg_indexes where schemaname = %s order by 1", (schema,)
    ).fetchall()
    options = conn.execute(
        """select c.relname, c.reloptions from pg_class c
           join pg_namespace n on n.oid = c.relnamespace
           where n.nspname = %s and c.relkind = 'r' order by 1""",
        (schema,),
    ).fetchall()
    labels = conn.execute(
        """select e.enumlabel from pg_enum e join pg_type t on t.oid = e.enumtypid
           join pg_namespace n on n.oid = t.typnamespace
           where n.nspname = %s order by t.typname, e.enumsortorder""",
        (schema,),
    ).fetchall()
    return {
        "columns": columns,
        "constraints": constraints,
        "indexes": indexes,
        "options": options,
        "labels": labels,
    }


def revision(dsn: str, schema: str = "pgjobs") -> str | None:
    with psycopg.connect(dsn) as conn:
        return migrate.current_revision(conn, schema)


# --- up, down, up -------------------------------------------------------------------------


def test_up_down_up(empty_dsn: str, dsn: str) -> None:
    head = migrate.head_revision()
    assert revision(empty_dsn) is None
    migrate.upgrade(empty_dsn)
    assert revision(empty_dsn) == head
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        once = schema_signature(conn, "pgjobs")
        assert ("rel:r", "jobs") in objects(conn, "pgjobs")
        pgjobs.enqueue(conn, pgjobs.Task("k"))

    migrate.downgrade(empty_dsn, "base")
    assert revision(empty_dsn) is None
    with psycopg.connect(empty_dsn) as conn:
        # Everything is gone but the schema itself and pgjobs' version table.
        left = objects(conn, "pgjobs")
        assert {name for _, name in left} <= {"pgjobs_version", "pgjobs_version_pkc"}
        assert conn.execute("select count(*) from pgjobs.pgjobs_version").fetchone() == (0,)

    migrate.upgrade(empty_dsn)
    assert revision(empty_dsn) == head
    with psycopg.connect(empty_dsn) as conn:
        assert schema_signature(conn, "pgjobs") == once
        assert conn.execute("select count(*) from pgjobs.jobs").fetchone() == (0,)
    with psycopg.connect(dsn) as template_copy:  # same as the session's template
        assert schema_signature(template_copy, "pgjobs") == once


def test_every_revision_steps_down_and_up(empty_dsn: str) -> None:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(migrate.migrations_dir()))
    chain = [rev.revision for rev in reversed(list(scripts.walk_revisions()))]
    assert chain[-1] == migrate.head_revision()
    for rev in chain:
        migrate.upgrade(empty_dsn, revision=rev)
        assert revision(empty_dsn) == rev
    for previous in [*reversed(chain[:-1]), None]:
        migrate.downgrade(empty_dsn, previous or "base")
        assert revision(empty_dsn) == previous


#: The statements that look jobs up by state and time, with the parameters they run with.
STATE_TIME_SEARCHES = {
    "job_stage_due": {"limit": 10, "now": None},
    "job_rescue_expired": {"limit": 10, "now": None},
    "job_next_lease_expiry": {"now": None},
    "job_prune_finished": {
        "state": "completed",
        "retention": 60,
        "recorded_for": 3600,
        "limit": 10,
        "now": None,
    },
    "job_count_finished": {"states": ["completed", "failed"], "older_than": 60},
}


@pytest.mark.parametrize("name", STATE_TIME_SEARCHES)
def test_searches_by_state_and_time_are_index_conditions(name: str, dsn: str) -> None:
    """Each search writes the index's time expression exactly as jobs_state_time_idx does
    (migrations/schema.sql); written any other way, the planner reads every row of the state."""
    with psycopg.connect(dsn) as conn:
        conn.execute("set enable_seqscan = off")
        conn.execute("set enable_sort = off")
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                b"explain " + _queries.queries()[name], STATE_TIME_SEARCHES[name]
            ).fetchall()
        )
    assert "jobs_state_time_idx" in plan
    condition = next(line for line in plan.splitlines() if "Index Cond: ((state" in line)
    assert "THEN lease_expires_at ELSE finished_at END" in condition


def test_purge_finished_searches_by_the_state_time_index(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        definition = conn.execute(
            "select pg_get_functiondef('pgjobs.purge_finished'::regproc)"
        ).fetchone()
    assert definition is not None
    assert (
        "WHERE j.state = ANY (states)\n          AND CASE state WHEN 'scheduled' THEN run_at "
        "WHEN 'running' THEN lease_expires_at ELSE finished_at END < now() - older_than"
    ) in definition[0]


def test_rerun_is_idempotent_and_keeps_data(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        before = schema_signature(conn, "pgjobs")
        job_id = pgjobs.enqueue(conn, pgjobs.Task("survivor"))
        conn.commit()
    migrate.upgrade(dsn)
    migrate.upgrade(dsn)
    assert revision(dsn) == migrate.head_revision()
    with psycopg.connect(dsn) as conn:
        assert schema_signature(conn, "pgjobs") == before
        assert conn.execute("select id from pgjobs.jobs").fetchall() == [(job_id,)]
        assert conn.execute("select count(*) from pgjobs.pgjobs_version").fetchone() == (1,)


def test_concurrent_migrations_take_turns(empty_dsn: str) -> None:
    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            start.wait()
            migrate.upgrade(empty_dsn)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert revision(empty_dsn) == migrate.head_revision()
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("select count(*) from pgjobs.pgjobs_version").fetchone() == (1,)


def test_host_application_alembic_history_is_untouched(empty_dsn: str) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("create table public.alembic_version (version_num varchar(32) primary key)")
        conn.execute("insert into public.alembic_version values ('app_rev_42')")
    migrate.upgrade(empty_dsn)
    migrate.downgrade(empty_dsn, "base")
    migrate.upgrade(empty_dsn)
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("select * from public.alembic_version").fetchall() == [("app_rev_42",)]
        assert conn.execute("select version_num from pgjobs.pgjobs_version").fetchall() == [
            (migrate.head_revision(),)
        ]


def test_require_current(empty_dsn: str) -> None:
    with psycopg.connect(empty_dsn) as conn, pytest.raises(SchemaError, match="not installed"):
        migrate.require_current(conn)
    migrate.upgrade(empty_dsn)
    with psycopg.connect(empty_dsn) as conn:
        migrate.require_current(conn)
        with pytest.raises(SchemaError, match="jobs_alt"):
            migrate.require_current(conn, "jobs_alt")


def test_unknown_revision_is_a_migration_error(empty_dsn: str) -> None:
    with pytest.raises(MigrationError, match="nope"):
        migrate.upgrade(empty_dsn, revision="nope")
    with pytest.raises(MigrationError, match="nope"):
        migrate.downgrade(empty_dsn, "nope")
    assert revision(empty_dsn) is None


def test_database_errors_come_out_as_psycopg_errors(empty_dsn: str) -> None:
    role = f"pgjobs_test_weak_{secrets.token_hex(4)}"  # roles are cluster-wide: unique
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute(f"create role {role} login".encode())
    try:
        weak = psycopg.conninfo.make_conninfo(empty_dsn, user=role)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            migrate.upgrade(weak)
    finally:
        with psycopg.connect(empty_dsn, autocommit=True) as conn:
            conn.execute(f"drop role {role}".encode())


# --- offline SQL --------------------------------------------------------------------------


def test_sql_output_holds_the_ddl_without_a_database() -> None:
    sql = migrate.upgrade(None, sql=True)
    assert sql is not None
    for needle in (
        "CREATE SCHEMA IF NOT EXISTS pgjobs",
        "pg_advisory_xact_lock",
        "CREATE TABLE pgjobs.pgjobs_version",
        "CREATE TYPE pgjobs.job_state",
        "CREATE TABLE pgjobs.jobs",
        "CREATE INDEX jobs_claim_idx",
        "CREATE TABLE pgjobs.workers",
        "COMMIT;",
    ):
        assert needle in sql, needle
    # The last revision recorded is the head (an INSERT, or an UPDATE after earlier steps).
    recorded = re.findall(r"pgjobs_version.*?(?:VALUES \(|version_num=)'(\w+)'", sql)
    assert recorded[-1] == migrate.head_revision()
    assert "{schema}" not in sql
    down = migrate.downgrade(None, "base", sql=True)
    assert down is not None
    assert "DROP TABLE pgjobs.jobs" in down
    assert "DROP TYPE pgjobs.job_state" in down


def test_sql_output_builds_the_same_schema(empty_dsn: str, dsn: str) -> None:
    """What a DBA runs from `migrate --sql` equals what `migrate` builds."""
    sql = migrate.upgrade(None, sql=True, schema="pgjobs")
    assert sql is not None
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute(sql.encode())
        offline = schema_signature(conn, "pgjobs")
        assert migrate.current_revision(conn) == migrate.head_revision()
    with psycopg.connect(dsn) as conn:
        assert offline == schema_signature(conn, "pgjobs")
    migrate.upgrade(empty_dsn)  # and alembic agrees it is current
    assert revision(empty_dsn) == migrate.head_revision()


# --- the schema the code expects ----------------------------------------------------------


_COPY = re.compile(r"^copy\s+(\S+)\s*\(([^)]*)\)\s+from\s+stdin$", re.IGNORECASE | re.DOTALL)


def _as_prepared(query: bytes) -> str:
    """psycopg's %(name)s and %(name)b placeholders as PREPARE's $n, %% as %.

    COPY cannot be prepared; ``copy t (a, b) from stdin`` is checked as ``select a, b
    from t``, which needs the same table and columns."""
    code = "\n".join(line for line in query.decode().splitlines() if not line.startswith("--"))
    copy = _COPY.match(code.strip())
    if copy:
        return f"select {copy.group(2)} from {copy.group(1)}"
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"${numbers.setdefault(match.group(1), len(numbers) + 1)}"

    return re.sub(r"%\((\w+)\)[sb]", number, query.decode()).replace("%%", "%")


@pytest.mark.parametrize("schema", ["pgjobs", "jobs_alt"])
def test_every_named_query_prepares_against_the_migrated_schema(
    schema: str, empty_dsn: str
) -> None:
    """Catches drift between pgjobs/sql/*.sql and migrations: a renamed column, a missing
    table or a wrong type fails here, at PREPARE, without running anything."""
    migrate.upgrade(empty_dsn, schema=schema)
    statements = _queries.queries(schema)
    assert set(statements) == _queries.names()
    assert "job_insert" in statements
    failures = {}
    with psycopg.connect(empty_dsn) as conn:
        for name, query in sorted(statements.items()):
            assert b"{schema}" not in query, name
            try:
                with conn.transaction():
                    conn.execute(f"prepare pgjobs_check_{name} as {_as_prepared(query)}".encode())
            except psycopg.Error as exc:
                failures[name] = str(exc).splitlines()[0]
    assert failures == {}


def test_jobs_table_has_the_contract_columns(conn: psycopg.Connection[Any]) -> None:
    found = dict(
        conn.execute(
            """select column_name, case when data_type = 'USER-DEFINED' then udt_name
                                        else data_type end
               from information_schema.columns
               where table_schema = 'pgjobs' and table_name = 'jobs'"""
        ).fetchall()
    )
    assert {name: found.get(name) for name in CONTRACT_COLUMNS} == CONTRACT_COLUMNS
    labels = conn.execute("select unnest(enum_range(null::pgjobs.job_state))::text").fetchall()
    assert [label for (label,) in labels] == STATES


def test_claim_path_is_served_by_a_partial_index(conn: psycopg.Connection[Any]) -> None:
    definition = conn.execute(
        "select indexdef from pg_indexes where schemaname = 'pgjobs' and indexname = %s",
        ("jobs_claim_idx",),
    ).fetchone()
    assert definition is not None
    assert "(queue, priority, id)" in definition[0]
    assert "WHERE (state = 'available'" in definition[0]


# --- schema names -------------------------------------------------------------------------


def test_another_schema_migrates_and_enqueues(empty_dsn: str) -> None:
    migrate.upgrade(empty_dsn, schema="jobs_alt")
    assert revision(empty_dsn, "jobs_alt") == migrate.head_revision()
    assert revision(empty_dsn, "pgjobs") is None  # nothing created under the default name
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("select to_regnamespace('pgjobs')").fetchone() == (None,)
        pgjobs.enqueue(conn, pgjobs.Task("alt"), schema="jobs_alt")
        pgjobs.enqueue_many(conn, [pgjobs.Task("alt_many")], schema="jobs_alt")
        conn.commit()
        with pytest.raises(SchemaError):
            pgjobs.enqueue(conn, pgjobs.Task("default_schema"))  # pgjobs.jobs does not exist
        conn.rollback()
    with pgjobs.Client(empty_dsn, schema="jobs_alt") as client:
        client.enqueue(pgjobs.Task("alt_client"))
    with psycopg.connect(empty_dsn) as conn:
        kinds = conn.execute("select kind from jobs_alt.jobs order by id").fetchall()
        assert kinds == [("alt",), ("alt_many",), ("alt_client",)]


def test_two_schemas_in_one_database_are_independent(dsn: str) -> None:
    migrate.upgrade(dsn, schema="jobs_alt")
    migrate.downgrade(dsn, "base", schema="jobs_alt")
    assert revision(dsn, "jobs_alt") is None
    assert revision(dsn, "pgjobs") == migrate.head_revision()
    with psycopg.connect(dsn) as conn:
        pgjobs.enqueue(conn, pgjobs.Task("still_works"))


def test_sql_output_for_another_schema() -> None:
    sql = migrate.upgrade(None, sql=True, schema="jobs_alt")
    assert sql is not None
    assert "CREATE TABLE jobs_alt.jobs" in sql
    assert "pgjobs.jobs" not in sql


BAD_SCHEMA_NAMES = [
    "",
    "Pgjobs",
    "1jobs",
    "jobs-alt",
    "jobs alt",
    'x"; drop schema public; --',
    "pgjobs.jobs",
    "a" * 42,
    "user",  # reserved words would need quoting
    "select",
    "pg_jobs",  # pg_ is reserved for system schemas
    "jöbs",
]


@pytest.mark.parametrize("name", BAD_SCHEMA_NAMES)
def test_invalid_schema_names_are_configuration_errors(name: str, dsn: str) -> None:
    with pytest.raises(ConfigurationError):
        _queries.check_schema_name(name)
    with pytest.raises(ConfigurationError):
        _queries.queries(name)
    with pytest.raises(ConfigurationError):
        migrate.upgrade(dsn, schema=name)
    with pytest.raises(ConfigurationError):
        migrate.upgrade(None, schema=name, sql=True)
    with pytest.raises(ConfigurationError):
        pgjobs.Client(dsn, schema=name)
    with psycopg.connect(dsn) as conn, pytest.raises(ConfigurationError):
        pgjobs.enqueue(conn, pgjobs.Task("k"), schema=name)


def test_non_string_schema_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        _queries.check_schema_name(None)  # type: ignore[arg-type]


def test_longest_schema_name_works(empty_dsn: str) -> None:
    name = "s" * 41
    migrate.upgrade(empty_dsn, schema=name)
    with psycopg.connect(empty_dsn) as conn:
        pgjobs.enqueue(conn, pgjobs.Task("k"), schema=name)
    assert _queries.wakeup_channel(name) == f"{name}_wakeup"


def test_reserved_word_list_covers_the_servers(db: psycopg.Connection[Any]) -> None:
    """Every word this server reserves is refused as a schema name (the list in
    pgjobs/_queries.py comes from Postgres 15 to 18; a newer server may add words)."""
    reserved = [
        word
        for (word,) in db.execute(
            "select word from pg_get_keywords() where catcode in ('R', 'T') order by 1"
        )
    ]
    assert reserved
    accepted = []
    for word in reserved:
        try:
            _queries.check_schema_name(word)
        except ConfigurationError:
            continue
        accepted.append(word)
    assert accepted == []


def test_head_revision_matches_alembics_own() -> None:
    from alembic.script import ScriptDirectory

    assert (
        migrate.head_revision() == ScriptDirectory(str(migrate.migrations_dir())).get_current_head()
    )
