"""The values a job may hold: Python's Task, the SQL function enqueue() and the jobs
table's rules accept and refuse exactly the same ones, and every reader can read back
whatever the table holds (issue 17, item 5)."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import _queries, admin
from pgjobs.errors import InvalidTaskError
from pgjobs.task import BLANK_RANGES, MAX_MAX_RETRY, MAX_SECONDS, RUN_AT_MAX, RUN_AT_MIN

Q = _queries.queries()
US = timedelta(microseconds=1)


def blank_ranges() -> list[tuple[int, int]]:
    """BLANK_RANGES as (first, last) code points. Once its escapes are read, every "-"
    in it joins a range (a hyphen itself is not blank)."""
    text = BLANK_RANGES.replace("\\t", "\t").replace("\\r", "\r")
    text = re.sub(r"\\u(\w{4})|\\U(\w{8})", lambda m: chr(int(m[1] or m[2], 16)), text)
    ranges, i = [], 0
    while i < len(text):
        if i + 2 < len(text) and text[i + 1] == "-":
            ranges.append((ord(text[i]), ord(text[i + 2])))
            i += 3
        else:
            ranges.append((ord(text[i]), ord(text[i])))
            i += 1
    return ranges


def test_blank_ranges_are_whitespace_and_format_characters() -> None:
    """The rule, stated once: whitespace (str.isspace) and category Cf, nothing else."""
    listed = {point for first, last in blank_ranges() for point in range(first, last + 1)}
    expected = {
        point
        for point in range(0x110000)
        if chr(point).isspace() or unicodedata.category(chr(point)) == "Cf"
    }
    if unicodedata.unidata_version == "14.0.0":
        assert listed == expected
    else:  # a later Unicode may add format characters; the rule stays Unicode 14's
        assert listed <= expected | listed


def test_the_table_and_enqueue_use_the_same_name_rule(db: psycopg.Connection[Any]) -> None:
    rules = dict(
        db.execute(
            "select conname, pg_get_constraintdef(oid) from pg_constraint"
            " where conname in ('job_kind_check', 'job_queue_check')"
        ).fetchall()
    )
    enqueue = db.execute("select prosrc from pg_proc where proname = 'enqueue'").fetchone()[0]
    for text in (*rules.values(), enqueue):
        assert f"'[^{BLANK_RANGES}]'" in text


def name_cases() -> list[tuple[str, bool]]:
    """Every edge of every blank range, alone: the ends are blank, the neighbours not
    (unless they are blank too, or not text at all)."""
    blank = {point for first, last in blank_ranges() for point in range(first, last + 1)}
    cases = {"a": True, "": False, " ": False, "\u00a0": False, "\u200b": False}
    cases |= {"\u200b a\u00a0": True, "x" * 255: True, "x" * 256: False, "\u2800": True}
    for first, last in blank_ranges():
        for point in (first - 1, first, last, last + 1):
            if point == 0 or 0xD800 <= point <= 0xDFFF:
                continue  # NUL and lone surrogates are not text PostgreSQL can hold
            cases[chr(point)] = point not in blank
    return sorted(cases.items())


def option_cases() -> list[tuple[str, Any, bool]]:
    """(option, value, valid) on both sides of every bound."""
    return [
        ("max_retry", 0, True),
        ("max_retry", -1, False),
        ("max_retry", MAX_MAX_RETRY, True),
        ("max_retry", MAX_MAX_RETRY + 1, False),
        ("priority", -32768, True),
        ("priority", -32769, False),
        ("priority", 32767, True),
        ("priority", 32768, False),
        ("timeout", 1e-6, True),
        ("timeout", 0.6e-6, True),  # rounds to 1 microsecond
        ("timeout", 0.4e-6, False),  # rounds to 0
        ("timeout", 1e-9, False),
        ("timeout", 0, False),
        ("timeout", MAX_SECONDS, True),
        ("timeout", MAX_SECONDS + 1e-6, False),
        ("run_at", RUN_AT_MIN, True),
        ("run_at", RUN_AT_MIN - US, False),
        ("run_at", RUN_AT_MAX - US, True),
        ("run_at", RUN_AT_MAX, False),
        ("run_at", datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-12))), False),
    ]


def by_python(**options: Any) -> bool:
    try:
        pgjobs.Task(**options)
    except InvalidTaskError:
        return False
    return True


def by_insert(conn: psycopg.Connection[Any], **options: Any) -> bool:
    """The statement pgjobs.enqueue sends, with the value bound as is: the table's rules."""
    params = {"queue": "default", "payload": "{}", "priority": 0, "max_retry": 25}
    params |= {"timeout": 1800.0, "run_at": None, "delay": None, **options}
    try:
        with conn.transaction():
            conn.execute(Q["job_insert"], params)
    except psycopg.Error:
        return False
    return True


def by_function(conn: psycopg.Connection[Any], **options: Any) -> bool:
    """The SQL function enqueue(), given the value."""
    timeout = options.pop("timeout", 1800.0)
    arguments = ", ".join(f"{name} => %({name})s" for name in options)
    try:
        with conn.transaction():
            conn.execute(
                f"select pgjobs.enqueue({arguments}, timeout => make_interval(secs => %(t)s))",
                {**options, "t": timeout},
            )
    except psycopg.Error:
        return False
    return True


def test_python_sql_and_the_table_agree_on_every_bound(conn: psycopg.Connection[Any]) -> None:
    cases = [("kind", name, valid) for name, valid in name_cases()]
    cases += [("queue", name, valid) for name, valid in name_cases()]
    cases += option_cases()
    disagreements = []
    for option, value, valid in cases:
        options = {"kind": "k", option: value}
        answers = (by_python(**options), by_insert(conn, **options), by_function(conn, **options))
        if answers != (valid, valid, valid):
            disagreements.append((option, value, valid, answers))
    assert disagreements == [], "(option, value, valid, (python, insert, function))"


def slip_in(db: psycopg.Connection[Any], run_at: str) -> int:
    """A job whose run_at no datetime can hold, slipped in past the rule (dropped, then
    added back NOT VALID, which keeps such rows), as an operator's hand might."""
    db.execute("alter domain pgjobs.job_run_at drop constraint job_run_at_check")
    row = db.execute(
        "insert into pgjobs.jobs (kind, state, run_at, finished_at) values"
        " ('k', 'cancelled', %s, now()) returning id",
        (run_at,),
    ).fetchone()
    db.execute(
        "alter domain pgjobs.job_run_at add constraint job_run_at_check"
        " check (value >= '0001-01-02 00:00:00+00' and value < '9999-12-31 00:00:00+00')"
        " not valid"
    )
    return int(row[0])


@pytest.mark.parametrize("run_at", ["10000-01-01 00:00+00", "4713-01-01 00:00+00 BC"])
async def test_reads_survive_a_time_no_datetime_can_hold(capsys, dsn, db, run_at: str) -> None:
    from pgjobs.cli import main

    job_id = slip_in(db, run_at)
    for argv in (["jobs", "list"], ["jobs", "show", str(job_id)], ["why", str(job_id)]):
        assert main([*argv, "--dsn", dsn]) == 0, capsys.readouterr().err
        assert str(job_id) in capsys.readouterr().out
    async with pgjobs.AsyncClient(dsn) as aclient:
        assert (await aclient.get(job_id)).run_at in (RUN_AT_MIN, RUN_AT_MAX - US)
        assert (await aclient.wait(job_id, timeout=5)).state == "cancelled"
    db.execute("set timezone = 'Pacific/Kiritimati'")  # UTC+14: the furthest from UTC
    job = admin.get_job(db, job_id)
    assert job.run_at in (RUN_AT_MIN, RUN_AT_MAX - US)
    assert job.started_at is None  # a time that is not there stays so
    assert [job.id for job in admin.list_jobs(db)] == [job_id]
    with pgjobs.Client(dsn) as client:
        assert client.get(job_id).run_at in (RUN_AT_MIN, RUN_AT_MAX - US)
        assert client.wait(job_id, timeout=5).state == "cancelled"
