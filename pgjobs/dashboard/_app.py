"""The dashboard's routes: server-rendered pages, POST actions, its own CSS and JS.

Every link and form is built from the request's ``root_path``, so the app works the same
at ``/`` and mounted under a prefix. Pages render with Jinja2 autoescaping: job data
(payload, kind, queue, errors) is text on the page, never markup. A small script
re-fetches the page every few seconds and swaps its ``#live`` part in.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from .._dsn import redact, resolve_dsn
from .._queries import DEFAULT_SCHEMA
from ..errors import InvalidArgumentError, JobNotFoundError, QueueNotFoundError
from ..job import JobState, parse_id
from ._data import COUNT_CAP, MAX_BULK, JobFilter, Store, Throughput, check_text
from ._guard import CSRF_COOKIE, SESSION_COOKIE, Guard

__all__ = ["app"]

log = logging.getLogger("pgjobs.dashboard")

_MAX_FORM = 64 * 1024
_SECURITY_HEADERS = {
    # Only the dashboard's own script and stylesheet run; no inline script or style, so
    # an escaping mistake could not run anything either.
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
_STATIC = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
_NOTICES = {
    "paused": "Queue paused: workers claim nothing more from it.",
    "resumed": "Queue resumed.",
    "retried": "Job made available to run now.",
    "not-retried": "Only a failed, cancelled or scheduled job can be retried.",
    "cancelled": "Job cancelled.",
    "not-cancelled": "The job had already finished.",
    "deleted": "Job deleted.",
    "not-deleted": "A running job cannot be deleted: cancel it first.",
    "bulk-retried": "Failed jobs matching the filter made available: {count}.",
    "signed-in": "Signed in.",
}


@dataclass(frozen=True, slots=True)
class Settings:
    schema: str
    read_only: bool
    poll_interval: float
    database: str


def app(
    dsn: str | None = None,
    *,
    schema: str = DEFAULT_SCHEMA,
    read_only: bool = False,
    token: str | None = None,
    poll_interval: float = 3.0,
    pool_size: int = 4,
    count_cap: int = COUNT_CAP,
) -> Starlette:
    """The dashboard as an ASGI application, to serve or to mount in your own app::

        from starlette.routing import Mount
        routes = [Mount("/admin/jobs", app=pgjobs.dashboard.app(dsn, token=...))]

    *dsn* defaults to ``$PGJOBS_DSN``, then ``$DATABASE_URL``. With *token*, every page
    asks for it (a sign-in form, or ``Authorization: Bearer``). *read_only* offers and
    accepts no action. Pages refresh their data every *poll_interval* seconds (0: never).
    Database connections (at most *pool_size*) open at the first request. The queues
    page counts up to *count_cap* jobs per queue and state, and shows "N+" above.
    """
    dsn = resolve_dsn(dsn)
    store = Store(dsn, schema=schema, pool_size=pool_size, count_cap=count_cap)
    settings = Settings(schema, read_only, poll_interval, redact(dsn))
    pages = _Pages(store, Guard(token), settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(store.close)

    routes = [
        Route("/", pages.queues, methods=["GET"]),
        Route("/jobs", pages.jobs, methods=["GET"]),
        Route("/jobs/retry", pages.bulk_retry, methods=["POST"]),
        Route("/jobs/{job_id}", pages.job, methods=["GET"]),
        Route("/jobs/{job_id}/{action}", pages.job_action, methods=["POST"]),
        Route("/queues/{action}", pages.queue_action, methods=["POST"]),
        Route("/workers", pages.workers, methods=["GET"]),
        Route("/health", pages.health, methods=["GET"]),
        Route("/login", pages.login, methods=["GET", "POST"]),
        Route("/static/{name}", pages.static, methods=["GET"]),
        Route("/metrics", pages.metrics, methods=["GET"]),
    ]
    application = Starlette(
        routes=routes,
        exception_handlers={HTTPException: pages.error_page, Exception: pages.crash_page},
        lifespan=lifespan,
    )
    application.state.store = store
    log.info("pgjobs dashboard on %s (schema %s)", settings.database, schema)
    return application


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pgjobs.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["age"] = _age
    env.filters["when"] = lambda moment: (
        "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S %Z")
    )
    return env


def _age(value: timedelta | None) -> str:
    """A duration the way the queues page shows it: 4 s, 3 min 12 s, 2 h 5 min, 3 d 4 h."""
    if value is None:
        return "-"
    seconds = max(0, int(value.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def chart(throughput: Throughput, *, width: int = 240, height: int = 40) -> dict[str, Any]:
    """Bar geometry for one queue's last hour (one bar a minute, failures stacked on top of
    completions), drawn by the template as SVG rectangles."""
    peak = max(c + f for c, f in zip(throughput.completed, throughput.failed, strict=True))
    scale = height / peak if peak else 0.0
    step = width / 60
    bars = []
    for slot, (completed, failed) in enumerate(
        zip(throughput.completed, throughput.failed, strict=True)
    ):
        done_h, failed_h = completed * scale, failed * scale
        bars.append(
            {
                "x": round(slot * step, 2),
                "w": round(step * 0.8, 2),
                "done_y": round(height - done_h, 2),
                "done_h": round(done_h, 2),
                "failed_y": round(height - done_h - failed_h, 2),
                "failed_h": round(failed_h, 2),
            }
        )
    return {
        "width": width,
        "height": height,
        "bars": bars,
        "completed": sum(throughput.completed),
        "failed": sum(throughput.failed),
        "peak": peak,
    }


_PageContext = Callable[["_Pages", Request], Awaitable[dict[str, Any]]]
_Handler = Callable[["_Pages", Request], Awaitable[Response]]


def _page(template: str, tab: str) -> Callable[[_PageContext], _Handler]:
    """A page for signed-in visitors (anyone else gets the sign-in form): *template*
    rendered with what the method returns, under the navigation's *tab*."""

    def decorate(context: _PageContext) -> _Handler:
        @functools.wraps(context)
        async def page(self: _Pages, request: Request) -> Response:
            if not self.guard.signed_in(request):
                return self._login_form(request)
            return self.render(request, template, page=tab, **await context(self, request))

        return page

    return decorate


class _Pages:
    def __init__(self, store: Store, guard: Guard, settings: Settings) -> None:
        self.store = store
        self.guard = guard
        self.settings = settings
        self.env = _environment()
        self._metrics: Any = None  # a prometheus_client registry, made at the first scrape

    # --- rendering ------------------------------------------------------------------------

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        csrf_cookie = request.cookies.get(CSRF_COOKIE) or self.guard.new_csrf_cookie()
        base = request.scope.get("root_path", "").rstrip("/")
        notice = _NOTICES.get(request.query_params.get("notice", ""), "")
        count = request.query_params.get("count", "")
        context.setdefault("page", "")
        html = self.env.get_template(template).render(
            base=base,
            csrf=self.guard.csrf_token(csrf_cookie),
            read_only=self.settings.read_only,
            signed_in=self.guard.signed_in(request),
            poll=self.settings.poll_interval if status == 200 else 0,
            database=self.settings.database,
            notice=notice.format(count=count if count.isdigit() else "?"),
            **context,
        )
        response = HTMLResponse(html, status_code=status, headers=_SECURITY_HEADERS)
        if request.cookies.get(CSRF_COOKIE) != csrf_cookie:
            response.set_cookie(
                CSRF_COOKIE, csrf_cookie, path=base or "/", httponly=True, samesite="strict"
            )
        return response

    async def error_page(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return self.render(
            request, "error.html", exc.status_code, title=_title(exc.status_code), detail=exc.detail
        )

    async def crash_page(self, request: Request, exc: Exception) -> Response:
        # No traceback on the page: it can hold data and connection details.
        log.exception("pgjobs dashboard: %s %s failed", request.method, request.url.path)
        detail = "The dashboard hit an unexpected error; its log has the details."
        return self.render(request, "error.html", 500, title="Server error", detail=detail)

    async def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run a Store call in a thread, turning the caller's mistakes into 4xx pages."""
        try:
            return await run_in_threadpool(function, *args)
        except (JobNotFoundError, QueueNotFoundError) as exc:
            raise HTTPException(404, str(exc)) from exc
        except InvalidArgumentError as exc:
            raise HTTPException(400, str(exc)) from exc

    # --- pages ----------------------------------------------------------------------------

    @_page("queues.html", tab="queues")
    async def queues(self, request: Request) -> dict[str, Any]:
        summaries, series = await self._call(self.store.queues)
        charts = {q.queue: chart(series.get(q.queue, Throughput())) for q in summaries}
        return {"queues": summaries, "charts": charts, "cap": self.store.count_cap}

    @_page("jobs.html", tab="jobs")
    async def jobs(self, request: Request) -> dict[str, Any]:
        flt = _parse_filter(dict(request.query_params))
        jobs, next_before = await self._call(self.store.jobs, flt)
        return {
            "jobs": jobs,
            "filter": flt,
            "states": list(JobState),
            "next_query": urlencode(flt.query(before=next_before)) if next_before else None,
            "first_query": urlencode(flt.query(before=None)) if flt.before else None,
            "filter_fields": flt.query(before=None, limit=None),
            "max_bulk": MAX_BULK,
        }

    @_page("job.html", tab="jobs")
    async def job(self, request: Request) -> dict[str, Any]:
        job, why = await self._call(self.store.job, _job_id(request))
        return {
            "job": job,
            "why": why,
            "payload": _pretty(job.payload),
            "result": None if job.result is None else _pretty(job.result),
        }

    @_page("workers.html", tab="workers")
    async def workers(self, request: Request) -> dict[str, Any]:
        workers, leader = await self._call(self.store.workers)
        return {"workers": workers, "leader": leader}

    @_page("health.html", tab="health")
    async def health(self, request: Request) -> dict[str, Any]:
        return {"health": await self._call(self.store.health)}

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            raise HTTPException(404, f"No such file: {name}")
        body = resources.files("pgjobs.dashboard").joinpath("static", name).read_bytes()
        headers = {"cache-control": "max-age=300", "x-content-type-options": "nosniff"}
        return Response(body, media_type=_STATIC[name], headers=headers)

    async def metrics(self, request: Request) -> Response:
        """Queue depth and age for Prometheus: one queue_summary read per scrape (cached
        5 s), however many workers run. Needs the token, when set, as a Bearer header."""
        if not self.guard.signed_in(request):
            raise HTTPException(401, "Refused: /metrics needs the dashboard's token.")
        try:
            from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

            from ..metrics import QueueCollector
        except ImportError as exc:
            needs = f'/metrics needs pip install "pgjobs[metrics]" ({exc})'
            raise HTTPException(404, needs) from exc
        if self._metrics is None:
            registry = CollectorRegistry()
            registry.register(QueueCollector(self.store.queue_depths))
            self._metrics = registry
        body = await run_in_threadpool(generate_latest, self._metrics)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    # --- sign-in --------------------------------------------------------------------------

    def _login_form(
        self, request: Request, status: int = 401, back: str | None = None, failed: bool = False
    ) -> Response:
        if back is None:
            back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return self.render(request, "login.html", status, page="login", back=back, failed=failed)

    async def login(self, request: Request) -> Response:
        if request.method == "GET" or self.guard.token is None:
            if self.guard.signed_in(request):
                return self._redirect(request, "/")
            return self._login_form(request)
        form = await self._form(request)
        if not self.guard.token_matches(form.get("token", "")):
            log.warning("pgjobs dashboard: a sign-in with a wrong token")
            return self._login_form(request, 403, back=form.get("back", "/"), failed=True)
        response = self._redirect(request, form.get("back", "/"), notice="signed-in")
        base = request.scope.get("root_path", "").rstrip("/")
        response.set_cookie(
            SESSION_COOKIE,
            self.guard.session_value(),
            path=base or "/",
            httponly=True,
            samesite="strict",
        )
        return response

    # --- actions --------------------------------------------------------------------------

    async def _form(self, request: Request) -> dict[str, str]:
        """The POSTed form, once the request passed every check a change needs."""
        if not self.guard.same_origin(request):
            raise HTTPException(403, "Refused: the request did not come from this dashboard.")
        body = await request.body()
        if len(body) > _MAX_FORM:
            raise HTTPException(413, "The form is too large.")
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if not self.guard.csrf_ok(request, form.pop("csrf", "")):
            raise HTTPException(
                403, "Refused: the form's CSRF token is missing or stale; reload the page."
            )
        return form

    async def _action_form(self, request: Request) -> dict[str, str]:
        if self.settings.read_only:
            raise HTTPException(403, "This dashboard is read-only.")
        if not self.guard.signed_in(request):
            raise HTTPException(401, "Refused: changes need the dashboard's token.")
        return await self._form(request)

    def _redirect(self, request: Request, path: str, **query: Any) -> RedirectResponse:
        base = request.scope.get("root_path", "").rstrip("/")
        # Only a path inside the dashboard: never another site (an open redirect).
        if not path.startswith("/") or path.startswith("//") or "\\" in path:
            path = "/"
        if base and path.startswith(base + "/"):
            path = path[len(base) :]
        target = base + path
        if query:
            target += ("&" if "?" in target else "?") + urlencode(query)
        return RedirectResponse(target, status_code=303, headers=_SECURITY_HEADERS)

    async def queue_action(self, request: Request) -> Response:
        action = request.path_params["action"]
        if action not in ("pause", "resume"):
            raise HTTPException(404, f"No queue action {action!r}.")
        form = await self._action_form(request)
        queue = form.get("queue", "")
        if not queue:
            raise HTTPException(400, "Which queue? The form has no queue.")
        try:
            check_text("queue", queue)
        except InvalidArgumentError as exc:
            raise HTTPException(400, str(exc)) from exc
        function = self.store.pause if action == "pause" else self.store.resume
        await self._call(function, queue)
        log.info("pgjobs dashboard: %s queue %r", action, queue)
        return self._redirect(request, "/", notice="paused" if action == "pause" else "resumed")

    async def job_action(self, request: Request) -> Response:
        job_id = _job_id(request)
        action = request.path_params["action"]
        functions = {
            "retry": (self.store.retry, "retried"),
            "cancel": (self.store.cancel, "cancelled"),
            "delete": (self.store.delete, "deleted"),
        }
        if action not in functions:
            raise HTTPException(404, f"No job action {action!r}.")
        await self._action_form(request)
        function, notice = functions[action]
        done = await self._call(function, job_id)
        log.info("pgjobs dashboard: %s job %d: %s", action, job_id, "done" if done else "no-op")
        notice = notice if done else f"not-{notice}"
        if action == "delete" and done:
            return self._redirect(request, "/jobs", notice=notice)
        return self._redirect(request, f"/jobs/{job_id}", notice=notice)

    async def bulk_retry(self, request: Request) -> Response:
        form = await self._action_form(request)
        flt = _parse_filter(form)
        count = await self._call(self.store.retry_matching, flt)
        log.info("pgjobs dashboard: bulk retry of %s: %d jobs", flt.query(), count)
        back = "/jobs?" + urlencode(flt.query(state=None))
        return self._redirect(request, back, notice="bulk-retried", count=count)


def _parse_filter(query: dict[str, str]) -> JobFilter:
    for ignored in ("notice", "count"):
        query.pop(ignored, None)
    try:
        return JobFilter.parse(query)
    except InvalidArgumentError as exc:
        raise HTTPException(400, str(exc)) from exc


def _job_id(request: Request) -> int:
    try:
        return parse_id(request.path_params["job_id"])
    except InvalidArgumentError as exc:
        raise HTTPException(400, str(exc)) from exc


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _title(status: int) -> str:
    return {
        400: "Bad request",
        401: "Sign-in needed",
        403: "Refused",
        404: "Not found",
        405: "Method not allowed",
        413: "Too large",
    }.get(status, "Error")
