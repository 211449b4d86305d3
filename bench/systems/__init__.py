"""The systems under test, by name, plus the plain-table ceiling."""

from __future__ import annotations

from bench.systems.base import Producer, System, Unavailable, WorkerSpec

NAMES = ("pgjobs", "procrastinate", "pgqueuer", "celery", "rq", "arq")
#: Queues kept in Redis: they run the drain, the one-connection enqueue and the latency.
REDIS = ("celery", "rq", "arq")
#: pgjobs run another way, each for some workloads only (see bench.run).
VARIANTS = {
    "pgjobs_client": "PgjobsClient",
    "pgjobs_async_client": "PgjobsAsyncClient",
    "pgjobs_sync": "PgjobsSync",
    "loop": "PythonLoop",
}

__all__ = ["NAMES", "REDIS", "Producer", "System", "Unavailable", "WorkerSpec", "get"]


def get(name: str) -> System:
    """The system called *name*; peers are imported only when asked for."""
    if name == "pgjobs":
        from bench.systems.pgjobs import PgjobsSystem

        return PgjobsSystem()
    if name == "procrastinate":
        from bench.systems.procrastinate import ProcrastinateSystem

        return ProcrastinateSystem()
    if name == "pgqueuer":
        from bench.systems.pgqueuer import PgqueuerSystem

        return PgqueuerSystem()
    if name in VARIANTS:
        from bench.systems import pgjobs

        system: System = getattr(pgjobs, VARIANTS[name])()
        return system
    if name in REDIS:
        return _redis_system(name)
    if name == "plain":
        from bench.systems.plain import PlainTable

        return PlainTable()
    raise ValueError(f"unknown system {name!r}; choose from {', '.join(NAMES)}")


def _redis_system(name: str) -> System:
    if name == "celery":
        from bench.systems.celery import CelerySystem

        return CelerySystem()
    if name == "rq":
        from bench.systems.rq import RqSystem

        return RqSystem()
    from bench.systems.arq import ArqSystem

    return ArqSystem()
