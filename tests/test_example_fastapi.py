"""examples/fastapi end to end: uvicorn serves the app with its embedded worker; an HTTP
client creates an order (row and job in one transaction of the request's async
SQLAlchemy session, on asyncpg) and sees the worker mark its receipt sent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg

from tests.apps.procs import wait_for
from tests.urls import database_url

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_order_request_and_the_embedded_worker(dsn: str) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("PGJOBS_DSN", "DATABASE_URL")}
    env.update(SHOP_DATABASE=database_url(dsn), PGJOBS_EMBEDDED_WORKER="1")
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "examples.fastapi.app:app", "--port", str(port)],
        cwd=ROOT,
        env=env,
    )
    try:

        def answers() -> bool:
            try:
                return httpx.get(f"{base}/orders/0").status_code == 404
            except httpx.TransportError:
                return False

        wait_for(answers, "the app to answer", timeout=60)
        created = httpx.post(f"{base}/orders", json={"email": "a@example.com"})
        assert created.status_code == 201, created.text
        order = created.json()["order"]
        wait_for(
            lambda: httpx.get(f"{base}/orders/{order}").json()["receipt_sent"],
            "the embedded worker to send the receipt",
            timeout=60,
        )
    finally:
        server.send_signal(signal.SIGTERM)
        # uvicorn, once shut down (the lifespan stopped the worker), re-raises the signal.
        assert server.wait(timeout=60) in (0, -signal.SIGTERM)
    with psycopg.connect(dsn) as db:
        # Completed (and deleted, the default) with the order's update.
        assert db.execute("select count(*) from pgjobs.jobs").fetchone() == (0,)
        assert db.execute("select receipt_sent from shop_orders").fetchall() == [(True,)]
