"""The pruner: a leader-only service that deletes what is no longer needed.

Each pass deletes, in batches of :data:`~pgjobs._worker.services.BATCH` rows per
statement (each statement its own short transaction, rows picked ``FOR UPDATE SKIP
LOCKED``; see ``pgjobs/sql/prune.sql``):

* completed, failed and cancelled jobs older than their retention
  (``Config.completed_retention``, ``failed_retention``, ``cancelled_retention``; a
  retention of ``None`` keeps them forever);
* unique keys whose window has passed;
* unique keys held until their job finished, whose job has finished (a slice of them
  per pass, walking the table in key order across passes: such keys are only clutter,
  since an enqueue takes them over anyway);
* throughput counters (``stats``) older than a day;
* waiters left behind by clients that died in ``Client.wait``, once their job finished;
* records of deleted completed jobs (``completed_recently``, read by ``why()``) older
  than :data:`COMPLETIONS_KEPT`.

A job a client waits for is never pruned while it waits (``Client.wait`` must read its
result); with ``completed_retention=0`` such a job is kept by the statement that
completes it, and the next pass deletes it once the client has left, or a minute after
the client died.

Retention counts from ``finished_at``. Because only the leader prunes, workers never
contend for the same rows, and a crash mid-pass loses nothing: the next leader's pass
carries on. A pass does at most :data:`MAX_BATCHES` batches of each kind, so a large
backlog takes several passes and never holds a connection for long.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

from psycopg_pool import AsyncConnectionPool

from ..config import Config
from ..errors import ConfigurationError
from ..job import FINISHED_STATES
from .services import BATCH, Service, check_seconds, turn

__all__ = ["PruneResult", "Pruner", "PrunerConfig"]

log = logging.getLogger("pgjobs.worker")

FinishedState = Literal["completed", "failed", "cancelled"]
#: Most batches of one kind per pass, so that a large backlog is worked off over
#: several passes.
MAX_BATCHES = 100
#: Batches of held keys examined per pass (they need a lookup of their job each).
HELD_KEY_BATCHES = 10
#: Seconds a waiter's row must have existed before it counts as left behind: a live
#: waiter re-reads its job every second and leaves once it finished.
STALE_WAITER = 60.0
#: Seconds throughput counters are kept: they are for recent throughput.
STATS_KEPT = 24 * 3600.0
#: Seconds the ids of deleted completed jobs are kept in ``completed_recently``, for
#: ``why()`` to say that such a job completed. Completed jobs the pruner deletes are
#: recorded too while they finished less than this long ago.
COMPLETIONS_KEPT = 3600.0


def _retention_of(config: Config) -> dict[str, float | None]:
    return {
        state.value: config.retention(cast(FinishedState, state.value)) for state in FINISHED_STATES
    }


@dataclass(frozen=True)
class PrunerConfig:
    """:param interval: seconds between passes (``Config.prune_interval``).
    :param retention: seconds jobs finished in each state are kept (``None``: forever;
        a state left out is kept forever too), as ``Config.completed_retention`` etc.
    :param batch: most rows deleted per statement.
    """

    interval: float = Config.prune_interval
    retention: Mapping[str, float | None] = field(default_factory=lambda: _retention_of(Config()))
    batch: int = BATCH

    def __post_init__(self) -> None:
        check_seconds(self, "interval")
        unknown = set(self.retention) - set(FINISHED_STATES)
        if unknown:
            raise ConfigurationError(f"PrunerConfig.retention: no such states {sorted(unknown)}")
        for state, keep in self.retention.items():
            if keep is not None and not keep >= 0:
                raise ConfigurationError(f"PrunerConfig.retention[{state!r}] must be 0 or more")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise ConfigurationError("PrunerConfig.batch must be a whole number of at least 1")

    @classmethod
    def from_config(cls, config: Config) -> PrunerConfig:
        return cls(config.prune_interval, _retention_of(config))


@dataclass(frozen=True)
class PruneResult:
    #: Rows deleted, per kind ("completed jobs", "expired unique keys", ...).
    deleted: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


class Pruner(Service[PruneResult, PrunerConfig]):
    name = "pruner"

    def __init__(self, schema: str, config: PrunerConfig) -> None:
        super().__init__(schema, config)
        #: Where the walk over held keys resumes ('' is before every key).
        self._after = ""

    async def run_pass(self, pool: AsyncConnectionPool[Any]) -> PruneResult:
        # Up to MAX_BATCHES statements per kind: the completer must not wait for all.
        return await self.run_once(pool)

    async def run_once(self, conn: Any, now: datetime | None = None) -> PruneResult:
        """One pass, as if at *now* (None: the server's clock), on *conn*, or on a
        connection of *conn* per statement when it is a pool."""
        deleted: dict[str, int] = {}
        # Stale waiters first: a job kept for a client that died waiting goes this pass.
        deleted["stale waiters"] = await self._batches(
            conn, "waiter_prune_stale", {"stale_after": STALE_WAITER, "now": now}
        )
        for state in FINISHED_STATES:
            keep = self.config.retention.get(state.value)
            if keep is not None:
                deleted[f"{state.value} jobs"] = await self._batches(
                    conn,
                    "job_prune_finished",
                    {
                        "state": state.value,
                        "retention": keep,
                        "recorded_for": COMPLETIONS_KEPT,
                        "now": now,
                    },
                )
        deleted["expired unique keys"] = await self._batches(
            conn, "unique_key_prune_expired", {"now": now}
        )
        deleted["unique keys of finished jobs"] = await self._prune_held_keys(conn)
        deleted["stats rows"] = await self._batches(
            conn, "stats_prune", {"keep": STATS_KEPT, "now": now}
        )
        deleted["completion records"] = await self._batches(
            conn, "completed_recently_prune", {"keep": COMPLETIONS_KEPT, "now": now}
        )
        result = PruneResult(deleted)
        if result.total:
            log.info(
                "pruned %s",
                ", ".join(f"{count} {what}" for what, count in deleted.items() if count),
                extra={"pruned": deleted},
            )
        return result

    async def _batches(self, conn: Any, query: str, params: dict[str, Any]) -> int:
        total = 0
        batch = self.config.batch
        for _ in range(MAX_BATCHES):
            async with turn(conn) as db:
                cursor = await db.execute(self.queries[query], {**params, "limit": batch})
                row = await cursor.fetchone()
            count = int(row[0])
            total += count
            if count < batch:
                break
        return total

    async def _prune_held_keys(self, conn: Any) -> int:
        total = 0
        batch = self.config.batch
        for _ in range(HELD_KEY_BATCHES):
            # Lock a slice, then delete with a newer snapshot (see prune.sql): one
            # transaction, so the locks hold until the delete.
            async with turn(conn) as db, db.transaction():
                cursor = await db.execute(
                    self.queries["unique_key_lock_held"],
                    {"after": self._after, "limit": batch},
                )
                rows = await cursor.fetchall()
                if rows:
                    cursor = await db.execute(
                        self.queries["unique_key_prune_finished"],
                        {"keys": [r[0] for r in rows], "holders": [r[1] for r in rows]},
                    )
                    row = await cursor.fetchone()
                    total += int(row[0])
            if len(rows) < batch:
                self._after = ""  # the end: the next pass starts over
                break
            self._after = rows[-1][0]
        return total
