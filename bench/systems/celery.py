"""Celery 5 on Redis: ``task.delay`` for producers, one ``celery worker`` to drain."""

from __future__ import annotations

import os
from typing import Any

from bench.systems.base import BIN, WorkerSpec, child_env
from bench.systems.redis_base import RedisQueue

#: One process, as the others get. Quick drains on 2026-12-03 (20k jobs, loaded
#: machine): threads/10 436 and 794 jobs/s, solo 261 and 630, threads/4 476, prefork/2
#: 308, gevent/50 94: threads it is. ``BENCH_CELERY_POOL`` and ``..._CONCURRENCY`` retry.
POOL = os.environ.get("BENCH_CELERY_POOL", "threads")
CONCURRENCY = int(os.environ.get("BENCH_CELERY_CONCURRENCY", "10"))
#: Messages each worker process reserves ahead: many, for tasks this short.
PREFETCH = 256


class _Producer:
    """``task.delay``, as users call it: on the app's own pool of broker connections."""

    def __init__(self) -> None:
        from bench.apps import celery_app

        self.tasks: dict[str, Any] = {"noop": celery_app.noop, "ping": celery_app.ping}

    def enqueue(self, kind: str, i: int) -> None:
        self.tasks[kind].delay(i)

    def close(self) -> None:
        # The pool belongs to the app, which outlives this producer (the next workload
        # makes another); its connections end with the process.
        pass


class CelerySystem(RedisQueue):
    name = "celery"

    def new_producer(self) -> _Producer:
        return _Producer()

    def left(self, r: Any) -> int:
        # Reserved but not yet acknowledged messages sit in ``unacked`` until they run.
        return int(r.llen("celery")) + int(r.hlen("unacked"))

    def worker(self, dsn: str, queues: dict[str, int] | None = None) -> WorkerSpec:
        argv = [str(BIN / "celery"), "-A", "bench.apps.celery_app", "worker"]
        argv += [f"--pool={POOL}", f"--concurrency={CONCURRENCY}", "--loglevel=WARNING"]
        argv += [f"--prefetch-multiplier={PREFETCH}"]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        description = (
            f"`--pool={POOL} --concurrency={CONCURRENCY}`, `--prefetch-multiplier={PREFETCH}`,"
            " acks on receipt "
            "(default), results ignored, no gossip/mingle/heartbeat"
        )
        return WorkerSpec(argv, child_env(dsn), description)
