"""The command line, run as users run it: ``python -m pgjobs ...`` in a subprocess."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest

import pgjobs
from pgjobs import _dsn, migrate
from pgjobs.cli import build_parser, main
from tests.apps.procs import wait_for

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/x"
DSN_VARIABLES = ("PGJOBS_DSN", "DATABASE_URL")


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m pgjobs *args`` with PGJOBS_DSN and DATABASE_URL only as given in *env*."""
    environment = {k: v for k, v in os.environ.items() if k not in DSN_VARIABLES}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pgjobs", *args],
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pgjobs: error: "), lines[0]
    for word in words:
        assert word in lines[0]
    return lines[0]


def revision(dsn: str) -> str | None:
    with psycopg.connect(dsn) as conn:
        return migrate.current_revision(conn)


def command_names() -> list[str]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return sorted(action.choices)
    raise AssertionError("no subcommands")


# --- help ---------------------------------------------------------------------------------


def test_top_level_help_lists_commands_and_examples(tmp_path: Path) -> None:
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stderr == ""
    assert "examples:" in result.stdout
    assert "pgjobs migrate --dsn" in result.stdout
    assert "PGJOBS_DSN" in result.stdout
    assert "DATABASE_URL" in result.stdout
    for name in command_names():
        assert f"    {name} " in result.stdout or f"    {name}\n" in result.stdout, name


def test_the_foundation_commands_exist() -> None:
    assert {"migrate", "demo"} <= set(command_names())


@pytest.mark.parametrize("command", command_names())
def test_every_command_help_shows_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: pgjobs {command}" in out
    assert "example" in out.lower()
    assert f"pgjobs {command}" in out.split("example", 1)[1], "the example runs the command"


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"pgjobs {pgjobs.__version__}"


def test_no_command_is_a_usage_error() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "required: COMMAND" in result.stderr


# --- errors: one line, exit 2 -------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["migrate", "--dsn", UNREACHABLE],
        ["demo", "--dsn", UNREACHABLE, "--jobs", "1"],
    ],
    ids=["migrate", "demo"],
)
def test_unreachable_database_is_one_line_and_exit_2(args: list[str]) -> None:
    result = run_cli(*args)
    assert_one_error_line(result, "cannot reach the database", "127.0.0.1")
    assert "Traceback" not in result.stderr


def test_unreachable_database_from_the_environment() -> None:
    result = run_cli("migrate", env={"PGJOBS_DSN": UNREACHABLE})
    assert_one_error_line(result, "cannot reach the database")


def test_no_database_at_all_says_how_to_give_one() -> None:
    result = run_cli("migrate")
    assert_one_error_line(result, "--dsn", "PGJOBS_DSN", "DATABASE_URL")
    assert result.stdout == ""


def test_malformed_dsn_is_one_line() -> None:
    assert_one_error_line(run_cli("migrate", "--dsn", "this is not a dsn"))


def test_bad_schema_name_is_one_line(empty_dsn: str) -> None:
    assert_one_error_line(run_cli("migrate", "--dsn", empty_dsn, "--schema", "Bad-Name"), "schema")
    assert_one_error_line(run_cli("migrate", "--sql", "--schema", "user"), "reserved")


def test_unknown_revision_is_one_line(empty_dsn: str) -> None:
    assert_one_error_line(run_cli("migrate", "--dsn", empty_dsn, "--to", "nope"), "nope")
    assert revision(empty_dsn) is None


# --- where the DSN comes from -------------------------------------------------------------


def test_dsn_from_pgjobs_dsn(empty_dsn: str) -> None:
    result = run_cli("migrate", env={"PGJOBS_DSN": empty_dsn})
    assert result.returncode == 0, result.stderr
    assert revision(empty_dsn) == migrate.head_revision()


def test_dsn_from_database_url(empty_dsn: str) -> None:
    result = run_cli("migrate", env={"DATABASE_URL": empty_dsn})
    assert result.returncode == 0, result.stderr
    assert revision(empty_dsn) == migrate.head_revision()


def test_pgjobs_dsn_comes_before_database_url(empty_dsn: str) -> None:
    wrong_first = run_cli("migrate", env={"PGJOBS_DSN": UNREACHABLE, "DATABASE_URL": empty_dsn})
    assert_one_error_line(wrong_first, "cannot reach the database")
    assert revision(empty_dsn) is None
    right_first = run_cli("migrate", env={"PGJOBS_DSN": empty_dsn, "DATABASE_URL": UNREACHABLE})
    assert right_first.returncode == 0, right_first.stderr
    assert revision(empty_dsn) == migrate.head_revision()


def test_dsn_option_comes_before_the_environment(empty_dsn: str) -> None:
    env = {"PGJOBS_DSN": UNREACHABLE, "DATABASE_URL": UNREACHABLE}
    result = run_cli("migrate", "--dsn", empty_dsn, env=env)
    assert result.returncode == 0, result.stderr
    assert revision(empty_dsn) == migrate.head_revision()


def test_resolve_dsn_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGJOBS_DSN", "host=first")
    monkeypatch.setenv("DATABASE_URL", "host=second")
    assert _dsn.resolve_dsn("host=given") == "host=given"
    assert _dsn.resolve_dsn() == "host=first"
    monkeypatch.setenv("PGJOBS_DSN", "")  # empty counts as unset
    assert _dsn.resolve_dsn() == "host=second"
    monkeypatch.delenv("DATABASE_URL")
    with pytest.raises(pgjobs.ConfigurationError):
        _dsn.resolve_dsn()


def test_redact_hides_the_password() -> None:
    shown = _dsn.redact("postgresql://app:s3cret@db.example.com:5433/app")
    assert "s3cret" not in shown
    assert "db.example.com" in shown
    assert "5433" in shown
    assert "s3cret" not in _dsn.redact("host=h password=s3cret")
    assert _dsn.redact("not a dsn") == "<unparseable DSN>"


# --- migrate ------------------------------------------------------------------------------


def test_migrate_reports_what_it_did(empty_dsn: str) -> None:
    head = migrate.head_revision()
    first = run_cli("migrate", "--dsn", empty_dsn)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"pgjobs schema 'pgjobs' migrated from base to {head}"
    again = run_cli("migrate", "--dsn", empty_dsn)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"pgjobs schema 'pgjobs' is at revision {head}: nothing to do"
    down = run_cli("migrate", "--dsn", empty_dsn, "--downgrade", "base")
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == f"pgjobs schema 'pgjobs' migrated from {head} to base"
    assert revision(empty_dsn) is None


def test_migrate_other_schema(empty_dsn: str) -> None:
    result = run_cli("migrate", "--dsn", empty_dsn, "--schema", "jobs_alt")
    assert result.returncode == 0, result.stderr
    assert "'jobs_alt'" in result.stdout
    with psycopg.connect(empty_dsn) as conn:
        assert migrate.current_revision(conn, "jobs_alt") == migrate.head_revision()
        assert migrate.current_revision(conn, "pgjobs") is None


def test_migrate_sql_needs_no_database(tmp_path: Path) -> None:
    env = {"PGHOST": "127.0.0.1", "PGPORT": "1"}  # any connection attempt would fail
    up = run_cli("migrate", "--sql", env=env, cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    assert "CREATE TABLE pgjobs.jobs" in up.stdout
    assert "CREATE INDEX jobs_claim_idx" in up.stdout
    assert up.stdout.rstrip().endswith("COMMIT;")
    alt = run_cli("migrate", "--sql", "--schema", "jobs_alt", env=env)
    assert "CREATE TABLE jobs_alt.jobs" in alt.stdout
    down = run_cli("migrate", "--sql", "--downgrade", "base", env=env)
    assert down.returncode == 0, down.stderr
    assert "DROP TABLE pgjobs.jobs" in down.stdout


@pytest.mark.slow
def test_concurrent_migrate_processes_take_turns(empty_dsn: str) -> None:
    environment = {k: v for k, v in os.environ.items() if k not in DSN_VARIABLES}
    command = [sys.executable, "-m", "pgjobs", "migrate", "--dsn", empty_dsn]
    processes = [
        subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in processes]
    assert [code for code, _, _ in results] == [0, 0, 0], results
    assert revision(empty_dsn) == migrate.head_revision()


# --- demo ---------------------------------------------------------------------------------


def printed_commands(output: str) -> list[list[str]]:
    """The commands the demo prints after "Try next:", split as a shell would."""
    tail = output.split("Try next:\n", 1)[1]
    return [
        shlex.split(line)
        for line in tail.splitlines()
        if line.startswith("  ") and not line.strip().startswith("#")
    ]


def run_printed(commands: list[list[str]]) -> list[str]:
    """Run each printed command as printed, without the test's DSN variables; their output."""
    assert commands
    outputs = []
    for command in commands:
        environment = {k: v for k, v in os.environ.items() if k not in DSN_VARIABLES}
        done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (command, done.stderr)
        outputs.append(done.stdout)
    return outputs


def test_demo_on_a_given_database_keeps_to_its_own_schema(dsn: str) -> None:
    """The demo runs its jobs in schema pgjobs_demo and stops when they are done, whatever
    the application's own queue holds (here a job of a kind no demo handler knows); its
    closing commands work as printed."""
    with psycopg.connect(dsn) as conn:
        user_job = pgjobs.enqueue(conn, pgjobs.Task("an_application_kind"))
    result = run_cli("demo", "--dsn", dsn, "--jobs", "10")
    assert result.returncode == 0, result.stderr
    assert "a job enqueued in a rolled-back transaction: it never existed" in result.stdout
    assert "all jobs done" in result.stdout
    assert " completed in " not in result.stderr  # progress lines, not a line per job
    # The retry line (the CRM's first failure, n=0) says its delay once.
    [retry] = [line for line in result.stderr.splitlines() if "(sync_crm) attempt 1 failed" in line]
    assert retry.endswith(", retry in 0.5s: ConnectionError: the CRM timed out"), retry
    with psycopg.connect(dsn) as conn:
        untouched = conn.execute("select id, state::text, attempt from pgjobs.jobs").fetchall()
        ran = conn.execute("select sum(completed) from pgjobs_demo.stats").fetchone()
    assert untouched == [(user_job, "available", 0)]
    # 10 per queue and the committed email; the rolled-back email never ran.
    assert ran == (31,)
    status, listing = run_printed(printed_commands(result.stdout))
    assert "critical" in status
    assert "sync_crm" in listing


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_demo_on_an_embedded_postgres_stays_up_for_its_commands(
    tmp_path: Path, stop: signal.Signals
) -> None:
    log = tmp_path / "demo.log"
    environment = {k: v for k, v in os.environ.items() if k not in DSN_VARIABLES}
    with log.open("w") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "pgjobs", "demo", "--jobs", "5"],
            stdout=out,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            cwd=tmp_path,
            env=environment,
        )
        try:
            wait_for(
                lambda: demo.poll() is not None or "until Ctrl-C" in log.read_text(),
                "the demo to finish its jobs",
                timeout=120,
                detail=log.read_text,
            )
            output = log.read_text()
            assert output.startswith("starting an embedded Postgres")
            assert re.search(r"\s16 done", output), output
            run_printed(printed_commands(output))
            url = re.search(r"^Open the dashboard: (http://127\.0\.0\.1:\d+/)$", output, re.M)
            assert url, output
            with urllib.request.urlopen(url.group(1), timeout=30) as response:
                page = response.read().decode()
            for queue in ("critical", "default", "low"):
                assert f'<tr data-queue="{queue}">' in page
            data_dir = re.search(r"^database: .*host=(\S+/pgdata)", output, re.M)
            assert data_dir, output
            assert Path(data_dir.group(1)).is_dir()
            # Ctrl-C, or the SIGTERM of `timeout`, a service manager or `docker stop`.
            demo.send_signal(stop)
            assert demo.wait(timeout=60) == 0
            with pytest.raises(urllib.error.URLError):  # the dashboard stopped with it
                urllib.request.urlopen(url.group(1), timeout=5)
            # And so did the embedded Postgres, which deleted its temporary directory.
            assert not Path(data_dir.group(1)).parent.exists()
        finally:
            demo.kill()
