"""The documentation stays true: its Python examples run, its links lead somewhere, and the
reference's tables agree with the code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import task as task_module

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


def test_readme_quickstart_runs(dsn: str, db: psycopg.Connection[Any]) -> None:
    db.execute("create table orders (id serial primary key, email text)")
    namespace = run_examples(REPO / "README.md", dsn)
    counts = dict(
        db.execute("select kind || '/' || state, count(*) from pgjobs.jobs group by 1").fetchall()
    )
    assert counts == {
        "send_email/available": 1,
        "resize_image/scheduled": 1,
        "reindex/available": 10_000,
    }
    first = db.execute(
        "select queue, max_retry from pgjobs.jobs where id = %s", (namespace["job_id"],)
    ).fetchone()
    assert first == ("critical", 5)
    assert db.execute("select email from orders").fetchall() == [("ada@example.com",)]


def test_docs_quickstart_runs(dsn: str, db: psycopg.Connection[Any]) -> None:
    run_examples(REPO / "docs" / "quickstart.md", dsn)
    kinds = dict(db.execute("select kind, count(*) from pgjobs.jobs group by 1").fetchall())
    assert kinds == {"send_receipt": 1, "send_email": 1, "cleanup": 1, "resize": 10_000}
    assert db.execute("select email from orders").fetchall() == [("ada@example.com",)]
    payload = db.execute("select payload from pgjobs.jobs where kind = 'send_receipt'").fetchone()
    assert payload == ({"order": 1},)


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
