"""Database URLs as flowq shows them: passwords never printed."""

from __future__ import annotations

import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["safe_url"]

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
