"""The web dashboard over HTTP (Starlette's test client, a real Postgres): what each page
shows, its filters and keyset pages, its actions and their guards, bad input.

tests/test_dashboard_browser.py drives the same app in a real browser.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

pytest.importorskip("starlette", reason="the dashboard extra is not installed")
pytest.importorskip("jinja2", reason="the dashboard extra is not installed")
pytest.importorskip("httpx2", reason="starlette's test client needs httpx2")

from psycopg.conninfo import make_conninfo
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

import pgjobs
from pgjobs import _queries, dashboard
from pgjobs.cli import main

XSS = "<script>window.__pwned=1</script>"


@pytest.fixture
def client(dsn: str) -> Iterator[TestClient]:
    with TestClient(dashboard.app(dsn, poll_interval=0), raise_server_exceptions=False) as c:
        yield c


def csrf_of(client: TestClient, path: str = "/") -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get(path).text)
    assert match, "the page has no form"
    return match.group(1)


def fail(db: psycopg.Connection[Any], job_id: int, error: str) -> None:
    db.execute(
        "update pgjobs.jobs set state = 'failed', attempt = 1, max_retry = 0,"
        " finished_at = now(), last_error = %(e)s,"
        " errors = jsonb_build_array("
        "   jsonb_build_object('attempt', 1, 'at', now(), 'error', %(e)s::text))"
        " where id = %(id)s",
        {"id": job_id, "e": error},
    )


def state_of(db: psycopg.Connection[Any], job_id: int) -> str:
    row = db.execute("select state::text from pgjobs.jobs where id = %s", (job_id,)).fetchone()
    return row[0] if row else "deleted"


def test_queues_page_shows_counts_pause_and_the_last_hour(client, db) -> None:
    pgjobs.enqueue_many(db, [pgjobs.Task("a", queue="mail") for _ in range(3)])
    failed = pgjobs.enqueue(db, pgjobs.Task("a", queue="mail"))
    fail(db, failed, "boom")
    db.execute(
        "insert into pgjobs.stats (minute, queue, worker_id, completed, failed) values"
        " (date_trunc('minute', now()), 'mail', gen_random_uuid(), 7, 2),"
        " (date_trunc('minute', now()) - interval '30 minutes', 'mail', gen_random_uuid(), 5, 0),"
        " (date_trunc('minute', now()) - interval '2 hours', 'mail', gen_random_uuid(), 100, 0)"
    )
    pgjobs.admin.pause_queue(db, "mail")
    page = client.get("/")
    assert page.status_code == 200
    row = page.text.split('<tr data-queue="mail">', 1)[1].split("</tr>", 1)[0]
    assert re.search(r'data-state="available"><a [^>]*>3</a>', row)
    assert re.search(r'data-state="failed"><a [^>]*>1</a>', row)
    assert ">paused</span>" in row
    assert "12 completed, 2 failed in the last hour" in row  # not the row 2 hours old
    assert row.count('<rect class="done"') == 2
    assert row.count('<rect class="failed"') == 1
    assert ">Resume</button>" in row


def test_jobs_list_filters_and_pages_by_keyset(client, db) -> None:
    a = [pgjobs.enqueue(db, pgjobs.Task("send_email", queue="mail")) for _ in range(5)]
    b = pgjobs.enqueue(db, pgjobs.Task("resize", queue="images"))
    fail(db, a[1], "SMTP 550 mailbox unavailable")

    def ids(text: str) -> list[int]:
        return [int(i) for i in re.findall(r'<tr data-job="(\d+)">', text)]

    first = client.get("/jobs", params={"kind": "send_email", "limit": "2"})
    assert ids(first.text) == [a[4], a[3]]
    older = re.search(r'href="(/jobs\?[^"]+)" rel="next"', first.text)
    assert older
    assert f"before={a[3]}" in older.group(1)
    second = client.get(older.group(1).replace("&amp;", "&"))
    assert ids(second.text) == [a[2], a[1]]
    assert ids(client.get("/jobs", params={"queue": "images"}).text) == [b]
    assert ids(client.get("/jobs", params={"state": "failed"}).text) == [a[1]]
    assert ids(client.get("/jobs", params={"error": "mailbox UNAVAIL"}).text) == [a[1]]
    assert ids(client.get("/jobs", params={"error": "50%"}).text) == []
    assert ids(client.get("/jobs", params={"since": "2000-01-01T00:00"}).text) == [b, *a[::-1]]
    assert ids(client.get("/jobs", params={"since": "2999-01-01T00:00"}).text) == []
    # The filter stays in the form, so a refresh or a shared link keeps it.
    assert 'name="kind" value="send_email"' in first.text


def test_the_jobs_list_never_uses_offset() -> None:
    page = _queries.queries()["job_list"].decode().lower()
    assert "offset" not in page
    assert "id < %(before)s" in page


def test_job_page_shows_payload_why_errors_result_and_worker(client, db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("send_email", payload={"to": "a@example.com"}))
    fail(db, job_id, "SMTP 550 mailbox unavailable")
    db.execute("update pgjobs.jobs set result = '{\"sent\": false}' where id = %s", (job_id,))
    page = client.get(f"/jobs/{job_id}")
    assert page.status_code == 200
    assert "&#34;to&#34;: &#34;a@example.com&#34;" in page.text
    assert '<span class="state failed" id="state">failed</span>' in page.text
    why = re.search(r'<pre id="why">(.*?)</pre>', page.text, re.S)
    assert why
    assert "failed" in why.group(1)
    assert "SMTP 550" in why.group(1)
    assert "<td><pre>SMTP 550 mailbox unavailable</pre></td>" in page.text
    assert "&#34;sent&#34;: false" in page.text
    assert ">Retry now</button>" in page.text


def test_job_page_names_the_worker_holding_a_running_job(client, db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("slow"))
    db.execute(
        "insert into pgjobs.workers (id, host, pid, queues, concurrency, version, weights)"
        " values ('11111111-1111-1111-1111-111111111111', 'box-7', 4242, '{default,low}', 5,"
        " 't', '{6,1}')"
    )
    db.execute(
        "update pgjobs.jobs set state = 'running', attempt = 1, started_at = now(),"
        " lease_expires_at = now() + interval '1 minute',"
        " worker_id = '11111111-1111-1111-1111-111111111111' where id = %s",
        (job_id,),
    )
    page = client.get(f"/jobs/{job_id}").text
    assert "box-7 pid 4242" in page
    assert "Delete</button>" not in page  # a running job is cancelled, not deleted
    workers = client.get("/workers").text
    row = workers.split('data-worker="11111111-1111-1111-1111-111111111111"', 1)[1]
    assert "<td>box-7</td>" in row
    assert "<td>default=6, low=1</td>" in row  # queues with their weights
    assert 'data-field="running">1<' in row
    assert "No live leader" in workers


def queue_cells(page: str, queue: str) -> dict[str, str]:
    """The queues page's cells for *queue*: each state's count, and the oldest ready age."""
    row = page.split(f'<tr data-queue="{queue}">', 1)[1].split("</tr>", 1)[0]
    cells = dict(re.findall(r'data-state="(\w+)"[^>]*><a [^>]*>([^<]*)</a>', row))
    cells["oldest"] = re.search(r'data-field="oldest-ready"[^>]*>([^<]*)<', row).group(1)
    return cells


def test_queue_counts_are_exact_below_the_cap_and_n_plus_above(dsn, db) -> None:
    """With a cap of 3: a queue's 2 available jobs read 2, another's 5 read 3+; the 2
    scheduled jobs (fewer than 3 in all queues) are exact; 4 failed jobs across queues are
    more than 3, so each queue's failed count is a lower bound, marked +."""
    pgjobs.enqueue_many(db, [pgjobs.Task("a", queue="big") for _ in range(5)])
    small = pgjobs.enqueue_many(db, [pgjobs.Task("a", queue="small") for _ in range(2)])
    db.execute(
        "update pgjobs.jobs set run_at = now() - interval '2 hours' where id = %s", (small[0],)
    )
    pgjobs.enqueue_many(db, [pgjobs.Task("a", queue="small", delay=3600) for _ in range(2)])
    for queue in ("big", "big", "small", "other"):
        fail(db, pgjobs.enqueue(db, pgjobs.Task("a", queue=queue)), "boom")
    with TestClient(dashboard.app(dsn, poll_interval=0, count_cap=3)) as client:
        page = client.get("/").text
    big, small_row, other = (queue_cells(page, q) for q in ("big", "small", "other"))
    assert (big["available"], small_row["available"]) == ("3+", "2")
    assert (small_row["scheduled"], big["scheduled"]) == ("2", "0")
    failed = {
        q: cells["failed"] for q, cells in (("big", big), ("small", small_row), ("other", other))
    }
    assert all(count.endswith("+") for count in failed.values()), failed
    assert sum(int(count[:-1]) for count in failed.values()) == 4  # the cap + 1 read
    assert small_row["oldest"] == "2 h 0 min"  # exact: every available job was read
    assert big["oldest"].startswith("≥ ")  # at least: only the next 3 were read
    assert "more than 3 available jobs in this queue" in page
    assert 'id="counts-note"' in page


def test_queue_counts_match_queue_summary_below_the_cap(client, db) -> None:
    pgjobs.enqueue_many(db, [pgjobs.Task("a", queue=f"q{i % 3}") for i in range(10)])
    pgjobs.enqueue_many(db, [pgjobs.Task("a", queue="q1", delay=60) for _ in range(4)])
    fail(db, pgjobs.enqueue(db, pgjobs.Task("a", queue="q2")), "boom")
    db.execute("update pgjobs.jobs set state = 'cancelled', finished_at = now() where id = 1")
    page = client.get("/").text
    for summary in pgjobs.admin.queue_summary(db):
        cells = queue_cells(page, summary.queue)
        for state in ("scheduled", "available", "running", "failed", "cancelled"):
            assert cells[state] == str(getattr(summary, state)), (summary.queue, state)


def test_the_queue_counts_read_the_claim_and_state_time_indexes(dsn) -> None:
    """No scan of the jobs table: available jobs are counted in jobs_claim_idx, the other
    states read in jobs_state_time_idx (its CASE written as the index's)."""
    with psycopg.connect(dsn) as conn:
        conn.execute("set enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                b"explain " + _queries.queries()["dashboard_queue_counts"], {"cap": 10}
            ).fetchall()
        )
    jobs_scans = [line for line in plan.splitlines() if " on jobs " in line]
    assert jobs_scans
    assert all("_claim_idx" in s or "_state_time_idx" in s for s in jobs_scans), plan
    assert "Index Cond: ((queue)::text = " in plan
    assert re.search(r"Index Cond: \(state = s(_\d+)?\.state\)", plan), plan
    assert "Sort Key: j" not in plan  # the state-time sample comes in index order


def test_health_page_shows_the_doctor_checks(client, db) -> None:
    findings = pgjobs.admin.doctor(db)
    page = client.get("/health").text
    assert findings
    for finding in findings:
        assert f'<tr data-check="{finding.check_name}">' in page
    assert re.search(r'<p id="checked">Checked at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d', page)


def test_health_page_answers_while_the_checks_are_blocked(dsn, db) -> None:
    """doctor() runs off the request: while it waits on a lock, the page answers at once
    and says so; once the lock is gone, the page shows the findings."""
    blocker = psycopg.connect(dsn)
    blocker.execute("lock table pgjobs.jobs in access exclusive mode")
    with TestClient(dashboard.app(dsn, poll_interval=0)) as client:
        try:
            started = time.monotonic()
            page = client.get("/health")
            assert time.monotonic() - started < 5
            assert page.status_code == 200
            assert "Running the checks" in page.text
            assert "<tr data-check=" not in page.text
        finally:
            blocker.rollback()
            blocker.close()
        deadline = time.monotonic() + 20
        while "<tr data-check=" not in (page := client.get("/health").text):
            assert time.monotonic() < deadline, "the checks never finished"
    assert "Checked at" in page


def test_no_page_waits_on_a_lock_a_worker_could_hold(dsn, db) -> None:
    """The pages take only a plain read's lock (ACCESS SHARE), which conflicts with no
    insert, claim or update: they answer while another transaction holds EXCLUSIVE on
    every pgjobs table, a lock that stops any row lock or write but no plain read."""
    job_id = pgjobs.enqueue(db, pgjobs.Task("a", queue="mail"))
    fail(db, job_id, "boom")
    tables = [
        row[0]
        for row in db.execute(
            "select format('%I.%I', schemaname, tablename) from pg_tables"
            " where schemaname = 'pgjobs'"
        )
    ]
    assert "pgjobs.jobs" in tables
    paths = ["/", "/jobs", "/jobs?state=failed&queue=mail&error=boom", f"/jobs/{job_id}"]
    paths += ["/workers", "/health", "/metrics"]
    with TestClient(dashboard.app(dsn, poll_interval=0), raise_server_exceptions=False) as client:
        client.get("/jobs")  # the pool's connections open before the lock is taken
        blocker = psycopg.connect(dsn)
        blocker.execute(f"lock table {', '.join(tables)} in exclusive mode")
        answers: dict[str, Any] = {}

        def read(path: str) -> None:
            answers[path] = client.get(path)

        try:
            for path in paths:
                reader = threading.Thread(target=read, args=(path,))
                reader.start()
                reader.join(10)
                assert path in answers, f"{path} waited on a lock"
                assert answers[path].status_code == 200, path
        finally:
            blocker.rollback()
            blocker.close()


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/jobs/424242", 404, "job 424242 does not exist"),
        ("/jobs/abc", 400, "a job id is a positive integer"),
        ("/jobs/99999999999999999999", 400, "a job id is a positive integer"),
        ("/jobs?state=exploded", 400, "unknown job state"),
        ("/jobs?limit=100000", 400, "limit is a number of jobs from 1 to 200"),
        ("/jobs?limit=-1", 400, "limit is a number"),
        ("/jobs?limit=%C2%B2", 400, "limit is a number"),  # '²' is a digit to str.isdigit
        ("/jobs?kind=a%00b", 400, "kind has a NUL character"),
        ("/jobs?queue=%00", 400, "queue has a NUL character"),
        ("/jobs?error=%00", 400, "error has a NUL character"),
        ("/jobs?before=99999999999999999999999", 400, "a job id is a positive integer"),
        ("/jobs?since=yesterday", 400, "is not a date and time"),
        ("/jobs?colour=red", 400, "unknown filter"),
        ("/jobs?kind=" + "k" * 300, 400, "longer than 255"),
        ("/nowhere", 404, "Not Found"),
        ("/static/../../etc/passwd", 404, ""),
    ],
)
def test_bad_input_gets_a_clear_4xx_page(client, path: str, status: int, says: str) -> None:
    page = client.get(path)
    assert page.status_code == status
    assert says in page.text.replace("&#39;", "'")
    assert "Traceback" not in page.text


@pytest.mark.parametrize(
    ("path", "form", "says"),
    [
        ("/queues/pause", {"queue": "a\x00b"}, "queue has a NUL character"),
        ("/jobs/retry", {"kind": "\x00"}, "kind has a NUL character"),
        ("/jobs/retry", {"limit": "\u00b2"}, "limit is a number"),
    ],
)
def test_a_bad_form_gets_a_clear_4xx_page(client, path: str, form: dict[str, str], says) -> None:
    page = client.post(path, data={"csrf": csrf_of(client, "/jobs"), **form})
    assert page.status_code == 400
    assert says in page.text
    assert "Traceback" not in page.text


def test_actions_change_the_job_and_need_the_csrf_token(client, db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
    refused = client.post(f"/jobs/{job_id}/cancel", data={"csrf": "0" * 64})
    assert refused.status_code == 403
    assert "CSRF" in refused.text
    assert state_of(db, job_id) == "available"
    csrf = csrf_of(client, f"/jobs/{job_id}")
    done = client.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"] == f"/jobs/{job_id}?notice=cancelled"
    assert state_of(db, job_id) == "cancelled"
    assert "Job cancelled." in client.get(done.headers["location"]).text
    client.post(f"/jobs/{job_id}/retry", data={"csrf": csrf})
    assert state_of(db, job_id) == "available"
    client.post(f"/jobs/{job_id}/delete", data={"csrf": csrf})
    assert state_of(db, job_id) == "deleted"
    assert client.post(f"/jobs/{job_id}/delete", data={"csrf": csrf}).status_code == 404
    assert client.post(f"/jobs/{job_id}/explode", data={"csrf": csrf}).status_code == 404


def test_a_running_job_is_not_deleted(client, db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
    db.execute("update pgjobs.jobs set state = 'running' where id = %s", (job_id,))
    page = client.post(f"/jobs/{job_id}/delete", data={"csrf": csrf_of(client)})
    assert "cannot be deleted: cancel it first" in page.text
    assert state_of(db, job_id) == "running"


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
    ],
)
def test_a_request_from_another_site_is_refused(client, db, headers) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
    page = client.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf_of(client)}, headers=headers)
    assert page.status_code == 403
    assert "did not come from this dashboard" in page.text
    assert state_of(db, job_id) == "available"


def test_pause_and_resume_a_queue(client, db) -> None:
    pgjobs.enqueue(db, pgjobs.Task("a", queue="mail"))
    csrf = csrf_of(client)
    client.post("/queues/pause", data={"csrf": csrf, "queue": "mail"})
    assert [q.paused for q in pgjobs.admin.queue_summary(db)] == [True]
    client.post("/queues/resume", data={"csrf": csrf, "queue": "mail"})
    assert [q.paused for q in pgjobs.admin.queue_summary(db)] == [False]
    unknown = client.post("/queues/pause", data={"csrf": csrf, "queue": "nosuch"})
    assert unknown.status_code == 404


def test_bulk_retry_retries_the_failed_jobs_the_filter_matches(client, db) -> None:
    mails = [pgjobs.enqueue(db, pgjobs.Task("send_email")) for _ in range(3)]
    other = pgjobs.enqueue(db, pgjobs.Task("resize"))
    timeout = pgjobs.enqueue(db, pgjobs.Task("send_email"))
    for job_id in [*mails, other]:
        fail(db, job_id, "SMTP 421")
    fail(db, timeout, "timed out")
    page = client.post(
        "/jobs/retry",
        data={"csrf": csrf_of(client, "/jobs"), "kind": "send_email", "error": "smtp"},
    )
    assert "Failed jobs matching the filter made available: 3." in page.text
    assert [state_of(db, i) for i in mails] == ["available"] * 3
    assert state_of(db, other) == "failed"
    assert state_of(db, timeout) == "failed"


def test_a_token_guards_every_page_and_action(dsn, db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("secret-kind", payload={"card": "4111"}))
    app = dashboard.app(dsn, token="s3cret", poll_interval=0)
    with TestClient(app, raise_server_exceptions=False) as client:
        for path in ("/", "/jobs", f"/jobs/{job_id}", "/workers", "/health"):
            page = client.get(path)
            assert page.status_code == 401, path
            assert "secret-kind" not in page.text
            assert "4111" not in page.text
            assert 'name="token"' in page.text
        csrf = csrf_of(client, "/login")
        refused = client.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf})
        assert refused.status_code == 401
        assert state_of(db, job_id) == "available"
        wrong = client.post("/login", data={"csrf": csrf, "token": "guess", "back": "/jobs"})
        assert wrong.status_code == 403
        assert client.get("/jobs").status_code == 401
        signed = client.post("/login", data={"csrf": csrf, "token": "s3cret", "back": "/jobs"})
        assert signed.status_code == 200
        assert "secret-kind" in signed.text
        assert "s3cret" not in signed.text
        assert "s3cret" not in str(client.cookies)
        client.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf})
        assert state_of(db, job_id) == "cancelled"
    with TestClient(app, raise_server_exceptions=False) as script:
        bearer = {"authorization": "Bearer s3cret"}
        assert "secret-kind" in script.get("/jobs", headers=bearer).text
        assert script.get("/jobs", headers={"authorization": "Bearer nope"}).status_code == 401


def test_login_never_redirects_to_another_site(dsn) -> None:
    app = dashboard.app(dsn, token="s3cret", poll_interval=0)
    with TestClient(app) as client:
        csrf = csrf_of(client, "/login")
        for back in ("//evil.example/x", "https://evil.example", "/\\evil.example"):
            page = client.post(
                "/login",
                data={"csrf": csrf, "token": "s3cret", "back": back},
                follow_redirects=False,
            )
            assert page.headers["location"].startswith("/?"), back


def test_read_only_offers_and_accepts_no_action(dsn, db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
    fail(db, job_id, "boom")
    app = dashboard.app(dsn, read_only=True, poll_interval=0)
    with TestClient(app, raise_server_exceptions=False) as client:
        for path in ("/", "/jobs", f"/jobs/{job_id}"):
            page = client.get(path)
            assert page.status_code == 200
            assert 'method="post"' not in page.text, path
            assert ">read-only</span>" in page.text
        assert f'<tr data-job="{job_id}">' in client.get("/jobs").text
        refused = client.post(f"/jobs/{job_id}/retry", data={"csrf": "x"})
        assert refused.status_code == 403
        assert "read-only" in refused.text
    assert state_of(db, job_id) == "failed"


def test_job_data_is_escaped_on_every_page(client, db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task(XSS, queue=XSS, payload={"html": XSS}))
    fail(db, job_id, XSS)
    for path in ("/", "/jobs", f"/jobs/{job_id}", "/jobs?" + f"kind={XSS}"):
        page = client.get(path)
        assert page.status_code == 200
        assert "<script>window" not in page.text, path
        assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page.text, path
        assert "script-src 'self'" in page.headers["content-security-policy"]


def test_the_password_is_never_on_a_page_or_in_the_log(dsn, caplog) -> None:
    with_password = make_conninfo(dsn, password="hunter2-very-secret")
    caplog.set_level(logging.DEBUG)
    app = dashboard.app(with_password, poll_interval=0)
    with TestClient(app, raise_server_exceptions=False) as client:
        for path in ("/", "/jobs", "/jobs/1", "/workers", "/health", "/nowhere"):
            assert "hunter2" not in client.get(path).text
    assert "hunter2" not in caplog.text


def test_mounted_under_a_prefix_every_link_and_form_keeps_it(dsn, db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
    fail(db, job_id, "boom")
    host = Starlette(routes=[Mount("/admin/jobs", app=dashboard.app(dsn, poll_interval=0))])
    with TestClient(host) as client:
        for path in ("/admin/jobs/", "/admin/jobs/jobs", f"/admin/jobs/jobs/{job_id}"):
            page = client.get(path).text
            targets = re.findall(r'(?:href|src|action)="([^"]+)"', page)
            assert targets
            assert all(t.startswith("/admin/jobs/") for t in targets), targets
            for target in targets:
                if 'action="' + target not in page:
                    assert client.get(target.replace("&amp;", "&")).status_code == 200, target
        csrf = csrf_of(client, f"/admin/jobs/jobs/{job_id}")
        done = client.post(
            f"/admin/jobs/jobs/{job_id}/retry", data={"csrf": csrf}, follow_redirects=False
        )
        assert done.headers["location"] == f"/admin/jobs/jobs/{job_id}?notice=retried"
    assert state_of(db, job_id) == "available"


def test_the_cli_refuses_a_public_address_without_a_token(dsn, capsys, monkeypatch) -> None:
    monkeypatch.delenv("PGJOBS_DASHBOARD_TOKEN", raising=False)
    assert main(["dashboard", "--dsn", dsn, "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve the dashboard on 0.0.0.0 without a token" in err
    assert "PGJOBS_DASHBOARD_TOKEN" in err


def test_the_cli_binds_loopback_unless_told_and_takes_the_token_from_the_environment(
    dsn, db, capsys, monkeypatch
) -> None:
    uvicorn = pytest.importorskip("uvicorn", reason="the dashboard extra is not installed")
    served: list[dict[str, Any]] = []
    monkeypatch.setattr(
        uvicorn, "run", lambda application, **kw: served.append({"app": application, **kw})
    )
    monkeypatch.delenv("PGJOBS_DASHBOARD_TOKEN", raising=False)
    assert main(["dashboard", "--dsn", dsn]) == 0
    assert (served[0]["host"], served[0]["port"]) == ("127.0.0.1", 8080)
    assert "pgjobs dashboard: http://127.0.0.1:8080/ on " in capsys.readouterr().out
    monkeypatch.setenv("PGJOBS_DASHBOARD_TOKEN", "from-env")
    assert main(["dashboard", "--dsn", dsn, "--host", "0.0.0.0"]) == 0
    assert served[1]["host"] == "0.0.0.0"
    pgjobs.enqueue(db, pgjobs.Task("env-kind"))
    with TestClient(served[1]["app"], raise_server_exceptions=False) as client:
        assert client.get("/jobs").status_code == 401
        bearer = {"authorization": "Bearer from-env"}
        assert "env-kind" in client.get("/jobs", headers=bearer).text


def test_with_a_token_a_change_still_needs_same_origin_and_csrf(dsn, db) -> None:
    job_id = pgjobs.enqueue(db, pgjobs.Task("a"))
    bearer = {"authorization": "Bearer s3cret"}
    with TestClient(dashboard.app(dsn, token="s3cret", poll_interval=0)) as client:
        csrf = re.search(
            r'name="csrf" value="([0-9a-f]+)"', client.get("/jobs", headers=bearer).text
        )
        assert csrf
        no_csrf = client.post(f"/jobs/{job_id}/cancel", headers=bearer)
        assert no_csrf.status_code == 403
        assert "CSRF" in no_csrf.text
        elsewhere = client.post(
            f"/jobs/{job_id}/cancel",
            data={"csrf": csrf.group(1)},
            headers=bearer | {"origin": "https://evil.example"},
        )
        assert elsewhere.status_code == 403
        assert state_of(db, job_id) == "available"
        done = client.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf.group(1)}, headers=bearer)
        assert done.status_code == 200
        assert state_of(db, job_id) == "cancelled"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert dashboard.is_loopback(host) is loopback


def test_the_job_payload_is_pretty_json(client, db) -> None:
    payload = {"b": [1, 2], "a": {"nested": "é"}}
    job_id = pgjobs.enqueue(db, pgjobs.Task("a", payload=payload))
    text = client.get(f"/jobs/{job_id}").text
    shown = re.search(r'<pre id="payload">(.*?)</pre>', text, re.S)
    assert shown
    unescaped = shown.group(1).replace("&#34;", '"')
    assert json.loads(unescaped) == payload
    assert '\n  "a": {\n    "nested": "é"\n  }' in unescaped


@pytest.mark.slow
def test_the_cli_serves_the_dashboard_and_prints_its_url(dsn: str, tmp_path) -> None:
    pytest.importorskip("uvicorn", reason="the dashboard extra is not installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with_password = make_conninfo(dsn, password="hunter2-very-secret")
    log = tmp_path / "dashboard.log"
    env = {k: v for k, v in os.environ.items() if k != "PGJOBS_DASHBOARD_TOKEN"}
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pgjobs",
                "dashboard",
                "--dsn",
                with_password,
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
                break
            except OSError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        assert b"<h1>Queues</h1>" in page
    finally:
        process.terminate()
        process.wait(10)
    output = log.read_text()
    assert f"pgjobs dashboard: http://127.0.0.1:{port}/ on " in output
    assert "password=***" in output
    assert "hunter2" not in output
