"""Who may see the dashboard (``auth`` checks) and CSRF tokens for its actions."""

from __future__ import annotations

import base64
import binascii
import hmac
import inspect
import ipaddress
import secrets
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "CSRF_COOKIE",
    "Auth",
    "AuthMiddleware",
    "basic_auth",
    "csrf_token",
    "csrf_valid",
    "is_loopback",
    "token_auth",
]

Auth = Callable[[Request], bool | Awaitable[bool]]
"""A check of a request: True lets it through (sync or async)."""

CSRF_COOKIE = "flowq_csrf"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (``127.0.0.1``, ``::1``, ``localhost``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _basic(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def token_auth(token: str) -> Auth:
    """A check that wants ``Authorization: Bearer <token>``, or basic auth with the
    token as password (any user name: what a browser can send)."""
    if not token:
        raise ValueError("the dashboard token must not be empty")

    def check(request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            return _same(value.strip(), token)
        credentials = _basic(request)
        return credentials is not None and _same(credentials[1], token)

    return check


def basic_auth(user: str, password: str) -> Auth:
    """A check that wants HTTP basic auth with this user and password."""
    if not user or not password:
        raise ValueError("the dashboard user and password must not be empty")

    def check(request: Request) -> bool:
        credentials = _basic(request)
        if credentials is None:
            return False
        # Both compared, always, so the time taken does not tell which one was wrong.
        return _same(credentials[0], user) & _same(credentials[1], password)

    return check


class AuthMiddleware:
    """Refuses every HTTP request that ``auth`` does not accept with 401."""

    def __init__(self, app: ASGIApp, auth: Auth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            allowed = self.auth(Request(scope))
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if not allowed:
                response = PlainTextResponse(
                    "authentication required",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="flowq dashboard"'},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def csrf_token(request: Request) -> tuple[str, bool]:
    """The session's CSRF token (from its cookie) and whether it is new (to be set)."""
    current = request.cookies.get(CSRF_COOKIE, "")
    if len(current) >= 32:
        return current, False
    return secrets.token_urlsafe(32), True


def csrf_valid(request: Request, submitted: str) -> bool:
    """Whether a form's token matches the session's cookie (constant-time)."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return len(cookie) >= 32 and _same(submitted, cookie)
