"""An example pgjobs application: three weighted queues, a sync and an async handler.

It is the worker of the README's and docs/quickstart.md's story (a shop that emails a
receipt per order and resizes product photos), with more in it: logging, cancellation,
images that fail once or for good.

Run it against any Postgres (migrate once, then start a worker)::

    python -m pgjobs migrate --dsn postgresql://localhost/app
    python -m pgjobs worker examples.app:server --dsn postgresql://localhost/app

and give it work from another terminal::

    python -m examples.enqueue --dsn postgresql://localhost/app --count 100

``PGJOBS_DSN`` can stand in for ``--dsn``. SIGTERM or Ctrl-C stops the worker gracefully.
"""

from __future__ import annotations

import asyncio
import logging

import pgjobs
from pgjobs.backoff import exponential

log = logging.getLogger("examples.app")

server = pgjobs.Server(
    pgjobs.Config(
        queues={"critical": 6, "default": 3, "low": 1},  # 60/30/10 of the slots under load
        concurrency=10,
        shutdown_timeout=10.0,
    )
)


@server.handler("send_email")
def send_email(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
    """A sync handler: it runs in a thread, so it may block.

    Delivery is at least once: after a crash the same email job can run again, so a
    real handler passes a stable key (the payload's ``message_id``, else the job id) to
    a provider that deduplicates on it, or records what it sent.
    """
    message_id = task.payload.get("message_id", f"job-{ctx.job_id}")
    # Blocking work goes here; ctx.wait() sleeps but wakes up if the job is cancelled
    # (timeout, shutdown, operator), which a thread has to notice for itself.
    if ctx.wait(0.05):
        ctx.raise_if_cancelled()
    log.info(
        "job %d: sent message %s to %s (attempt %d)",
        ctx.job_id,
        message_id,
        task.payload["to"],
        ctx.attempt,
    )


@server.handler("resize_image", backoff=exponential(start=1.0, cap=60.0))
async def resize_image(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
    """An async handler: it runs on the worker's event loop and must not block it.

    Raising retries the job after the kind's backoff (here 1 s, 2 s, 4 s ...);
    ``pgjobs.SkipRetry`` fails it at once.
    """
    image = task.payload["image"]
    if task.payload.get("corrupt"):
        raise pgjobs.SkipRetry(f"image {image} cannot be decoded")
    if task.payload.get("flaky") and ctx.attempt == 1:
        raise ConnectionError(f"storage timed out while reading {image}")
    await asyncio.sleep(0.02)  # the actual resizing, awaited
    log.info("job %d: resized %s (attempt %d)", ctx.job_id, image, ctx.attempt)
