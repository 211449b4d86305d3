"""Test signals: what a background pass did, for tests to wait on instead of sleeping.

A service reports what each pass did to its :class:`TestSignal` (River's design).
Nothing is kept until a test calls :meth:`TestSignal.init`, so a worker in production
pays one comparison per pass. A test inits the signal, then waits for the pass it needs
("the rescuer's next pass rescued job 7") rather than for a length of time that is
usually long enough; and to prove that something did *not* happen, it waits for the pass
that would have done it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["TestSignal"]

T = TypeVar("T")


class TestSignal(Generic[T]):
    """Values a service reports, queued for a test once :meth:`init` was called."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self) -> None:
        self._queue: asyncio.Queue[T] | None = None

    def init(self) -> None:
        """Start keeping what is signalled (from now on: earlier values are gone)."""
        self._queue = asyncio.Queue()

    def signal(self, value: T) -> None:
        """Report *value*; a no-op unless a test called :meth:`init`."""
        if self._queue is not None:
            self._queue.put_nowait(value)

    async def wait(self, timeout: float = 10.0) -> T:
        """The next value signalled; TimeoutError if none comes within *timeout*."""
        if self._queue is None:
            raise RuntimeError("call init() before waiting on a test signal")
        return await asyncio.wait_for(self._queue.get(), timeout)

    async def wait_for(self, check: Callable[[T], bool], timeout: float = 10.0) -> T:
        """The first value signalled for which *check* is true (skipping the others)."""
        async with asyncio.timeout(timeout):
            while True:
                value = await self.wait(timeout)
                if check(value):
                    return value
