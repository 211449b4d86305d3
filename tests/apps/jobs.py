"""A worker app for the process-level tests, configured by environment variables.

``PGJOBS_TEST_CONFIG``
    A JSON object of :class:`pgjobs.Config` fields (``{"lease": 2, "concurrency": 4}``).
``PGJOBS_TEST_BACKOFF``
    Seconds: a constant retry delay for every kind (default: pgjobs' own backoff).
``PGJOBS_TEST_KINDS``
    Comma-separated kinds to register (default: all of them), so a test can run a worker
    that lacks a handler.
``PGJOBS_TEST_OUT``
    A directory for what the handlers leave behind: marker files named
    ``{event}-{job_id}-{attempt}`` (events ``started``, ``done``, ``cancelled``), and at
    exit ``executed-{pid}.txt``, the id of every job whose ``record`` handler ran, one a
    line, in order.

The kinds (payload keys in brackets):

``record``
    Async. Notes the job id [and sleeps ``sleep`` seconds first].
``record_sync``
    The same in a thread.
``hold``
    Async. On the attempts listed in ``hold_attempts`` (default ``[1]``): writes
    ``started``, waits ``seconds`` (default an hour) or until a file named ``until``
    appears in the output directory, writes ``done``; on cancellation it writes
    ``cancelled`` (holding ``ctx.reason``) and re-raises. Other attempts just write ``done``.
``hold_sync``
    The same in a thread, waiting with ``ctx.wait``, which wakes on cancellation.
``stubborn_sync``
    A thread that ignores its context: writes ``started``, ``time.sleep(seconds)``, writes
    ``done``.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import time
from pathlib import Path
from typing import Any

import pgjobs
from pgjobs.backoff import constant

OUT = Path(os.environ.get("PGJOBS_TEST_OUT", "."))
EXECUTED: list[int] = []


def _config() -> pgjobs.Config:
    fields: dict[str, Any] = json.loads(os.environ.get("PGJOBS_TEST_CONFIG") or "{}")
    backoff = os.environ.get("PGJOBS_TEST_BACKOFF")
    if backoff:
        fields["backoff"] = constant(float(backoff))
    return pgjobs.Config(**fields)


def mark(event: str, ctx: pgjobs.Context, text: str = "") -> None:
    (OUT / f"{event}-{ctx.job_id}-{ctx.attempt}").write_text(text)


def _holds(ctx: pgjobs.Context, task: pgjobs.Task) -> bool:
    return ctx.attempt in task.payload.get("hold_attempts", [1])


async def record(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
    if task.payload.get("sleep"):
        await asyncio.sleep(task.payload["sleep"])
    EXECUTED.append(ctx.job_id)


def record_sync(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
    if task.payload.get("sleep"):
        time.sleep(task.payload["sleep"])
    EXECUTED.append(ctx.job_id)


def _released(task: pgjobs.Task, started: float) -> bool:
    until = task.payload.get("until")
    if until is not None and (OUT / until).exists():
        return True
    return time.monotonic() - started >= float(task.payload.get("seconds", 3600))


async def hold(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
    if _holds(ctx, task):
        mark("started", ctx)
        started = time.monotonic()
        try:
            while not _released(task, started):  # noqa: ASYNC110 - a file, not an event
                await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            mark("cancelled", ctx, str(ctx.reason))
            raise
    mark("done", ctx)


def hold_sync(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
    if _holds(ctx, task):
        mark("started", ctx)
        started = time.monotonic()
        while not _released(task, started):
            if ctx.wait(0.02):
                mark("cancelled", ctx, str(ctx.reason))
                return
    mark("done", ctx)


def stubborn_sync(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
    mark("started", ctx)
    time.sleep(task.payload.get("seconds", 3600))
    mark("done", ctx)


HANDLERS = {
    "record": record,
    "record_sync": record_sync,
    "hold": hold,
    "hold_sync": hold_sync,
    "stubborn_sync": stubborn_sync,
}

config = _config()
server = pgjobs.Server(config)
_kinds = os.environ.get("PGJOBS_TEST_KINDS")
for _kind in _kinds.split(",") if _kinds is not None else HANDLERS:
    if _kind:
        server.register_handler(_kind, HANDLERS[_kind])


@atexit.register
def _dump_executed() -> None:
    if os.environ.get("PGJOBS_TEST_OUT"):
        lines = "".join(f"{job_id}\n" for job_id in EXECUTED)
        (OUT / f"executed-{os.getpid()}.txt").write_text(lines)
