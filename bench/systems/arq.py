"""arq on Redis: ``ArqRedis.enqueue_job`` for producers, one arq worker to drain."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool

from bench.systems.base import WorkerSpec, child_env
from bench.systems.redis_base import REDIS_URL, RedisQueue

APP = "bench.apps.arq_app"
#: Jobs run at once (arq's default is 10); a poll fetches up to the free slots.
MAX_JOBS = 500
#: Seconds between polls of the queue (arq's default is 0.5): arq has no wakeup signal,
#: so this bounds its latency; shorter costs an idle worker a Redis call per poll.
POLL_DELAY = 0.005
CHUNK = 1000


class _Producer:
    """arq's client is asyncio only: each call runs on this producer's own event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.redis: ArqRedis = self.loop.run_until_complete(
            create_pool(RedisSettings.from_dsn(REDIS_URL))
        )

    def enqueue(self, kind: str, i: int) -> None:
        self.loop.run_until_complete(self.redis.enqueue_job(kind, i))

    def enqueue_for(self, seconds: float, first: int) -> int:
        async def send() -> int:
            sent = 0
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                await self.redis.enqueue_job("noop", first + sent)
                sent += 1
            return sent

        return self.loop.run_until_complete(send())

    def enqueue_many(self, kind: str, seqs: range) -> None:
        async def send() -> None:
            await asyncio.gather(*(self.redis.enqueue_job(kind, i) for i in seqs))

        self.loop.run_until_complete(send())

    def close(self) -> None:
        self.loop.run_until_complete(self.redis.aclose())
        self.loop.close()


class ArqSystem(RedisQueue):
    name = "arq"

    def new_producer(self) -> _Producer:
        return _Producer()

    def left(self, r: Any) -> int:
        # A job leaves arq's queue (a sorted set) only once it has finished.
        return int(r.zcard("arq:queue"))

    def fill(self, producer: _Producer, kind: str, seqs: range) -> None:
        # arq has no bulk enqueue: concurrent ``enqueue_job`` calls, CHUNK at a time.
        for first in range(seqs.start, seqs.stop, CHUNK):
            producer.enqueue_many(kind, range(first, min(first + CHUNK, seqs.stop)))

    def worker(self, dsn: str, queues: dict[str, int] | None = None) -> WorkerSpec:
        env = child_env(dsn, BENCH_ARQ_MAX_JOBS=str(MAX_JOBS), BENCH_ARQ_POLL_DELAY=str(POLL_DELAY))
        description = (
            f"1 process (`arq.run_worker`), async handlers, `max_jobs={MAX_JOBS}`, "
            f"`poll_delay={POLL_DELAY}`, results not kept"
        )
        return WorkerSpec([sys.executable, "-m", APP], env, description)
