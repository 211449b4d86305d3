"""docs/howto-production.md and examples/production.py stay true: the how-to's Python
runs on a real database, and the example app enqueues, deduplicates and runs its
periodic jobs."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from pgjobs.cron import Cron
from tests.test_docs import REPO, run_examples
from tests.test_worker import wait_until

pytestmark = pytest.mark.timeout(120)


def test_the_howto_examples_run(dsn: str, db: psycopg.Connection[Any]) -> None:
    namespace = run_examples(REPO / "docs" / "howto-production.md", dsn)
    kinds = db.execute("select kind, payload, count(*) from pgjobs.jobs group by 1, 2").fetchall()
    assert sorted(kinds, key=str) == [
        ("refresh_search_index", {"user": 7}, 1),
        ("send_invoice", {"invoice": 41}, 1),
        ("send_invoice", {"invoice": 42}, 1),
        ("send_invoice", {"invoice": 43}, 1),
    ]
    assert namespace["config"].retention("cancelled") is None


async def test_the_example_app(dsn: str, db: psycopg.Connection[Any], capsys) -> None:
    from examples import production

    names = [p.name for p in production.server.registry.periodic()]
    assert names == ["sync_exchange_rates", "nightly_report", "dashboard"]
    assert production.main(["--dsn", dsn, "--invoice", "42"]) == 0
    assert production.main(["--dsn", dsn, "--invoice", "42"]) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("invoice 42 requested: job ")
    assert second == f"invoice 42 was already requested: job {first.rsplit(' ', 1)[1]}"

    config = dataclasses.replace(
        production.server.config, dsn=dsn, leader_interval=0.1, poll_interval=0.1
    )
    nightly = Cron("0 3 * * *", tz="Europe/Paris").last_at_or_before(datetime.now(UTC))

    def states() -> dict[str, str]:
        rows = db.execute("select kind, state::text, run_at from pgjobs.jobs").fetchall()
        return {kind: state for kind, state, run_at in rows}

    await production.server.start(config)
    try:
        # A brand-new schedule with catch_up="last" runs its last tick (03:00 Paris) at
        # once; the completed jobs are kept (completed_retention: a day).
        await wait_until(
            lambda: (
                states().get("nightly_report") == "completed"
                and states().get("send_invoice") == "completed"
            ),
            what="the nightly report and the invoice",
        )
    finally:
        await production.server.stop(timeout=1.0)
    run_at = db.execute("select run_at from pgjobs.jobs where kind = 'nightly_report'").fetchone()
    assert run_at == (nightly,)
