"""The tracing hook: None until :func:`pgjobs.tracing.instrument` sets it.

The enqueue operations (``pgjobs/_enqueue.py``) and the worker read :data:`hook` and do
nothing more while it is None, so that an application that does not trace pays one
comparison per enqueue and nothing per job. This module imports no OpenTelemetry: the
``otel`` extra is needed only by :mod:`pgjobs.tracing`, which fills the hook.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from ._ops import Op
    from .middleware import Middleware
    from .task import Task

__all__ = ["Hook", "hook"]

T = TypeVar("T")


class Hook(Protocol):
    """What pgjobs.tracing gives the enqueue operations and the worker."""

    @property
    def middleware(self) -> Middleware:
        """Run outermost around every handler by workers created while the hook is set."""
        ...

    def send(
        self, operation: str, tasks: Sequence[Task], make_op: Callable[[str | None], Op[T]]
    ) -> Op[T]:
        """*make_op*'s operation inside an enqueue span; *make_op* receives the trace
        context to store with the jobs (JSON text), or None to store none."""
        ...


hook: Hook | None = None
