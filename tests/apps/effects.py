"""A worker app whose jobs write a side effect in the same transaction that completes them
(``ctx.transaction()``), for the effectively-once test. ``PGJOBS_TEST_CONFIG`` holds
:class:`pgjobs.Config` fields as JSON.

Each job inserts ``(job_id, attempt)`` into ``effects`` and lingers a few milliseconds
inside its transaction, so that kills land before, inside and after the commit.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from typing import Any

import pgjobs

_fields: dict[str, Any] = json.loads(os.environ.get("PGJOBS_TEST_CONFIG") or "{}")
server = pgjobs.Server(pgjobs.Config(**_fields))

INSERT = "insert into effects (job_id, attempt) values (%s, %s)"


@server.handler("effect")
def effect(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
    with ctx.transaction() as conn:
        conn.execute(INSERT, (ctx.job_id, ctx.attempt))
        time.sleep(random.uniform(0, 0.01))


@server.handler("effect_async")
async def effect_async(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
    async with ctx.atransaction() as conn:
        await conn.execute(INSERT, (ctx.job_id, ctx.attempt))
        await asyncio.sleep(random.uniform(0, 0.01))
