"""The arq worker: ``arq bench.apps.arq_app.WorkerSettings`` (see bench/systems/arq.py).

arq polls its Redis sorted set (it has no wakeup signal), every ``poll_delay``; the
benchmark sets that and ``max_jobs`` through the environment so that the settings live
in one place, the system module.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from arq import run_worker
from arq.connections import RedisSettings

from bench.apps import signal
from bench.systems.redis_base import REDIS_URL


async def noop(ctx: dict[str, Any], seq: int) -> None:
    signal.noop_called()


async def ping(ctx: dict[str, Any], seq: int) -> None:
    signal.ping_called(seq)


class WorkerSettings:
    functions = [noop, ping]
    redis_settings = RedisSettings.from_dsn(REDIS_URL)
    max_jobs = int(os.environ.get("BENCH_ARQ_MAX_JOBS", "10"))
    poll_delay = float(os.environ.get("BENCH_ARQ_POLL_DELAY", "0.5"))
    keep_result = 0
    handle_signals = True


def main() -> None:
    # Not ``arq bench.apps.arq_app.WorkerSettings``: that CLI logs every job at info
    # level and has no option to turn it down; the worker it runs is this one.
    logging.basicConfig(level=logging.WARNING)
    run_worker(WorkerSettings)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
