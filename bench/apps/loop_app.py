"""The drain's ceiling in Python: ``python -m bench.apps.loop_app --batch 500``.

The least a Python worker on pgjobs' table can do per job: one statement claims a batch
(``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED)``, the SQL ceiling's raw claim),
the batch's no-op coroutines run as tasks, and a second connection deletes the batch
while the next claim runs. No retries, leases, timeouts, middleware or bookkeeping: the
distance from pgjobs' drain to this is what those cost. It is its own code, so that the
ceiling does not move when pgjobs does. Its connections commit without waiting for the
WAL flush (``synchronous_commit = off``), as a pgjobs worker's do by default: the same
durability, so that the ceiling does not measure the disk instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

import psycopg

from bench.apps import signal

CLAIM = """
update pgjobs.jobs j set state = 'running'
from (select id from pgjobs.jobs
      where state = 'available' and queue = 'default'
      order by priority, id
      limit %s
      for update skip locked) picked
where j.id = picked.id
returning j.id, j.kind, j.payload
"""
DELETE = "delete from pgjobs.jobs where id = any(%s)"
IDLE = 0.05


async def noop(kind: str, payload: Any) -> None:
    signal.noop_called()


async def _connect(dsn: str) -> psycopg.AsyncConnection[Any]:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await conn.execute("set synchronous_commit = off")
    return conn


async def run(dsn: str, batch: int) -> None:
    claimer, deleter = await _connect(dsn), await _connect(dsn)
    deleting: asyncio.Task[Any] | None = None
    while True:
        rows = await (await claimer.execute(CLAIM, (batch,), prepare=True)).fetchall()
        if not rows:
            await asyncio.sleep(IDLE)
            continue
        await asyncio.gather(*(asyncio.create_task(noop(kind, p)) for _, kind, p in rows))
        if deleting is not None:
            await deleting
        ids = [row[0] for row in rows]
        deleting = asyncio.create_task(deleter.execute(DELETE, (ids,), prepare=True))


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.apps.loop_app")
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(run(os.environ.get("BENCH_DSN", ""), args.batch))


if __name__ == "__main__":
    main()
