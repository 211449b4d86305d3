"""``pgjobs demo``: see pgjobs work on a fresh machine, on an embedded Postgres."""

from __future__ import annotations

import argparse

import psycopg

from .. import migrate
from .._dsn import redact
from ..embedded import EmbeddedPostgres
from ..enqueue import enqueue, enqueue_many
from ..task import Task

EXAMPLES = """\
examples:
  pgjobs demo                                # embedded Postgres in a temporary directory
  pgjobs demo --dsn postgresql://localhost/x  # your own database (creates the pgjobs schema)
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="migrate and enqueue example jobs (embedded Postgres unless --dsn)",
        description="Start an embedded Postgres (or use --dsn), migrate it and enqueue example "
        "jobs inside a transaction, showing that a rolled-back transaction leaves no job.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dsn", help="use this database instead of an embedded one")
    parser.add_argument(
        "--jobs", type=int, default=1000, help="how many jobs to enqueue (default 1000)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    server = None if args.dsn else EmbeddedPostgres()
    dsn = args.dsn or (server.dsn if server else "")
    try:
        print(f"database: {redact(dsn)}")
        migrate.upgrade(dsn)
        print(f"schema at revision {migrate.head_revision()}")
        with psycopg.connect(dsn) as conn:
            with conn.transaction():
                enqueue(conn, Task("send_email", {"to": "ada@example.com"}))
            try:
                with conn.transaction():
                    enqueue(conn, Task("never_runs", {}))
                    raise RuntimeError("the application's transaction fails")
            except RuntimeError:
                pass
            with conn.transaction():
                enqueue_many(
                    conn, [Task("resize_image", {"n": i}, queue="low") for i in range(args.jobs)]
                )
            for state, queue, count in conn.execute(
                "select state::text, queue, count(*) from pgjobs.jobs group by 1, 2 order by 2, 1"
            ):
                print(f"  {queue:<10} {state:<10} {count}")
            never = conn.execute(
                "select count(*) from pgjobs.jobs where kind = 'never_runs'"
            ).fetchone()
            print(f"jobs from the rolled-back transaction: {never[0] if never else 0}")
    finally:
        if server is not None:
            server.stop()
    return 0
