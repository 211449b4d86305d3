"""The systems under test, by name, plus the plain-table ceiling."""

from __future__ import annotations

from bench.systems.base import Producer, System, Unavailable, WorkerSpec

NAMES = ("pgjobs", "procrastinate", "pgqueuer")

__all__ = ["NAMES", "Producer", "System", "Unavailable", "WorkerSpec", "get"]


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
    if name == "plain":
        from bench.systems.plain import PlainTable

        return PlainTable()
    raise ValueError(f"unknown system {name!r}; choose from {', '.join(NAMES)}")
