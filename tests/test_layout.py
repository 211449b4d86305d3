"""The package's layers: public faces over a private core over SQL, the worker runtime
beside the faces. Read from the source, so that an import pointing back up fails here
before it tangles the modules."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pgjobs"

#: What users (and handlers) call; may import anything below them.
FACES = {
    "client", "server", "admin", "testing", "dashboard", "cli", "pytest_plugin", "contrib",
    "metrics", "tracing", "embedded", "__main__", "_enqueued", "_jobrun",
}  # fmt: skip
#: The worker runtime: the core below it, never a face.
RUNTIME = {"_worker"}


def imports(path: Path) -> set[str]:
    """The first-level pgjobs modules that *path* imports when it runs (``pgjobs.x.y``
    counts as x). Imports under ``if TYPE_CHECKING:`` are left out: a core type may name a
    runtime class in an annotation (Context's JobTransactions) without loading it."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = list(parts if path.name == "__init__.py" else parts[:-1])
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
        for inner in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = [*base, *(node.module.split(".") if node.module else [])]
            if target[:1] != ["pgjobs"]:
                continue
            if len(target) == 1:  # from pgjobs import x / from . import x
                found.update(alias.name for alias in node.names)
            else:
                found.add(target[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names = alias.name.split(".")
                if names[0] == "pgjobs" and len(names) > 1:
                    found.add(names[1])
    return found


def layer_of(path: Path) -> tuple[str, str]:
    first = path.relative_to(PACKAGE).with_suffix("").parts[0]
    if first in FACES:
        return "face", first
    return ("runtime" if first in RUNTIME else "core"), first


def test_the_core_imports_no_face_and_the_runtime_no_face() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "__init__.py":
            continue  # the package's namespace re-exports the faces
        layer, _ = layer_of(path)
        if layer == "face":
            continue
        for target in imports(path):
            if target in FACES or (layer == "core" and target in RUNTIME):
                wrong.append(f"{path.relative_to(PACKAGE)} ({layer}) imports {target}")
    assert wrong == []


def test_the_check_sees_an_import_back_up() -> None:
    core = PACKAGE / "_ops.py"
    assert layer_of(core) == ("core", "_ops")
    assert "client" not in imports(core)
    assert "_queries" in imports(PACKAGE / "client.py")  # it does read imports
