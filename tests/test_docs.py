"""The documentation stays true: its Python examples run, its links lead somewhere, and the
reference's tables agree with the code."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

import pgjobs
from examples import app as example_app
from pgjobs import task as task_module
from pgjobs import testing
from tests.apps.procs import wait_for

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


DSN_LINE = re.compile(r'^dsn = "[^"]*"$', re.MULTILINE)


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), re.DOTALL)


def run_examples(page: Path, dsn: str) -> dict[str, Any]:
    """Run a page's Python blocks in order, in one namespace, on the test database."""
    namespace: dict[str, Any] = {}
    blocks = python_blocks(page)
    assert blocks, f"{page.name} has no Python example"
    for block in blocks:
        code = DSN_LINE.sub(f"dsn = {dsn!r}", block)
        exec(compile(code, str(page), "exec"), namespace)
    return namespace


#: A block the text marks for the story test: ``<!-- story: ACTION [ARGUMENT] -->`` on the
#: line before its fence. ``run`` runs it (sh with bash, Python in one namespace per
#: page), ``save PATH`` writes it to PATH, ``start`` runs it in the background (a worker).
STORY_BLOCK = re.compile(
    r"^<!-- story: (run|save|start)(?: (\S+))? -->\n```(sh|python)\n(.*?)^```",
    re.MULTILINE | re.DOTALL,
)
DOC_DSN = re.compile(r"postgresql://[^\s\"']+")
EXPORT = re.compile(r"^export (\w+)=(\S+)", re.MULTILINE)
STORY_PAGES = [REPO / "README.md", REPO / "docs" / "quickstart.md"]


def as_url(dsn: str) -> str:
    """The test database as a URL, to stand where the text writes its own (unquoted in a
    shell line: no spaces)."""
    params = conninfo_to_dict(dsn)
    user = quote(str(params.get("user", "")), safe="")
    password = params.get("password")
    login = f"{user}:{quote(str(password), safe='')}@" if password else f"{user}@"
    host, port = str(params.get("host", "")), params.get("port")
    dbname = quote(str(params["dbname"]), safe="")
    if host.startswith("/"):  # a Unix socket directory
        query = f"?host={quote(host, safe='')}" + (f"&port={port}" if port else "")
        return f"postgresql://{login}/{dbname}{query}"
    return f"postgresql://{login}{host}{f':{port}' if port else ''}/{dbname}"


class Reader:
    """Follows a page's story as a reader would: one shell session (its exports kept),
    one Python session, a working directory of their own, the worker in the background."""

    def __init__(self, page: Path, dsn: str, home: Path) -> None:
        self.page = page
        self.dsn = as_url(dsn)
        self.home = home
        bin_dir = home / ".bin"  # `python` is this test's interpreter, as in an activated venv
        bin_dir.mkdir()
        (bin_dir / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
        (bin_dir / "python").chmod(0o755)
        self.env = {k: v for k, v in os.environ.items() if k not in ("PGJOBS_DSN", "DATABASE_URL")}
        self.env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(REPO))
        self.namespace: dict[str, Any] = {}
        self.worker: subprocess.Popen[bytes] | None = None
        self.worker_log = home / "worker.log"

    def blocks(self) -> list[tuple[str, str, str, str]]:
        found = STORY_BLOCK.findall(self.page.read_text())
        assert found, f"{self.page.name} marks no block of its story"
        return [
            (action, arg, lang, DOC_DSN.sub(self.dsn, code)) for action, arg, lang, code in found
        ]

    def run(self, lang: str, code: str) -> None:
        if lang == "python":
            exec(compile(code, str(self.page), "exec"), self.namespace)
            return
        done = subprocess.run(
            ["bash", "-e", "-c", code], cwd=self.home, env=self.env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{code}\n{done.stderr}"
        self.env.update(EXPORT.findall(code))

    def save(self, path: str, code: str) -> None:
        (self.home / path).parent.mkdir(parents=True, exist_ok=True)
        (self.home / path).write_text(code)

    def start(self, code: str) -> None:
        assert self.worker is None, "the story starts one worker"
        with self.worker_log.open("wb") as log:
            self.worker = subprocess.Popen(
                ["bash", "-c", code],
                cwd=self.home,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the whole command
            )
        wait_for(
            lambda: (
                self.worker is not None
                and (self.worker.poll() is not None or " started: " in self.worker_log.read_text())
            ),
            "the worker to start",
            detail=self.worker_log.read_text,
        )
        assert self.worker.poll() is None, self.worker_log.read_text()

    def stop(self) -> int | None:
        if self.worker is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.worker.pid, signal.SIGINT)
        try:
            return self.worker.wait(timeout=30)
        finally:
            self.worker.kill()


@pytest.mark.slow
@pytest.mark.parametrize("page", STORY_PAGES, ids=lambda p: p.name)
def test_the_story_runs_as_written(page: Path, empty_dsn: str, tmp_path: Path) -> None:
    """The page's marked blocks, in order, on a database with nothing in it: migrate,
    enqueue, save the worker, start it. Every job the story enqueued completes at its
    first attempt, and the worker logs no warning: no kind without a handler, no error."""
    reader = Reader(page, empty_dsn, tmp_path)
    enqueued: dict[str, int] = {}
    samples: list[tuple[str, Any]] = []
    try:
        with psycopg.connect(empty_dsn, autocommit=True) as db:
            for action, arg, lang, code in reader.blocks():
                if action == "start":
                    enqueued = dict(
                        db.execute("select kind, count(*) from pgjobs.jobs group by 1").fetchall()
                    )
                    samples = db.execute(
                        "select distinct on (kind) kind, payload from pgjobs.jobs order by kind, id"
                    ).fetchall()
                    reader.start(code)
                elif action == "save":
                    reader.save(arg, code)
                else:
                    reader.run(lang, code)
            assert enqueued, "the story starts a worker once it has enqueued jobs"
            wait_for(
                lambda: db.execute("select count(*) from pgjobs.jobs").fetchone() == (0,),
                "every job of the story to complete",
                timeout=120,
                detail=reader.worker_log.read_text,
            )
            totals = db.execute(
                "select sum(completed), sum(failed), sum(retried) from pgjobs.stats"
            ).fetchone()
            orders = db.execute("select email from orders").fetchall()
        assert reader.stop() == 0
    finally:
        reader.stop()
    assert totals == (sum(enqueued.values()), 0, 0)
    assert orders == [("ada@example.com",)]  # what the story committed, and nothing else
    log = reader.worker_log.read_text()
    assert " WARNING " not in log, log
    assert " ERROR " not in log, log
    # examples/app.py is the same application: it runs a job of each kind of the story.
    with psycopg.connect(empty_dsn) as conn:
        pgjobs.enqueue_many(conn, [pgjobs.Task(kind, payload) for kind, payload in samples])
        runs = testing.drain(example_app.server, conn)
        conn.rollback()
    assert [(run.kind, run.state, run.error) for run in runs] == [
        (kind, "completed", None) for kind, _ in samples
    ]


def test_readme_enqueue_options_reach_the_row(
    dsn: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """The README's receipt is enqueued with the options it shows."""
    reader = Reader(REPO / "README.md", dsn, tmp_path)
    [first_python, *_] = [code for _, _, lang, code in reader.blocks() if lang == "python"]
    reader.run("python", first_python)
    row = db.execute(
        "select queue, max_retry, payload from pgjobs.jobs where id = %s",
        (reader.namespace["job_id"],),
    ).fetchone()
    assert row == ("critical", 5, {"to": "ada@example.com", "order": 1})


def _anchors(page: Path) -> set[str]:
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", page.read_text(), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_lead_somewhere(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.is_file(), f"{page.name}: {target} does not exist"
        if anchor:
            assert anchor in _anchors(linked), f"{page.name}: no heading for #{anchor}"


def test_readme_names_the_two_fresh_machine_commands() -> None:
    readme = (REPO / "README.md").read_text()
    for command in ("scripts/demo", "scripts/test"):
        assert command in readme
        assert (REPO / command).stat().st_mode & 0o111, f"{command} is not executable"


def test_reference_defaults_match_the_code() -> None:
    reference = (REPO / "docs" / "reference.md").read_text()
    task = pgjobs.Task("k")
    assert f'queue="{task.queue}", max_retry={task.max_retry}, timeout={task.timeout}' in reference
    assert f"max_payload_bytes={task_module.DEFAULT_MAX_PAYLOAD_BYTES}" in reference
    assert f"{task_module.MAX_MAX_RETRY:,}" in reference
    assert f"1 to {task_module.MAX_NAME_LENGTH} characters" in reference


def test_reference_lists_every_jobs_column(conn: psycopg.Connection[Any]) -> None:
    reference = (REPO / "docs" / "reference.md").read_text()
    section = reference.split("### The jobs table", 1)[1].split("###", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", section, re.MULTILINE))
    columns = {
        name
        for (name,) in conn.execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'pgjobs' and table_name = 'jobs'"
        )
    }
    assert documented == columns


def test_reference_lists_every_error() -> None:
    reference = (REPO / "docs" / "reference.md").read_text()
    for name in pgjobs.errors.__all__:
        assert name in reference, name
