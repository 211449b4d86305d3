"""RQ on Redis: ``Queue.enqueue`` for producers, one ``rq worker`` (SimpleWorker) to drain."""

from __future__ import annotations

from typing import Any

from rq import Queue

from bench.apps import rq_app
from bench.systems.base import BIN, WorkerSpec, child_env
from bench.systems.redis_base import REDIS_URL, RedisQueue, client

#: RQ's default Worker forks a child per job; SimpleWorker runs it in the worker's own
#: process, by far the faster for short jobs (RQ's docs suggest it for them).
WORKER_CLASS = "rq.worker.SimpleWorker"
FUNCTIONS = {"noop": rq_app.noop, "ping": rq_app.ping}
#: Results are not kept (RQ's default keeps them 500 s): nobody reads them here.
RESULT_TTL = 0
CHUNK = 1000


class _Producer:
    def __init__(self) -> None:
        self.redis = client()
        self.queue = Queue("default", connection=self.redis)

    def enqueue(self, kind: str, i: int) -> None:
        self.queue.enqueue(FUNCTIONS[kind], i, result_ttl=RESULT_TTL)

    def close(self) -> None:
        self.redis.close()


class RqSystem(RedisQueue):
    name = "rq"

    def new_producer(self) -> _Producer:
        return _Producer()

    def left(self, r: Any) -> int:
        # A job moves from the queue's list to its work-in-progress registry while it runs.
        return int(r.llen("rq:queue:default")) + int(r.zcard("rq:wip:default"))

    def failed(self, r: Any) -> int:
        return int(r.zcard("rq:failed:default"))

    def fill(self, producer: _Producer, kind: str, seqs: range) -> None:
        for first in range(seqs.start, seqs.stop, CHUNK):
            datas = [
                Queue.prepare_data(FUNCTIONS[kind], (i,), result_ttl=RESULT_TTL)
                for i in range(first, min(first + CHUNK, seqs.stop))
            ]
            with producer.redis.pipeline() as pipe:
                producer.queue.enqueue_many(datas, pipeline=pipe)
                pipe.execute()

    def worker(self, dsn: str, queues: dict[str, int] | None = None) -> WorkerSpec:
        argv = [str(BIN / "rq"), "worker", "--url", REDIS_URL, "--worker-class", WORKER_CLASS]
        argv += ["--logging_level", "WARNING", "--disable-job-desc-logging", "default"]
        description = f"1 process, `{WORKER_CLASS}` (no fork per job), results not kept"
        return WorkerSpec(argv, child_env(dsn), description)
