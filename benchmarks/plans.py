"""EXPLAIN (ANALYZE, BUFFERS) of flowq's statements, each in a rolled-back transaction.

A statement is prepared (``PREPARE``) and run through ``EXPLAIN ... EXECUTE`` with its
arguments as literals, so that ``plan_cache_mode`` decides, as on a worker's
connection, whether the plan is made for these values (``force_custom_plan``) or once
for any (``force_generic_plan``, what the claim connection runs). Nothing the
statements write is kept. Used by ``benchmarks/history.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

__all__ = ["Planned", "compiled", "explain", "literal"]

Planned = tuple[str, str, Sequence[Any]]
"""A statement's name, its text (``$n`` parameters) and its arguments."""


class _Rollback(Exception):
    """Ends the transaction an EXPLAIN ANALYZE ran in, undoing what it wrote."""


def literal(value: Any) -> str:
    """``value`` as an SQL literal without a type (the prepared statement's parameter
    types decide): strings, numbers, booleans, datetimes, None and lists of those."""
    if value is None:
        return "NULL"
    return "'" + _text(value).replace("'", "''") + "'"


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "{" + ",".join(_element(item) for item in value) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _element(value: Any) -> str:
    if value is None:
        return "NULL"
    quoted = _text(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}"'


def compiled(statement: ClauseElement, dialect: Dialect) -> tuple[str, list[Any]]:
    """A SQLAlchemy statement as flowq's engine sends it: text and positional arguments."""
    done: Any = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    names = list(done.positiontup or [])
    processors = done._bind_processors
    values = []
    for name in names:
        value = done.params[name]
        processor = processors.get(name)
        values.append(processor(value) if processor is not None else value)
    return str(done), values


async def explain(dsn: str, planned: Planned, mode: str) -> str:
    """The EXPLAIN (ANALYZE, BUFFERS) text of one statement under ``plan_cache_mode``
    ``mode``, run on a connection of its own and rolled back."""
    name, sql, arguments = planned
    connection = await asyncpg.connect(dsn)
    try:
        lines: list[str] = []
        try:
            async with connection.transaction():
                await connection.execute(f"SET LOCAL plan_cache_mode = {mode}")
                await connection.execute(f"PREPARE planned AS {sql}")
                execute = "EXECUTE planned"
                if arguments:
                    execute += "(" + ", ".join(literal(value) for value in arguments) + ")"
                found = await connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {execute}")
                lines = [row[0] for row in found]
                raise _Rollback
        except _Rollback:
            pass
        return f"-- {name} ({mode})\n" + "\n".join(lines)
    finally:
        await connection.close()
