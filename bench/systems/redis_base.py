"""What the Redis-backed peers (Celery, RQ, arq) share: one dedicated Redis database.

They are the queues Python users pick instead of a Postgres one, so they run the same
workloads beside it. Their jobs live in Redis, not in the run's Postgres database (each
workload still gets one, unused), so the Redis database is flushed before every workload
instead, and the drain asks Redis, not Postgres, whether jobs are left.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import redis

from bench.systems.base import Producer

#: The machine's Redis service; database 15 is the benchmark's alone, flushed at will.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")


def client() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL)


class RedisProbe:
    """A drain's :class:`~bench.systems.base.Probe` that counts jobs left in Redis."""

    commits = 0

    def __init__(self, left: Callable[[redis.Redis], int], failed: Callable[[redis.Redis], int]):
        self.redis = client()
        self._left = left
        self._failed = failed

    def busy(self) -> bool:
        return self._left(self.redis) > 0

    def remaining(self) -> int:
        return self._left(self.redis)

    def failed(self) -> int:
        return self._failed(self.redis)

    def close(self) -> None:
        self.redis.close()


class RedisQueue:
    """What the Redis queues share; each says how to make a producer and count its jobs."""

    on_postgres = False
    #: The system's name, also its distribution's.
    name: str

    def new_producer(self) -> Producer:
        raise NotImplementedError

    def left(self, r: redis.Redis) -> int:
        """Jobs waiting or running."""
        raise NotImplementedError

    def failed(self, r: redis.Redis) -> int:
        """Jobs that failed, where the system keeps count (0 where it does not)."""
        return 0

    def fill(self, producer: Any, kind: str, seqs: range) -> None:
        """Enqueue *seqs* as fast as the system allows; a loop where it has no bulk call."""
        for i in seqs:
            producer.enqueue(kind, i)

    def version(self) -> str:
        return f"{self.name} {version(self.name)}"

    def install(self, dsn: str) -> None:
        pass

    def reset(self) -> None:
        with client() as r:
            r.flushdb()

    def producer(self, dsn: str) -> Producer:
        return self.new_producer()

    def bulk_enqueue(self, dsn: str, count: int, kind: str = "noop", start: int = 0) -> float:
        producer = self.new_producer()
        try:
            began = time.perf_counter()
            self.fill(producer, kind, range(start, start + count))
            return time.perf_counter() - began
        finally:
            producer.close()

    def probe(self, dsn: str) -> RedisProbe:
        return RedisProbe(self.left, self.failed)
