"""Opening an App: URLs, schema checks, unreachable databases, lazy registries."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

import flowq
from flowq.store.sql import SqlStore
from flowq_testing import FakeClock, InMemoryStore

pytestmark = pytest.mark.anyio

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


async def _table_names(url: str) -> list[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    finally:
        await engine.dispose()


async def test_entering_an_unmigrated_database_says_run_migrate(sqlite_url: str) -> None:
    """async with App on an empty database raises SchemaError naming `flowq migrate`."""
    with pytest.raises(flowq.SchemaError, match="flowq migrate"):
        async with flowq.App(sqlite_url):
            pass
    assert await _table_names(sqlite_url) == []


async def test_first_call_without_entering_checks_the_schema(sqlite_url: str) -> None:
    """Calling a method on an App that was never entered also raises SchemaError."""
    app = flowq.App(sqlite_url)
    with pytest.raises(flowq.SchemaError, match="flowq migrate"):
        await app.get_jobs()
    await app.close()


async def test_migrate_before_or_inside_the_app(tmp_path: Path) -> None:
    """migrate() works before entering the App and again inside it (applying nothing)."""
    app = flowq.App(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    shipped = sorted(path.stem for path in (MIGRATIONS / "sqlite").glob("*.sql"))
    assert shipped[:5] == [
        "0001_initial",
        "0002_child_outcome_seq",
        "0003_blocked_dependants",
        "0004_unresolved_options",
        "0005_workers",
    ]
    assert await app.migrate() == shipped
    async with app:
        assert await app.migrate() == []
        assert await app.get_jobs() == []


async def test_auto_migrate_opts_in(sqlite_url: str) -> None:
    """App(auto_migrate=True) creates the tables when it opens."""
    async with flowq.App(sqlite_url, auto_migrate=True) as app:
        assert await app.get_jobs() == []
    assert "flowq_jobs" in await _table_names(sqlite_url)


async def test_url_from_environment_and_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """App() reads FLOWQ_DATABASE_URL, else uses sqlite flowq.db in the working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLOWQ_DATABASE_URL", raising=False)
    default = flowq.App()
    assert isinstance(default.store, SqlStore)
    assert default.store.url.render_as_string() == "sqlite+aiosqlite:///flowq.db"
    await default.migrate()
    await default.close()
    assert (tmp_path / "flowq.db").exists()
    monkeypatch.setenv("FLOWQ_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    from_env = flowq.App()
    assert isinstance(from_env.store, SqlStore)
    assert from_env.store.url.drivername == "sqlite+aiosqlite"
    assert from_env.store.url.database == str(tmp_path / "env.db")


def test_url_schemes_are_normalized_or_refused() -> None:
    """postgres:// and postgresql:// pick asyncpg; other databases raise ValidationError."""
    for url in ("postgres://u@h/db", "postgresql://u@h/db", "postgresql+psycopg://u@h/db"):
        store = flowq.App(url).store
        assert isinstance(store, SqlStore) and store.url.drivername == "postgresql+asyncpg"
    with pytest.raises(flowq.ValidationError, match="mysql"):
        flowq.App("mysql://u@h/db")


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("postgresql+asyncpg://postgres@127.0.0.1:1/flowq", "127.0.0.1:1"),
        ("sqlite+aiosqlite:////nonexistent-dir/flowq.db", "/nonexistent-dir"),
    ],
)
async def test_unreachable_database_raises_a_readable_error(url: str, named: str) -> None:
    """A database that cannot be reached raises DatabaseUnavailableError naming where."""
    app = flowq.App(url)
    with pytest.raises(flowq.DatabaseUnavailableError, match="cannot") as caught:
        async with app:
            pass
    assert named in str(caught.value)
    with pytest.raises(flowq.DatabaseUnavailableError):
        await app.migrate()
    await app.close()


@pytest.mark.postgres
async def test_missing_postgres_database_is_unavailable(postgres_url: str) -> None:
    """A PostgreSQL database that does not exist raises DatabaseUnavailableError."""
    url = make_url(postgres_url).set(database="flowq_no_such_database").render_as_string(False)
    with pytest.raises(flowq.DatabaseUnavailableError, match="flowq_no_such_database"):
        async with flowq.App(url):
            pass


async def test_registry_is_read_lazily(sqlite_url: str) -> None:
    """A workflow registered after the App was created is known from then on: before,
    a job added by name is only encoded and leaves the declared options to the worker;
    after, its payload is checked and its declared options apply at enqueue."""
    registry = flowq.Registry()
    async with flowq.App(sqlite_url, registry=registry, auto_migrate=True) as app:
        early = await app.add_job("late.workflow", {"n": "not a number"})
        job = await app.get_job(early)
        assert job is not None and "timeout" in job.unresolved_options

        @registry.workflow(name="late.workflow", timeout="5s")
        async def late(payload: dict[str, int]) -> None:
            """Registered after the App."""

        with pytest.raises(flowq.PayloadError):
            await app.add_job("late.workflow", {"n": "not a number"})
        job_id = await app.add_job("late.workflow", {"n": 1})
        job = await app.get_job(job_id)
        assert job is not None and job.workflow == "late.workflow"
        assert job.timeout == timedelta(seconds=5) and job.unresolved_options == ()


async def test_start_takes_a_workflow_object(sqlite_url: str) -> None:
    """start() with a plain name points the user to add_job()."""
    async with flowq.App(sqlite_url, auto_migrate=True) as app:
        with pytest.raises(flowq.ValidationError, match="add_job"):
            await app.start("some.name", {})  # type: ignore[arg-type]


def test_an_app_and_its_store_share_one_clock() -> None:
    """The App takes the store's clock, gives its clock to a store on the default wall
    clock, and refuses a second clock for a store that has its own."""
    own = FakeClock()
    assert flowq.App(store=InMemoryStore(clock=own)).clock is own
    defaulted = InMemoryStore()
    app = flowq.App(store=defaulted, clock=own)
    assert app.clock is own and defaulted.clock is own
    with pytest.raises(flowq.ValidationError, match="clock of its own"):
        flowq.App(store=InMemoryStore(clock=own), clock=FakeClock())
    assert flowq.App(store=InMemoryStore(clock=own), clock=own).clock is own


def test_a_missing_driver_is_named_and_the_other_database_still_works(tmp_path: Path) -> None:
    """Without asyncpg (as after pip install --no-deps), flowq imports, SQLite works, and
    a PostgreSQL URL raises DatabaseError naming the driver to install."""
    import subprocess
    import sys

    script = f"""
import sys
sys.modules["asyncpg"] = None  # as if it were not installed
import anyio, flowq

async def main():
    async with flowq.App("sqlite+aiosqlite:///{tmp_path / "no-pg.db"}", auto_migrate=True):
        pass
    try:
        flowq.App("postgresql://localhost/nowhere")
    except flowq.DatabaseError as error:
        print("ERROR:", error)

anyio.run(main)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "ERROR: the postgresql driver 'asyncpg' is not installed: pip install asyncpg" in (
        done.stdout
    )
