"""Calling a handler as the worker does: inside every middleware, outermost first.

The worker and :mod:`pgjobs.testing` both run handlers through these functions, so a
job run in a test meets the same middleware, error hooks and timeout error as one run
by a worker.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from ..context import Context
from ..middleware import ErrorHook, Middleware
from ..registry import HandlerFunc
from ..task import Task

__all__ = ["call_error_hooks", "call_handler", "call_handler_async", "timeout_error"]

log = logging.getLogger("pgjobs.worker")


def call_handler(
    func: HandlerFunc, ctx: Context, task: Task, middleware: Sequence[Middleware]
) -> Any:
    """Call a sync handler inside every middleware; None if a middleware swallowed its
    exception (the job then completes)."""
    with contextlib.ExitStack() as stack:
        for each in middleware:
            stack.enter_context(each(ctx, task))
        return func(ctx, task)
    return None  # reached only when a middleware suppressed the exception


async def call_handler_async(
    func: HandlerFunc, ctx: Context, task: Task, middleware: Sequence[Middleware]
) -> Any:
    """:func:`call_handler` for an async handler, awaited inside the middleware."""
    with contextlib.ExitStack() as stack:
        for each in middleware:
            stack.enter_context(each(ctx, task))
        return await func(ctx, task)
    return None  # reached only when a middleware suppressed the exception


def call_error_hooks(
    hooks: Sequence[ErrorHook], ctx: Context, task: Task, error: BaseException
) -> None:
    """Tell every error hook about a failed attempt; a hook's own exception is logged."""
    for hook in hooks:
        try:
            hook(ctx, task, error)
        except Exception:
            log.exception("error hook %r failed", hook)


def timeout_error(timeout: float) -> TimeoutError:
    """The error recorded for an attempt that ran past its deadline."""
    return TimeoutError(f"timed out after {timeout:g}s")
