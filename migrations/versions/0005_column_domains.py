"""The jobs table's rules move from CHECK constraints to domains: same rules, cheaper inserts.

PostgreSQL prepares a table's CHECK constraints afresh for every statement that writes
it: each is read back from its stored node text and planned again before the first row
is checked. For a one-row enqueue that fixed cost is a large part of the statement:
with 8 concurrent enqueuers, pgbench inserts 14-17 % fewer rows per second into the jobs
table with its five CHECK constraints than into a copy without them. A domain's
constraints are planned once per connection and cached, so the same five rules as
domains cost about a third of that (``python -m bench.insert_cost`` measures both).

Each checked column gets its own domain, named after it, so that a violation still
says which column broke which rule (``value for domain pgjobs.job_kind violates check
constraint "job_kind_check"``); the SQLSTATE stays 23514, check_violation.

Upgrading a populated table: the columns change type without rewriting it (the
domains get their constraints only after the columns are theirs, and adding them reads
the table once per domain to validate it). PostgreSQL will not change a column's type
under a view or a SQL-body function that reads it, so those (``queue_summary``,
``running_jobs``, ``failed_jobs``, ``queue_known``) are dropped and created again
from their own definitions, with their owners, grants and comments. A view of yours
built on one of them makes the migration fail (nothing changes): drop it, migrate,
create it again. The migration holds an ACCESS EXCLUSIVE lock on the jobs table until
it commits, so enqueues and workers wait for it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from pgjobs.migrate import run_sql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: (column, base type, domain constraint) for every column whose rules move.
RULES = (
    ("kind", "text", "length(VALUE) BETWEEN 1 AND 255 AND btrim(VALUE) <> ''"),
    ("queue", "text", "length(VALUE) BETWEEN 1 AND 255 AND btrim(VALUE) <> ''"),
    ("max_retry", "integer", "VALUE >= 0"),
    ("timeout", "interval", "VALUE > interval '0'"),
    ("attempt", "integer", "VALUE >= 0"),
)

# Keep, then drop, every view and function that depends on one of those columns of
# jobs. The definitions come from the catalog, so whatever an earlier revision (or an
# operator's CREATE OR REPLACE) made of them is what comes back.
SAVE_AND_DROP_DEPENDENTS = r"""
CREATE TEMPORARY TABLE pgjobs_dependents ON COMMIT DROP AS
WITH dependent AS (
    SELECT DISTINCT coalesce(r.ev_class, d.objid) AS oid,
           CASE WHEN d.classid = 'pg_rewrite'::regclass THEN 'view' ELSE 'function' END
               AS kind
    FROM pg_depend d
    JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
    LEFT JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
    WHERE d.refobjid = '{schema}.jobs'::regclass
      AND d.classid IN ('pg_rewrite'::regclass, 'pg_proc'::regclass)
      AND a.attname IN ({columns})
)
SELECT dependent.kind,
       dependent.oid,
       CASE dependent.kind
           WHEN 'view' THEN dependent.oid::regclass::text
           ELSE dependent.oid::regprocedure::text
       END AS name,
       CASE dependent.kind
           WHEN 'view' THEN format('CREATE VIEW %s%s AS %s', dependent.oid::regclass,
                                   ' WITH (' || array_to_string(c.reloptions, ', ') || ')',
                                   pg_get_viewdef(dependent.oid))
           ELSE pg_get_functiondef(dependent.oid)
       END AS definition,
       CASE dependent.kind
           WHEN 'view' THEN pg_get_userbyid(c.relowner)
           ELSE pg_get_userbyid(p.proowner)
       END AS owner,
       CASE dependent.kind WHEN 'view' THEN c.relacl ELSE p.proacl END AS acl,
       (SELECT coalesce(array_agg(ds.objsubid ORDER BY ds.objsubid), '{}')
        FROM pg_description ds WHERE ds.objoid = dependent.oid) AS comment_columns,
       (SELECT coalesce(array_agg(ds.description ORDER BY ds.objsubid), '{}')
        FROM pg_description ds WHERE ds.objoid = dependent.oid) AS comments
FROM dependent
LEFT JOIN pg_class c ON dependent.kind = 'view' AND c.oid = dependent.oid
LEFT JOIN pg_proc p ON dependent.kind = 'function' AND p.oid = dependent.oid;

DO $$
DECLARE
    dependent record;
BEGIN
    -- Newest first, so that nothing is dropped before what was built on it.
    FOR dependent IN SELECT * FROM pgjobs_dependents ORDER BY oid DESC LOOP
        EXECUTE format('DROP %s %s', dependent.kind, dependent.name);
    END LOOP;
END
$$;
"""

RECREATE_DEPENDENTS = r"""
DO $$
DECLARE
    dependent record;
    grant_ record;
    i integer;
BEGIN
    FOR dependent IN SELECT * FROM pgjobs_dependents ORDER BY oid LOOP
        EXECUTE dependent.definition;
        EXECUTE format('ALTER %s %s OWNER TO %I', dependent.kind, dependent.name,
                       dependent.owner);
        IF dependent.acl IS NOT NULL THEN
            -- A function starts out executable by PUBLIC, a view by its owner only:
            -- start from nothing, then grant exactly what was granted before.
            EXECUTE format('REVOKE ALL ON %s %s FROM PUBLIC',
                           CASE dependent.kind WHEN 'view' THEN 'TABLE' ELSE 'FUNCTION' END,
                           dependent.name);
            FOR grant_ IN SELECT * FROM aclexplode(dependent.acl) LOOP
                EXECUTE format('GRANT %s ON %s %s TO %s%s', grant_.privilege_type,
                               CASE dependent.kind WHEN 'view' THEN 'TABLE' ELSE 'FUNCTION' END,
                               dependent.name,
                               CASE grant_.grantee WHEN 0 THEN 'PUBLIC'
                                    ELSE quote_ident(pg_get_userbyid(grant_.grantee)) END,
                               CASE WHEN grant_.is_grantable THEN ' WITH GRANT OPTION'
                                    ELSE '' END);
            END LOOP;
        END IF;
        FOR i IN 1 .. coalesce(array_length(dependent.comments, 1), 0) LOOP
            IF dependent.comment_columns[i] = 0 THEN
                EXECUTE format('COMMENT ON %s %s IS %L', dependent.kind, dependent.name,
                               dependent.comments[i]);
            ELSE
                EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', dependent.name,
                               (SELECT a.attname FROM pg_attribute a
                                WHERE a.attrelid = dependent.name::regclass
                                  AND a.attnum = dependent.comment_columns[i]),
                               dependent.comments[i]);
            END IF;
        END LOOP;
    END LOOP;
END
$$;

DROP TABLE pgjobs_dependents;
"""


def _domains_sql() -> str:
    create = "\n".join(
        f"CREATE DOMAIN {{schema}}.job_{column} AS {base};" for column, base, _ in RULES
    )
    alter = ",\n".join(
        [f"    DROP CONSTRAINT jobs_{column}_check" for column, _, _ in RULES]
        + [f"    ALTER COLUMN {column} TYPE {{schema}}.job_{column}" for column, _, _ in RULES]
    )
    constrain = "\n".join(
        f"ALTER DOMAIN {{schema}}.job_{column} ADD CONSTRAINT job_{column}_check CHECK ({rule});"
        for column, _, rule in RULES
    )
    return f"{create}\n\nALTER TABLE {{schema}}.jobs\n{alter};\n\n{constrain}\n"


def _checks_sql() -> str:
    alter = ",\n".join(
        [f"    ALTER COLUMN {column} TYPE {base}" for column, base, _ in RULES]
        + [
            f"    ADD CONSTRAINT jobs_{column}_check CHECK ({rule.replace('VALUE', column)})"
            for column, _, rule in RULES
        ]
    )
    drop = "\n".join(f"DROP DOMAIN {{schema}}.job_{column};" for column, _, _ in RULES)
    return f"ALTER TABLE {{schema}}.jobs\n{alter};\n\n{drop}\n"


def _around_dependents(change: str) -> str:
    columns = ", ".join(f"'{column}'" for column, _, _ in RULES)
    return SAVE_AND_DROP_DEPENDENTS.replace("{columns}", columns) + change + RECREATE_DEPENDENTS


def upgrade() -> None:
    run_sql(_around_dependents(_domains_sql()))


def downgrade() -> None:
    run_sql(_around_dependents(_checks_sql()))
