"""The RQ job functions, run by ``rq worker --worker-class rq.worker.SimpleWorker``."""

from __future__ import annotations

from bench.apps import signal


def noop(seq: int) -> None:
    signal.noop_called()


def ping(seq: int) -> None:
    signal.ping_called(seq)
