"""`--schema` / FLOWQ_SCHEMA on the real `flowq` command (PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import flowq
from flowq.store.sql.migrate import latest_version
from tests.acceptance import workloads
from tests.acceptance.test_cli import ROOT, _flowq
from tests.pg_server import dropping_schemas, on_the_server

pytestmark = pytest.mark.postgres

SCHEMA = "cli_jobs"
OWN_TOOL = "Own Tool's"


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    """The test database; the schemas the tests create are dropped after."""
    with dropping_schemas(postgres_url, SCHEMA, OWN_TOOL) as url:
        yield url


def test_migrate_list_and_work_in_a_schema(database: str, tmp_path: Path) -> None:
    """`flowq migrate --schema` creates the schema and applies every migration once;
    jobs list and worker see that schema's jobs (by option or FLOWQ_SCHEMA), and the
    public tables none of them."""
    db = ("--database-url", database)
    first = _flowq("migrate", *db, "--schema", SCHEMA, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"applied {latest_version('postgresql')} migration(s)" in first.stdout
    assert f"schema={SCHEMA!r}" in first.stdout
    again = _flowq("migrate", *db, cwd=tmp_path, env={"FLOWQ_SCHEMA": SCHEMA})
    assert again.returncode == 0 and "up to date" in again.stdout, again.stderr

    stamps = tmp_path / "stamps.txt"

    async def add() -> int:
        async with flowq.App(database, schema=SCHEMA, registry=workloads.registry) as app:
            return await app.add_job("acceptance.stamp", {"file": str(stamps)})

    job_id = asyncio.run(add())
    listed = _flowq("jobs", "list", "--json", *db, "--schema", SCHEMA, cwd=tmp_path)
    assert [job["id"] for job in json.loads(listed.stdout)] == [job_id], listed.stderr
    public = _flowq("jobs", "list", *db, cwd=tmp_path)
    assert public.stdout.strip() == "(none)", public.stderr

    target = f"{workloads.__name__}:registry"
    worker = _flowq("worker", target, "--until-idle", *db, cwd=ROOT, env={"FLOWQ_SCHEMA": SCHEMA})
    assert worker.returncode == 0, worker.stderr
    assert stamps.read_text().split()[0] == str(job_id)


def test_migrate_sql_for_a_schema(database: str, tmp_path: Path) -> None:
    """`flowq migrate --sql --schema` prints SQL that, applied by another tool, creates
    the schema with flowq's current tables in it, notifying on the schema's channel."""
    printed = _flowq(
        "migrate", "--sql", "--database-url", database, "--schema", OWN_TOOL, cwd=tmp_path
    )
    assert printed.returncode == 0, printed.stderr
    assert 'CREATE SCHEMA IF NOT EXISTS "Own Tool\'s";' in printed.stdout
    assert "pg_notify(E'flowq_jobs.Own Tool''s'" in printed.stdout
    assert "pg_notify('flowq_jobs'" not in printed.stdout
    asyncio.run(on_the_server(database, printed.stdout))
    listed = _flowq("jobs", "list", "--database-url", database, "--schema", OWN_TOOL, cwd=tmp_path)
    assert (listed.returncode, listed.stdout.strip()) == (0, "(none)"), listed.stderr


def test_schema_errors_are_one_line(database: str, tmp_path: Path) -> None:
    """A schema on SQLite, a reserved name, and a schema that was never migrated: exit
    status 1 and one line naming the schema and what to do."""
    on_sqlite = _flowq("migrate", "--sql", "--embedded", "--schema", "jobs", cwd=tmp_path)
    assert on_sqlite.returncode == 1 and "SQLite file is one namespace" in on_sqlite.stderr
    reserved = _flowq("jobs", "list", "--database-url", database, "--schema", "pg_x", cwd=tmp_path)
    assert reserved.returncode == 1 and "'pg_x'" in reserved.stderr
    missing = _flowq("jobs", "list", "--database-url", database, "--schema", SCHEMA, cwd=tmp_path)
    assert missing.returncode == 1, missing.stderr
    assert f"--schema {SCHEMA}`" in missing.stderr and "has no flowq tables" in missing.stderr
