"""The state machine as SQL (flowq.store.sql.render), compiled without a database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite

from flowq.store import transitions as t
from flowq.store.sql import render
from flowq.store.sql.schema import jobs

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)


def _old(column: str) -> str:
    return f"j.{column}"


def test_claim_set_clause() -> None:
    """The claim's SET clause names every column once, with the given placeholders."""
    clause = render.set_clause(t.CLAIM, {"now": "$1", "worker_id": "$4"}, _old)
    assert [part.split(" = ")[0] for part in clause.split(", ")] == list(t.CLAIM.sets)
    assert "status = 'processing'" in clause
    assert "attempts = j.attempts + CASE WHEN j.status = 'waiting' THEN 0 ELSE 1 END" in clause
    assert "started_at = CASE WHEN j.status = 'waiting' THEN j.started_at ELSE $1 END" in clause
    assert "lease_id = j.lease_id + 1, locked_by = $4, locked_at = $1" in clause


def test_larger_values_and_per_job_values() -> None:
    """Larger renders as a CASE; a value per job has no SQL text (only SQLAlchemy)."""
    clause = render.set_clause(t.RETRY, {"now": "?1"}, str)
    assert (
        "max_attempts = CASE WHEN max_attempts > attempts + 1 THEN max_attempts "
        "ELSE attempts + 1 END" in clause
    )
    with pytest.raises(ValueError, match="value per job"):
        render.set_clause(t.RELEASE, {"now": "?1"}, str)


@pytest.mark.parametrize("dialect", [postgresql.dialect(), sqlite.dialect()])
def test_sqlalchemy_values_compile(dialect: object) -> None:
    """Every transition's values compile on both databases (parameters bound)."""
    params = {
        "worker_id": "w",
        "output": None,
        "reason": "r",
        "error_history": "[]",
        "retry_at": None,
        "finished_at": NOW,
        "failed_at": NOW,
        "wait_until": None,
        "wait_token_id": None,
        "ready_at": NOW,
        "refund": {1: -1},
        "progress": 5,
    }
    for transition in t.TRANSITIONS:
        statement = update(jobs).values(render.values(transition, NOW, **params))
        compiled = str(statement.compile(dialect=dialect))  # type: ignore[arg-type]
        assert all(column in compiled for column in transition.sets)
    release = update(jobs).values(render.values(t.RELEASE, NOW, refund={1: -1}))
    assert "CASE flowq_jobs.id" in str(release.compile(dialect=postgresql.dialect()))
