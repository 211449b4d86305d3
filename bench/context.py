"""Settings of a run (quick or full) and the things every workload shares."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench import pg
from bench.procs import Signals
from bench.systems import System


@dataclass(frozen=True)
class Profile:
    """Sizes and time limits; ``QUICK`` must finish in under two minutes in all."""

    name: str
    drain_jobs: int
    drain_timeout: float
    #: The Redis queues' drains: smaller and bounded, so that the full run grows by
    #: minutes, not the hours their rate would take for ``drain_jobs``.
    redis_drain_jobs: int
    redis_drain_timeout: float
    enqueue_seconds: float
    #: Seconds each system enqueues from 8 connections, in ROUNDS slices (enqueue.py).
    #: Two cores shared by 16 processes make the slices' rates spread widely (by a
    #: third, 2026-12-01), so the full run gives them longer than the one-connection
    #: workload: a median of longer slices moves less from run to run.
    concurrent_seconds: float
    concurrent_connections: int
    bulk_jobs: int
    latency_samples: int
    #: Seconds a system may take for its latency samples; slower ones stop early.
    latency_budget: float
    #: Jobs the SQL ceiling drains per case, in whole batches (no time limit: see ceiling.py).
    sql_jobs: int
    #: Scale runs (pgjobs only): ready jobs small / large / medium, completed rows retained.
    scale_sizes: tuple[int, int, int, int] | None


#: A smoke run: every workload of every system, each sized to seconds. On 2026-12-02 the
#: earlier sizes (bulk 100k, 500 latency samples in 6 s, 300k jobs per SQL case, drains
#: bounded at 10 s) took 167 s on a quiet machine, slower that day than the day before
#: (the plain INSERT from one connection: 2,083/s, was 5,034/s); the SQL ceiling alone
#: took 41 s and Procrastinate's bulk 16 s. These take 103 s there.
QUICK = Profile(
    name="quick",
    drain_jobs=20_000,
    drain_timeout=5.0,
    redis_drain_jobs=5_000,
    redis_drain_timeout=5.0,
    enqueue_seconds=1.5,
    concurrent_seconds=1.5,
    concurrent_connections=8,
    bulk_jobs=25_000,
    latency_samples=200,
    latency_budget=3.0,
    sql_jobs=100_000,
    scale_sizes=None,
)

#: The drains are bounded at 15 minutes: Procrastinate's, at 150-250 jobs/s here, would
#: take one to two hours for 1M jobs; a drain cut short reports the jobs it ran over the
#: time it took, and a quarter of an hour is a long enough sample of a steady rate.
FULL = Profile(
    name="full",
    drain_jobs=1_000_000,
    drain_timeout=900.0,
    redis_drain_jobs=50_000,
    redis_drain_timeout=90.0,
    enqueue_seconds=10.0,
    concurrent_seconds=30.0,
    concurrent_connections=8,
    bulk_jobs=100_000,
    latency_samples=500,
    latency_budget=120.0,
    sql_jobs=2_000_000,
    scale_sizes=(10_000, 1_000_000, 100_000, 10_000_000),
)


@dataclass
class Context:
    """What every workload gets: the server, the sizes, the signal socket, a log folder."""

    admin_dsn: str
    profile: Profile
    signals: Signals
    log_dir: Path
    stack: ExitStack = field(default_factory=ExitStack)
    templates: dict[str, str] = field(default_factory=dict)
    _pool: ProcessPoolExecutor | None = None

    def database(self, system: System, label: str) -> AbstractContextManager[str]:
        """A fresh database with *system*'s schema, dropped when the block ends.

        Each system's installer runs once per run, into a template database; every
        workload then gets its own copy (``CREATE DATABASE ... TEMPLATE``), which is as
        fresh as a new install and takes a fraction of the time. A Redis queue gets one
        too (nothing uses it) and its Redis database is flushed.
        """
        if system.name not in self.templates:
            template = self.stack.enter_context(
                pg.fresh_database(self.admin_dsn, f"template_{system.name}")
            )
            system.install(template)
            self.templates[system.name] = template
        system.reset()
        return pg.fresh_database(self.admin_dsn, label, template=self.templates[system.name])

    def producer_pool(self) -> ProcessPoolExecutor:
        """The processes that enqueue concurrently, started once per run."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.profile.concurrent_connections, mp_context=multiprocessing.get_context("spawn")
            )
            self.stack.callback(self._pool.shutdown, cancel_futures=True)
        return self._pool

    def close(self) -> None:
        """Stop the producer processes, drop the template databases."""
        self.stack.close()
