"""``pgjobs worker``: what a user sees when the command line, the app or the database is wrong,
and the line a worker logs when it starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import pgjobs
from pgjobs import migrate
from tests.apps.procs import REPO, WorkerProcess

pytestmark = pytest.mark.slow  # each test starts a Python process

#: For errors caught before any connection: nothing listens there, and nothing may try.
UNUSED_DSN = "postgresql://nobody@127.0.0.1:9/never_used"


def run_worker(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m pgjobs worker ARGS`` to completion, from the repository root."""
    environ = {k: v for k, v in os.environ.items() if k not in ("PGJOBS_DSN", "DATABASE_URL")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pgjobs", "worker", *args],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit status 2 and exactly one line on stderr, ``pgjobs: error: ...``, nothing on stdout."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pgjobs: error: "), lines[0]
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


# --- the app to run -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("app", "fragments"),
    [
        ("tests.apps.jobs", ["invalid app 'tests.apps.jobs'", "MODULE:ATTRIBUTE"]),
        (":server", ["invalid app ':server'"]),
        ("tests.apps.jobs:", ["invalid app 'tests.apps.jobs:'"]),
        ("no_such_module_xyz:server", ["cannot import 'no_such_module_xyz'"]),
        ("tests.apps.no_such_module:server", ["cannot import 'tests.apps.no_such_module'"]),
        ("tests.apps.jobs:no_such_server", ["has no attribute 'no_such_server'"]),
        ("tests.apps.jobs:config", ["tests.apps.jobs:config is a Config, not a pgjobs.Server"]),
    ],
)
def test_bad_app_path_is_one_clear_line(app: str, fragments: list[str]) -> None:
    assert_one_line_error(run_worker(app, "--dsn", UNUSED_DSN), *fragments)


def test_import_error_inside_the_app_is_shown_as_is() -> None:
    """A module the app itself imports is missing: that is the app's bug, shown with its
    traceback, not reported as a bad path."""
    result = run_worker("tests.apps.broken:server", "--dsn", UNUSED_DSN)
    assert result.returncode == 1
    assert "No module named 'no_such_dependency_for_pgjobs_tests'" in result.stderr
    assert "Traceback" in result.stderr
    assert "pgjobs: error" not in result.stderr


def test_import_error_of_a_module_named_like_a_prefix_of_the_app() -> None:
    result = run_worker("tests.apps.brokenapp:server", "--dsn", UNUSED_DSN)
    assert result.returncode == 1, result.stderr
    assert "No module named 'tests.apps.broke'" in result.stderr
    assert "pgjobs: error" not in result.stderr


# --- options and configuration ------------------------------------------------------------


def test_missing_dsn_is_one_clear_line() -> None:
    """No --dsn, no PGJOBS_DSN, no DATABASE_URL (the app's Config has no dsn either)."""
    assert_one_line_error(
        run_worker("tests.apps.jobs:server"), "no database given", "PGJOBS_DSN", "DATABASE_URL"
    )


@pytest.mark.parametrize(
    ("queues", "fragment"),
    [
        ("critical=x", "invalid weight 'x' for queue 'critical'"),
        ("critical=0", "queue 'critical': weight must be a whole number of at least 1"),
        ("critical=-2", "weight must be a whole number of at least 1"),
        ("critical=1.5", "invalid weight '1.5'"),
        ("critical=6,critical=3", "queue 'critical' is listed twice"),
        ("critical=6,,low=1", "an empty queue name"),
        ("=3", "an empty queue name"),
    ],
)
def test_invalid_queues_are_one_clear_line(queues: str, fragment: str) -> None:
    result = run_worker("tests.apps.jobs:server", "--dsn", UNUSED_DSN, "--queues", queues)
    assert_one_line_error(result, fragment)


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--concurrency", "0", "concurrency must be a whole number of at least 1"),
        ("--poll-interval", "0", "poll_interval must be a number of seconds, more than 0"),
        ("--shutdown-timeout", "-1", "shutdown_timeout must be a number of seconds, 0 or more"),
        ("--schema", "Bad-Name", "schema name 'Bad-Name' is not allowed"),
    ],
)
def test_invalid_option_values_are_one_clear_line(option: str, value: str, fragment: str) -> None:
    result = run_worker("tests.apps.jobs:server", "--dsn", UNUSED_DSN, option, value)
    assert_one_line_error(result, fragment)


def test_help_shows_examples() -> None:
    result = run_worker("--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout
    assert "pgjobs worker myapp.jobs:server --queues critical=6,default=3,low=1" in result.stdout
    assert "--no-listen" in result.stdout
    assert "--shutdown-timeout" in result.stdout


# --- the database ---------------------------------------------------------------------------


def test_unmigrated_database_is_one_clear_line(empty_dsn: str) -> None:
    result = run_worker("tests.apps.jobs:server", "--dsn", empty_dsn)
    assert_one_line_error(
        result, "the pgjobs schema 'pgjobs' is not installed", "run `python -m pgjobs migrate"
    )


async def test_worker_raises_schema_error_on_an_unmigrated_database(empty_dsn: str) -> None:
    server = pgjobs.Server(pgjobs.Config(dsn=empty_dsn))
    with pytest.raises(pgjobs.SchemaError, match=r"not installed.*run `python -m pgjobs migrate"):
        await server.start()
    assert server.worker is None


async def test_worker_raises_schema_error_on_an_outdated_schema(dsn: str) -> None:
    """A schema at another revision is refused too: the worker's SQL needs the newest.
    (pgjobs has one revision so far: the version table is set back by hand.)"""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("update pgjobs.pgjobs_version set version_num = '0000'")
    server = pgjobs.Server(pgjobs.Config(dsn=dsn))
    with pytest.raises(pgjobs.SchemaError, match=rf"needs revision {migrate.head_revision()}"):
        await server.start()


# --- the start line -------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["--dsn", "PGJOBS_DSN"])
def test_start_line_names_everything_but_the_password(dsn: str, tmp_path: Path, via: str) -> None:
    """One line at start: version, queues with weights, concurrency, the database without
    its password. The password (ignored by the test server's trust auth) never appears."""
    with_password = make_conninfo(dsn, password="secret")
    args = ["--queues", "critical=6,default=3,low=1", "--concurrency", "7"]
    env = {"PGJOBS_DSN": with_password} if via == "PGJOBS_DSN" else {}
    worker = WorkerProcess(
        with_password if via == "--dsn" else None,
        tmp_path,
        *args,
        env={**{k: "" for k in ("PGJOBS_DSN", "DATABASE_URL")}, **env},
    )
    try:
        worker.wait_started()
        [line] = [line for line in worker.log().splitlines() if " started: " in line]
        assert f"pgjobs {pgjobs.__version__} worker " in line
        assert "queues critical=6,default=3,low=1 (weighted)" in line
        assert "concurrency 7" in line
        assert f"dbname={conninfo_to_dict(dsn)['dbname']}" in line
        assert "password=***" in line
        worker.send(signal.SIGTERM)
        assert worker.wait() == 0
    finally:
        worker.kill()
    assert "secret" not in worker.log()
