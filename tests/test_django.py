"""pgjobs.contrib.django: ``manage.py pgjobs ...`` on the database of Django's settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

import pgjobs
from tests.apps.procs import wait_for

ROOT = Path(__file__).resolve().parent.parent


def _env(dsn: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PGJOBS_DSN", "DATABASE_URL")}
    env["PGJOBS_TEST_DJANGO_DB"] = dsn
    env["DJANGO_SETTINGS_MODULE"] = "tests.apps.django_site"
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


def _manage(*args: str) -> list[str]:
    return [sys.executable, "-m", "django", "pgjobs", *args]


def test_migrate_uses_the_databases_setting(empty_dsn: str) -> None:
    done = subprocess.run(
        _manage("migrate"), env=_env(empty_dsn), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("select to_regclass('pgjobs.jobs') is not null").fetchone() == (True,)


def test_worker_runs_the_jobs(dsn: str, tmp_path: Path) -> None:
    env = {**_env(dsn), "PGJOBS_TEST_OUT": str(tmp_path)}
    with psycopg.connect(dsn, autocommit=True) as conn:
        job_id = pgjobs.enqueue(conn, pgjobs.Task("record"))
        worker = subprocess.Popen(_manage("worker", "tests.apps.jobs:server"), env=env)
        try:
            wait_for(
                lambda: (
                    conn.execute(
                        "select count(*) = 0 from pgjobs.jobs"
                        " where id = %s and state in ('available', 'running')",
                        (job_id,),
                    ).fetchone()
                    == (True,)
                ),
                "the worker to finish the job",
                timeout=60,
            )
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=60) == 0
    executed: list[Any] = [
        line for f in tmp_path.glob("executed-*.txt") for line in f.read_text().split()
    ]
    assert executed == [str(job_id)]


def test_the_pgjobs_dsn_setting_wins_over_databases(empty_dsn: str, dsn: str) -> None:
    env = {**_env(dsn), "PGJOBS_TEST_DJANGO_PGJOBS_DSN": empty_dsn}
    done = subprocess.run(_manage("migrate"), env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("select to_regclass('pgjobs.jobs') is not null").fetchone() == (True,)


def test_dsn_reads_the_databases_entry() -> None:
    script = (
        "from django.conf import settings\n"
        "settings.configure(PGJOBS_DATABASE='jobs', DATABASES={'default': {}, 'jobs': {\n"
        "    'NAME': 'shop', 'USER': 'app', 'PASSWORD': 's e', 'HOST': 'db', 'PORT': 6432,\n"
        "    'OPTIONS': {'sslmode': 'require', 'isolation_level': None}}})\n"
        "from pgjobs.contrib.django import dsn\n"
        "print(dsn())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=_env(""), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert conninfo_to_dict(done.stdout.strip()) == {
        "dbname": "shop",
        "user": "app",
        "password": "s e",
        "host": "db",
        "port": "6432",
        "sslmode": "require",
    }


def _test_under_runner(
    empty_dsn: str, *runner: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "django",
            "test",
            "tests.apps.django_testcase",
            "--noinput",
            *runner,
        ],
        env={**_env(empty_dsn), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_test_runner_adds_the_schema_to_the_test_database(empty_dsn: str) -> None:
    done = _test_under_runner(
        empty_dsn,
        "--testrunner",
        "pgjobs.contrib.django.testing.DiscoverRunner",
        # The test database is Django's, whatever pgjobs' own setting names.
        PGJOBS_TEST_DJANGO_PGJOBS_DSN="host=/nonexistent dbname=nowhere",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Ran 1 test" in done.stderr
    # The schema went to Django's test database, not to the database it is named after.
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("select to_regnamespace('pgjobs') is null").fetchone() == (True,)


def test_without_the_runner_the_test_database_has_no_schema(empty_dsn: str) -> None:
    done = _test_under_runner(empty_dsn)
    assert done.returncode != 0
    assert "SchemaError" in done.stderr
