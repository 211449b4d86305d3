"""How fast the dashboard's pages answer on a big table.

    python -m bench.dashboard_pages --dsn postgresql://root@127.0.0.1:5432/postgres

Fills a scratch database with RETAINED completed jobs, READY available ones and a few
thousand failed ones (over 5 queues and 20 kinds), then requests each page REPEAT
times through the app (Starlette's test client: the app, its SQL and its templates,
without a network) and prints the median and p95 of each. Drops the database at the end
unless --keep.
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg
from psycopg.conninfo import make_conninfo

from pgjobs import migrate

FILL = """
insert into pgjobs.jobs (queue, kind, payload, state, attempt, created_at, run_at,
                         started_at, finished_at, last_error)
select 'q' || (i %% 5), 'kind_' || (i %% 20), jsonb_build_object('n', i), %(state)s, 1,
       now() - make_interval(secs => %(count)s - i), now() - make_interval(secs => %(count)s - i),
       case when %(state)s <> 'available' then now() end,
       case when %(state)s <> 'available' then now() end,
       case when %(state)s = 'failed' then 'SMTP 550 mailbox ' || i || ' unavailable' end
from generate_series(1, %(count)s) i
"""


def fill(dsn: str, retained: int, ready: int, failed: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for state, count in (("completed", retained), ("available", ready), ("failed", failed)):
            started = time.perf_counter()
            conn.execute(
                FILL.replace("%(state)s", f"'{state}'::pgjobs.job_state"), {"count": count}
            )
            print(f"filled {count:,} {state} in {time.perf_counter() - started:.0f} s", flush=True)
        conn.execute("vacuum analyze pgjobs.jobs")


def time_pages(dsn: str, repeat: int) -> None:
    from starlette.testclient import TestClient

    from pgjobs import dashboard

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("select max(id) from pgjobs.jobs").fetchone()
    last = row[0] if row else 1
    pages = {
        "queues": "/",
        "jobs": "/jobs",
        "jobs, state=failed": "/jobs?state=failed",
        "jobs, queue and kind": "/jobs?queue=q3&kind=kind_13",
        "jobs, error text": "/jobs?error=mailbox+42",
        "jobs, page far back": f"/jobs?before={last // 2}",
        "job": f"/jobs/{last}",
        "workers": "/workers",
        "health": "/health",
    }
    with TestClient(dashboard.app(dsn, poll_interval=0)) as client:
        for name, path in pages.items():
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                page = client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                assert page.status_code == 200, (path, page.status_code)
            times.sort()
            p95 = times[max(0, round(0.95 * len(times)) - 1)]
            print(f"{name:24} median {statistics.median(times):8.1f} ms   p95 {p95:8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="an admin DSN (creates a database)")
    parser.add_argument("--retained", type=int, default=10_000_000)
    parser.add_argument("--ready", type=int, default=1_000_000)
    parser.add_argument("--failed", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the filled database")
    args = parser.parse_args()
    name = "pgjobs_dashboard_pages"
    dsn = make_conninfo(args.dsn, dbname=name)
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        if not (exists and args.keep):
            conn.execute(f"drop database if exists {name} with (force)")
            conn.execute(f"create database {name}")
            exists = None
    try:
        if not exists:
            migrate.upgrade(dsn)
            fill(dsn, args.retained, args.ready, args.failed)
        time_pages(dsn, args.repeat)
    finally:
        if not args.keep:
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute(f"drop database if exists {name} with (force)")


if __name__ == "__main__":
    main()
