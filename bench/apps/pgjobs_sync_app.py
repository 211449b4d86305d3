"""The pgjobs worker app with sync handlers, the kind most users write:
``python -m pgjobs worker bench.apps.pgjobs_sync_app:server --concurrency 50``.

Everything else is left at its default; a sync handler runs on the worker's threads.
"""

from __future__ import annotations

import os

import pgjobs
from bench.apps import signal

server = pgjobs.Server(
    pgjobs.Config(
        dsn=os.environ.get("BENCH_DSN") or None,
        concurrency=int(os.environ.get("BENCH_CONCURRENCY", "50")),
    )
)


@server.handler("noop")
def noop(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
    signal.noop_called()


@server.handler("ping")
def ping(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
    signal.ping_called(int(task.payload["seq"]))
