"""The operator commands: status, jobs, retry, cancel, pause, resume, enqueue, why, doctor,
purge, grants. Each runs in-process through pgjobs.cli.main against a real database."""

from __future__ import annotations

import io
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import psycopg
import psycopg.types.json
import pytest

import pgjobs
import pgjobs.testing
from pgjobs import admin
from pgjobs._ops import Statement
from pgjobs.cli import main

OPERATOR_COMMANDS = [
    ["status"],
    ["jobs"],
    ["jobs", "list"],
    ["jobs", "show"],
    ["retry"],
    ["cancel"],
    ["pause"],
    ["resume"],
    ["enqueue"],
    ["why"],
    ["doctor"],
    ["purge"],
    ["grants"],
]


# Every command, once more through PgBouncer (conftest.py).
pytestmark = pytest.mark.through_pgbouncer


class Run:
    """``run(*argv)`` -> (exit status, stdout, stderr) of one ``pgjobs`` command."""

    def __init__(self, capsys: pytest.CaptureFixture[str], dsn: str) -> None:
        self.capsys = capsys
        self.dsn = dsn

    def __call__(self, *argv: str, dsn: bool = True) -> tuple[int, str, str]:
        args = [*argv, "--dsn", self.dsn] if dsn else list(argv)
        try:
            code = main(args)
        except SystemExit as exited:  # argparse's way out, as `python -m pgjobs` ends
            code = int(exited.code or 0)
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], dsn: str) -> Run:
    return Run(capsys, dsn)


def one_error_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pgjobs: error: "), err
    for fragment in fragments:
        assert fragment in lines[0]


def state(db: psycopg.Connection[Any], job_id: int) -> str:
    return str(db.execute("select state from pgjobs.jobs where id = %s", (job_id,)).fetchone()[0])


# --- every command --------------------------------------------------------------------------


@pytest.mark.parametrize("command", OPERATOR_COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(capsys, command: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    assert "pgjobs " + command[0] in out.split("examples:")[1]
    if command not in (["jobs"],):
        assert "--dsn" in out


@pytest.mark.parametrize(
    "argv",
    [["status"], ["jobs", "list"], ["why", "1"], ["doctor"], ["pause", "q"], ["cancel", "1"]],
)
def test_an_unreachable_database_is_one_line(capsys, argv: list[str]) -> None:
    code = main([*argv, "--dsn", "postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=2"])
    assert code == 2
    one_error_line(capsys.readouterr().err, "cannot reach the database")


def test_the_dsn_comes_from_the_environment(capsys, monkeypatch, dsn) -> None:
    monkeypatch.setenv("PGJOBS_DSN", dsn)
    assert main(["status"]) == 0
    assert "no queues" in capsys.readouterr().out
    monkeypatch.delenv("PGJOBS_DSN")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["status"]) == 2
    one_error_line(capsys.readouterr().err, "no database given")


def test_a_database_without_the_schema_says_to_migrate(capsys, empty_dsn) -> None:
    assert main(["status", "--dsn", empty_dsn]) == 2
    one_error_line(capsys.readouterr().err, "pgjobs migrate")


def test_the_module_entry_point_runs(dsn) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pgjobs", "status", "--json", "--dsn", dsn],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"queues": [], "workers": []}


# --- status ---------------------------------------------------------------------------------


def test_status_table(run, db) -> None:
    for _ in range(3):
        pgjobs.enqueue(db, pgjobs.Task("a", queue="email"))
    pgjobs.enqueue(db, pgjobs.Task("a", queue="low", delay=60))
    db.execute("select pgjobs.pause_queue('low')")
    db.execute(
        "insert into pgjobs.workers (id, host, pid, queues, concurrency, version)"
        " values (gen_random_uuid(), 'box-7', 99, '{email,low}', 8, '0.1')"
    )
    code, out, _ = run("status")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "QUEUE",
        "STATE",
        "SCHEDULED",
        "AVAILABLE",
        "RUNNING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "OLDEST",
        "READY",
        "DONE/MIN",
        "RETRIED/MIN",
        "FAILED/MIN",
        "WORKERS",
    ]
    email = lines[1].split()
    assert email[:8] == ["email", "active", "0", "3", "0", "0", "0", "0"]
    assert email[-1] == "1"
    assert lines[2].split()[:4] == ["low", "paused", "1", "0"]
    # Columns line up: every row is as long as the header (numbers are right-aligned).
    assert len({len(line) for line in lines[:3]}) == 1
    worker_line = next(line for line in lines if "box-7" in line)
    assert "email,low" in worker_line
    assert "0/8" in worker_line


def test_status_counts_retries_and_failures_per_minute(run, db) -> None:
    """A retry storm shows: attempts that failed and will run again are counted apart
    from those that completed and those that failed for good, as pgjobs.stats has them."""
    from pgjobs import testing
    from pgjobs.backoff import constant

    # Keep the attempts and the reading in one minute: the view weighs the previous
    # minute's counts by the share of it still inside the last 60 s.
    second = db.execute("select extract(second from now())").fetchone()[0]
    if second > 50:
        time.sleep(61 - float(second))
    server = pgjobs.Server(pgjobs.Config(backoff=constant(0)))

    @server.handler("flaky")
    def flaky(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise RuntimeError("smtp down")

    @server.handler("fine")
    def fine(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        pass

    pgjobs.enqueue(db, pgjobs.Task("flaky", queue="email", max_retry=3))
    for _ in range(2):
        pgjobs.enqueue(db, pgjobs.Task("fine", queue="email"))
    testing.drain(server, db, queue="email")
    code, out, _ = run("status")
    assert code == 0
    header, email = out.splitlines()[:2]
    headers = header.replace("OLDEST READY", "OLDEST_READY").split()
    row = dict(zip(headers, email.split(), strict=True))
    assert (row["DONE/MIN"], row["RETRIED/MIN"], row["FAILED/MIN"]) == ("2", "3", "1")
    _, out, _ = run("status", "--json")
    [queue] = json.loads(out)["queues"]
    assert (
        queue["completed_last_minute"],
        queue["retried_last_minute"],
        queue["failed_last_minute"],
    ) == (2, 3, 1)


def test_a_workers_uptime_counts_to_now(run, db) -> None:
    """UP is how long the worker has run, not the time between its start and its last
    heartbeat (0 until its first heartbeat, 15 s later)."""
    db.execute(
        "insert into pgjobs.workers (id, host, pid, queues, concurrency, version, started_at,"
        " heartbeat_at) values (gen_random_uuid(), 'box-7', 99, '{default}', 8, '0.1',"
        " now() - interval '5 minutes', now() - interval '4 seconds')"
    )
    _, out, _ = run("status")
    lines = out.splitlines()
    worker = next(lines[i + 1] for i, line in enumerate(lines) if line.startswith("WORKER"))
    cells = worker.split()
    assert cells[cells.index("ago") - 1 :][:3] == ["4s", "ago", "5m00s"]


def test_a_worker_id_of_digits_lines_up_as_text() -> None:
    """Alignment follows the value's type, not its look: about one worker id in forty
    starts with eight decimal digits, and its column once turned right-aligned, the
    heading moving off the left edge (a test keyed on it failed one CI run in forty)."""
    from datetime import UTC, datetime

    from pgjobs.cli.status import render

    now = datetime.now(UTC)
    worker = admin.WorkerInfo(
        UUID("20751964-0000-4000-8000-000000000000"), "2024", 7, ["default"], 8, "0.1",
        now, now, waiting=True, running=3,
    )  # fmt: skip
    lines = render([], [worker]).splitlines()
    heading = next(line for line in lines if "HOST" in line)
    row = lines[lines.index(heading) + 1]
    assert heading.split()[:2] == ["WORKER", "HOST"]
    assert heading.startswith("WORKER")
    assert row.startswith("20751964  2024")
    assert heading.index("HOST") == row.index("2024")


def test_status_json(run, db) -> None:
    pgjobs.enqueue(db, pgjobs.Task("a"))
    code, out, _ = run("status", "--json")
    data = json.loads(out)
    assert code == 0
    [queue] = data["queues"]
    assert queue["queue"] == "default"
    assert queue["available"] == 1
    assert isinstance(queue["oldest_ready_age"], float)
    assert data["workers"] == []


def test_status_watch_refreshes(run, db) -> None:
    pgjobs.enqueue(db, pgjobs.Task("a"))
    code, out, _ = run("status", "--watch", "0.1", "--refreshes", "3")
    assert code == 0
    assert out.count("pgjobs status at ") == 3
    assert out.count("QUEUE") == 3


# --- jobs -----------------------------------------------------------------------------------


def test_jobs_list_filters_and_json(run, db) -> None:
    a = pgjobs.enqueue(db, pgjobs.Task("send", queue="email"))
    b = pgjobs.enqueue(db, pgjobs.Task("resize", queue="images"))
    c = pgjobs.enqueue(db, pgjobs.Task("send", queue="email"))
    db.execute(
        "update pgjobs.jobs set state = 'failed', last_error = 'smtp down' where id = %s", (c,)
    )
    code, out, _ = run("jobs", "list")
    assert code == 0
    ids = [int(line.split()[0]) for line in out.splitlines()[1:]]
    assert ids == [c, b, a]  # newest first
    assert "smtp down" in out
    _, out, _ = run("jobs", "list", "--state", "failed")
    assert [int(line.split()[0]) for line in out.splitlines()[1:]] == [c]
    _, out, _ = run("jobs", "list", "--kind", "send", "--queue", "email", "--limit", "1", "--json")
    assert [job["id"] for job in json.loads(out)] == [c]
    _, out, _ = run("jobs", "list", "--queue", "nothing")
    assert out.strip() == "no jobs match"


def test_a_finished_job_has_no_run_at(run, db) -> None:
    """A job cancelled while scheduled keeps its run_at in the row, but it will not run
    then: the listing says nothing rather than "in 22s"."""
    scheduled = pgjobs.enqueue(db, pgjobs.Task("later", delay=3600))
    cancelled = pgjobs.enqueue(db, pgjobs.Task("later", delay=3600))
    db.execute("select pgjobs.cancel_job(%s, 'not needed')", (cancelled,))
    _, out, _ = run("jobs", "list")
    rows = {int(line.split()[0]): line for line in out.splitlines()[1:]}
    assert "in 59m" in rows[scheduled] or "in 1h" in rows[scheduled]
    assert " in " not in rows[cancelled]
    _, out, _ = run("jobs", "show", str(cancelled))
    run_at = next(line for line in out.splitlines() if line.startswith("run at"))
    assert "(in " not in run_at


def test_jobs_show(run, db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("send", {"to": "ada@example.com"}, max_retry=3))
    code, out, _ = run("jobs", "show", str(job_id))
    assert code == 0
    assert f"id           {job_id}" in out
    assert "attempt      0 of 4 allowed (max_retry 3)" in out
    assert '"to": "ada@example.com"' in out
    code, out, _ = run("jobs", "show", str(job_id), "--json")
    data = json.loads(out)
    assert (data["payload"], data["state"], data["timeout"]) == (
        {"to": "ada@example.com"},
        "available",
        1800.0,
    )
    assert "result:" not in run("jobs", "show", str(job_id))[1]


def test_jobs_show_a_retained_result(run, db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("send"))
    db.execute(
        "update pgjobs.jobs set state = 'completed', finished_at = now(), result = %s "
        "where id = %s",
        (psycopg.types.json.Jsonb({"sent": 2}), job_id),
    )
    code, out, _ = run("jobs", "show", str(job_id))
    assert code == 0
    assert 'result:\n  {\n    "sent": 2\n  }' in out
    assert json.loads(run("jobs", "show", str(job_id), "--json")[1])["result"] == {"sent": 2}


@pytest.mark.parametrize("bad", ["abc", "0", "-3", "1.5", "99999999999999999999"])
def test_a_bad_job_id_is_one_line(run, bad: str) -> None:
    for argv in (["jobs", "show", bad], ["why", bad], ["cancel", bad], ["retry", bad]):
        code, _, err = run(*argv)
        assert code == 2
        one_error_line(err, "a job id is a positive integer")


def test_an_unknown_job_is_one_line(run) -> None:
    for argv in (["jobs", "show", "424242"], ["why", "424242"], ["cancel", "424242"]):
        code, _, err = run(*argv)
        assert code == 2
        one_error_line(err, "job 424242 does not exist")
    code, _, err = run("retry", "424242")
    assert code == 2
    one_error_line(err, "job 424242 does not exist")


# --- retry, cancel, pause, resume -------------------------------------------------------------


def test_retry_one_and_all_failed(run, db) -> None:
    ids = [pgjobs.enqueue(db, pgjobs.Task(kind)) for kind in ("a", "a", "b")]
    db.execute("update pgjobs.jobs set state = 'failed', finished_at = now()")
    code, out, _ = run("retry", str(ids[0]))
    assert (code, out.strip()) == (0, f"job {ids[0]} will run again now")
    code, out, err = run("retry", str(ids[0]))
    assert code == 2
    one_error_line(err, f"job {ids[0]} is available: only failed, cancelled or scheduled")
    code, out, _ = run("retry", "--all-failed", "--kind", "a")
    assert (code, out.strip()) == (0, "1 failed job of kind 'a' will run again now")
    code, out, _ = run("retry", "--all-failed")
    assert out.strip() == "1 failed job will run again now"
    assert {state(db, i) for i in ids} == {"available"}


@pytest.mark.parametrize(
    "argv", [["retry"], ["retry", "1", "--all-failed"], ["retry", "1", "--kind", "a"]]
)
def test_retry_needs_an_id_or_all_failed(run, argv: list[str]) -> None:
    code, _, err = run(*argv)
    assert code == 2
    one_error_line(err)


def test_cancel(run, db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
    code, out, _ = run("cancel", str(job_id), "--reason", "not needed")
    assert (code, out.strip()) == (0, f"job {job_id} cancelled (it was available)")
    assert db.execute("select last_error from pgjobs.jobs").fetchone()[0] == "not needed"
    code, _, err = run("cancel", str(job_id))
    assert code == 2
    one_error_line(err, f"job {job_id} is already cancelled")


def test_cancel_a_running_job_names_its_worker(run, db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
    db.execute(
        "update pgjobs.jobs set state = 'running', attempt = 1, started_at = now(),"
        " lease_expires_at = now() + interval '1 minute',"
        " worker_id = '00000000-0000-0000-0000-00000000000a'"
    )
    code, out, _ = run("cancel", str(job_id))
    assert code == 0
    assert "worker 00000000-0000-0000-0000-00000000000a was told to stop it" in out


def test_pause_and_resume(run, db) -> None:
    pgjobs.enqueue(db, pgjobs.Task("a", queue="email"))
    assert run("pause", "email")[1].strip() == "queue 'email' paused"
    assert run("pause", "email")[1].strip() == "queue 'email' was already paused"
    assert (
        db.execute("select count(*) from pgjobs.queues where paused_at is not null").fetchone()[0]
        == 1
    )
    assert run("resume", "email")[1].strip() == "queue 'email' resumed"
    assert run("resume", "email")[1].strip() == "queue 'email' was not paused"


def test_a_missing_queue_is_one_line(run) -> None:
    for command in ("pause", "resume"):
        code, _, err = run(command, "emial")
        assert code == 2
        one_error_line(err, 'queue "emial" is unknown')
    code, _, err = run("pause", "emial")
    assert "--force" in err
    code, out, _ = run("pause", "reports", "--force")
    assert (code, out.strip()) == (0, "queue 'reports' paused")


# --- enqueue --------------------------------------------------------------------------------


def test_enqueue_with_options(run, db) -> None:
    code, out, _ = run(
        "enqueue",
        "send",
        '{"to": "ada@example.com"}',
        "--queue",
        "email",
        "--priority",
        "-2",
        "--max-retry",
        "3",
        "--timeout",
        "90s",
        "--delay",
        "10m",
    )
    assert code == 0
    job_id = int(out.strip())
    row = db.execute(
        "select kind, payload, queue, priority, max_retry, extract(epoch from timeout)::int,"
        " state::text, run_at > now() + interval '9 minutes' from pgjobs.jobs where id = %s",
        (job_id,),
    ).fetchone()
    assert row == ("send", {"to": "ada@example.com"}, "email", -2, 3, 90, "scheduled", True)


def test_enqueue_defaults_and_run_at(run, db) -> None:
    code, out, _ = run("enqueue", "ping")
    assert db.execute("select payload, state::text from pgjobs.jobs").fetchone() == (
        {},
        "available",
    )
    code, out, _ = run("enqueue", "report", "[]", "--run-at", "2999-01-01T06:00:00+00:00")
    assert code == 0
    assert state(db, int(out)) == "scheduled"


def test_enqueue_reads_the_payload_from_stdin(run, db, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"rows": [1, 2, 3]}'))
    code, out, _ = run("enqueue", "import", "-")
    assert code == 0
    payload = db.execute("select payload from pgjobs.jobs where id = %s", (int(out),)).fetchone()
    assert payload == ({"rows": [1, 2, 3]},)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["enqueue", "a", "{not json"], "PAYLOAD_JSON is not valid JSON"),
        (["enqueue", "a", "{}", "--delay", "5 parsecs"], "invalid duration '5 parsecs'"),
        (["enqueue", "a", "{}", "--timeout", "0s"], "timeout must be more than 0 seconds"),
        (["enqueue", "a", "{}", "--priority", "99999"], "priority must be between"),
        (["enqueue", "a", "{}", "--max-retry", "-1"], "max_retry must be between 0 and"),
        (["enqueue", " ", "{}"], "kind must not be empty"),
        (["enqueue", "a", "{}", "--run-at", "tomorrow"], "is not an ISO 8601 time"),
        (["enqueue", "a", "{}", "--run-at", "2999-01-01T06:00:00"], "timezone-aware"),
        # Year 10000 in UTC: no datetime could read it back.
        (["enqueue", "a", "{}", "--run-at", "9999-12-31T23:59:00-12:00"], "run_at must be from"),
    ],
)
def test_enqueue_refuses_bad_input_in_one_line(run, db, argv: list[str], message: str) -> None:
    code, _, err = run(*argv)
    assert code == 2
    one_error_line(err, message)
    assert db.execute("select count(*) from pgjobs.jobs").fetchone()[0] == 0


# --- why, doctor, purge ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "PAYLOAD_JSON is nested too deeply"),
        ("1" * 5000, "PAYLOAD_JSON cannot be read: Exceeds the limit"),
    ],
)
def test_enqueue_refuses_an_unreadable_payload_in_one_line(
    dsn, db, payload: str, message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pgjobs", "enqueue", "fx", "-", "--dsn", dsn],
        input=payload,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    one_error_line(done.stderr, message)
    assert db.execute("select count(*) from pgjobs.jobs").fetchone()[0] == 0


def test_why(run, db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("report", delay=3600))
    code, out, _ = run("why", str(job_id))
    assert code == 0
    assert out.startswith(f'job {job_id} (report, queue "default") is scheduled to run at ')


def test_why_a_job_that_is_gone_says_what_became_of_it(run, db) -> None:
    """A job deleted otherwise than as it completed: why says its id was handed out, that
    it did not complete within the hour, and what else deletes a job, instead of "does
    not exist"."""
    gone, kept = pgjobs.enqueue_many(db, [pgjobs.Task("report"), pgjobs.Task("report")])
    db.execute("delete from pgjobs.jobs where id = %s", (gone,))  # as purge does
    code, out, _ = run("why", str(gone))
    assert code == 0
    assert out.startswith(f"job {gone} no longer exists. Its id was handed out")
    assert "It did not complete within the last hour" in out
    assert "completed at" not in out
    assert "Most likely" not in out
    assert "completed_retention" in out
    assert "rolled back" in out
    db.execute("delete from pgjobs.jobs")  # the sequence still knows both ids
    assert run("why", str(kept))[1].startswith(f"job {kept} no longer exists")
    code, _, err = run("why", str(kept + 1))  # never handed out
    assert code == 2
    one_error_line(err, f"job {kept + 1} does not exist")


def test_why_a_job_deleted_as_it_completed_says_it_completed_and_when(run, db) -> None:
    """With the default retention (0) a completed job's row is deleted by the statement
    that completes it; that statement records the id, so why can say it completed."""
    server = pgjobs.Server()
    server.handler("report")(lambda ctx, task: None)
    job_id = pgjobs.enqueue(db, pgjobs.Task("report"))
    assert pgjobs.testing.run_job(server, db, job_id).state == "completed"
    assert db.execute("select count(*) from pgjobs.jobs").fetchone() == (0,)
    (finished,) = db.execute(
        "select to_char(finished_at, 'YYYY-MM-DD HH24:MI:SS TZ') from pgjobs.completed_recently"
        " where %s = any (ids)",
        (job_id,),
    ).fetchone()
    code, out, _ = run("why", str(job_id))
    assert code == 0
    assert out.startswith(f"job {job_id} completed at {finished} (")
    assert "was deleted" in out
    assert "completed_retention" in out


def test_why_a_job_whose_enqueue_rolled_back_does_not_say_it_completed(run, db, dsn) -> None:
    with psycopg.connect(dsn) as conn:
        job_id = pgjobs.enqueue(conn, pgjobs.Task("report"))
        conn.rollback()
    code, out, _ = run("why", str(job_id))
    assert code == 0
    assert out.startswith(f"job {job_id} no longer exists. Its id was handed out")
    assert "It did not complete within the last hour" in out
    assert "completed at" not in out
    assert "the transaction that enqueued it rolled back" in out


def test_why_on_a_standby_does_not_read_the_completion_records() -> None:
    """A standby cannot read an unlogged table (planning a statement that names one
    fails there): admin.why asks whether the server is one first, and then says where the
    answer is. Driven step by step: a standby is too costly to start for one sentence."""
    steps = admin._why(3)
    first = next(steps)
    assert isinstance(first, Statement)
    code = b"\n".join(line for line in first.query.splitlines() if not line.startswith(b"--"))
    assert b"pg_is_in_recovery()" in code
    assert b"completed_recently" not in code
    with pytest.raises(StopIteration) as done:
        steps.send([(False, 57, True)])  # gone, ids up to 57 handed out, a standby
    assert done.value.value.startswith("job 3 no longer exists.")
    assert "This server is a standby" in done.value.value
    assert "ask the primary" in done.value.value


def test_doctor_table_and_exit_status(run, db) -> None:
    code, out, _ = run("doctor", "--long-transaction", "1h")
    autovacuum_off = "autovacuum is off in the server configuration" in out
    assert code == (1 if autovacuum_off else 0)
    assert out.splitlines()[0].split() == ["STATUS", "CHECK", "DETAIL"]
    assert "schema          pgjobs is at revision" in out
    for check in ("vacuum horizon", "dead rows", "stuck jobs", "autovacuum"):
        assert check in out
    db.execute(
        "insert into pgjobs.jobs (kind, state, attempt, started_at, lease_expires_at)"
        " values ('stuck', 'running', 1, now() - interval '2 hours', now() - interval '1 hour')"
    )
    code, out, _ = run("doctor")
    assert code == 1
    assert "1 running job is past its lease" in out
    assert out.rstrip().endswith("warnings found")


def test_doctor_json_lists_findings_and_blockers(run, dsn) -> None:
    with psycopg.connect(dsn) as holder:
        holder.execute("insert into pgjobs.queues (name) values ('x')")  # holds an xid
        code, out, _ = run("doctor", "--json", "--long-transaction", "0s")
        data = json.loads(out)
        # The server's pid: through PgBouncer, info.backend_pid is one PgBouncer made up.
        pid = holder.execute("select pg_backend_pid()").fetchone()[0]
    assert code == 1
    assert any(
        f["check_name"] == "vacuum horizon" and f"pid {pid} " in f["detail"]
        for f in data["findings"]
    )
    assert pid in [b["pid"] for b in data["vacuum_blockers"]]


def test_purge(run, db) -> None:
    for age in ("10 days", "10 days", "1 day"):
        job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
        db.execute(
            "update pgjobs.jobs set state = 'completed', finished_at = now() - %s::interval"
            " where id = %s",
            (age, job_id),
        )
    pgjobs.enqueue(db, pgjobs.Task("a"))
    code, out, _ = run("purge", "--older-than", "7d", "--dry-run")
    assert (code, out.strip()) == (
        0,
        "would delete 2 completed/failed/cancelled jobs that finished more than 7d00h ago",
    )
    code, out, _ = run("purge", "--older-than", "7d", "--batch-size", "1")
    assert out.strip().startswith("deleted 2 ")
    assert db.execute("select count(*) from pgjobs.jobs").fetchone()[0] == 2
    code, out, _ = run("purge", "--older-than", "12h", "--state", "failed")
    assert out.strip().startswith("deleted 0 failed jobs")


@pytest.mark.parametrize("bad", ["7", "7x", "-1d", "d"])
def test_purge_refuses_a_bad_duration(run, bad: str) -> None:
    code, _, err = run("purge", f"--older-than={bad}")
    if bad == "7":  # a plain number is seconds
        assert code == 0
        return
    assert code == 2
    one_error_line(err, "duration")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["purge", "--older-than", "7d", "--batch-size", "1099511627776"], "--batch-size"),
        (["purge", "--older-than", "7d", "--batch-size", "0"], "--batch-size"),
        (["purge", "--older-than", "99999999d"], "--older-than"),
        (["purge", "--older-than", "36526d", "--dry-run"], "--older-than"),
        (["status", "--watch", "-1", "--refreshes", "2"], "--watch"),
        (["status", "--watch", "0", "--refreshes", "2"], "--watch"),
        (["status", "--watch", "nan", "--refreshes", "2"], "--watch"),
        (["status", "--watch", "1e308", "--refreshes", "2"], "--watch"),
        (["jobs", "list", "--limit", "99999999999999999999"], "--limit"),
        (["jobs", "list", "--limit", "-5"], "--limit"),
        (["jobs", "list", "--limit", "ten"], "--limit"),
        (["doctor", "--long-transaction", "99999999d"], "--long-transaction"),
        (["doctor", "--long-transaction", "-1m"], "--long-transaction"),
    ],
)
def test_an_out_of_range_option_is_one_line_naming_it(run, argv: list[str], fragment: str) -> None:
    code, out, err = run(*argv)
    assert code == 2
    assert out == ""
    one_error_line(err, f"argument {fragment}: ")


def test_options_at_their_bounds_are_accepted(run) -> None:
    assert run("purge", "--older-than", "36525d", "--dry-run")[0] == 0
    assert run("purge", "--older-than", "1s", "--batch-size", "2147483647")[0] == 0
    assert run("status", "--watch", "0.1", "--refreshes", "1")[0] == 0
    assert run("jobs", "list", "--limit", "2147483647")[0] == 0


# --- grants ---------------------------------------------------------------------------------


@pytest.fixture
def role_names(dsn: str, admin_dsn: str) -> Iterator[list[str]]:
    suffix = secrets.token_hex(4)
    names = [f"pgjobs_cli_{kind}_{suffix}" for kind in ("enq", "wrk", "read")]
    yield names
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in names:
            if (
                conn.execute("select from pg_roles where rolname = %s", (name,)).fetchone()
                is not None
            ):
                conn.execute(f"drop owned by {name}".encode())
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for name in names:
            conn.execute(f"drop role if exists {name}".encode())


def test_grants(run, role_names: list[str]) -> None:
    enq, wrk, read = role_names
    code, out, _ = run("grants", "--enqueuer", enq, "--worker", wrk, "--reader", read)
    assert code == 0
    lines = out.splitlines()
    assert lines[:3] == [f"CREATE ROLE {name} NOLOGIN;" for name in role_names]
    assert (
        "GRANT INSERT (id, queue, kind, payload, priority, max_retry, timeout, run_at, state, "
        "trace_context)" in out
    )
    code, out, _ = run("grants", "--enqueuer", enq, "--worker", wrk, "--reader", read)
    assert "CREATE ROLE" not in out


def test_grants_without_create_on_missing_roles_is_one_line(run, role_names: list[str]) -> None:
    code, _, err = run("grants", "--no-create", "--enqueuer", role_names[0])
    assert code == 2
    one_error_line(err, "does not exist")
