"""``server.run()`` in an application's own script (``python myapp/jobs.py``): it logs as
``python -m pgjobs worker`` does, unless the application configured logging itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.apps.procs import REPO, wait_for

pytestmark = pytest.mark.slow  # each test starts a Python process

APP = """\
import logging
import sys

import pgjobs

server = pgjobs.Server(pgjobs.Config(dsn=sys.argv[1]))


@server.handler("noop")
def noop(ctx: pgjobs.Context, task: pgjobs.Task) -> None: ...


if __name__ == "__main__":
    {setup}
    server.run()
"""


def run_script(tmp_path: Path, dsn: str, setup: str = "pass") -> str:
    """Run the app as ``python jobs.py DSN`` until its worker has started, stop it with
    SIGINT, and return what it wrote to stderr."""
    script = tmp_path / "jobs.py"
    script.write_text(APP.format(setup=setup))
    log = tmp_path / "stderr.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(script), dsn], stderr=stderr, stdout=stderr, env=env
        )
        try:
            wait_for(
                lambda: process.poll() is not None or " started: " in log.read_text(),
                "the worker to start",
                detail=log.read_text,
            )
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 0, log.read_text()
        finally:
            process.kill()
    return log.read_text()


def test_server_run_logs_like_the_worker_command(dsn: str, tmp_path: Path) -> None:
    output = run_script(tmp_path, dsn)
    [start] = [line for line in output.splitlines() if " started: " in line]
    assert " INFO pgjobs.worker: pgjobs " in start, output
    assert "SIGINT received" in output


def test_server_run_keeps_the_applications_own_logging(dsn: str, tmp_path: Path) -> None:
    setup = 'logging.basicConfig(level=logging.INFO, format="APP %(levelname)s %(message)s")'
    output = run_script(tmp_path, dsn, setup)
    [start] = [line for line in output.splitlines() if " started: " in line]
    assert start.startswith("APP INFO pgjobs "), output
