"""Database URLs as flowq shows them (passwords never printed), and as each
PostgreSQL connection path wants them."""

from __future__ import annotations

import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["asyncpg_dsn", "engine_url", "safe_url"]

_SECRET_KEYS = frozenset({"password", "passwd", "pwd", "sslpassword"})
_USERINFO_PASSWORD = re.compile(r"(://[^/@:]*):[^/@]*@")
_QUERY_SECRET = re.compile(r"([?&](?:password|passwd|pwd|sslpassword)=)[^&#]*", re.IGNORECASE)


def safe_url(url: str | URL) -> str:
    """``url`` as text for errors, logs and reprs, with the password of the user
    part and any ``?password=`` (``passwd``, ``pwd``, ``sslpassword``) replaced by
    ``***``. A string that is not a URL is redacted by pattern."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except (ArgumentError, ValueError):
        text = _USERINFO_PASSWORD.sub(r"\1:***@", str(url))
        return _QUERY_SECRET.sub(r"\1***", text)
    secrets = {key: "***" for key in parsed.query if key.lower() in _SECRET_KEYS}
    if secrets:
        parsed = parsed.update_query_dict(secrets)
    return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


_ENGINE_ONLY_KEYS = ("pgbouncer", "prepared_statement_cache_size")
"""Query parameters for flowq's engine (SQLAlchemy's asyncpg dialect), not libpq's."""


def engine_url(url: URL) -> URL:
    """A PostgreSQL URL for SQLAlchemy's asyncpg dialect: the libpq spelling
    ``sslmode=`` becomes its ``ssl=`` (the dialect refuses ``sslmode``)."""
    if "sslmode" not in url.query or "ssl" in url.query:
        return url
    mode = url.query["sslmode"]
    return url.difference_update_query(["sslmode"]).update_query_dict({"ssl": mode})


def asyncpg_dsn(url: URL) -> str:
    """A PostgreSQL URL as a DSN for ``asyncpg.connect`` (the LISTEN connection): the
    dialect's ``ssl=`` becomes libpq's ``sslmode=`` (asyncpg would send ``ssl`` to the
    server as a setting, which it refuses), and flowq's engine-only parameters
    (``pgbouncer``, ``prepared_statement_cache_size``) are left out."""
    kept = url.difference_update_query(
        [key for key in (*_ENGINE_ONLY_KEYS, "ssl") if key in url.query]
    )
    if "ssl" in url.query and "sslmode" not in url.query:
        kept = kept.update_query_dict({"sslmode": url.query["ssl"]})
    return kept.set(drivername="postgresql").render_as_string(hide_password=False)
