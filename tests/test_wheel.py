"""The built distribution: the wheel carries its migrations and SQL, and an installed wheel
(not the source tree) migrates a database.

Building runs hatchling in an isolated environment, as ``pip install .`` does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from pgjobs import migrate

REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@dataclass
class Built:
    wheel: Path
    sdist: Path
    installed: Path  # a --target directory holding only the installed wheel


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("dist")
    # sdist first, then the wheel from the sdist: what an index would serve.
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    (wheel,) = out.glob("pgjobs-*.whl")
    (sdist,) = out.glob("pgjobs-*.tar.gz")
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
         str(wheel)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return Built(wheel, sdist, target)


def run_installed(
    built: Built, args: list[str], cwd: Path, module: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run Python with only the installed wheel's pgjobs importable, from outside the repo."""
    env = {k: v for k, v in os.environ.items() if k not in ("PGJOBS_DSN", "DATABASE_URL")}
    env["PYTHONPATH"] = str(built.installed)
    command = [sys.executable, "-m", "pgjobs", *args] if module else [sys.executable, *args]
    return subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_wheel_contains_migrations_and_sql(built: Built) -> None:
    names = set(zipfile.ZipFile(built.wheel).namelist())
    required = {
        "pgjobs/__init__.py",
        "pgjobs/py.typed",
        "pgjobs/migrations/env.py",
        "pgjobs/migrations/script.py.mako",
        "pgjobs/migrations/versions/0001_initial.py",
        "pgjobs/migrations/schema.sql",
        "pgjobs/sql/jobs.sql",
    }
    assert required <= names, required - names
    # Every migration, with the SQL files it runs, and every SQL file in the repository
    # is shipped.
    migrations = REPO / "migrations"
    for path in [*migrations.glob("versions/*.py"), *migrations.rglob("*.sql")]:
        assert f"pgjobs/migrations/{path.relative_to(migrations).as_posix()}" in names
    for path in (REPO / "pgjobs" / "sql").glob("*.sql"):
        assert f"pgjobs/sql/{path.name}" in names
    # And the dashboard's templates, stylesheet and script.
    for folder in ("templates", "static"):
        for path in (REPO / "pgjobs" / "dashboard" / folder).iterdir():
            assert f"pgjobs/dashboard/{folder}/{path.name}" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith(("tests/", "migrations/", "docs/"))]


def test_wheel_metadata(built: Built) -> None:
    wheel = zipfile.ZipFile(built.wheel)
    info = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    assert "pgjobs = pgjobs.cli:main" in wheel.read(info).decode()
    meta = wheel.read(next(n for n in wheel.namelist() if n.endswith("/METADATA"))).decode()
    for needle in ("Requires-Dist: psycopg", "Requires-Dist: alembic", "Provides-Extra: embedded"):
        assert needle in meta


def test_sdist_keeps_the_top_level_migrations(built: Built) -> None:
    with tarfile.open(built.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"migrations/env.py", "migrations/versions/0001_initial.py", "pyproject.toml"} <= names


def test_installed_wheel_is_what_runs(built: Built, tmp_path: Path) -> None:
    code = (
        "import pgjobs, pgjobs.migrate as m; "
        "print(pgjobs.__file__); print(m.migrations_dir()); print(m.head_revision())"
    )
    result = run_installed(built, ["-c", code], cwd=tmp_path, module=False)
    assert result.returncode == 0, result.stderr
    module_file, migrations, head = result.stdout.splitlines()
    assert Path(module_file).is_relative_to(built.installed)
    assert Path(migrations) == built.installed / "pgjobs" / "migrations"
    assert head == migrate.head_revision()


def test_installed_wheel_migrates_a_database(built: Built, empty_dsn: str, tmp_path: Path) -> None:
    result = run_installed(built, ["migrate", "--dsn", empty_dsn], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "migrated from base to" in result.stdout
    with psycopg.connect(empty_dsn) as conn:
        assert migrate.current_revision(conn) == migrate.head_revision()
        assert conn.execute("select to_regclass('pgjobs.jobs') is not null").fetchone() == (True,)
    again = run_installed(built, ["migrate", "--dsn", empty_dsn], cwd=tmp_path)
    assert "nothing to do" in again.stdout


def test_installed_wheel_prints_sql(built: Built, tmp_path: Path) -> None:
    result = run_installed(built, ["migrate", "--sql"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE pgjobs.jobs" in result.stdout


def test_installed_console_script(built: Built, tmp_path: Path) -> None:
    script = built.installed / "bin" / "pgjobs"
    assert script.is_file()
    env = {**os.environ, "PYTHONPATH": str(built.installed)}
    result = subprocess.run(
        [str(script), "--version"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("pgjobs ")
