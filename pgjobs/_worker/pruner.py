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
* waiters left behind by clients that died in ``Client.wait``, once their job finished.

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
from typing import Any

from ..job import FINISHED_STATES
from .services import BATCH, Service

__all__ = ["Pruner"]

log = logging.getLogger("pgjobs.worker")

#: Most batches of one kind per pass: a pass holds one of the worker's pooled
#: connections, so a large backlog is worked off over several passes.
MAX_BATCHES = 100
#: Batches of held keys examined per pass (they need a lookup of their job each).
HELD_KEY_BATCHES = 10


class Pruner(Service):
    name = "pruner"

    def __init__(
        self,
        schema: str,
        interval: float,
        retention: Mapping[str, float | None],
        *,
        batch: int = BATCH,
    ) -> None:
        super().__init__(schema, interval)
        self.retention = dict(retention)
        self.batch = batch
        #: Where the walk over held keys resumes ('' is before every key).
        self._after = ""

    async def run_once(self, conn: Any) -> int:
        """One pass; returns the number of rows deleted."""
        deleted: dict[str, int] = {}
        # Stale waiters first: a job kept for a client that died waiting goes this pass.
        deleted["stale waiters"] = await self._batches(conn, "waiter_prune_stale", {})
        for state in FINISHED_STATES:
            keep = self.retention.get(state.value)
            if keep is not None:
                deleted[f"{state.value} jobs"] = await self._batches(
                    conn, "job_prune_finished", {"state": state.value, "retention": keep}
                )
        deleted["expired unique keys"] = await self._batches(conn, "unique_key_prune_expired", {})
        deleted["unique keys of finished jobs"] = await self._prune_held_keys(conn)
        deleted["stats rows"] = await self._batches(conn, "stats_prune", {})
        total = sum(deleted.values())
        if total:
            log.info(
                "pruned %s",
                ", ".join(f"{count} {what}" for what, count in deleted.items() if count),
                extra={"pruned": deleted},
            )
        return total

    async def _batches(self, conn: Any, query: str, params: dict[str, Any]) -> int:
        total = 0
        for _ in range(MAX_BATCHES):
            cursor = await conn.execute(self.queries[query], {**params, "limit": self.batch})
            row = await cursor.fetchone()
            count = int(row[0])
            total += count
            if count < self.batch:
                break
        return total

    async def _prune_held_keys(self, conn: Any) -> int:
        total = 0
        for _ in range(HELD_KEY_BATCHES):
            # Lock a slice, then delete with a newer snapshot (see prune.sql): one
            # transaction, so the locks hold until the delete.
            async with conn.transaction():
                cursor = await conn.execute(
                    self.queries["unique_key_lock_held"],
                    {"after": self._after, "limit": self.batch},
                )
                rows = await cursor.fetchall()
                if rows:
                    cursor = await conn.execute(
                        self.queries["unique_key_prune_finished"],
                        {"keys": [r[0] for r in rows], "holders": [r[1] for r in rows]},
                    )
                    row = await cursor.fetchone()
                    total += int(row[0])
            if len(rows) < self.batch:
                self._after = ""  # the end: the next pass starts over
                break
            self._after = rows[-1][0]
        return total
