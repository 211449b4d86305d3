"""The Celery app: ``celery -A bench.apps.celery_app worker ...`` (see bench/systems/celery.py).

Celery tasks are sync functions; the pool runs them (``solo``: in the worker's own
thread). Results are ignored (no backend), as for a fire-and-forget job in the others.
"""

from __future__ import annotations

from celery import Celery

from bench.apps import signal
from bench.systems.redis_base import REDIS_URL

app = Celery("bench", broker=REDIS_URL)
app.conf.update(
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
)


@app.task(name="noop")
def noop(seq: int) -> None:
    signal.noop_called()


@app.task(name="ping")
def ping(seq: int) -> None:
    signal.ping_called(seq)
