"""Middleware and error hooks: code that runs around every handler.

A middleware is a generator function (or any callable returning a context manager) that
receives the job's context and task and yields once, where the handler runs::

    @server.use
    def timing(ctx: pgjobs.Context, task: pgjobs.Task):
        started = time.perf_counter()
        try:
            yield
        finally:
            metrics.observe(task.kind, time.perf_counter() - started)

Being synchronous, one middleware serves sync and async handlers alike: around a sync
handler it runs in the handler's thread (so thread-local tracing context works), around
an async one in the handler's task (so context variables propagate). The handler's
exception is raised at the ``yield``: a middleware may log it, re-raise it, raise another,
or swallow it (the job then completes). Middlewares nest in the order they were added,
the first outermost.

An error hook, ``server.on_error(hook)``, is called as ``hook(ctx, task, error)`` on the
worker's event loop after every failed attempt (not for Snooze or Cancel); it should be
quick. Its own exceptions are logged and otherwise ignored.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeAlias

from .context import Context
from .errors import ConfigurationError
from .task import Task

__all__ = ["ErrorHook", "Middleware", "as_middleware"]

Middleware: TypeAlias = Callable[[Context, Task], AbstractContextManager[Any]]
ErrorHook: TypeAlias = Callable[[Context, Task, BaseException], Any]


def as_middleware(middleware: Callable[..., Any]) -> Middleware:
    """Accept a generator function (wrapped as a context manager) or a callable returning
    a context manager."""
    if inspect.isasyncgenfunction(middleware) or inspect.iscoroutinefunction(middleware):
        raise ConfigurationError(
            "middleware must be synchronous (a generator function that yields once); it runs "
            "around async handlers too"
        )
    if inspect.isgeneratorfunction(middleware):
        return contextlib.contextmanager(middleware)
    if callable(middleware):
        return middleware
    raise ConfigurationError(f"middleware must be callable, not {type(middleware).__name__}")
