"""What the terminal shows: no value from the database reaches it with its control
characters raw. A queue, kind, error or payload is written by whoever may enqueue; an
escape sequence in one must be shown, never run (set the title, clear the screen)."""

from __future__ import annotations

import unicodedata
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from pgjobs.cli import main

#: An OSC that sets the window title, a CSI that clears the screen, a newline, a
#: carriage return, a C1 CSI, a line separator and a right-to-left override.
HOSTILE = ["\x1b]0;pwned\x07", "\x1b[2J", "\n", "\r", "\x9b", "\u2028", "\u202e"]
EVIL = "x" + "".join(HOSTILE) + "y"


def raw_controls(text: str) -> list[str]:
    """The characters of *text* a terminal would act on, but the layout's line breaks."""
    return [
        char
        for char in text
        if char != "\n"
        and (unicodedata.category(char) in ("Cc", "Zl", "Zp") or "\u202a" <= char <= "\u202e")
    ]


@pytest.fixture
def hostile(db: psycopg.Connection[Any]) -> dict[str, Any]:
    """A failed job, a running one and a live worker, every text of theirs hostile."""
    worker = uuid.uuid4()
    db.execute(
        "insert into pgjobs.workers (id, host, pid, queues, concurrency, version)"
        " values (%s, %s, 1, %s, 4, %s)",
        (worker, "host" + EVIL, ["q" + EVIL, "default"], "v" + EVIL),
    )
    failed = db.execute(
        "insert into pgjobs.jobs (queue, kind, payload, state, attempt, last_error, errors,"
        " finished_at) values (%s, %s, %s, 'failed', 1, %s, %s, now()) returning id",
        (
            "q" + EVIL,
            "k" + EVIL,
            Jsonb({"key" + EVIL: "value" + EVIL, "list": [EVIL]}),
            "Boom: " + EVIL + "\nTraceback line two" + EVIL,
            Jsonb([{"attempt": 1, "at": "at" + EVIL, "error": "e" + EVIL}]),
        ),
    ).fetchone()[0]
    running = db.execute(
        "insert into pgjobs.jobs (queue, kind, state, attempt, started_at, lease_expires_at,"
        " worker_id) values (%s, %s, 'running', 1, now(), now() + interval '1 hour', %s)"
        " returning id",
        ("q" + EVIL, "k" + EVIL, worker),
    ).fetchone()[0]
    available = db.execute(
        "insert into pgjobs.jobs (queue, kind) values (%s, %s) returning id",
        ("q" + EVIL, "k" + EVIL),
    ).fetchone()[0]
    return {"failed": str(failed), "running": str(running), "available": str(available)}


COMMANDS = [
    ["status"],
    ["status", "--json"],
    ["jobs", "list"],
    ["jobs", "list", "--json"],
    ["jobs", "show", "{failed}"],
    ["jobs", "show", "{failed}", "--json"],
    ["jobs", "show", "{running}"],
    ["why", "{failed}"],
    ["why", "{running}"],
    ["why", "{available}"],
    ["doctor"],
    ["doctor", "--json"],
    ["cancel", "{running}"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_no_control_character_from_the_database_reaches_the_terminal(
    capsys, dsn, hostile, argv: list[str]
) -> None:
    code = main([part.format(**hostile) for part in argv] + ["--dsn", dsn])
    out, err = capsys.readouterr()
    assert code in (0, 1), err
    assert raw_controls(out) == [], out
    assert raw_controls(err) == [], err


def test_the_escapes_are_readable(capsys, dsn, hostile) -> None:
    main(["jobs", "show", hostile["failed"], "--dsn", dsn])
    out = capsys.readouterr().out
    assert "qx\\x1b]0;pwned\\x07\\x1b[2J\\n\\r\\x9b\\u2028\\u202ey" in out
    # A traceback keeps its lines; only the characters in them are escaped.
    assert any(line.strip().startswith("Traceback line two") for line in out.splitlines())
    assert "Boom: x" in out


def test_an_error_message_quoting_the_database_is_one_line(capsys, dsn) -> None:
    code = main(["pause", "q" + EVIL, "--dsn", dsn])  # no such queue: the name is quoted
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert raw_controls(err) == [], err


def test_ordinary_unicode_is_printed_as_it_is(capsys, dsn, db) -> None:
    db.execute("insert into pgjobs.jobs (queue, kind) values ('größe', 'emoji-😀-ä')")
    main(["jobs", "list", "--dsn", dsn])
    out = capsys.readouterr().out
    assert "größe" in out
    assert "emoji-😀-ä" in out


async def test_the_workers_log_lines_escape_what_came_from_the_database(
    dsn, db, running, caplog
) -> None:
    """`pgjobs worker` prints log lines that name a job's kind and quote its error: as
    text or JSON (the formatters `python -m pgjobs` installs), no control character in
    them reaches the terminal, and a text line stays one line (a traceback keeps its own)."""
    import pgjobs
    from pgjobs._logging import formatter
    from tests.test_worker import make_config, wait_until

    server = pgjobs.Server()

    @server.handler("boom")
    def boom(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise ValueError("bad " + task.payload["text"])

    failing = db.execute(
        "insert into pgjobs.jobs (kind, payload, max_retry) values"
        " ('boom', %s, 0), (%s, '{}', 0) returning id",
        (Jsonb({"text": EVIL}), "k" + EVIL),
    ).fetchall()
    caplog.set_level("DEBUG", logger="pgjobs")
    await running(server, make_config(dsn))
    await wait_until(
        lambda: (
            db.execute(
                "select count(*) from pgjobs.jobs where state = 'failed' and id = any(%s)",
                ([job_id for (job_id,) in failing],),
            ).fetchone()
            == (2,)
        ),
        what="both jobs failed",
    )
    text, json_lines = formatter("text"), formatter("json")
    hostile = [r for r in caplog.records if "pwned" in r.getMessage()]
    assert len(hostile) >= 2, [r.getMessage() for r in caplog.records]
    for record in caplog.records:
        line = text.format(record)
        assert raw_controls(line) == [], line
        if not record.exc_info:
            assert "\n" not in line, line
        assert raw_controls(json_lines.format(record)) == []
        assert "\n" not in json_lines.format(record)
    shown = "\n".join(text.format(record) for record in hostile)
    assert "kx\\x1b]0;pwned\\x07\\x1b[2J\\n\\r\\x9b\\u2028\\u202ey" in shown
    assert "bad x\\x1b]0;pwned" in shown
