"""Handler features in one runnable example: results and waiting for them, Snooze and
Cancel, previous errors, middleware, an error hook, and transactional completion.

    python -m pgjobs migrate --dsn postgresql://localhost/app
    python -m examples.handlers --dsn postgresql://localhost/app

It starts a worker in-process, enqueues one job of each kind, waits for each with
``Client.wait`` and prints what became of it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import time
from typing import Any

import psycopg

import pgjobs

log = logging.getLogger("examples.handlers")

# Keep completed jobs for an hour so that their results can be read.
server = pgjobs.Server(pgjobs.Config(completed_retention=3600, poll_interval=0.2))
failures: list[str] = []


@server.use
def timing(ctx: pgjobs.Context, task: pgjobs.Task):  # type: ignore[no-untyped-def]
    """Middleware: runs around every handler, sync or async."""
    started = time.perf_counter()
    try:
        yield
    finally:
        log.info("%s took %.1f ms", task.kind, (time.perf_counter() - started) * 1000)


@server.on_error
def remember(ctx: pgjobs.Context, task: pgjobs.Task, error: BaseException) -> None:
    """Error hook: every failed attempt (a place for Sentry, metrics...)."""
    failures.append(f"{task.kind} attempt {ctx.attempt}: {error}")


@server.handler("add")
async def add(ctx: pgjobs.Context, task: pgjobs.Task) -> int:
    return sum(task.payload)  # the return value is the job's result


@server.handler("flaky", backoff=lambda attempt, error: 0.1)
async def flaky(ctx: pgjobs.Context, task: pgjobs.Task) -> str:
    if ctx.attempt == 1:
        raise ConnectionError("the API timed out")
    return f"worked on attempt {ctx.attempt} after: {ctx.errors[-1]['error'].splitlines()[0]}"


snoozed: set[int] = set()


@server.handler("rate_limited")
async def rate_limited(ctx: pgjobs.Context, task: pgjobs.Task) -> str:
    if ctx.job_id not in snoozed:  # say the API answered "429, try again shortly"
        snoozed.add(ctx.job_id)
        raise pgjobs.Snooze(0.1)  # later, without using an attempt or recording an error
    return f"done on attempt {ctx.attempt}"


@server.handler("refund")
def refund(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
    raise pgjobs.Cancel("the order was already refunded")


@server.handler("receipt")
def receipt(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
    # The receipt row and the job's completion commit together: never one without the other.
    with ctx.transaction() as conn:
        conn.execute(
            "insert into example_receipts (order_id) values (%s)", (task.payload["order"],)
        )
        ctx.result = {"receipt_for": task.payload["order"]}


async def main(dsn: str) -> dict[str, Any]:
    """Run every example job once; return each kind's final state and result."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("create table if not exists example_receipts (order_id int primary key)")
    async with pgjobs.AsyncClient(dsn) as client:
        await server.start(dataclasses.replace(server.config, dsn=dsn))
        try:
            ids = {
                "add": await client.enqueue(pgjobs.Task("add", [1, 2, 3])),
                "flaky": await client.enqueue(pgjobs.Task("flaky")),
                "rate_limited": await client.enqueue(pgjobs.Task("rate_limited", {})),
                "refund": await client.enqueue(pgjobs.Task("refund")),
                "receipt": await client.enqueue(pgjobs.Task("receipt", {"order": 42})),
            }
            outcomes: dict[str, Any] = {}
            for kind, job_id in ids.items():
                job = await client.wait(job_id, timeout=30)
                assert job is not None
                detail = job.result if job.state == "completed" else job.last_error
                outcomes[kind] = (job.state, detail)
        finally:
            await server.stop()
    return outcomes


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("PGJOBS_DSN"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    for kind, outcome in asyncio.run(main(args.dsn)).items():
        print(f"{kind:>13}: {outcome}")
    print("failed attempts seen by the error hook:", failures)
