"""Production features in one worker app: periodic jobs, unique jobs, retention.

Start as many workers as you like; one of them is elected leader and enqueues each
periodic tick exactly once, and prunes old jobs::

    python -m pgjobs migrate --dsn postgresql://localhost/app
    python -m pgjobs worker examples.production:server --dsn postgresql://localhost/app

Ask for the same invoice twice from another terminal: the second request is a duplicate
of the first, whichever worker or process it comes from::

    python -m examples.production --dsn postgresql://localhost/app --invoice 42
    python -m examples.production --dsn postgresql://localhost/app --invoice 42

See docs/howto-production.md.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import psycopg

import pgjobs

log = logging.getLogger("examples.production")

server = pgjobs.Server(
    pgjobs.Config(
        queues={"default": 3, "maintenance": 1},
        # Keep completed jobs (and their results) for a day, failed ones for a month;
        # cancelled ones for the default week. The leader prunes the rest in batches.
        completed_retention=timedelta(days=1),
        failed_retention=timedelta(days=30),
    )
)

# Every 5 minutes (UTC); a tick missed while no worker ran is skipped.
server.periodic("*/5 * * * *", pgjobs.Task("sync_exchange_rates", queue="maintenance"))
# At 03:00 Paris time (DST handled); after downtime, the last missed night runs once.
server.periodic(
    "0 3 * * *",
    pgjobs.Task("nightly_report", {"format": "pdf"}, queue="maintenance", timeout=3600),
    tz="Europe/Paris",
    catch_up="last",
)
# Every 30 seconds of real time, whatever the time zone.
server.periodic(timedelta(seconds=30), pgjobs.Task("refresh_dashboard"), name="dashboard")


@server.handler("sync_exchange_rates")
async def sync_exchange_rates(ctx: pgjobs.Context, task: pgjobs.Task) -> dict[str, Any]:
    log.info("job %d: exchange rates synced", ctx.job_id)
    return {"rates": 32}  # kept as the job's result while the job is retained


@server.handler("nightly_report")
def nightly_report(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
    log.info("job %d: nightly report as %s", ctx.job_id, task.payload["format"])


@server.handler("refresh_dashboard")
async def refresh_dashboard(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
    log.info("job %d: dashboard refreshed", ctx.job_id)


@server.handler("send_invoice")
def send_invoice(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
    log.info("job %d: invoice %s sent", ctx.job_id, task.payload["invoice"])


def request_invoice(conn: Any, invoice: int) -> pgjobs.EnqueueResult:
    """Send invoice *invoice*, at most once an hour however often it is asked for.

    Call it inside the transaction that changes the invoice: the job and its key exist
    exactly when that transaction commits.
    """
    task = pgjobs.Task(
        "send_invoice",
        {"invoice": invoice},
        unique_key=f"invoice:{invoice}",
        unique_for=timedelta(hours=1),
    )
    return pgjobs.enqueue_unique(conn, task)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Ask for an invoice to be sent.")
    parser.add_argument("--dsn", help="database (default: $PGJOBS_DSN, then $DATABASE_URL)")
    parser.add_argument("--invoice", type=int, default=42, help="the invoice number")
    args = parser.parse_args(argv)
    dsn = args.dsn or os.environ.get("PGJOBS_DSN") or os.environ.get("DATABASE_URL")
    if not dsn:
        parser.error("no database: pass --dsn or set PGJOBS_DSN")
    with psycopg.connect(dsn) as conn, conn.transaction():
        job_id, duplicate = request_invoice(conn, args.invoice)
    if duplicate:
        print(f"invoice {args.invoice} was already requested: job {job_id}")
    else:
        print(f"invoice {args.invoice} requested: job {job_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
