"""Transactional completion survives kill -9 at any point: every job's side effect is
written exactly once (issue 6: "effectively once for database side effects").

Handlers write their side effect with ``ctx.transaction()``, which marks the job completed
in the same transaction. The worker is killed with SIGKILL at random moments, again and
again, and restarted; jobs it held are rescued when their lease runs out and run again.
A side effect written by an attempt that was killed before its commit was rolled back
with it, so in the end each job has exactly one side-effect row, whatever the kills hit.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import pgjobs
from tests.apps.procs import Probe, Workers, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

APP = "tests.apps.effects:server"
CONFIG = {
    "lease": 2,
    "heartbeat_interval": 0.5,
    "lease_grace": 0.5,
    "rescue_interval": 0.5,
    "concurrency": 8,
    "poll_interval": 0.2,
}


@pytest.fixture
def workers(dsn: str, tmp_path: Path) -> Iterator[Workers]:
    running = Workers(dsn, tmp_path)
    yield running
    running.close()


def test_side_effects_happen_exactly_once_under_random_kills(workers: Workers, dsn: str) -> None:
    jobs = 1500  # enough that a fast worker cannot drain it between kills
    with psycopg.connect(dsn) as conn, conn.transaction():
        conn.execute("create table effects (job_id bigint not null, attempt int not null)")
        ids = pgjobs.enqueue_many(
            conn, [pgjobs.Task("effect" if n % 2 else "effect_async") for n in range(jobs)]
        )
    probe = Probe(dsn)
    remaining = lambda: int(probe.value("select count(*) from pgjobs.jobs"))  # noqa: E731
    rng = random.Random(20261123)
    kills = 0
    try:
        while kills < 12 and remaining() > jobs // 10:
            worker = workers.start(app=APP, config=CONFIG)
            worker.wait_started()
            before = remaining()
            # Let it get into the thick of it, then kill it at an arbitrary moment: the
            # randomness of that moment is the point, so this sleep is deliberate.
            wait_for(
                lambda before=before: remaining() < before,  # type: ignore[misc]
                "the worker to finish some jobs",
                detail=workers.describe,
            )
            time.sleep(rng.uniform(0, 0.1))
            worker.kill()
            kills += 1
        last = workers.start(app=APP, config=CONFIG)
        last.wait_started()  # a SIGTERM before its signal handlers exist would kill it
        wait_for(
            lambda: remaining() == 0,
            "every job to be done after the kills",
            timeout=120,
            detail=workers.describe,
        )
        assert last.stop() == 0
        effects = Counter(job_id for (job_id,) in probe.rows("select job_id from effects"))
        rerun = probe.value("select count(*) from effects where attempt > 1")
    finally:
        probe.close()
    assert kills >= 3, "the backlog ran out before the worker could be killed a few times"
    assert sorted(effects) == ids, "a job's side effect is missing"
    assert [job for job, count in effects.items() if count != 1] == [], "a side effect twice"
    # The kills did hit jobs in flight: some side effects come from a second attempt.
    assert rerun > 0
