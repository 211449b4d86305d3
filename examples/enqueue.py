"""Enqueue example jobs for :mod:`examples.app`, all in one transaction.

::

    python -m examples.enqueue --dsn postgresql://localhost/app --count 100
"""

from __future__ import annotations

import argparse
import os
import uuid
from collections.abc import Sequence

import psycopg

import pgjobs


def example_tasks(count: int) -> list[pgjobs.Task]:
    """*count* jobs spread over the three queues; a few images fail once or for good."""
    tasks = []
    for n in range(count):
        if n % 3 == 0:
            tasks.append(
                pgjobs.Task(
                    "send_email",
                    {"to": f"user{n}@example.com", "message_id": str(uuid.uuid4())},
                    queue="critical",
                )
            )
        else:
            payload = {"image": f"photo-{n}.jpg", "flaky": n % 10 == 1, "corrupt": n % 25 == 2}
            queue = "default" if n % 3 == 1 else "low"
            tasks.append(pgjobs.Task("resize_image", payload, queue=queue, timeout=30))
    return tasks


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--dsn", help="database (default: $PGJOBS_DSN, then $DATABASE_URL)")
    parser.add_argument("--count", type=int, default=100, help="how many jobs (default 100)")
    args = parser.parse_args(argv)
    dsn = args.dsn or os.environ.get("PGJOBS_DSN") or os.environ.get("DATABASE_URL")
    if not dsn:
        parser.error("no database: pass --dsn or set PGJOBS_DSN")
    with psycopg.connect(dsn) as conn, conn.transaction():
        # Your application's own writes would go in this transaction too: the jobs
        # exist exactly when it commits.
        ids = pgjobs.enqueue_many(conn, example_tasks(args.count))
    print(f"enqueued {len(ids)} jobs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
