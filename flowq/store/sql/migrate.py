"""Versioned SQL migrations: find them, apply the missing ones in one transaction.

Rules for migration files, so that they also work in a PostgreSQL schema of the
user's choosing (``App(schema=)``): name no schema (the connection's ``search_path``
is the schema), and notify with the literal ``pg_notify('flowq_jobs', ...)``, which
the dialect rewrites to the schema's channel. Advisory locks belong in the dialect,
whose keys are per schema, not in the files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.schema import CreateTable

from flowq.errors import SchemaError
from flowq.store.sql import schema
from flowq.store.sql.dialect import SqlDialect

__all__ = [
    "Migration",
    "applied_version",
    "apply_migrations",
    "latest_version",
    "load_migrations",
    "split_statements",
]

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_DIALECT_FOLDERS = {"postgresql": "postgres", "sqlite": "sqlite"}
"""The folder of ``migrations/`` that holds each dialect's files."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file: ``NNNN_name.sql``."""

    version: int
    name: str
    statements: tuple[str, ...]


def _migrations_root() -> Path:
    packaged = resources.files("flowq") / "migrations"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[3] / "migrations"


def load_migrations(dialect: str) -> list[Migration]:
    """Every migration for ``dialect`` (``postgresql`` or ``sqlite``), oldest first."""
    folder = _migrations_root() / _DIALECT_FOLDERS[dialect]
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            continue
        found.append(
            Migration(int(match.group(1)), path.stem, tuple(split_statements(path.read_text())))
        )
    if not found:
        raise SchemaError(f"no migration files found in {folder}; is flowq installed completely?")
    return found


def latest_version(dialect: str) -> int:
    """The version a database has once every migration is applied."""
    return load_migrations(dialect)[-1].version


def split_statements(sql: str) -> list[str]:
    """Split a migration file into statements (each ends with ``;`` at a line end)."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [
        part.strip() for part in re.split(r";\s*$", "\n".join(lines), flags=re.M) if part.strip()
    ]


async def applied_version(connection: AsyncConnection) -> int:
    """The highest applied version (0 when the version table is empty)."""
    result = await connection.exec_driver_sql("SELECT MAX(version) FROM flowq_schema_version")
    return int(result.scalar() or 0)


async def apply_migrations(
    connection: AsyncConnection, dialect: SqlDialect, now: datetime
) -> list[str]:
    """Apply missing migrations inside the caller's transaction; return their names.

    The dialect serializes concurrent runs first (on PostgreSQL, a transaction-level
    advisory lock), then creates the store's schema if it has one that is missing;
    each statement is run as the dialect renders it (a schema's own notification
    channel).
    """
    await dialect.lock_migrations(connection)
    await dialect.create_schema(connection)
    await connection.execute(CreateTable(schema.schema_version, if_not_exists=True))
    current = await applied_version(connection)
    applied = []
    for migration in load_migrations(dialect.name):
        if migration.version <= current:
            continue
        for statement in migration.statements:
            await connection.exec_driver_sql(dialect.migration_statement(statement))
        await connection.execute(
            schema.schema_version.insert().values(
                version=migration.version, name=migration.name, applied_at=now
            )
        )
        applied.append(migration.name)
    return applied
