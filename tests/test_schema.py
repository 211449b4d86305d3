"""The declared schema (migrations/schema.sql) and the one the migrations build agree.

Both are built side by side in one database, under two schema names, and compared
object by object through the catalog (the same query on PostgreSQL 15 and 18, where
pg_dump of the embedded server may be missing): relations and their options, columns in
order with types, defaults and comments, types and domains, constraints, indexes,
triggers, functions (their whole definition), views, sequences, owners and privileges.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgjobs import migrate

#: One query per kind of object, over the objects of schema %(s)s. The version table is
#: alembic's, not the declared schema's. A constraint's validity is left out: whether a
#: rule was checked against old rows is the data's history, not the schema.
CATALOG = {
    "relations": """
        select c.relname, c.relkind, c.relpersistence, c.reloptions::text, c.relacl::text,
               pg_get_userbyid(c.relowner), c.relrowsecurity,
               obj_description(c.oid, 'pg_class')
        from pg_class c where c.relnamespace = %(s)s::regnamespace
          and c.relname not like 'pgjobs\\_version%%'""",
    "columns": """
        select c.relname, rank() over (partition by c.oid order by a.attnum), a.attname,
               format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity,
               a.attgenerated, a.attstorage, a.attcollation::regcollation::text,
               pg_get_expr(d.adbin, d.adrelid), a.attacl::text,
               col_description(c.oid, a.attnum)
        from pg_class c
        join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
        left join pg_attrdef d on d.adrelid = c.oid and d.adnum = a.attnum
        where c.relnamespace = %(s)s::regnamespace and c.relname not like 'pgjobs\\_version%%'""",
    "types": """
        select t.typname, t.typtype, format_type(t.typbasetype, t.typtypmod), t.typnotnull,
               t.typdefault, t.typacl::text, pg_get_userbyid(t.typowner),
               obj_description(t.oid, 'pg_type'),
               array(select e.enumlabel::text from pg_enum e where e.enumtypid = t.oid
                     order by e.enumsortorder)::text
        from pg_type t where t.typnamespace = %(s)s::regnamespace
          and (t.typtype in ('d', 'e', 'm', 'r') or t.typtype = 'b' and t.typcategory <> 'A')""",
    "constraints": """
        select coalesce(nullif(c.conrelid, 0)::regclass::text, c.contypid::regtype::text),
               c.conname, c.contype,
               regexp_replace(pg_get_constraintdef(c.oid), ' NOT VALID$', ''),
               obj_description(c.oid, 'pg_constraint')
        from pg_constraint c where c.connamespace = %(s)s::regnamespace
          and c.conname not like 'pgjobs\\_version%%'""",
    "indexes": """
        select i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        from pg_index i join pg_class c on c.oid = i.indexrelid
        where c.relnamespace = %(s)s::regnamespace and c.relname not like 'pgjobs\\_version%%'""",
    "triggers": """
        select t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled,
               obj_description(t.oid, 'pg_trigger')
        from pg_trigger t join pg_class c on c.oid = t.tgrelid
        where c.relnamespace = %(s)s::regnamespace and not t.tgisinternal""",
    "functions": """
        select p.oid::regprocedure::text, p.prokind,
               case when p.prokind in ('f', 'p') then pg_get_functiondef(p.oid)
                    else p.prosrc end,
               p.proacl::text, pg_get_userbyid(p.proowner), obj_description(p.oid, 'pg_proc')
        from pg_proc p where p.pronamespace = %(s)s::regnamespace""",
    "views": """
        select c.relname, pg_get_viewdef(c.oid) from pg_class c
        where c.relnamespace = %(s)s::regnamespace and c.relkind in ('v', 'm')""",
    "sequences": """
        select s.seqrelid::regclass::text, format_type(s.seqtypid, null), s.seqstart,
               s.seqincrement, s.seqmax, s.seqmin, s.seqcache, s.seqcycle
        from pg_sequence s join pg_class c on c.oid = s.seqrelid
        where c.relnamespace = %(s)s::regnamespace""",
}

MIGRATED, DECLARED = "s_migrated", "s_declared"


def catalog(conn: psycopg.Connection[Any], schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every object of *schema* as rows of text, with the schema's name as ``{schema}``
    (in names, definitions and the default role names alike)."""
    name = re.compile(rf"\b{schema}(?![a-z0-9])")
    found = {}
    for kind, query in CATALOG.items():
        rows = conn.execute(query.encode(), {"s": schema}).fetchall()
        found[kind] = sorted(
            tuple(name.sub("{schema}", v) if isinstance(v, str) else v for v in row) for row in rows
        )
    return found


def differences(a: dict[str, list[Any]], b: dict[str, list[Any]]) -> dict[str, Any]:
    """Per kind of object, the rows only in *a* and the rows only in *b*."""
    return {
        kind: {"only here": sorted(set(a[kind]) - set(b[kind]), key=str),
               "only there": sorted(set(b[kind]) - set(a[kind]), key=str)}
        for kind in a if a[kind] != b[kind]
    }  # fmt: skip


def declare(conn: psycopg.Connection[Any], schema: str, edit: Callable[[str], str] = str) -> None:
    """Build *schema* from schema.sql (after *edit*), the way a reader without alembic would."""
    conn.execute(f"create schema {schema}".encode())
    conn.execute(edit(migrate.read_sql("schema.sql", schema)).encode())


@pytest.fixture
def migrated(empty_dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    migrate.upgrade(empty_dsn, schema=MIGRATED)
    with psycopg.connect(empty_dsn) as conn:
        return catalog(conn, MIGRATED)


def test_schema_sql_is_what_the_migrations_build(empty_dsn: str, migrated: Any) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        declare(conn, DECLARED)
        declared = catalog(conn, DECLARED)
    assert all(declared[kind] for kind in ("functions", "columns", "views"))
    assert differences(declared, migrated) == {}


#: Changes to schema.sql that a migration would not make, one per kind of object.
EDITS = {
    "a column": ("    weights      int4[]\n", "    weights      int8[]\n"),
    "a default": ("DEFAULT '30 minutes'", "DEFAULT '31 minutes'"),
    "a comment": ("'attempts started so far'", "'attempts so far'"),
    "a function body": ("round(s * 1000) || ' ms'", "round(s * 1000) || ' msec'"),
    "a SQL function": ("RETURN now() - interval '60 seconds'", "RETURN now() - interval '61 s'"),
    "a domain's rule": ("VALUE >= 0 AND VALUE <= 2147483646", "VALUE >= 0"),
    "an index": ("WHERE state <> 'available'", "WHERE state <> 'running'"),
    "a privilege": ("FROM PUBLIC;", "FROM PUBLIC;\nGRANT SELECT ON {schema}.jobs TO PUBLIC;"),
}


@pytest.mark.parametrize("edit", EDITS)
def test_a_change_to_schema_sql_alone_is_found(empty_dsn: str, migrated: Any, edit: str) -> None:
    """The comparison sees each kind of change: schema.sql cannot drift from the
    migrations unnoticed."""
    old, new = EDITS[edit]
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        declare(conn, DECLARED, lambda sql: sql.replace(old, new.replace("{schema}", DECLARED)))
        declared = catalog(conn, DECLARED)
    assert differences(declared, migrated) != {}


def test_only_the_newest_revision_runs_schema_sql() -> None:
    """schema.sql is what the newest revision leaves; an older revision that still ran it
    would build the newest schema and then have the revisions after it applied again."""
    versions = migrate.migrations_dir() / "versions"
    running = sorted(
        script.name
        for script in versions.glob("*.py")
        if '"schema.sql"' in script.read_text(encoding="utf-8")
    )
    head = [s.name for s in versions.glob(f"{migrate.head_revision()}_*.py")]
    assert running in ([], head), (
        f"{running} run schema.sql but the newest revision is {head}: freeze the older one "
        "(see the head of migrations/schema.sql)"
    )
