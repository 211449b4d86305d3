"""Threads for sync handlers.

Daemon threads, unlike ``concurrent.futures.ThreadPoolExecutor``'s: Python cannot kill a
thread, and a handler that ignores its cancelled context must not keep the process
alive after a graceful stop has returned its job to the queue. Results come back to the
event loop through ``call_soon_threadsafe``, with no per-job future to allocate.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["DaemonThreadPool"]

_STOP = object()


class DaemonThreadPool:
    """At most *size* daemon threads, started as work arrives."""

    def __init__(self, size: int, name: str = "pgjobs-worker") -> None:
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()

    def submit(
        self,
        loop: asyncio.AbstractEventLoop,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        done: Callable[[Any, BaseException | None], None],
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
            with contextlib.suppress(RuntimeError):  # a closed loop: the worker is gone
                loop.call_soon_threadsafe(done, result, error)
            del item, loop, func, args, done, result, error
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        """Ask idle threads to exit; busy ones exit when their handler returns."""
        for _ in self._threads:
            self._queue.put(_STOP)
