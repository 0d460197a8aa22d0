"""Schema names: which are refused, how they are quoted, what each schema gets."""

from __future__ import annotations

import pytest

import flowq
from flowq.store.sql import SqlStore
from flowq.store.sql.pg_schema import (
    DEFAULT_CHANNEL,
    MAX_SCHEMA_BYTES,
    channel_for,
    check_schema,
    lock_key,
    quote_identifier,
    with_channel,
)
from flowq.store.sql.postgres import COMPLETE_JOBS, PostgresDialect
from flowq_testing import InMemoryStore

PG_URL = "postgresql+asyncpg://flowq@127.0.0.1/flowq"


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        ("", "empty"),
        (" jobs", "space"),
        ("jobs\n", "space"),
        ("jo\x00bs", "control character"),
        ("a$$b", "or '\\$'"),
        ("x" * (MAX_SCHEMA_BYTES + 1), f"longer than {MAX_SCHEMA_BYTES} bytes"),
        ("é" * (MAX_SCHEMA_BYTES // 2 + 1), "bytes"),
        ("pg_jobs", "reserves"),
        ("information_schema", "reserves"),
        (42, "must be a string"),
    ],
)
def test_unusable_names_are_refused(schema: object, reason: str) -> None:
    """An App with a name PostgreSQL or flowq cannot use raises ValidationError naming
    the value and the reason, before anything connects."""
    with pytest.raises(flowq.ValidationError, match=reason) as caught:
        flowq.App(PG_URL, schema=schema)  # type: ignore[arg-type]
    assert repr(schema)[:20] in str(caught.value)


@pytest.mark.parametrize("schema", ["jobs_q", "Jobs", 'a "quoted" name', "it's", "x" * 52])
def test_usable_names(schema: str) -> None:
    """Names that need quoting are kept exactly; the store shows its schema."""
    assert check_schema(schema) == schema
    store = SqlStore(PG_URL, schema=schema)
    assert f"schema={schema!r}" in repr(store)
    assert len(channel_for(schema).encode()) <= 63


def test_quoting() -> None:
    """Identifiers are double-quoted with inner quotes doubled."""
    assert quote_identifier('a "b"') == '"a ""b"""'
    assert quote_identifier("Jobs") == '"Jobs"'


def test_sqlite_and_store_refuse_a_schema(tmp_path: object) -> None:
    """Schemas are PostgreSQL's: SQLite with a schema, or a schema with store=, is a
    ValidationError that says so."""
    with pytest.raises(flowq.ValidationError, match=r"'jobs_q'.*SQLite file is one namespace"):
        flowq.App("sqlite+aiosqlite:///flowq.db", schema="jobs_q")
    with pytest.raises(flowq.ValidationError, match="not with store"):
        flowq.App(store=InMemoryStore(), schema="jobs_q")


def test_app_reads_flowq_schema_with_the_url_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FLOWQ_SCHEMA goes with FLOWQ_DATABASE_URL; an explicit URL does not pick it up."""
    monkeypatch.setenv("FLOWQ_DATABASE_URL", PG_URL)
    monkeypatch.setenv("FLOWQ_SCHEMA", "from_env")
    assert "schema='from_env'" in repr(flowq.App())
    assert "schema=" not in repr(flowq.App(PG_URL))
    assert "schema='given'" in repr(flowq.App(schema="given"))


def test_public_is_the_default_installation() -> None:
    """No schema and ``public`` share the channel and lock keys flowq always used;
    other schemas each have their own."""
    assert channel_for(None) == channel_for("public") == DEFAULT_CHANNEL
    assert lock_key(4711020250, None) == lock_key(4711020250, "public") == 4711020250
    keys = {lock_key(base, schema) for base in (4711020250, 4711020251) for schema in "abc"}
    assert len(keys) == 6
    assert all(-(2**63) <= key < 2**63 for key in keys)


def test_statements_notify_on_the_schema_channel() -> None:
    """The completion statement and migration functions notify on the schema's channel,
    written as a literal that survives quotes in the name."""
    dialect = PostgresDialect("it's")
    assert dialect.channel == "flowq_jobs.it's"
    body = "BEGIN PERFORM pg_notify('flowq_jobs', 'jobs'); PERFORM pg_notify( 'flowq_jobs', 'x');"
    assert dialect.migration_statement(body) == (
        "BEGIN PERFORM pg_notify(E'flowq_jobs.it''s', 'jobs'); "
        "PERFORM pg_notify(E'flowq_jobs.it''s', 'x');"
    )
    assert with_channel(COMPLETE_JOBS, DEFAULT_CHANNEL) == COMPLETE_JOBS
    assert "pg_notify(E'flowq_jobs.it''s'" in with_channel(COMPLETE_JOBS, dialect.channel)
    assert PostgresDialect().migration_statement(body) == body
