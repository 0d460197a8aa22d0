"""The SQL migrations build exactly the schema that ``flowq/store/sql/schema.py`` declares.

Each test builds real databases: one by applying every migration file through
``SqlStore.migrate()``, one by ``metadata.create_all``. Both are reflected into a flat
"snapshot" (``{"table t / index i": {...}, ...}``) and compared key by key, so a failure
lists exactly which table, column, index or storage parameter differs.

What is compared, per dialect:

* tables, and per column: type, nullability, server default (PostgreSQL: identity too);
* the primary key (name and column order), unique, check and foreign-key constraints;
* indexes: name, key columns or expressions with DESC/NULLS/COLLATE, uniqueness, the
  partial WHERE clause, and on PostgreSQL the access method (btree, gin, ...), INCLUDE
  columns, index storage options and the full ``pg_get_indexdef``;
* PostgreSQL tables: ``pg_class.reloptions`` (fillfactor, autovacuum settings) and
  persistence; other relations (sequences, views), triggers, functions, enums, domains;
* SQLite tables: AUTOINCREMENT, WITHOUT ROWID and STRICT; views and triggers.

Column order is deliberately not compared: ``ALTER TABLE ... ADD COLUMN`` always appends,
so a later migration can rarely reproduce the declaration order and nothing in flowq
depends on it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from flowq import SchemaError
from flowq.store.sql import SqlStore
from flowq.store.sql.base import dialect_for_url, normalize_url
from flowq.store.sql.schema import metadata

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
MIGRATION_FOLDERS = {"postgresql": "postgres", "sqlite": "sqlite"}

Snapshot = dict[str, Any]
NewDatabase = Callable[[], Awaitable[str]]

# -- normalizing SQL text (SQLite keeps the CREATE statements verbatim) ----------------

_TOKEN = re.compile(
    r"""
      '(?:[^']|'')*'               # string literal, kept exactly (case matters)
    | "(?:[^"]|"")*"               # quoted identifiers
    | `[^`]*`
    | \[[^\]]*\]
    | \d+(?:\.\d+)?
    | [A-Za-z_][A-Za-z_0-9$]*
    | <>|!=|<=|>=|==|\|\||::
    | \S
    """,
    re.VERBOSE,
)
_BEFORE_BOOLEAN_GROUP = {None, "(", "and", "or", "not", "where"}
_AFTER_BOOLEAN_GROUP = {None, ")", "and", "or"}


def normalize_sql(sql: str) -> str:
    """SQL text with whitespace, identifier quoting, keyword case and redundant
    parentheses normalized; string literals are kept exactly."""
    tokens: list[str] = []
    for token in _TOKEN.findall(sql):
        if token.startswith("'"):
            tokens.append(token)
        elif token[0] in '"`[':
            tokens.append(token[1:-1].replace('""', '"').lower())
        else:
            tokens.append({"<>": "!=", "==": "="}.get(token, token.lower()))
    tokens = _drop_redundant_parentheses(tokens)
    text = ""
    for token in tokens:
        glued = not text or text.endswith("(") or token in (")", ",")
        text += token if glued else f" {token}"
    return text


def _matching_parentheses(tokens: list[str]) -> list[tuple[int, int]]:
    pairs, stack = [], []
    for index, token in enumerate(tokens):
        if token == "(":
            stack.append(index)
        elif token == ")" and stack:
            pairs.append((stack.pop(), index))
    return pairs


def _top_level(tokens: list[str]) -> list[str]:
    depth, found = 0, []
    for token in tokens:
        if token == ")":
            depth -= 1
        elif depth == 0:
            found.append(token)
        if token == "(":
            depth += 1
    return found


def _drop_redundant_parentheses(tokens: list[str]) -> list[str]:
    """Drop parentheses around a whole expression or a boolean operand that needs none.

    ``(a = 1) AND (b IS NOT NULL)`` becomes ``a = 1 AND b IS NOT NULL``; ``(a OR b) AND c``,
    ``NOT (a AND b)``, ``(a + 1) * 2`` and function calls keep theirs.
    """
    changed = True
    while changed:
        changed = False
        for start, end in sorted(_matching_parentheses(tokens)):
            if end == start + 1:
                continue
            inner = _top_level(tokens[start + 1 : end])
            before = tokens[start - 1] if start > 0 else None
            after = tokens[end + 1] if end + 1 < len(tokens) else None
            whole = start == 0 and end == len(tokens) - 1
            operand = (
                before in _BEFORE_BOOLEAN_GROUP
                and after in _AFTER_BOOLEAN_GROUP
                and "or" not in inner
                and "," not in inner
                and not ("and" in inner and before == "not")
            )
            if whole or operand:
                tokens = tokens[:start] + tokens[start + 1 : end] + tokens[end + 1 :]
                changed = True
                break
    return tokens


def _split_top_level_commas(text: str) -> list[str]:
    parts, depth, current, quote = [], 0, "", ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += char
    return [*parts, current]


def split_create_index(sql: str) -> tuple[list[str], str | None]:
    """The column terms and the WHERE clause (or None) of a CREATE INDEX statement."""
    start = sql.index("(")
    depth, quote = 0, ""
    for position in range(start, len(sql)):
        char = sql[position]
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                break
    columns = _split_top_level_commas(sql[start + 1 : position])
    rest = sql[position + 1 :].strip().rstrip(";").strip()
    where = re.sub(r"(?is)^where\b", "", rest).strip() if rest else None
    return [normalize_sql(column) for column in columns], where or None


# -- reflecting a database into a snapshot ---------------------------------------------


def _constraints(inspector: Any, table: str, snapshot: Snapshot, sql: Any) -> None:
    """Primary key, unique, check and foreign-key constraints of ``table``."""
    pk = inspector.get_pk_constraint(table)
    snapshot[f"table {table} / primary key"] = {
        "name": pk.get("name"),
        "columns": list(pk.get("constrained_columns") or []),
    }
    uniques = sorted(
        (u.get("name"), tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)
    )
    if uniques:
        snapshot[f"table {table} / unique constraints"] = uniques
    checks = sorted(
        (c.get("name"), sql(c["sqltext"])) for c in inspector.get_check_constraints(table)
    )
    if checks:
        snapshot[f"table {table} / check constraints"] = checks
    foreign_keys = sorted(
        repr(
            (
                fk.get("name"),
                tuple(fk["constrained_columns"]),
                fk["referred_table"],
                tuple(fk["referred_columns"]),
                sorted((fk.get("options") or {}).items()),
            )
        )
        for fk in inspector.get_foreign_keys(table)
    )
    if foreign_keys:
        snapshot[f"table {table} / foreign keys"] = foreign_keys


_PG_INDEXES = """
SELECT t.relname AS table_name, i.relname AS index_name, am.amname AS method,
       x.indisunique AS is_unique, x.indnkeyatts AS key_count, x.indoption::text AS options,
       ARRAY(SELECT pg_get_indexdef(x.indexrelid, k, true)
             FROM generate_series(1, x.indnatts) AS k ORDER BY k) AS columns,
       pg_get_expr(x.indpred, x.indrelid, true) AS predicate,
       pg_get_indexdef(x.indexrelid) AS definition, i.reloptions AS storage,
       con.contype::text AS constraint_type
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_am am ON am.oid = i.relam
LEFT JOIN pg_constraint con
       ON con.conindid = x.indexrelid AND con.conrelid = x.indrelid
      AND con.contype IN ('p', 'u', 'x')
WHERE t.relnamespace = current_schema()::regnamespace
"""
_PG_TABLES = """
SELECT c.relname AS name, c.reloptions AS storage, c.relpersistence::text AS persistence
FROM pg_class c
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
"""
_PG_OTHER_RELATIONS = """
SELECT c.relname AS name, c.relkind::text AS kind FROM pg_class c
WHERE c.relnamespace = current_schema()::regnamespace
  AND c.relkind NOT IN ('r', 'p', 'i', 'I', 't')
"""
_PG_TRIGGERS = """
SELECT c.relname AS table_name, t.tgname AS name, pg_get_triggerdef(t.oid) AS definition
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace
"""
_PG_ROUTINES = """
SELECT p.oid::regprocedure::text AS name, p.prokind::text AS kind FROM pg_proc p
WHERE p.pronamespace = current_schema()::regnamespace
"""
_PG_TYPES = """
SELECT t.typname AS name, t.typtype::text AS kind FROM pg_type t
WHERE t.typnamespace = current_schema()::regnamespace AND t.typtype IN ('d', 'e', 'r', 'm')
"""
_PG_RELKINDS = {"S": "sequence", "v": "view", "m": "materialized view", "c": "type", "f": "foreign"}
_PG_PERSISTENCE = {"p": "permanent", "u": "unlogged", "t": "temporary"}


def _pg_options(options: list[str] | None) -> dict[str, str]:
    return dict(sorted(option.split("=", 1) for option in options or []))


def _pg_index_column(definition: str, option: int) -> str:
    descending, nulls_first = bool(option & 1), bool(option & 2)
    if descending:
        return f"{definition} DESC" + ("" if nulls_first else " NULLS LAST")
    return definition + (" NULLS FIRST" if nulls_first else "")


def postgres_snapshot(connection: Connection) -> Snapshot:
    """Reflect the current schema of a PostgreSQL database."""
    inspector = inspect(connection)
    schema = connection.exec_driver_sql("SELECT current_schema()").scalar_one()
    snapshot: Snapshot = {}
    for row in connection.exec_driver_sql(_PG_TABLES):
        snapshot[f"table {row.name}"] = {
            "storage parameters": _pg_options(row.storage),
            "persistence": _PG_PERSISTENCE.get(row.persistence, row.persistence),
        }
    for table in inspector.get_table_names():
        for column in inspector.get_columns(table):
            described = {
                "type": " ".join(column["type"].compile(dialect=connection.dialect).split()),
                "nullable": column["nullable"],
                "default": column.get("default"),
            }
            for extra in ("identity", "computed"):
                if column.get(extra):
                    described[extra] = column[extra]
            snapshot[f"table {table} / column {column['name']}"] = described
        _constraints(inspector, table, snapshot, str)
    for row in connection.exec_driver_sql(_PG_INDEXES):
        options = [int(option) for option in row.options.split()]
        keys = [
            _pg_index_column(column, option)
            for column, option in zip(row.columns[: row.key_count], options, strict=True)
        ]
        described = {
            "unique": row.is_unique,
            "method": row.method,
            "columns": keys,
            "where": row.predicate,
            "definition": row.definition.replace(f" ON {schema}.", " ON ", 1),
        }
        if row.columns[row.key_count :]:
            described["include"] = list(row.columns[row.key_count :])
        if row.storage:
            described["storage parameters"] = _pg_options(row.storage)
        if row.constraint_type:
            described["backs constraint"] = {"p": "primary key", "u": "unique", "x": "exclude"}[
                row.constraint_type
            ]
        snapshot[f"table {row.table_name} / index {row.index_name}"] = described
    for row in connection.exec_driver_sql(_PG_OTHER_RELATIONS):
        snapshot[f"{_PG_RELKINDS.get(row.kind, row.kind)} {row.name}"] = row.kind
    for row in connection.exec_driver_sql(_PG_TRIGGERS):
        snapshot[f"table {row.table_name} / trigger {row.name}"] = row.definition
    for row in connection.exec_driver_sql(_PG_ROUTINES):
        snapshot[f"routine {row.name}"] = row.kind
    for row in connection.exec_driver_sql(_PG_TYPES):
        snapshot[f"type {row.name}"] = row.kind
    return snapshot


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sqlite_snapshot(connection: Connection) -> Snapshot:
    """Reflect the current schema of a SQLite database."""
    inspector = inspect(connection)
    master = {
        (row.type, row.name): row
        for row in connection.exec_driver_sql("SELECT type, name, tbl_name, sql FROM sqlite_master")
    }
    snapshot: Snapshot = {}
    for table in inspector.get_table_names():
        sql = master["table", table].sql
        tail = " ".join(sql[sql.rindex(")") + 1 :].upper().replace(",", " ").split())
        snapshot[f"table {table}"] = {
            "autoincrement": re.search(r"\bAUTOINCREMENT\b", sql, re.IGNORECASE) is not None,
            "without rowid": "WITHOUT ROWID" in tail,
            "strict": "STRICT" in tail.split(),
        }
        for column in connection.exec_driver_sql(f"PRAGMA table_xinfo({_quoted(table)})"):
            snapshot[f"table {table} / column {column.name}"] = {
                "type": " ".join(column.type.upper().split()),
                "nullable": not column.notnull,
                "default": column.dflt_value,
                "hidden": column.hidden,
            }
        _constraints(inspector, table, snapshot, normalize_sql)
        for index in connection.exec_driver_sql(f"PRAGMA index_list({_quoted(table)})").all():
            terms, where = [], None
            if index.origin == "c":
                terms, where = split_create_index(master["index", index.name].sql)
            keys = []
            for part in connection.exec_driver_sql(f"PRAGMA index_xinfo({_quoted(index.name)})"):
                if not part.key:
                    continue
                if part.cid == -2:  # an expression: take it from the CREATE INDEX text
                    keys.append(terms[part.seqno])
                    continue
                column = "rowid" if part.cid == -1 else part.name
                collation = "" if part.coll.upper() == "BINARY" else f" COLLATE {part.coll}"
                keys.append(column + (" DESC" if part.desc else "") + collation)
            origin = {"c": "CREATE INDEX", "u": "UNIQUE constraint", "pk": "PRIMARY KEY"}
            name = index.name if index.origin == "c" else f"<{origin[index.origin]} {keys}>"
            snapshot[f"table {table} / index {name}"] = {
                "unique": bool(index.unique),
                "columns": keys,
                "where": None if where is None else normalize_sql(where),
                "created by": origin[index.origin],
            }
    for (kind, name), row in master.items():
        if kind in ("view", "trigger"):
            snapshot[f"{kind} {name}"] = normalize_sql(row.sql)
    return snapshot


async def take_snapshot(engine: AsyncEngine) -> Snapshot:
    """The schema of the database behind ``engine``."""
    reflect = postgres_snapshot if engine.dialect.name == "postgresql" else sqlite_snapshot
    async with engine.connect() as connection:
        return await connection.run_sync(reflect)


def schema_differences(migrated: Snapshot, declared: Snapshot) -> list[str]:
    """One readable line per difference; empty when the schemas are the same."""
    differences = []
    for key in sorted(migrated.keys() | declared.keys()):
        if key not in declared:
            differences.append(f"{key}: only in the migrated database: {migrated[key]!r}")
        elif key not in migrated:
            differences.append(f"{key}: missing from the migrated database: {declared[key]!r}")
        elif migrated[key] != declared[key]:
            left, right = migrated[key], declared[key]
            if isinstance(left, dict) and isinstance(right, dict):
                for field in sorted(left.keys() | right.keys()):
                    if left.get(field) != right.get(field):
                        differences.append(
                            f"{key}: {field}: migrations give {left.get(field)!r}, "
                            f"schema.py gives {right.get(field)!r}"
                        )
            else:
                differences.append(f"{key}: migrations give {left!r}, schema.py gives {right!r}")
    return differences


def assert_same_schema(migrated: Snapshot, declared: Snapshot, what: str) -> None:
    differences = schema_differences(migrated, declared)
    if differences:
        pytest.fail(f"{what}:\n  " + "\n  ".join(differences), pytrace=False)


# -- building databases ----------------------------------------------------------------


@asynccontextmanager
async def engine_for(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine configured the way flowq configures its own, disposed on exit."""
    normalized = normalize_url(url)
    engine = dialect_for_url(normalized).create_engine(normalized)
    try:
        yield engine
    finally:
        await engine.dispose()


async def declared_snapshot(url: str) -> Snapshot:
    """Run ``metadata.create_all`` on the empty database at ``url`` and reflect it."""
    async with engine_for(url) as engine:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        snapshot = await take_snapshot(engine)
    tables = {key[6:] for key in snapshot if key.startswith("table ") and " / " not in key}
    assert tables == set(metadata.tables), "reflection missed tables: the test would be vacuous"
    return snapshot


async def migrated_database(url: str) -> Snapshot:
    """Apply every migration to the empty database at ``url`` and reflect it."""
    store = SqlStore(url)
    try:
        applied = await store.migrate()
        assert applied, "migrate() on an empty database applied nothing"
        return await take_snapshot(store.engine)
    finally:
        await store.close()


async def run_sql(url: str, statements: list[str]) -> None:
    async with engine_for(url) as engine, engine.begin() as connection:
        for statement in statements:
            await connection.exec_driver_sql(statement)


def migration_files(dialect: str) -> list[str]:
    return sorted(path.stem for path in (MIGRATIONS / MIGRATION_FOLDERS[dialect]).glob("*.sql"))


# -- tests -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_migrations_create_the_declared_schema(
    dialect: str, new_database: NewDatabase
) -> None:
    """A migrated database has exactly the tables, columns and indexes flowq's queries expect."""
    migrated = await migrated_database(await new_database())
    declared = await declared_snapshot(await new_database())
    assert_same_schema(migrated, declared, f"migrations and schema.py disagree on {dialect}")


@pytest.mark.anyio
async def test_migrating_twice_changes_nothing(dialect: str, new_database: NewDatabase) -> None:
    """Running `flowq migrate` again is a harmless no-op and records each migration once."""
    url = await new_database()
    first = await migrated_database(url)
    store = SqlStore(url)
    try:
        assert await store.migrate() == []
        second = await take_snapshot(store.engine)
        async with store.engine.connect() as connection:
            rows = (
                await connection.exec_driver_sql(
                    "SELECT version, name, applied_at FROM flowq_schema_version ORDER BY version"
                )
            ).all()
    finally:
        await store.close()
    assert_same_schema(second, first, "a second migrate() changed the schema")
    files = migration_files(dialect)
    assert files, f"no migration files found in {MIGRATIONS}"
    assert [row.name for row in rows] == files
    assert [row.version for row in rows] == [int(name.split("_", 1)[0]) for name in files]
    assert all(row.applied_at is not None for row in rows)


@pytest.mark.anyio
async def test_open_accepts_migrated_and_refuses_empty_database(
    dialect: str, new_database: NewDatabase
) -> None:
    """Starting against an unmigrated database says to run `flowq migrate` instead of failing
    later."""
    migrated_url, empty_url = await new_database(), await new_database()
    await migrated_database(migrated_url)
    store = SqlStore(migrated_url)
    try:
        await store.open()
    finally:
        await store.close()

    store = SqlStore(empty_url)
    try:
        with pytest.raises(SchemaError, match="flowq migrate"):
            await store.open()
    finally:
        await store.close()
    async with engine_for(empty_url) as engine, engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    assert tables == [], "open() must not create tables in a database it refuses"


_RECREATE_CLAIM_ASCENDING = [
    "DROP INDEX ix_flowq_jobs_claim",
    "CREATE INDEX ix_flowq_jobs_claim ON flowq_jobs (priority, id) WHERE ready_at IS NOT NULL",
]
_OTHER_WHERE_LITERAL = [
    "DROP INDEX ix_flowq_tokens_timeout_at",
    "CREATE INDEX ix_flowq_tokens_timeout_at ON flowq_tokens (timeout_at) WHERE status = 'Waiting'",
]
_NOT_UNIQUE = [
    "DROP INDEX ux_flowq_jobs_idempotency_key",
    "CREATE INDEX ux_flowq_jobs_idempotency_key ON flowq_jobs (idempotency_key) "
    "WHERE idempotency_key IS NOT NULL",
]
_SQLITE_EVENTS_WITHOUT_AUTOINCREMENT = [
    "DROP TABLE flowq_job_events",
    "CREATE TABLE flowq_job_events (id INTEGER NOT NULL PRIMARY KEY, job_id BIGINT NOT NULL, "
    "event_type TEXT NOT NULL, at DATETIME NOT NULL, metadata TEXT)",
    "CREATE INDEX ix_flowq_job_events_at ON flowq_job_events (at)",
    "CREATE INDEX ix_flowq_job_events_job_id ON flowq_job_events (job_id, id)",
]
_SQLITE_TOKENS_NULLABLE_STATUS = [
    "DROP TABLE flowq_tokens",
    "CREATE TABLE flowq_tokens (id TEXT NOT NULL, job_id BIGINT, status TEXT, output TEXT, "
    "tags TEXT NOT NULL, timeout_at DATETIME, created_at DATETIME NOT NULL, "
    "completed_at DATETIME, PRIMARY KEY (id))",
    "CREATE INDEX ix_flowq_tokens_job_id ON flowq_tokens (job_id)",
    "CREATE INDEX ix_flowq_tokens_timeout_at ON flowq_tokens (timeout_at) WHERE status = 'waiting'",
]
_BOTH = ("sqlite", "postgresql")
_MUTATIONS: list[tuple[str, tuple[str, ...], list[str], str]] = [
    ("drop-index", _BOTH, ["DROP INDEX ix_flowq_jobs_claim"], "index ix_flowq_jobs_claim"),
    (
        "add-column",
        _BOTH,
        ["ALTER TABLE flowq_tokens ADD COLUMN note TEXT"],
        "table flowq_tokens / column note",
    ),
    ("extra-table", _BOTH, ["CREATE TABLE flowq_extra (id INTEGER PRIMARY KEY)"], "flowq_extra"),
    ("index-not-desc", _BOTH, _RECREATE_CLAIM_ASCENDING, "index ix_flowq_jobs_claim: columns"),
    ("where-literal", _BOTH, _OTHER_WHERE_LITERAL, "index ix_flowq_tokens_timeout_at"),
    ("index-not-unique", _BOTH, _NOT_UNIQUE, "index ux_flowq_jobs_idempotency_key: unique"),
    (
        "no-autoincrement",
        ("sqlite",),
        _SQLITE_EVENTS_WITHOUT_AUTOINCREMENT,
        "table flowq_job_events: autoincrement",
    ),
    (
        "nullable-column",
        ("sqlite",),
        _SQLITE_TOKENS_NULLABLE_STATUS,
        "table flowq_tokens / column status: nullable",
    ),
    (
        "fillfactor",
        ("postgresql",),
        ["ALTER TABLE flowq_jobs SET (fillfactor = 80)"],
        "table flowq_jobs: storage parameters",
    ),
    (
        "autovacuum-reset",
        ("postgresql",),
        ["ALTER TABLE flowq_job_events RESET (autovacuum_vacuum_scale_factor)"],
        "table flowq_job_events: storage parameters",
    ),
    (
        "nullable-column",
        ("postgresql",),
        ["ALTER TABLE flowq_jobs ALTER COLUMN workflow DROP NOT NULL"],
        "table flowq_jobs / column workflow: nullable",
    ),
    (
        "column-type",
        ("postgresql",),
        ["ALTER TABLE flowq_jobs ALTER COLUMN timeout_ms TYPE integer"],
        "table flowq_jobs / column timeout_ms: type",
    ),
    (
        "drop-identity",
        ("postgresql",),
        ["ALTER TABLE flowq_jobs ALTER COLUMN id DROP IDENTITY"],
        "table flowq_jobs / column id: identity",
    ),
    (
        "btree-not-gin",
        ("postgresql",),
        ["DROP INDEX ix_flowq_jobs_tags", "CREATE INDEX ix_flowq_jobs_tags ON flowq_jobs (tags)"],
        "index ix_flowq_jobs_tags: method",
    ),
    (
        "drop-unique-constraint",
        ("postgresql",),
        ["ALTER TABLE flowq_cron_schedules DROP CONSTRAINT flowq_cron_schedules_schedule_name_key"],
        "table flowq_cron_schedules / unique constraints",
    ),
]


@pytest.mark.parametrize(
    ("dialect", "statements", "expected"),
    [
        pytest.param(
            dialect,
            statements,
            expected,
            id=f"{dialect}-{name}",
            marks=[pytest.mark.postgres] if dialect == "postgresql" else [],
        )
        for name, dialects, statements, expected in _MUTATIONS
        for dialect in dialects
    ],
)
@pytest.mark.anyio
async def test_comparison_reports_a_changed_schema(
    dialect: str, statements: list[str], expected: str, new_database: NewDatabase
) -> None:
    """A migration that drifts from schema.py is caught, so the equality test is not vacuous."""
    url = await new_database()
    await migrated_database(url)
    await run_sql(url, statements)
    async with engine_for(url) as engine:
        changed = await take_snapshot(engine)
    differences = schema_differences(changed, await declared_snapshot(await new_database()))
    assert differences, f"{statements} went unnoticed"
    assert any(expected in difference for difference in differences), differences


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("status = 'processing'", "(  \"STATUS\"='processing' )"),
        (
            "status = 'processing' AND group_name IS NOT NULL",
            "((status = 'processing') AND (group_name IS NOT NULL))",
        ),
        ("a <> 1", "[a] != 1"),
    ],
)
def test_where_clause_formatting_is_not_a_difference(left: str, right: str) -> None:
    """Reformatting a partial index's WHERE clause in a migration does not fail the check."""
    assert normalize_sql(left) == normalize_sql(right)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("status = 'processing'", "status = 'Processing'"),
        ("(a OR b) AND c", "a OR b AND c"),
        ("NOT (a AND b)", "NOT a AND b"),
        ("(a + 1) * 2", "a + 1 * 2"),
    ],
)
def test_where_clause_meaning_changes_are_a_difference(left: str, right: str) -> None:
    """A partial index whose WHERE clause means something else is reported."""
    assert normalize_sql(left) != normalize_sql(right)
