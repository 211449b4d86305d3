"""What a workload produces: one :class:`Result` per system and measurement."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Result:
    """One number for one system on one workload; ``value is None`` means n/a."""

    workload: str
    system: str
    value: float | None
    unit: str
    note: str = ""
    commits_per_job: float | None = None
    wal_per_job: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


def unavailable(workload: str, system: str, unit: str, reason: str) -> Result:
    return Result(workload, system, None, unit, note=f"n/a: {reason}")
