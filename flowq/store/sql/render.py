"""The job state machine (:mod:`flowq.store.transitions`) as SQL.

:func:`values` turns a transition into the values of a SQLAlchemy ``UPDATE`` of
``flowq_jobs`` (the general path); :func:`set_clause` into the text of the ``SET``
clause of a dialect's one-statement path, rendered once when its module loads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, literal

from flowq.models import JobStatus
from flowq.store import transitions as t
from flowq.store.sql.schema import jobs

__all__ = ["set_clause", "values"]


def values(transition: t.Transition, now: datetime, **params: Any) -> dict[str, Any]:
    """The columns ``transition`` sets, as values of ``update(jobs).values(...)``."""
    given = {"now": now, **params}
    return {column: _expression(value, given) for column, value in transition.sets.items()}


def _expression(value: t.Value, params: Mapping[str, Any]) -> Any:
    if isinstance(value, t.Column):
        return jobs.c[value.name]
    if isinstance(value, t.Param):
        return params[value.name]
    if isinstance(value, t.Plus):
        return _expression(value.left, params) + _expression(value.right, params)
    if isinstance(value, t.IfWaiting):
        return case(
            (jobs.c.status == JobStatus.WAITING.value, _expression(value.then, params)),
            else_=_expression(value.otherwise, params),
        )
    if isinstance(value, t.IfLastPrerequisite):
        return case(
            (jobs.c.blocked_by == 1, _expression(value.then, params)),
            else_=_expression(value.otherwise, params),
        )
    if isinstance(value, t.Larger):
        left = _element(_expression(value.left, params))
        right = _element(_expression(value.right, params))
        return case((left > right, left), else_=right)
    if isinstance(value, t.PerJob):
        return case(params[value.name], value=jobs.c.id, else_=0)
    return value


def _element(value: Any) -> ColumnElement[Any]:
    return value if isinstance(value, ColumnElement) else literal(value)


def set_clause(
    transition: t.Transition, placeholder: Mapping[str, str], column: Callable[[str], str]
) -> str:
    """The ``SET`` clause of ``transition`` in SQL text.

    Args:
        transition: What to render.
        placeholder: The text of ``now`` and of every parameter (``$1``, ``?2``,
            ``i.output``...).
        column: The text of a column's value before the update (``j.attempts``).
    """
    return ", ".join(
        f"{name} = {_text(value, placeholder, column)}" for name, value in transition.sets.items()
    )


def _text(value: t.Value, placeholder: Mapping[str, str], column: Callable[[str], str]) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, t.Param):
        return placeholder[value.name]
    if isinstance(value, t.Column):
        return column(value.name)
    if isinstance(value, t.Plus):
        left = _text(value.left, placeholder, column)
        return f"{left} + {_text(value.right, placeholder, column)}"
    if isinstance(value, t.IfWaiting):
        then = _text(value.then, placeholder, column)
        otherwise = _text(value.otherwise, placeholder, column)
        status = _text(JobStatus.WAITING.value, placeholder, column)
        return f"CASE WHEN {column('status')} = {status} THEN {then} ELSE {otherwise} END"
    if isinstance(value, t.IfLastPrerequisite):
        then = _text(value.then, placeholder, column)
        otherwise = _text(value.otherwise, placeholder, column)
        return f"CASE WHEN {column('blocked_by')} = 1 THEN {then} ELSE {otherwise} END"
    if isinstance(value, t.Larger):
        left = _text(value.left, placeholder, column)
        right = _text(value.right, placeholder, column)
        return f"CASE WHEN {left} > {right} THEN {left} ELSE {right} END"
    raise ValueError(f"{value!r} has no SQL text (it needs a value per job)")
