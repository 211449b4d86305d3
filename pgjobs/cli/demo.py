"""``pgjobs demo``: see pgjobs work on a fresh machine, on an embedded Postgres.

It enqueues example jobs in three weighted queues (one inside a transaction that rolls
back, to show it never runs), runs a real worker on them with a line of progress every
half second, and stops the worker by itself when they are done (or on Ctrl-C). Then it
prints commands to look at what happened, runnable as printed, and keeps an embedded
database up for them until Ctrl-C, with the web dashboard on it (when the ``dashboard``
extra is installed) at the URL it prints.

Everything lives in its own schema, ``pgjobs_demo``: on a database given with
``--dsn`` it never sees, let alone runs, the jobs of the application's ``pgjobs``
schema.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import random
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from .. import admin, migrate
from .._dsn import redact
from .._enqueue import enqueue, enqueue_many
from ..config import Config
from ..context import Context
from ..embedded import EmbeddedPostgres
from ..server import Server
from ..task import Task

EXAMPLES = """\
examples:
  pgjobs demo                                # embedded Postgres in a temporary directory
  pgjobs demo --jobs 20000 --concurrency 50  # a bigger run
  pgjobs demo --dsn postgresql://localhost/x  # your own database (schema pgjobs_demo)
"""

QUEUES = {"critical": 6, "default": 3, "low": 1}

#: The demo's own schema, apart from an application's ``pgjobs``.
SCHEMA = "pgjobs_demo"

#: The dashboard's port when it is free (another one otherwise), on 127.0.0.1 only.
DASHBOARD_PORT = 8080


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run a worker on example jobs (embedded Postgres unless --dsn)",
        description="Start an embedded Postgres (or use --dsn), create the schema "
        f"{SCHEMA} in it, enqueue example jobs in weighted queues critical=6, default=3, "
        "low=1, and run a worker on them, showing progress. When the jobs are done it "
        "prints commands to look at them, and keeps an embedded database up until Ctrl-C, "
        "with the web dashboard on it at the URL it prints.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dsn", help="use this database instead of an embedded one")
    parser.add_argument(
        "--jobs", type=int, default=3000, help="jobs per queue to enqueue (default 3000)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=20, help="jobs the worker runs at once (default 20)"
    )
    parser.set_defaults(func=run)


@contextmanager
def _database(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    print("starting an embedded Postgres ...")
    with EmbeddedPostgres() as server:
        yield server.dsn


def demo_server(concurrency: int) -> Server:
    """Example handlers: async and sync, fast and slow, and one that fails at first."""
    # Completed jobs are kept an hour, so that `jobs list` can show them afterwards.
    config = Config(
        concurrency=concurrency,
        queues=QUEUES,
        shutdown_timeout=2.0,
        schema=SCHEMA,
        completed_retention=3600,
    )
    server = Server(config)

    @server.handler("send_email")
    async def send_email(ctx: Context, task: Task) -> None:
        await asyncio.sleep(random.uniform(0.001, 0.005))  # an SMTP call

    @server.handler("resize_image")
    def resize_image(ctx: Context, task: Task) -> None:
        time.sleep(random.uniform(0.001, 0.005))  # CPU or a blocking library, in a thread

    @server.handler("sync_crm", backoff=lambda attempt, error: 0.5)
    async def sync_crm(ctx: Context, task: Task) -> None:
        if ctx.attempt == 1 and task.payload["n"] % 50 == 0:
            raise ConnectionError("the CRM timed out")

    return server


def _enqueue_examples(dsn: str, per_queue: int) -> int:
    with psycopg.connect(dsn) as conn:
        with conn.transaction():
            conn.execute("select 1")  # stands for the application's own writes
            task = Task("send_email", {"to": "ada@example.com"}, queue="critical")
            enqueue(conn, task, schema=SCHEMA)
        try:
            with conn.transaction():
                task = Task("send_email", {"to": "never@example.com"}, queue="critical")
                enqueue(conn, task, schema=SCHEMA)
                raise RuntimeError("the application's transaction fails")
        except RuntimeError:
            print("a job enqueued in a rolled-back transaction: it never existed")
        kinds = {"critical": "send_email", "default": "sync_crm", "low": "resize_image"}
        tasks = [
            Task(kinds[queue], {"n": n}, queue=queue) for n in range(per_queue) for queue in QUEUES
        ]
        with conn.transaction():
            enqueue_many(conn, tasks, schema=SCHEMA)
        return len(tasks) + 1


def _progress(conn: psycopg.Connection[tuple[Any, ...]], total: int, started: float) -> int:
    left = {
        row.queue: row.available + row.scheduled + row.running
        for row in admin.queue_summary(conn, schema=SCHEMA)
    }
    remaining = sum(left.values())
    elapsed = time.monotonic() - started
    done = total - remaining
    shares = "  ".join(f"{queue} {left.get(queue, 0):>6} left" for queue in QUEUES)
    print(f"{elapsed:6.1f}s  {done:>7} done ({done / max(elapsed, 1e-9):7.0f}/s)  {shares}")
    return remaining


async def _run(dsn: str, per_queue: int, concurrency: int) -> None:
    total = _enqueue_examples(dsn, per_queue)
    print(f"enqueued {total} jobs; starting a worker with queues {QUEUES}")
    server = demo_server(concurrency)
    # The progress lines stand for the per-job ones (thousands of them); failures still show.
    logging.getLogger("pgjobs.jobs").setLevel(logging.WARNING)
    await server.start(dataclasses.replace(server.config, dsn=dsn))
    started = time.monotonic()
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            # A progress line every half second until nothing is left.
            while _progress(conn, total, started):  # noqa: ASYNC110
                await asyncio.sleep(0.5)
    finally:
        await server.stop()
    print("all jobs done.")


def next_steps(dsn: str) -> list[tuple[str, str]]:
    """What to try once the jobs are done, as (what it shows, command). Each command runs
    as printed: this Python by its full path (a fresh machine's .venv is not on PATH),
    with the demo's database and schema."""
    pgjobs = f"{shlex.quote(sys.executable)} -m pgjobs"
    target = f"--dsn {shlex.quote(dsn)} --schema {SCHEMA}"
    return [
        ("the queues and their throughput", f"{pgjobs} status {target}"),
        ("one kind of job: attempts, errors", f"{pgjobs} jobs list --kind sync_crm {target}"),
    ]


def _print_next_steps(dsn: str, dashboard_url: str | None) -> None:
    print("\nTry next:")
    for what, command in next_steps(dsn):
        print(f"  # {what}\n  {command}")
    if dashboard_url:
        print(f"Open the dashboard: {dashboard_url}", flush=True)
    else:
        pgjobs = f"{shlex.quote(sys.executable)} -m pgjobs"
        print(
            f"The dashboard on these jobs: {pgjobs} dashboard --dsn {shlex.quote(dsn)} "
            f"--schema {SCHEMA}"
        )


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", DASHBOARD_PORT))
    except OSError:
        sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def _dashboard(dsn: str) -> Iterator[str | None]:
    """The dashboard on the demo's schema, served by uvicorn in a thread until the block
    ends; its URL, or None without the ``dashboard`` extra."""
    try:
        import uvicorn

        from ..dashboard import app
    except ImportError as exc:
        print(f'(the dashboard needs pip install "pgjobs[dashboard]": {exc})')
        yield None
        return
    sock = _listening_socket()
    config = uvicorn.Config(app(dsn, schema=SCHEMA), log_level="warning")
    server = uvicorn.Server(config)
    # Off the main thread, uvicorn leaves the signal handlers alone: Ctrl-C stays the
    # main thread's, which then tells the server to exit.
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="pgjobs-demo-dashboard", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        host, port = sock.getsockname()[:2]
        yield f"http://{host}:{port}/" if server.started else None
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _keep_up_until_interrupted() -> None:
    """The embedded database lives as long as this process: keep it for the commands."""
    print("\nThe database stays up for these commands until Ctrl-C.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping the database")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (from `timeout`, a service manager, `docker stop`) ends the demo the way
    Ctrl-C does. Its default action kills the process before any cleanup runs, which
    would leave the embedded Postgres running and its directory behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    with _sigterm_as_ctrl_c():
        return _run_demo(args)


def _run_demo(args: argparse.Namespace) -> int:
    with _database(args.dsn) as dsn:
        print(f"database: {redact(dsn)}")
        migrate.upgrade(dsn, schema=SCHEMA)
        print(f"pgjobs schema {SCHEMA} at revision {migrate.head_revision()}")
        try:
            asyncio.run(_run(dsn, args.jobs, args.concurrency))
        except KeyboardInterrupt:
            print("interrupted")
            return 130
        if args.dsn is not None:
            _print_next_steps(dsn, None)
            return 0
        with _dashboard(dsn) as url:
            _print_next_steps(dsn, url)
            _keep_up_until_interrupted()
    return 0
