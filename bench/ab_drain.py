"""One worker's drain, commit against commit: ``python -m bench.ab_drain TREE [TREE ...]``.

Each TREE is a checkout of pgjobs (``git worktree add /tmp/before <commit>``). In each of
``--rounds`` rounds every tree in turn gets a fresh database, migrated and filled with
``--jobs`` no-op jobs by that tree's own code, then a worker of that tree
(``python -m pgjobs worker``, ``--concurrency``) drains it; the rate counts from the
first job taken to the last one done, read every 50 ms from another connection. The
trees take turns within a round so that the machine's drift falls on all of them alike;
each tree's median is printed last. ``--sync`` drains ``def`` handlers instead of
``async def`` ones.

Why it exists: the benchmark (``bench.run``) compares pgjobs with its peers at one
commit; this compares pgjobs with itself, the way a change that may cost speed is
judged before it lands.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bench.pg import DEFAULT_ADMIN_DSN, fresh_database

APP = """\
import pgjobs

server = pgjobs.Server()


@server.handler("noop")
{kind} noop(ctx, task):
    return None
"""

FILL = """\
import sys
import psycopg
import pgjobs
from pgjobs import migrate

dsn, jobs = sys.argv[1], int(sys.argv[2])
migrate.upgrade(dsn)
with psycopg.connect(dsn, autocommit=True) as conn:
    for start in range(0, jobs, 50_000):
        pgjobs.enqueue_many(conn, [pgjobs.Task("noop") for _ in range(min(50_000, jobs - start))])
    conn.execute("vacuum analyze pgjobs.jobs")
"""


def drain(tree: Path, admin: str, app_dir: Path, args: argparse.Namespace) -> float:
    """Jobs/s of one drain of *args.jobs* jobs by a worker of *tree*."""
    env = dict(os.environ, PYTHONPATH=f"{tree}{os.pathsep}{app_dir}")
    with fresh_database(admin, "ab_drain") as dsn:
        subprocess.run([sys.executable, "-c", FILL, dsn, str(args.jobs)], env=env, check=True)
        command = [sys.executable, "-m", "pgjobs", "worker", "ab_app:server", "--dsn", dsn]
        command += ["--concurrency", str(args.concurrency), "--log-level", "WARNING"]
        worker = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        first = last = None
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                while last is None:
                    row = conn.execute(
                        "select count(*) from pgjobs.jobs where state in ('available', 'running')"
                    ).fetchone()
                    left, now = (row[0] if row else 0), time.monotonic()
                    if first is None and left < args.jobs:
                        first = now
                    if left == 0:
                        last = now
                    elif worker.poll() is not None:
                        raise RuntimeError(f"the worker of {tree} exited with {worker.returncode}")
                    time.sleep(0.05)
        finally:
            worker.terminate()
            worker.wait()
    assert first is not None
    return args.jobs / max(last - first, 1e-9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ab_drain",
        description="One worker's drain of no-op jobs, tree against tree, in interleaved rounds.",
    )
    parser.add_argument("trees", nargs="+", type=Path, help="pgjobs checkouts to compare")
    parser.add_argument(
        "--dsn",
        default=DEFAULT_ADMIN_DSN,
        help="a database of the server, for a role that can create databases",
    )
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--sync", action="store_true", help="def handlers, not async def")
    args = parser.parse_args(argv)
    for tree in args.trees:
        if not (tree / "pgjobs" / "__init__.py").is_file():
            parser.error(f"{tree} is not a pgjobs checkout (no pgjobs/__init__.py)")
    rates: dict[Path, list[float]] = {tree: [] for tree in args.trees}
    with tempfile.TemporaryDirectory(prefix="ab-drain-") as app_dir:
        kind = "def" if args.sync else "async def"
        Path(app_dir, "ab_app.py").write_text(APP.format(kind=kind))
        for round_ in range(1, args.rounds + 1):
            for tree in args.trees:
                rate = drain(tree.resolve(), args.dsn, Path(app_dir), args)
                rates[tree].append(rate)
                print(f"round {round_} {tree}: {rate:,.0f} jobs/s", flush=True)
    for tree, values in rates.items():
        shown = ", ".join(f"{value:,.0f}" for value in values)
        print(f"{tree}: median {statistics.median(values):,.0f} jobs/s ({shown})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
