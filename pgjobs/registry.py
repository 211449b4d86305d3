"""Which code runs which kind of job.

A handler is either a function ``handler(ctx, task)`` or an object with a method
``handle(ctx, task)``; either may be ``async``. Async handlers run on the worker's event
loop; sync handlers run in the worker's thread pool. Whatever a handler returns is its
result (JSON-serialisable values only).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, runtime_checkable

from .backoff import Backoff
from .context import Context
from .errors import ConfigurationError, DuplicateHandlerError, HandlerNotFoundError
from .periodic import Periodic
from .task import Task, _check_name

__all__ = ["Handler", "HandlerFunc", "HandlerObject", "Registration", "Registry"]

HandlerFunc: TypeAlias = Callable[[Context, Task], Any]


@runtime_checkable
class HandlerObject(Protocol):
    """An object that handles jobs through its ``handle(ctx, task)`` method."""

    def handle(self, ctx: Context, task: Task) -> Any: ...


Handler: TypeAlias = HandlerFunc | HandlerObject


@dataclass(frozen=True, slots=True)
class Registration:
    """A handler as the worker runs it: the callable, whether it is a coroutine
    function, and the retry backoff for its kind (None: the server's default)."""

    kind: str
    func: HandlerFunc
    is_async: bool
    backoff: Backoff | None


def _as_callable(handler: Handler) -> HandlerFunc:
    if isinstance(handler, HandlerObject) and not inspect.isfunction(handler):
        return handler.handle
    if callable(handler):
        return handler
    raise ConfigurationError(
        f"a handler must be a function (ctx, task) or have a handle(ctx, task) method, "
        f"not {type(handler).__name__}"
    )


def _is_async(func: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - callable instances
    return call is not None and inspect.iscoroutinefunction(call)


class Registry:
    """Handlers by kind. ``register_handler`` refuses a second handler for a kind.

    It also holds the periodic jobs (by name), which the worker's leader enqueues.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, Registration] = {}
        self._periodic: dict[str, Periodic] = {}

    def register_handler(
        self, kind: str, handler: Handler, *, backoff: Backoff | None = None
    ) -> Registration:
        """Register *handler* for *kind*; raise DuplicateHandlerError if one exists."""
        _check_name(kind, "kind")
        if kind in self._handlers:
            raise DuplicateHandlerError(f"a handler for kind {kind!r} is already registered")
        if backoff is not None and not callable(backoff):
            raise ConfigurationError("backoff must be callable as backoff(attempt, error)")
        func = _as_callable(handler)
        registration = Registration(kind, func, _is_async(func), backoff)
        self._handlers[kind] = registration
        return registration

    def handler(
        self, kind: str, *, backoff: Backoff | None = None
    ) -> Callable[[HandlerFunc], HandlerFunc]:
        """Decorator form of :meth:`register_handler`; returns the function unchanged."""

        def decorate(func: HandlerFunc) -> HandlerFunc:
            self.register_handler(kind, func, backoff=backoff)
            return func

        return decorate

    def get_handler(self, kind: str) -> Registration:
        """The registration for *kind*; raise HandlerNotFoundError if there is none."""
        try:
            return self._handlers[kind]
        except KeyError:
            raise HandlerNotFoundError(
                f"no handler registered for kind {kind!r} on this worker"
                f" (registered: {', '.join(sorted(self._handlers)) or 'none'})"
            ) from None

    def add_periodic(self, periodic: Periodic) -> Periodic:
        """Add a periodic job; raise ConfigurationError if its name is taken."""
        if not isinstance(periodic, Periodic):
            raise ConfigurationError(f"expected a Periodic, got {type(periodic).__name__}")
        if periodic.name in self._periodic:
            raise ConfigurationError(
                f"a periodic job named {periodic.name!r} is already registered: "
                "give the second one another name="
            )
        self._periodic[periodic.name] = periodic
        return periodic

    def periodic(self) -> list[Periodic]:
        """The periodic jobs, in the order they were added."""
        return list(self._periodic.values())

    def find(self, kind: str) -> Registration | None:
        return self._handlers.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._handlers)

    def __contains__(self, kind: object) -> bool:
        return kind in self._handlers

    def __iter__(self) -> Iterator[Registration]:
        return iter(self._handlers.values())

    def __len__(self) -> int:
        return len(self._handlers)
