"""``flowq dashboard``: serve the dashboard with uvicorn.

Bound to a loopback address it may run without credentials; bound anywhere else it
needs ``FLOWQ_DASHBOARD_TOKEN`` or ``FLOWQ_DASHBOARD_USER`` and
``FLOWQ_DASHBOARD_PASSWORD`` and refuses to start without them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from flowq.client import App
from flowq.dashboard.app import create_app
from flowq.dashboard.security import Auth, basic_auth, is_loopback, token_auth
from flowq.errors import ValidationError

__all__ = ["auth_from_environment", "serve"]


def auth_from_environment(host: str, environ: Mapping[str, str] | None = None) -> Auth | None:
    """The check the settings ask for: a token, or a user and password; None when
    neither is set and ``host`` is a loopback address.

    Raises:
        ValidationError: ``host`` is not a loopback address and no credentials are
            set, or only half of a user and password is.
    """
    env = os.environ if environ is None else environ
    token = env.get("FLOWQ_DASHBOARD_TOKEN", "")
    user = env.get("FLOWQ_DASHBOARD_USER", "")
    password = env.get("FLOWQ_DASHBOARD_PASSWORD", "")
    if bool(user) != bool(password):
        raise ValidationError(
            "set both FLOWQ_DASHBOARD_USER and FLOWQ_DASHBOARD_PASSWORD, or neither"
        )
    if token:
        return token_auth(token)
    if user:
        return basic_auth(user, password)
    if not is_loopback(host):
        raise ValidationError(
            f"the dashboard would listen on {host}, which is not this machine only: set "
            "FLOWQ_DASHBOARD_TOKEN, or FLOWQ_DASHBOARD_USER and FLOWQ_DASHBOARD_PASSWORD"
        )
    return None


async def serve(
    url: str, *, host: str, port: int, read_only: bool, schema: str | None = None
) -> None:
    """Serve the dashboard of the database at ``url`` (flowq's tables in the
    PostgreSQL ``schema``, if given) until interrupted."""
    auth = auth_from_environment(host)
    try:
        import uvicorn
    except ImportError:
        raise ValidationError(
            "flowq dashboard needs uvicorn: pip install 'flowq-durable[dashboard]'"
        ) from None
    async with App(url, schema=schema) as app:
        dashboard = create_app(app, read_only=read_only, auth=auth)
        config = uvicorn.Config(
            dashboard, host=host, port=port, log_level="info", lifespan="off",
            timeout_graceful_shutdown=3,  # live streams never end by themselves
        )  # fmt: skip
        await uvicorn.Server(config).serve()
