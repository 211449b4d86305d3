"""The app of ``bench/fleet.py``: a no-op handler that remembers which jobs it ran.

At exit (the CLI's graceful stop on SIGTERM) each process writes the ids of the jobs it
ran, with the queue and the handler version, to ``$FLEET_OUT/<pid>.json``; the bench
reads them to check that every job ran exactly once and to compute queue shares.
``FLEET_QUEUES`` holds the queue weights, ``FLEET_VERSION`` a label for the rolling deploy.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from pathlib import Path

import pgjobs
from pgjobs.config import parse_queues

_queues = parse_queues(os.environ.get("FLEET_QUEUES", "default=1"))
_concurrency = int(os.environ.get("FLEET_CONCURRENCY", "20"))
server = pgjobs.Server(pgjobs.Config(queues=_queues, concurrency=_concurrency))
_ran: list[tuple[int, str, float]] = []


@server.handler("fleet")
async def fleet(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
    _ran.append((ctx.job_id, task.queue, time.time()))


@atexit.register
def _write() -> None:
    out = Path(os.environ["FLEET_OUT"]) / f"{os.getpid()}.json"
    out.write_text(json.dumps({"version": os.environ.get("FLEET_VERSION", "1"), "ran": _ran}))
