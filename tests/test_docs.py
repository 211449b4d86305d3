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


# --- every code block runs, or says it is a fragment ----------------------------------------

#: Every ``python``, ``sh`` and ``sql`` block of the pages carries one marker, an HTML
#: comment on the line before its fence (invisible on the site and on GitHub):
#:
#: * ``<!-- story: run | save PATH | start -->``: a step of the page's story, run in order
#:   by :func:`test_the_story_runs_as_written` (README.md and docs/quickstart.md);
#: * ``<!-- run -->``: run by :func:`test_marked_blocks_run`, in order, Python in one
#:   namespace per page (``dsn`` is the test database), sh with bash, SQL as one
#:   autocommit script on the migrated test database;
#: * ``<!-- run: tests/FILE.py::TEST -->``: run by that test, which reads the page (a
#:   page that is one pytest module, a page whose result the test checks);
#: * ``<!-- fragment -->`` or ``<!-- fragment: why -->``: a part of a larger program
#:   (a signature, a handler without its server, a command for your own machine), shown
#:   and not run.
#:
#: A block with no marker fails :func:`test_every_block_is_run_or_a_fragment`.
FENCE = re.compile(r"^( *)```(\w*)[^\n]*\n(.*?)^\1```", re.MULTILINE | re.DOTALL)
MARKER = re.compile(
    r"<!-- (?:(?P<story>story): .+?"
    r"|(?P<run>run)(?:: (?P<test>\S+))?"
    r"|(?P<fragment>fragment)(?::.*)?) -->"
)
CHECKED = {"python", "sh", "bash", "shell", "sql"}
DOC_PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


class Block:
    """A fenced block of a page, with the marker on the line before it."""

    def __init__(self, page: Path, text: str, fence: re.Match[str]) -> None:
        self.page = page
        self.line = text.count("\n", 0, fence.start()) + 1
        self.language = fence.group(2)
        self.code = fence.group(3)
        before = text[: fence.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        self.marker = MARKER.fullmatch(before)

    @property
    def kind(self) -> str | None:
        """story, run, run-by (another test runs it), fragment; None without a marker."""
        if self.marker is None:
            return None
        if self.marker["run"]:
            return "run-by" if self.marker["test"] else "run"
        return "story" if self.marker["story"] else "fragment"

    def __repr__(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line} ({self.language})"


def code_blocks(page: Path) -> list[Block]:
    """The page's python, sh and sql blocks, in order."""
    text = page.read_text()
    blocks = [Block(page, text, fence) for fence in FENCE.finditer(text)]
    return [block for block in blocks if block.language in CHECKED]


def block_census() -> dict[str, int]:
    """How many blocks of the pages are of each kind (the site's claim: all but the
    fragments run in a test)."""
    census: dict[str, int] = {}
    for page in DOC_PAGES:
        for block in code_blocks(page):
            census[str(block.kind)] = census.get(str(block.kind), 0) + 1
    return census


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda p: p.name)
def test_every_block_is_run_or_a_fragment(page: Path) -> None:
    unmarked = [block for block in code_blocks(page) if block.kind is None]
    assert not unmarked, f"mark these blocks as run or fragment (see MARKER): {unmarked}"
    for block in code_blocks(page):
        if block.kind == "story":
            assert page in STORY_PAGES, f"{block}: only {STORY_PAGES} tell a story"
        if block.kind == "run-by":
            assert block.marker is not None
            path, _, test = block.marker["test"].partition("::")
            source = (REPO / path).read_text()
            assert f"def {test}(" in source, f"{block}: no test {block.marker['test']}"
            assert page.name in source, f"{block}: {path} does not read {page.name}"
    # Those tests run every Python block of their page, so a page has one of them or none.
    python = [b for b in code_blocks(page) if b.language == "python"]
    runners = {b.marker["test"] for b in python if b.kind == "run-by" and b.marker}
    if runners:
        assert len(runners) == 1, f"{page.name}: Python blocks run by several tests {runners}"
        assert all(b.kind == "run-by" for b in python), f"{page.name}: {runners} runs them all"


def _pages_with(kind: str) -> list[Path]:
    return [page for page in DOC_PAGES if any(b.kind == kind for b in code_blocks(page))]


@pytest.mark.parametrize("page", _pages_with("run"), ids=lambda p: p.name)
def test_marked_blocks_run(page: Path, dsn: str, tmp_path: Path) -> None:
    """The page's ``<!-- run -->`` blocks, in order, as a reader would paste them."""
    namespace: dict[str, Any] = {"dsn": dsn}
    env = {**os.environ, "PGJOBS_DSN": as_url(dsn), "PYTHONPATH": str(REPO)}
    for block in code_blocks(page):
        if block.kind != "run":
            continue
        code = DOC_DSN.sub(as_url(dsn), DSN_LINE.sub(f"dsn = {dsn!r}", block.code))
        if block.language == "python":
            exec(compile(code, f"{block!r}", "exec"), namespace)
            continue
        if block.language == "sql":
            # Without parameters psycopg sends the block as one simple query: several
            # statements, %-signs as they are, as psql would.
            with psycopg.connect(dsn, autocommit=True) as sql:
                sql.execute(code.encode())
            continue
        done = subprocess.run(
            ["bash", "-e", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{block}\n{code}\n{done.stderr}"


def test_the_api_page_shows_every_public_name() -> None:
    """docs/api.md renders each name of ``pgjobs.__all__`` (``::: pgjobs.NAME``), and the
    public modules whole."""
    api = (REPO / "docs" / "api.md").read_text()
    shown = set(re.findall(r"^::: pgjobs\.(?:\w+\.)?(\w+)$", api, re.MULTILINE))
    modules = {"testing", "admin", "cron"}
    assert shown - modules == set(pgjobs.__all__) - {"__version__"}
    assert modules <= shown


def test_every_page_is_in_the_site_nav() -> None:
    """mkdocs only mentions a page left out of the nav; this makes it an error, so a new
    page gets a place in the site (mkdocs.yml) when it is added."""
    nav = set(
        re.findall(r":\s*([\w./-]+\.md)\s*$", (REPO / "mkdocs.yml").read_text(), re.MULTILINE)
    )
    pages = {page.name for page in (REPO / "docs").glob("*.md")}
    assert pages - nav == set(), "add these pages to the nav of mkdocs.yml"
    assert nav - pages == set(), "the nav of mkdocs.yml names pages that do not exist"


def _figures_by_workload(page: Path) -> dict[str, list[str]]:
    rows = re.findall(r"^\| ([^|]+?) \|((?: *[\d,.]+ *\|){3})", page.read_text(), re.MULTILINE)
    return {label: [cell.strip() for cell in cells.split("|")[:3]] for label, cells in rows}


def test_the_comparison_quotes_the_benchmarks() -> None:
    """docs/comparison.md repeats rows of docs/benchmarks.md: a new benchmark run that
    changes a figure must change it there too."""
    quoted = _figures_by_workload(REPO / "docs" / "comparison.md")
    measured = _figures_by_workload(REPO / "docs" / "benchmarks.md")
    assert quoted, "the comparison quotes no benchmark row"
    assert {label: measured.get(label) for label in quoted} == quoted
