"""The SQL surface as a whole: every object is documented, and nothing assumes the schema
is called ``pgjobs``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import admin, migrate
from pgjobs.cli import main
from pgjobs.cli._parse import parse_duration
from pgjobs.job import parse_id

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "sql-reference.md"

OBJECTS = """
select p.proname::text, 'function' from pg_proc p
where p.pronamespace = %(schema)s::regnamespace
union all
select c.relname::text, case c.relkind when 'v' then 'view' else 'table' end from pg_class c
where c.relnamespace = %(schema)s::regnamespace and c.relkind in ('r', 'v')
order by 1
"""


def objects(conn: psycopg.Connection[Any], schema: str = "pgjobs") -> dict[str, str]:
    return dict(conn.execute(OBJECTS, {"schema": schema}).fetchall())


def test_every_object_has_a_section_in_the_sql_reference(db) -> None:
    headings = set(re.findall(r"^### (\w+)$", REFERENCE.read_text(encoding="utf-8"), re.M))
    found = objects(db)
    assert {"queue_summary", "enqueue", "why", "doctor", "jobs"} <= set(found)
    missing = sorted(name for name in found if name not in headings)
    assert missing == [], f"not in docs/sql-reference.md: {missing}"


def test_every_object_has_a_comment(db) -> None:
    undocumented = db.execute(
        """
        select p.proname from pg_proc p
        where p.pronamespace = 'pgjobs'::regnamespace
          and obj_description(p.oid, 'pg_proc') is null
        union all
        select c.relname from pg_class c
        where c.relnamespace = 'pgjobs'::regnamespace and c.relkind = 'v'
          and obj_description(c.oid, 'pg_class') is null
        """
    ).fetchall()
    assert undocumented == []


def test_another_schema_name_is_used_everywhere(empty_dsn, capsys) -> None:
    schema = "jobs_alt"
    migrate.upgrade(empty_dsn, schema=schema)
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        assert "enqueue" in objects(conn, schema)
        conn.execute(
            "insert into jobs_alt.workers (id, host, pid, queues, concurrency, version, waiting)"
            " values (gen_random_uuid(), 'h', 1, '{default}', 1, 'x', true)"
        )
        with psycopg.connect(empty_dsn, autocommit=True) as listener:
            listener.execute("listen jobs_alt_wakeup")
            listener.execute("listen jobs_alt_control")
            job_id = conn.execute("select jobs_alt.enqueue('a')").fetchone()[0]
            conn.execute(
                "update jobs_alt.jobs set state = 'running', worker_id = gen_random_uuid()"
            )
            assert admin.cancel_job(conn, job_id, schema=schema)
            notes = list(listener.notifies(timeout=10, stop_after=2))
        assert [(n.channel, n.payload) for n in notes[:1]] == [("jobs_alt_wakeup", "default")]
        assert notes[1].channel == "jobs_alt_control"
        assert json.loads(notes[1].payload) == {"action": "cancel", "job_id": job_id}
        assert "was cancelled" in admin.why(conn, job_id, schema=schema)
        roles = conn.execute("select pg_get_function_arguments('jobs_alt.grant_roles'::regproc)")
        assert "'jobs_alt_enqueuer'::text" in roles.fetchone()[0]
        assert conn.execute("select to_regclass('pgjobs.jobs')").fetchone()[0] is None
    assert main(["status", "--json", "--schema", schema, "--dsn", empty_dsn]) == 0
    queues = json.loads(capsys.readouterr().out)["queues"]
    assert [(q["queue"], q["cancelled"]) for q in queues] == [("default", 1)]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("1h30m", 5400),
        ("7d", 604800),
        ("2w", 1209600),
        ("500ms", 0.5),
        ("1.5h", 5400),
        (" 2 h ", 7200),
        ("0s", 0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "h", "7x", "-1d", "1d-2h", "5 parsecs", "nan", "1e400"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(pgjobs.InvalidArgumentError):
        parse_duration(text)


def test_parse_id() -> None:
    assert parse_id("42") == 42
    assert parse_id(" #42 ") == 42
    assert parse_id(str(2**63 - 1)) == 2**63 - 1
    for bad in ("", "x", "0", "-1", "4.2", str(2**63), "٤٢"):
        with pytest.raises(pgjobs.InvalidArgumentError):
            parse_id(bad)


@pytest.mark.parametrize("bad", [0, -1, 2**63, True, "42", 4.2])
def test_operations_refuse_what_cannot_be_a_job_id(db, bad: object) -> None:
    with pytest.raises(pgjobs.InvalidArgumentError, match="a job id is a positive integer"):
        admin.retry_job(db, bad)  # type: ignore[arg-type]
    with pytest.raises(pgjobs.InvalidArgumentError, match="a job id is a positive integer"):
        admin.get_job(db, bad)  # type: ignore[arg-type]
