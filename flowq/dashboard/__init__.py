"""flowq's web dashboard: an ASGI app (Starlette + Jinja2, server-rendered) that shows
jobs, their timelines, waiting tokens and cron schedules, and offers a few safe actions.

Needs the ``dashboard`` extra: ``pip install 'flowq-durable[dashboard]'``. Importing
:mod:`flowq` does not import this package.

Example:
    >>> from flowq.dashboard import create_app
    >>> dashboard = create_app(flowq.App("postgresql+asyncpg://..."), read_only=True)
"""

from __future__ import annotations

try:
    import jinja2  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        f"flowq.dashboard needs the 'dashboard' extra ({exc.name} is missing): "
        "pip install 'flowq-durable[dashboard]'"
    ) from exc

from flowq.dashboard.app import create_app
from flowq.dashboard.security import basic_auth, is_loopback, token_auth

__all__ = ["basic_auth", "create_app", "is_loopback", "token_auth"]
