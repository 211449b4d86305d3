"""The Procrastinate app: ``procrastinate --app=bench.apps.procrastinate_app.app worker``.

The connector's pool is sized by ``BENCH_POOL_SIZE`` so that every concurrent job slot
of the worker has its own connection (Procrastinate fetches one job per query).
"""

from __future__ import annotations

import os

import procrastinate

from bench.apps import signal

_pool = int(os.environ.get("BENCH_POOL_SIZE", "4"))

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(
        conninfo=os.environ.get("BENCH_DSN", ""), min_size=1, max_size=max(_pool, 1)
    )
)


@app.task(name="noop")
async def noop(seq: int) -> None:
    signal.noop_called()


@app.task(name="ping")
async def ping(seq: int) -> None:
    signal.ping_called(seq)
