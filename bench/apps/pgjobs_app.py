"""The pgjobs worker app: ``python -m pgjobs worker bench.apps.pgjobs_app:server``.

The benchmark passes ``--concurrency`` and ``--queues`` on the command line; the same
values are read here from ``BENCH_CONCURRENCY`` and ``BENCH_QUEUES`` so that the app
means the same thing when run on its own.
"""

from __future__ import annotations

import os

import pgjobs
from bench.apps import signal
from pgjobs.config import parse_queues

server = pgjobs.Server(
    pgjobs.Config(
        dsn=os.environ.get("BENCH_DSN") or None,
        concurrency=int(os.environ.get("BENCH_CONCURRENCY", "500")),
        queues=parse_queues(os.environ.get("BENCH_QUEUES", "default=1")),
    )
)


@server.handler("noop")
async def noop(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
    signal.noop_called()


@server.handler("ping")
async def ping(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
    signal.ping_called(int(task.payload["seq"]))
