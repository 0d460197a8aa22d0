"""A PostgreSQL schema of the user's choosing for flowq's tables.

flowq's SQL never names a schema: a store with ``schema=`` sets its connections'
``search_path`` to that one schema when they are opened (a startup parameter, so no
statement pays for it), and everything that PostgreSQL shares across the schemas of a
database is made per schema here: the LISTEN/NOTIFY channel and the advisory-lock
keys. Without a schema, or with ``public``, both are those flowq always used.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from flowq.errors import ValidationError

__all__ = [
    "DEFAULT_CHANNEL",
    "MAX_SCHEMA_BYTES",
    "channel_for",
    "check_schema",
    "lock_key",
    "quote_identifier",
    "search_path",
    "with_channel",
]

DEFAULT_CHANNEL: Final = "flowq_jobs"
"""The notification channel of flowq's tables in ``public`` (or wherever the
connection's own ``search_path`` leads)."""
MAX_SCHEMA_BYTES: Final = 63 - len(DEFAULT_CHANNEL) - 1
"""The longest schema name in UTF-8 bytes: its channel, ``flowq_jobs.<schema>``, must
fit PostgreSQL's 63-byte names."""
_DEFAULT_SCHEMA: Final = "public"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NOTIFY_DEFAULT = re.compile(r"pg_notify\(\s*'" + DEFAULT_CHANNEL + "'")


def check_schema(schema: object) -> str:
    """``schema`` if PostgreSQL and flowq can use it as the schema of flowq's tables.

    The name is used exactly as written (it is always quoted): ``Jobs`` and ``jobs`` are
    two schemas.

    Raises:
        ValidationError: Not a string, empty, with surrounding spaces, a control
            character or ``$``, longer than :data:`MAX_SCHEMA_BYTES` bytes, or
            reserved (``pg_*``, ``information_schema``).
    """
    if not isinstance(schema, str):
        raise ValidationError(f"schema must be a string, got {schema!r}")
    problem = None
    if not schema:
        problem = "it is empty"
    elif schema != schema.strip():
        problem = "it starts or ends with a space"
    elif _CONTROL.search(schema) or "$" in schema:
        problem = "it contains a control character or '$'"
    elif len(schema.encode()) > MAX_SCHEMA_BYTES:
        problem = f"it is longer than {MAX_SCHEMA_BYTES} bytes"
    elif schema.startswith("pg_") or schema == "information_schema":
        problem = "PostgreSQL reserves it for its own catalogs"
    if problem is not None:
        raise ValidationError(f"schema {schema!r} cannot hold flowq's tables: {problem}")
    return schema


def quote_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier (inner double quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def search_path(schema: str) -> str:
    """The ``search_path`` setting of a store in ``schema``: that schema alone (so a
    table missing there is never looked up in ``public``)."""
    return quote_identifier(schema)


def channel_for(schema: str | None) -> str:
    """The LISTEN/NOTIFY channel of flowq's tables in ``schema``."""
    if schema is None or schema == _DEFAULT_SCHEMA:
        return DEFAULT_CHANNEL
    return f"{DEFAULT_CHANNEL}.{schema}"


def lock_key(default: int, schema: str | None) -> int:
    """The advisory-lock key of one purpose (its key ``default`` without a schema)
    for the tables in ``schema``: 64 bits of a hash of both."""
    if schema is None or schema == _DEFAULT_SCHEMA:
        return default
    digest = hashlib.blake2b(f"{default}:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def with_channel(sql: str, channel: str) -> str:
    """``sql`` with each ``pg_notify('flowq_jobs'`` sending on ``channel`` instead.

    Migration files and hot-path statements notify on :data:`DEFAULT_CHANNEL`; this is
    how the functions and statements of a schema get the schema's channel without the
    files naming it.
    """
    if channel == DEFAULT_CHANNEL:
        return sql
    literal = "E'" + channel.replace("\\", "\\\\").replace("'", "''") + "'"
    return _NOTIFY_DEFAULT.sub(lambda _match: f"pg_notify({literal}", sql)
