"""Threads for sync handlers.

Daemon threads, unlike ``concurrent.futures.ThreadPoolExecutor``'s: Python cannot kill a
thread, and a handler that ignores its cancelled context must not keep the process
alive after a graceful stop has returned its job to the queue.

Results come back to the event loop in batches, with no per-job future to allocate: a
thread that finishes a handler appends the result to a list and wakes the loop with
``call_soon_threadsafe`` only if the list was empty, and the loop takes the whole list
at once. Each wakeup is a write to the loop's self-pipe and a turn of the loop; under a
stream of short handlers one wakeup now carries many results.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeAlias

__all__ = ["DaemonThreadPool"]

_STOP = object()

Done: TypeAlias = Callable[[Any, BaseException | None], None]


class DaemonThreadPool:
    """At most *size* daemon threads, started as work arrives."""

    def __init__(self, size: int, name: str = "pgjobs-worker") -> None:
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        # Finished handlers whose results the loop has not taken yet, per loop (one, in a
        # worker); a loop is woken when its list goes from empty to one.
        self._finished: dict[
            asyncio.AbstractEventLoop, list[tuple[Done, Any, BaseException | None]]
        ] = {}

    def submit(
        self,
        loop: asyncio.AbstractEventLoop,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        done: Done,
    ) -> None:
        """Run ``func(*args)`` in a thread, then ``done(result, error)`` on *loop*."""
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
            elif len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        self._queue.put((loop, func, args, done))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            loop, func, args, done = item
            try:
                result, error = func(*args), None
            except BaseException as exc:  # handed to the loop, which decides
                result, error = None, exc
            with self._lock:
                self._idle += 1
                finished = self._finished.setdefault(loop, [])
                finished.append((done, result, error))
                wake = len(finished) == 1
            if wake:
                with contextlib.suppress(RuntimeError):  # a closed loop: the worker is gone
                    loop.call_soon_threadsafe(self._deliver, loop)
            del item, loop, func, args, done, result, error

    def _deliver(self, loop: asyncio.AbstractEventLoop) -> None:
        """On *loop*: hand every result finished since the last wakeup to its callback."""
        with self._lock:
            finished = self._finished.pop(loop, [])
        for done, result, error in finished:
            try:
                done(result, error)
            except Exception as exc:  # as if each were a callback of its own: the rest run
                loop.call_exception_handler(
                    {"message": "a sync handler's result callback failed", "exception": exc}
                )

    def shutdown(self) -> None:
        """Ask idle threads to exit; busy ones exit when their handler returns."""
        for _ in self._threads:
            self._queue.put(_STOP)
