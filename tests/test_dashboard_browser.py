"""The dashboard end to end: a real headless Chromium (Debian's ``chromium``, driven by
Playwright's Python client, no browser download) against the app served by uvicorn on
a free port, with an in-process worker running the jobs.

Skipped, with the reason, when Playwright or the browser is missing; .ci/run installs
both. ``PGJOBS_SCREENSHOTS=1`` rewrites docs/dashboard-*.png from these pages.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

pytest.importorskip("starlette", reason="the dashboard extra is not installed")
pytest.importorskip("uvicorn", reason="the dashboard extra is not installed")
playwright_api = pytest.importorskip(
    "playwright.async_api", reason="playwright is not installed (pip install playwright)"
)

import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import Mount, Route  # noqa: E402

import pgjobs  # noqa: E402
from pgjobs import dashboard  # noqa: E402

CHROMIUM = os.environ.get("PGJOBS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS = Path(__file__).resolve().parent.parent / "docs"
SCREENSHOTS = os.environ.get("PGJOBS_SCREENSHOTS") == "1"
XSS = "<script>window.__pwned=1</script>"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"no Chromium at {CHROMIUM} (apt-get install chromium, or set PGJOBS_CHROMIUM)",
    ),
]

Page = Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve *app* with uvicorn in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start in 20 s"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    yield page
    await context.close()


@pytest.fixture
def site(dsn: str) -> Iterator[str]:
    with serving(dashboard.app(dsn, poll_interval=0.3)) as url:
        yield url


def make_config(dsn: str, **overrides: Any) -> pgjobs.Config:
    settings: dict[str, Any] = {
        "dsn": dsn,
        "poll_interval": 0.2,
        "shutdown_timeout": 2.0,
        "completed_retention": 3600,
    }
    return pgjobs.Config(**(settings | overrides))


def job_state(db: psycopg.Connection[Any], job_id: int) -> str:
    row = db.execute("select state::text from pgjobs.jobs where id = %s", (job_id,)).fetchone()
    assert row is not None
    return str(row[0])


async def wait_for(check: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"gave up after {limit}s waiting for {what}"
        await asyncio.sleep(0.05)


async def shot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        await page.screenshot(path=str(DOCS / f"dashboard-{name}.png"), full_page=True)


async def test_every_page_shows_its_data(dsn, db, site, page, running) -> None:
    server = pgjobs.Server()
    done = asyncio.Event()

    @server.handler("send_email")
    async def send_email(ctx: pgjobs.Context, task: pgjobs.Task) -> dict[str, Any]:
        if task.payload["to"].startswith("bounce"):
            raise RuntimeError(f"SMTP 550: mailbox {task.payload['to']} unavailable")
        return {"sent": True}

    @server.handler("resize_image")
    async def resize_image(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        done.set()

    # An hour of history for the charts, as workers' completers record it.
    db.execute(
        "insert into pgjobs.stats (minute, queue, worker_id, completed, failed)"
        " select date_trunc('minute', now()) - make_interval(mins => m), q,"
        "        gen_random_uuid(), 40 + (m * 7 + length(q) * 13) % 50, (m * 3) % 7 / 5"
        " from generate_series(1, 59) m, unnest(array['mail', 'images']) q"
    )
    mails = [
        pgjobs.Task("send_email", queue="mail", payload={"to": to}, max_retry=0)
        for to in ("ada@example.com", "bounce@example.com", "grace@example.com")
    ]
    ids = pgjobs.enqueue_many(db, mails)
    pgjobs.enqueue(db, pgjobs.Task("resize_image", queue="images", payload={"w": 64}))
    await running(server, make_config(dsn, queues={"mail": 2, "images": 1}, concurrency=4))
    await asyncio.wait_for(done.wait(), 30)
    await wait_for(lambda: job_state(db, ids[1]) == "failed", "the bounce to fail")
    await wait_for(lambda: job_state(db, ids[2]) == "completed", "the mails to complete")
    later = pgjobs.enqueue(db, pgjobs.Task("send_email", queue="mail", delay=3600))
    pgjobs.enqueue_many(db, [pgjobs.Task("nightly_report", queue="reports") for _ in range(3)])

    await page.goto(site + "/")
    mail = page.locator('tr[data-queue="mail"]')
    await playwright_api.expect(mail.locator('[data-state="scheduled"]')).to_have_text("1")
    await playwright_api.expect(mail.locator('[data-state="failed"]')).to_have_text("1")
    reports = page.locator('tr[data-queue="reports"]')
    await playwright_api.expect(reports.locator('[data-state="available"]')).to_have_text("3")
    assert await mail.locator("svg.chart rect.done").count() >= 59
    await shot(page, "queues")

    await page.click("nav >> text=Jobs")
    rows = page.locator("tr[data-job]")
    await playwright_api.expect(rows).to_have_count(8)
    await playwright_api.expect(page.locator(f'tr[data-job="{later}"] .state')).to_have_text(
        "scheduled"
    )
    await shot(page, "jobs")

    await page.click(f'a[href="/jobs/{ids[1]}"]')
    await playwright_api.expect(page.locator("#state")).to_have_text("failed")
    await playwright_api.expect(page.locator("#payload")).to_contain_text('"bounce@example.com"')
    await playwright_api.expect(page.locator("#why")).to_contain_text("SMTP 550")
    await playwright_api.expect(page.locator("table.errors")).to_contain_text("SMTP 550")
    await shot(page, "job")
    await page.goto(f"{site}/jobs/{ids[0]}")
    await playwright_api.expect(page.locator("#result")).to_contain_text('"sent": true')

    await page.click("nav >> text=Workers")
    worker_rows = page.locator("tr[data-worker]")
    await playwright_api.expect(worker_rows).to_have_count(1)
    await playwright_api.expect(worker_rows).to_contain_text("mail=2, images=1")
    await playwright_api.expect(page.locator("#leader")).to_contain_text("Leader: worker")
    await shot(page, "workers")

    await page.click("nav >> text=Health")
    await playwright_api.expect(page.locator("tr[data-check]").first).to_be_visible()
    assert await page.locator("tr[data-check]").count() >= 3


async def test_filter_the_jobs_list_keeps_the_filter_in_the_url(dsn, db, site, page) -> None:
    wanted = pgjobs.enqueue(db, pgjobs.Task("send_email", queue="mail"))
    pgjobs.enqueue(db, pgjobs.Task("send_email", queue="other"))
    pgjobs.enqueue(db, pgjobs.Task("resize", queue="mail"))
    await page.goto(site + "/jobs")
    await playwright_api.expect(page.locator("tr[data-job]")).to_have_count(3)
    await page.fill('input[name="queue"]', "mail")
    await page.fill('input[name="kind"]', "send_email")
    await page.select_option('select[name="state"]', "available")
    await page.click("text=Filter")
    await playwright_api.expect(page.locator("tr[data-job]")).to_have_count(1)
    await playwright_api.expect(page.locator(f'tr[data-job="{wanted}"]')).to_be_visible()
    assert "kind=send_email" in page.url
    assert "queue=mail" in page.url
    # The refresh keeps the filter: it fetches the page's own URL.
    await page.reload()
    await playwright_api.expect(page.locator("tr[data-job]")).to_have_count(1)


async def test_retry_a_failed_job_and_watch_it_complete(dsn, db, site, page, running) -> None:
    server = pgjobs.Server()

    @server.handler("flaky")
    async def flaky(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")

    job_id = pgjobs.enqueue(db, pgjobs.Task("flaky", max_retry=0))
    await running(server, make_config(dsn))
    await wait_for(lambda: job_state(db, job_id) == "failed", "the first attempt to fail")
    await page.goto(f"{site}/jobs/{job_id}")
    await playwright_api.expect(page.locator("#state")).to_have_text("failed")
    await page.click("text=Retry now")
    # No reload from here: the page's own refresh shows the worker finishing it.
    await playwright_api.expect(page.locator("#state")).to_have_text("completed", timeout=20000)
    assert job_state(db, job_id) == "completed"


async def test_pause_a_queue_and_the_worker_stops_claiming_from_it(
    dsn, db, site, page, running
) -> None:
    server = pgjobs.Server()
    ran: list[str] = []
    other_done = asyncio.Event()

    @server.handler("note")
    async def note(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        ran.append(task.queue)
        if task.queue == "other":
            other_done.set()

    pgjobs.enqueue(db, pgjobs.Task("note", queue="mail"))
    await running(server, make_config(dsn, queues={"mail": 1, "other": 1}))
    await wait_for(lambda: ran == ["mail"], "the first mail job")
    await page.goto(site + "/")
    await page.locator('tr[data-queue="mail"] >> text=Pause').click()
    await playwright_api.expect(page.locator('tr[data-queue="mail"] .paused')).to_be_visible()
    paused_job = pgjobs.enqueue(db, pgjobs.Task("note", queue="mail"))
    pgjobs.enqueue(db, pgjobs.Task("note", queue="other"))
    # The job of the other queue, enqueued after, runs; the paused queue's does not.
    await asyncio.wait_for(other_done.wait(), 20)
    assert ran == ["mail", "other"]
    assert job_state(db, paused_job) == "available"
    await page.locator('tr[data-queue="mail"] >> text=Resume').click()
    await wait_for(lambda: job_state(db, paused_job) == "completed", "the resumed queue's job")


async def test_cancel_a_running_job(dsn, db, site, page, running) -> None:
    server = pgjobs.Server()
    started = asyncio.Event()
    stopped = asyncio.Event()

    @server.handler("long")
    async def long(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.set()

    job_id = pgjobs.enqueue(db, pgjobs.Task("long"))
    await running(server, make_config(dsn))
    await asyncio.wait_for(started.wait(), 20)
    await page.goto(f"{site}/jobs/{job_id}")
    await playwright_api.expect(page.locator("#state")).to_have_text("running")
    await playwright_api.expect(page.locator("#worker")).to_contain_text("pid")
    await page.click("text=Cancel")  # confirms through the dialog handler
    await playwright_api.expect(page.locator("#state")).to_have_text("cancelled")
    await asyncio.wait_for(stopped.wait(), 20)
    assert job_state(db, job_id) == "cancelled"


async def test_without_the_token_nothing_is_shown_or_changed(dsn, db, page) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("secret_kind"))
    with serving(dashboard.app(dsn, token="s3cret", poll_interval=0)) as url:
        await page.goto(f"{url}/jobs/{job_id}")
        await playwright_api.expect(page.locator("h1")).to_have_text("Sign in")
        assert "secret_kind" not in await page.content()
        csrf = await page.locator('input[name="csrf"]').get_attribute("value")
        # A POST carrying the browser's own cookies and CSRF token, but no session.
        answer = await page.request.post(f"{url}/jobs/{job_id}/cancel", form={"csrf": csrf})
        assert answer.status == 401
        assert job_state(db, job_id) == "available"
        await page.fill('input[name="token"]', "wrong")
        await page.click("text=Sign in >> nth=-1")
        await playwright_api.expect(page.locator(".error").first).to_contain_text("not the")
        await page.fill('input[name="token"]', "s3cret")
        await page.click("button:has-text('Sign in')")
        await playwright_api.expect(page.locator("#kind")).to_have_text("secret_kind")
        await page.click("text=Cancel")
        await playwright_api.expect(page.locator("#state")).to_have_text("cancelled")


async def test_script_in_job_data_is_shown_not_run(dsn, db, site, page) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task(XSS, queue=XSS, payload={"note": XSS}))
    db.execute(
        "update pgjobs.jobs set state = 'failed', last_error = %s, finished_at = now()"
        " where id = %s",
        (XSS, job_id),
    )
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    for path in ("/", "/jobs", "/jobs?state=failed", f"/jobs/{job_id}"):
        await page.goto(site + path)
        await playwright_api.expect(page.locator("main")).to_contain_text(XSS)
        assert await page.evaluate("window.__pwned") is None, path
        # Only the dashboard's own script element exists.
        assert await page.locator("script").count() == 1, path
    await playwright_api.expect(page.locator("#payload")).to_contain_text(XSS)
    await playwright_api.expect(page.locator("#last-error")).to_have_text(XSS)
    assert dialogs == []


async def test_mounted_under_a_prefix_every_link_and_form_works(dsn, db, page) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("report", queue="mail"))
    db.execute(
        "update pgjobs.jobs set state = 'failed', last_error = 'boom', finished_at = now()"
        " where id = %s",
        (job_id,),
    )

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("the host application")

    host = Starlette(
        routes=[
            Route("/", home),
            Mount("/admin/jobs", app=dashboard.app(dsn, poll_interval=0.3)),
        ]
    )
    with serving(host) as url:
        base = url + "/admin/jobs"
        await page.goto(base + "/")
        for name, path in (("Jobs", "/jobs"), ("Workers", "/workers"), ("Health", "/health")):
            await page.click(f"nav >> text={name}")
            assert page.url == base + path
            await playwright_api.expect(page.locator("h1")).to_have_text(name)
        await page.click("nav >> text=Queues")
        assert page.url == base + "/"
        await page.locator('tr[data-queue="mail"] [data-state="failed"] a').click()
        assert page.url.startswith(base + "/jobs?")
        await playwright_api.expect(page.locator("tr[data-job]")).to_have_count(1)
        await page.fill('input[name="kind"]', "report")
        await page.click("text=Filter")
        assert page.url.startswith(base + "/jobs?")
        await page.click(f'tr[data-job="{job_id}"] a')
        assert page.url == f"{base}/jobs/{job_id}"
        await page.click("text=Retry now")
        await playwright_api.expect(page.locator(".notice")).to_contain_text("available")
        assert page.url.startswith(f"{base}/jobs/{job_id}")
        assert job_state(db, job_id) == "available"
        await page.goto(base + "/")
        await page.locator('tr[data-queue="mail"] >> text=Pause').click()
        await playwright_api.expect(page.locator('tr[data-queue="mail"] .paused')).to_be_visible()
        assert page.url.startswith(base + "/")
        await page.goto(url + "/")
        assert await page.inner_text("body") == "the host application"
