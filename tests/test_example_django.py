"""examples/django end to end: a request creates an order and its job in one
transaction, a worker started by ``manage.py pgjobs worker`` runs it, and the handler's
ORM write commits with the job's completion; the shop's own tests pass under Django's
test runner."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg

from tests.apps.procs import wait_for

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "examples" / "django"


def _env(dsn: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PGJOBS_DSN", "DATABASE_URL")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["SHOP_DATABASE"] = dsn
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


def _manage(dsn: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=SHOP,
        env=_env(dsn),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@contextmanager
def _started(dsn: str, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "manage.py", *args], cwd=SHOP, env=_env(dsn))
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_request_creates_an_order_and_a_worker_sends_its_receipt(empty_dsn: str) -> None:
    _manage(empty_dsn, "migrate")
    _manage(empty_dsn, "pgjobs", "migrate")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{base}/orders/0").status_code == 404
        except httpx.TransportError:
            return False

    with _started(empty_dsn, "runserver", f"127.0.0.1:{port}", "--noreload"):
        wait_for(answers, "the shop to answer", timeout=60)
        created = httpx.post(f"{base}/orders", json={"email": "a@example.com"})
        assert created.status_code == 201
        order, job = created.json()["order"], created.json()["job"]
        with psycopg.connect(empty_dsn) as db:
            assert db.execute("select kind from pgjobs.jobs where id = %s", (job,)).fetchone() == (
                "send_receipt",
            )
        assert httpx.get(f"{base}/orders/{order}").json()["receipt_sent"] is False
        with _started(empty_dsn, "pgjobs", "worker", "shop.jobs:server") as worker:
            wait_for(
                lambda: httpx.get(f"{base}/orders/{order}").json()["receipt_sent"],
                "the worker to send the receipt",
                timeout=60,
            )
        assert worker.returncode == 0
    with psycopg.connect(empty_dsn) as db:
        # Completed (and deleted, the default) in the transaction that marked the order.
        assert db.execute("select count(*) from pgjobs.jobs").fetchone() == (0,)


def test_the_shop_tests_pass_under_djangos_runner(empty_dsn: str) -> None:
    assert "Ran 2 tests" in _manage(empty_dsn, "test", "shop", "--noinput")


def test_the_shop_tests_pass_on_parallel_clones(empty_dsn: str) -> None:
    # Each process gets a copy of the test database made after pgjobs' schema was added.
    out = _manage(empty_dsn, "test", "shop", "--noinput", "--parallel", "2", "-v", "2")
    assert "Cloning test database" in out
    assert "Ran 2 tests" in out
