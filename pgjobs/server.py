"""The public worker: register handlers per kind, then run.

::

    server = pgjobs.Server(pgjobs.Config(queues={"critical": 6, "default": 3, "low": 1}))

    @server.handler("send_email")
    def send_email(ctx: pgjobs.Context, task: pgjobs.Task) -> None: ...

    server.run()    # blocks; SIGINT/SIGTERM stop it gracefully, a second SIGINT at once

Periodic jobs are registered the same way, on every worker; the workers elect a leader
that enqueues each tick once (see :mod:`pgjobs.periodic`)::

    server.periodic("*/5 * * * *", pgjobs.Task("sync_rates"))

For embedding in an application that has its own event loop::

    await server.start()
    ...
    await server.stop()
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from datetime import timedelta, tzinfo
from typing import Any, Self

from ._logging import configure as configure_logging
from ._worker import Worker
from ._worker.observer import Observer
from .backoff import Backoff
from .config import Config
from .cron import parse_schedule
from .errors import ConfigurationError
from .middleware import ErrorHook, Middleware, as_middleware
from .periodic import CatchUp, Periodic
from .registry import Handler, HandlerFunc, Registration, Registry
from .task import Task

__all__ = ["Server"]

log = logging.getLogger("pgjobs.worker")


class Server:
    """A worker process's jobs: a handler registry and the worker that runs them.

    :param config: how to run; ``Config()`` (the defaults) when omitted.
    """

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.registry = Registry()
        self.middleware: list[Middleware] = []
        self.error_hooks: list[ErrorHook] = []
        #: Told of claims, outcomes and idle waits (pgjobs.metrics.PrometheusObserver);
        #: set before start().
        self.observer: Observer | None = None
        self._worker: Worker | None = None

    # --- the registry ---------------------------------------------------------------

    def register_handler(
        self, kind: str, handler: Handler, *, backoff: Backoff | None = None
    ) -> Registration:
        """Run *handler* for jobs of *kind*; raises DuplicateHandlerError for a second one.

        *backoff* overrides the retry delay for this kind: ``backoff(attempt, error)``.
        """
        return self.registry.register_handler(kind, handler, backoff=backoff)

    def handler(
        self, kind: str, *, backoff: Backoff | None = None
    ) -> Callable[[HandlerFunc], HandlerFunc]:
        """Decorator: ``@server.handler("kind")`` registers the function below it."""
        return self.registry.handler(kind, backoff=backoff)

    def get_handler(self, kind: str) -> Registration:
        """The registration for *kind*; raises HandlerNotFoundError if there is none."""
        return self.registry.get_handler(kind)

    def periodic(
        self,
        schedule: str | timedelta | float,
        task: Task,
        *,
        name: str | None = None,
        tz: str | tzinfo = "UTC",
        catch_up: CatchUp = "skip",
    ) -> Periodic:
        """Enqueue *task* at every tick of *schedule*, once per tick across all workers.

        :param schedule: a cron expression (``"*/5 * * * *"``, ``"@daily"``; see
            :mod:`pgjobs.cron`), or an interval as a ``timedelta`` or seconds (ticks at
            whole multiples of it since the Unix epoch).
        :param task: the job to enqueue each time; its ``run_at`` becomes the tick.
        :param name: names the schedule (in each tick's unique key and in logs); default
            the task's kind. Two schedules need two names.
        :param tz: the time zone a cron expression is read in (IANA name); default UTC.
        :param catch_up: ``"skip"`` (default) or ``"last"``: whether a starting leader
            runs the most recent tick missed while no worker ran.

        Register the same periodic jobs on every worker, before it starts: the leader's
        are the ones that run. Raises ConfigurationError for a bad schedule or name.
        """
        periodic = Periodic(
            getattr(task, "kind", "") if name is None else name,
            parse_schedule(schedule, tz),
            task,
            catch_up,
        )
        return self.registry.add_periodic(periodic)

    def use(self, middleware: Callable[..., Any]) -> Callable[..., Any]:
        """Run *middleware* around every handler (see :mod:`pgjobs.middleware`); usable
        as a decorator. Middlewares nest in the order they are added, the first outermost."""
        self.middleware.append(as_middleware(middleware))
        return middleware

    def on_error(self, hook: ErrorHook) -> ErrorHook:
        """Call ``hook(ctx, task, error)`` after every failed attempt; usable as a decorator."""
        if not callable(hook):
            raise ConfigurationError("an error hook must be callable as hook(ctx, task, error)")
        self.error_hooks.append(hook)
        return hook

    # --- the lifecycle --------------------------------------------------------------

    @property
    def worker(self) -> Worker | None:
        """The running worker, between :meth:`start` and :meth:`stop`."""
        return self._worker

    async def start(self, config: Config | None = None) -> None:
        """Connect and start working; returns once the worker runs."""
        if self._worker is not None:
            raise ConfigurationError("this server is already running")
        worker = Worker(
            config or self.config,
            self.registry,
            middleware=self.middleware,
            error_hooks=self.error_hooks,
            observer=self.observer,
        )
        await worker.start()
        self._worker = worker

    async def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully: no new claims, running jobs get *timeout* seconds (default
        ``shutdown_timeout``) to finish, the rest are cancelled and returned to their queue."""
        # Keep the worker reachable while it stops: a second signal aborts the wait.
        worker = self._worker
        if worker is not None:
            try:
                await worker.stop(timeout)
            finally:
                self._worker = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Stopping is the same whether the block raised or not; the exception propagates.
        await self.stop()

    def run(self, config: Config | None = None) -> None:
        """Run until SIGINT or SIGTERM, then stop gracefully; a second signal stops at once.

        *config* overrides the server's own for this run (the CLI's options do this).
        Logs go to stderr at INFO, as with ``python -m pgjobs worker``, unless the
        application has configured logging itself (the root logger has handlers).
        """
        if not logging.getLogger().handlers:
            configure_logging()
        asyncio.run(self.serve(config))

    async def serve(self, config: Config | None = None) -> None:
        """:meth:`run` for code already inside an event loop."""
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        received = 0

        def on_signal(signum: int) -> None:
            nonlocal received
            received += 1
            if received == 1:
                log.info(
                    "%s received: finishing running jobs (again to stop at once)",
                    signal.Signals(signum).name,
                )
                stop_requested.set()
            elif self._worker is not None:
                log.warning("second signal: stopping now")
                self._worker.abort()

        signals = (signal.SIGINT, signal.SIGTERM)
        for signum in signals:
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            await self.start(config)
            assert self._worker is not None
            requested = asyncio.ensure_future(stop_requested.wait())
            crashed = asyncio.ensure_future(self._worker.wait_failed())
            await asyncio.wait([requested, crashed], return_when=asyncio.FIRST_COMPLETED)
            requested.cancel()
            crashed.cancel()
            await self.stop()
            if not stop_requested.is_set():
                raise RuntimeError("the pgjobs worker stopped after an internal error (logged)")
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)
