"""The worker's per-job log lines (pgjobs.jobs): one per attempt, with its fields, in text
or JSON; identical failures rate-limited so a retry storm cannot flood the log."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs._logging import JsonFormatter
from pgjobs._worker.joblog import FAILURE_WINDOW, FAILURES_SHOWN, FailureLimiter
from tests.apps.procs import WorkerProcess
from tests.test_worker import make_config, wait_for_state, wait_until

pytestmark = pytest.mark.timeout(120)

JOB_FIELDS = {"job_id", "kind", "queue", "attempt", "duration", "outcome"}


def left(db: psycopg.Connection[Any]) -> int:
    row = db.execute("select count(*) from pgjobs.jobs where state <> 'failed'").fetchone()
    assert row is not None
    return int(row[0])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_identical_failures_are_counted_once_past_the_first_few() -> None:
    clock = Clock()
    limiter = FailureLimiter(window=10.0, shown=3, clock=clock)
    storm = ("send_email", "RuntimeError", "RuntimeError: smtp down")
    other = ("send_email", "TimeoutError", "TimeoutError: slow")
    shown = [limiter.admit(storm)[0] for _ in range(10_000)]
    assert shown[:3] == [True] * 3
    assert not any(shown[3:])
    assert limiter.admit(other) == (True, True)  # another error is another window
    clock.now += 9.9
    assert limiter.ended() == []  # still inside the window
    clock.now += 0.1
    assert limiter.ended() == [(storm, 9_997, 10.0)]  # `other` was logged in full
    assert limiter.admit(storm) == (True, True)  # a new window logs the first ones again
    clock.now += 2.0
    limiter.admit(storm)
    [limiter.admit(storm) for _ in range(5)]
    assert limiter.ended(all=True) == [(storm, 4, 2.0)]


async def test_each_job_gets_a_line_with_its_fields(dsn, db, running, caplog) -> None:
    caplog.set_level(logging.INFO, logger="pgjobs.jobs")
    server = pgjobs.Server()

    @server.handler("fine")
    async def fine(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        pass

    @server.handler("broken")
    def broken(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise ValueError("bad input")

    ok = pgjobs.enqueue(db, pgjobs.Task("fine", queue="low"))
    bad = pgjobs.enqueue(db, pgjobs.Task("broken", max_retry=0))
    await running(server, make_config(dsn, completed_retention=None))
    await wait_for_state(db, bad, "failed")
    await wait_for_state(db, ok, "completed")
    records = {r.job_id: r for r in caplog.records if r.name == "pgjobs.jobs"}  # type: ignore[attr-defined]
    done, failed = records[ok], records[bad]
    assert done.levelno == logging.INFO
    assert f"job {ok} (fine) completed in " in done.getMessage()
    assert {k: getattr(done, k) for k in JOB_FIELDS - {"duration"}} == {
        "job_id": ok,
        "kind": "fine",
        "queue": "low",
        "attempt": 1,
        "outcome": "completed",
    }
    assert 0 <= done.duration < 10  # type: ignore[attr-defined]
    assert failed.levelno == logging.ERROR
    assert "ValueError: bad input" in failed.getMessage()
    assert failed.outcome == "failed"  # type: ignore[attr-defined]
    assert "in broken" in failed.error  # type: ignore[attr-defined]  # the frames, for JSON
    assert failed.exc_info is None  # the traceback only at DEBUG
    # JSON: the same fields as keys, the error's frames included.
    entry = json.loads(JsonFormatter().format(failed))
    assert set(entry) >= JOB_FIELDS
    assert (entry["level"], entry["logger"], entry["job_id"]) == ("ERROR", "pgjobs.jobs", bad)
    assert "raise ValueError" in entry["error"]


async def test_a_retried_attempt_is_a_warning_with_the_error(dsn, db, running, caplog) -> None:
    """An attempt that fails and will run again: WARNING, its exception type and message
    and the delay, no traceback at INFO; the next attempt's success at INFO."""
    caplog.set_level(logging.INFO, logger="pgjobs.jobs")
    server = pgjobs.Server()

    @server.handler("flaky", backoff=lambda attempt, error: 0)
    async def flaky(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        if ctx.attempt == 1:
            raise ConnectionError("smtp down")

    job_id = pgjobs.enqueue(db, pgjobs.Task("flaky", max_retry=1))
    config = make_config(dsn, completed_retention=None, poll_interval=0.2)
    await running(server, config)
    await wait_for_state(db, job_id, "completed")
    retried, done = [r for r in caplog.records if r.name == "pgjobs.jobs"]
    assert retried.levelno == logging.WARNING
    assert retried.getMessage().startswith(f"job {job_id} (flaky) attempt 1 failed after ")
    assert retried.getMessage().endswith(", retry in 0s: ConnectionError: smtp down")
    assert (retried.outcome, retried.attempt, retried.retry_in) == ("retry", 1, 0)  # type: ignore[attr-defined]
    assert retried.exc_info is None
    assert (done.levelno, done.outcome, done.attempt) == (logging.INFO, "completed", 2)  # type: ignore[attr-defined]


async def test_the_traceback_comes_at_debug(dsn, db, running, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="pgjobs.jobs")
    server = pgjobs.Server()

    @server.handler("broken")
    async def broken(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise ValueError("bad input")

    job_id = pgjobs.enqueue(db, pgjobs.Task("broken", max_retry=0))
    await running(server, make_config(dsn))
    await wait_for_state(db, job_id, "failed")
    [record] = [r for r in caplog.records if r.name == "pgjobs.jobs"]
    assert record.exc_info is not None
    assert "Traceback" in caplog.text


async def test_success_lines_can_be_turned_down(dsn, db, running, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="pgjobs.jobs")
    server = pgjobs.Server()
    server.register_handler("fine", lambda ctx, task: None)
    job_id = pgjobs.enqueue(db, pgjobs.Task("fine"))
    await running(server, make_config(dsn, completed_retention=None))
    await wait_for_state(db, job_id, "completed")
    assert [r for r in caplog.records if r.name == "pgjobs.jobs"] == []


async def test_a_storm_of_identical_failures_is_a_few_lines_and_a_count(
    dsn, db, running, caplog
) -> None:
    """10,000 failing attempts: the first few are logged, the rest summed up in one line."""
    caplog.set_level(logging.INFO, logger="pgjobs.jobs")
    server = pgjobs.Server()

    @server.handler("send_email")
    async def send_email(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise RuntimeError("smtp down")

    storm = 10_000
    pgjobs.enqueue_many(db, [pgjobs.Task("send_email", max_retry=0) for _ in range(storm)])
    began = time.monotonic()
    worker = await running(server, make_config(dsn, concurrency=50))
    await wait_until(lambda: left(db) == 0, what="every job to fail", limit=90)
    await worker.stop()
    windows = 1 + int((time.monotonic() - began) / FAILURE_WINDOW)  # most that can open
    lines = [r for r in caplog.records if r.name == "pgjobs.jobs"]
    assert len(lines) <= windows * (FAILURES_SHOWN + 1)
    summaries = [r for r in lines if r.outcome == "suppressed"]  # type: ignore[attr-defined]
    shown = len(lines) - len(summaries)
    assert sum(r.suppressed for r in summaries) + shown == storm  # type: ignore[attr-defined]
    assert "more like it in the last" in summaries[-1].getMessage()
    assert "send_email failures (RuntimeError: smtp down): and " in summaries[0].getMessage()


def test_the_worker_command_logs_json(dsn: str, db, tmp_path: Path) -> None:
    """``--log-format json``: one JSON object a line, each job's fields as keys."""
    job_id = pgjobs.enqueue(db, pgjobs.Task("record"))
    worker = WorkerProcess(dsn, tmp_path, "--log-format", "json")
    try:
        worker.wait_started()
        worker.wait_log('"outcome": "completed"')
        assert worker.stop() == 0
    finally:
        worker.kill()
    entries = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    [done] = [e for e in entries if e["logger"] == "pgjobs.jobs"]
    assert set(done) >= JOB_FIELDS
    assert (done["job_id"], done["kind"], done["outcome"]) == (job_id, "record", "completed")
    assert any(" started: " in e["message"] for e in entries)


def test_configure_logging_refuses_an_unknown_format() -> None:
    with pytest.raises(pgjobs.ConfigurationError, match="text, json"):
        pgjobs.configure_logging(fmt="xml")


def test_json_lines_carry_extra_fields() -> None:
    record = logging.LogRecord("pgjobs.jobs", logging.INFO, __file__, 1, "job %d", (7,), None)
    record.job_id = 7
    entry = json.loads(JsonFormatter().format(record))
    assert (entry["message"], entry["job_id"], entry["level"]) == ("job 7", 7, "INFO")
    assert "traceback" not in entry
