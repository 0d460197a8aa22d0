"""The dashboard's ASGI app: pages, actions and the wiring (auth, CSRF, errors)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from flowq.client import App
from flowq.dashboard import pages
from flowq.dashboard.live import LiveEvents
from flowq.dashboard.security import (
    CSRF_COOKIE,
    Auth,
    AuthMiddleware,
    csrf_token,
    csrf_valid,
)
from flowq.errors import FlowqError, ValidationError

__all__ = ["Dashboard", "create_app"]

log = logging.getLogger("flowq.dashboard")

_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_MAX_FORM_BYTES = 256 * 1024


class Dashboard:
    """What every page needs: the flowq App, the templates and the mode."""

    def __init__(self, app: App, *, read_only: bool, poll_seconds: float) -> None:
        self.app = app
        self.read_only = read_only
        self.poll_seconds = poll_seconds
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("flowq.dashboard", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["pretty"] = _pretty
        self.templates.filters["when"] = _when

    def render(self, request: Request, template: str, status: int = 200, **values: Any) -> Response:
        """A page, with the session's CSRF token (a new one sets its cookie)."""
        token, new = csrf_token(request)
        base = _base(request)
        values.setdefault("page", "")
        html = self.templates.get_template(template).render(
            base=base, csrf=token, read_only=self.read_only, request=request, **values
        )
        response = HTMLResponse(html, status_code=status, headers=_HEADERS)
        if new:
            response.set_cookie(
                CSRF_COOKIE, token, path=base or "/", httponly=True, samesite="strict",
                secure=request.url.scheme == "https",
            )  # fmt: skip
        return response

    async def form(self, request: Request) -> dict[str, str]:
        """A POSTed form after the read-only and CSRF checks (403 when refused)."""
        if self.read_only:
            raise HTTPException(403, "the dashboard is read-only")
        body = await request.body()
        if len(body) > _MAX_FORM_BYTES:
            raise HTTPException(413, "the form is too large")
        fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if not csrf_valid(request, fields.get("csrf", "")):
            raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")
        return fields

    def back(self, request: Request, path: str, note: str) -> Response:
        """303 to a page of the dashboard with a note to show there."""
        return RedirectResponse(f"{_base(request)}{path}?{urlencode({'note': note})}", 303)


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _when(value: datetime | None) -> str:
    return "" if value is None else f"{value:%Y-%m-%d %H:%M:%S} UTC"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


class _Errors:
    """Every error becomes a plain page (never a traceback): flowq's errors and bad
    requests say what was wrong; anything else is logged and shown as a 500."""

    def __init__(self, app: ASGIApp, dashboard: Dashboard) -> None:
        self.app = app
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if started:
                raise
            if isinstance(exc, HTTPException):
                status, message = exc.status_code, str(exc.detail)
            elif isinstance(exc, FlowqError):
                status, message = 400, str(exc)
            else:
                log.exception("flowq dashboard: error on %s", scope.get("path"))
                status, message = 500, "something went wrong; the server's log has the details"
            request = Request(scope)
            response = self.dashboard.render(
                request, "error.html", status, title=f"Error {status}", message=message
            )
            await response(scope, receive, send)


_Endpoint = Callable[[Dashboard, Request], Awaitable[Response]]


def create_app(
    app: App,
    *,
    read_only: bool = False,
    auth: Auth | None = None,
    metrics: bool = True,
    poll_seconds: float = 2.0,
) -> Starlette:
    """The dashboard of ``app`` as an ASGI app (Starlette), to serve or to mount.

    Args:
        app: The flowq App to show (opened on first use; the caller closes it).
        read_only: Refuse every action (403) and hide their forms.
        auth: A check of each request (``request -> bool``, sync or async); False
            answers 401. See :func:`flowq.dashboard.token_auth` and
            :func:`flowq.dashboard.basic_auth`, or pass the host app's own check.
        metrics: Serve ``/metrics`` in Prometheus' text format.
        poll_seconds: How often live pages look for changes without a wake-up.

    Example:
        >>> api = fastapi.FastAPI()
        >>> api.mount("/flowq", create_app(flowq_app, auth=token_auth(secret)))
    """
    if poll_seconds <= 0:
        raise ValidationError(f"poll_seconds must be positive, got {poll_seconds!r}")
    dashboard = Dashboard(app, read_only=read_only, poll_seconds=poll_seconds)

    def route(path: str, endpoint: _Endpoint, methods: list[str] | None = None) -> Route:
        async def handle(request: Request) -> Response:
            return await endpoint(dashboard, request)

        return Route(path, handle, methods=methods or ["GET"])

    routes = [route(path, endpoint) for path, endpoint in pages.PAGES.items()]
    routes += [route(path, endpoint, ["POST"]) for path, endpoint in pages.ACTIONS.items()]
    routes.append(Route("/live", LiveEvents(app, _fingerprint(dashboard), poll_seconds)))
    if metrics:
        routes.append(route("/metrics", pages.metrics))
    middleware = [Middleware(_Errors, dashboard=dashboard)]
    if auth is not None:
        middleware.insert(0, Middleware(AuthMiddleware, auth=auth))

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = str(exc.detail) if isinstance(exc, HTTPException) else "error"
        return dashboard.render(
            request, "error.html", status, title=f"Error {status}", message=message
        )

    starlette = Starlette(
        routes=routes, middleware=middleware, exception_handlers={HTTPException: http_error}
    )
    starlette.state.dashboard = dashboard
    return starlette


def _fingerprint(dashboard: Dashboard) -> Callable[[Request], Awaitable[Any]]:
    async def look(request: Request) -> Any:
        return await pages.fingerprint(dashboard, request.query_params)

    return look
