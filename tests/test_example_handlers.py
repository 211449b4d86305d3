"""examples/handlers.py runs and every feature in it does what its comment says."""

from __future__ import annotations

import psycopg

from examples import handlers


async def test_the_handlers_example(dsn: str, db: psycopg.Connection) -> None:
    handlers.failures.clear()
    outcomes = await handlers.main(dsn)
    assert outcomes["add"] == ("completed", 6)
    state, result = outcomes["flaky"]
    assert state == "completed"
    assert result.startswith("worked on attempt 2 after: ConnectionError")
    # The snooze gave its attempt back: the run that completed is still attempt 1.
    assert outcomes["rate_limited"] == ("completed", "done on attempt 1")
    assert outcomes["refund"] == ("cancelled", "Cancel: the order was already refunded")
    assert outcomes["receipt"] == ("completed", {"receipt_for": 42})
    assert db.execute("select order_id from example_receipts").fetchall() == [(42,)]
    assert handlers.failures == ["flaky attempt 1: the API timed out"]
