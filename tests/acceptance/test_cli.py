"""The real `flowq` command in subprocesses, and an installed wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import flowq

ROOT = Path(__file__).resolve().parents[2]


def _flowq(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "flowq.cli", *args]
    merged = {**os.environ, **(env or {})}
    merged.pop("FLOWQ_DATABASE_URL", None) if env is None else None
    return subprocess.run(command, cwd=cwd, env=merged, capture_output=True, text=True, timeout=120)


def test_migrate_applies_once(tmp_path: Path) -> None:
    """`flowq migrate` applies the migrations, then reports the database up to date."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    first = _flowq("migrate", "--database-url", url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    from flowq.store.sql.migrate import latest_version

    applied = f"applied {latest_version('sqlite')} migration(s)"
    assert applied in first.stdout and "0001_initial" in first.stdout
    second = _flowq("migrate", "--database-url", url, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout


def test_migrate_reads_the_environment(tmp_path: Path) -> None:
    """Without --database-url, `flowq migrate` uses FLOWQ_DATABASE_URL."""
    url = f"sqlite:///{tmp_path / 'env.db'}"
    done = _flowq("migrate", cwd=tmp_path, env={"FLOWQ_DATABASE_URL": url})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "env.db").exists() and not (tmp_path / "flowq.db").exists()


@pytest.mark.postgres
def test_migrate_postgres(postgres_template: str, tmp_path: Path) -> None:
    """`flowq migrate` on an already migrated PostgreSQL database changes nothing."""
    from tests.conftest import _dsn

    done = _flowq("migrate", "--database-url", _dsn(postgres_template), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout


def test_unreachable_database_exits_with_a_message(tmp_path: Path) -> None:
    """An unreachable database gives exit status 1 and one readable line, no traceback."""
    done = _flowq("migrate", "--database-url", "postgresql://postgres@127.0.0.1:1/x", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("flowq: error: cannot use the database at postgresql")
    assert "Traceback" not in done.stderr


def test_demo_runs_on_a_database_of_its_own(tmp_path: Path) -> None:
    """`flowq demo` runs the headline (steps, a durable sleep, an approval token, a retry,
    a dead letter) with a real worker, prints a timeline, and leaves no file behind."""
    env = {k: v for k, v in os.environ.items() if k != "FLOWQ_DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "flowq.cli", "demo"],
        cwd=tmp_path, env={**env, "FLOWQ_DATABASE_URL": "postgresql://not/used"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == []
    out = done.stdout
    assert "#1 demo.onboard: completed, attempts 1 -> 'acct-42 active'" in out
    assert "waiting for a token" in out and "resumed: recorded steps replayed" in out
    assert out.count("step demo.create_account") == 1
    assert "#2 demo.flaky_api: completed, attempts 3 -> 'answered'" in out
    assert "failed: API timeout on attempt 1 (will retry)" in out
    assert "#3 demo.charge_card: failed, attempts 1" in out and "(gave up)" in out
    assert "refunded order 7 after: card of order 7 declined" in out


@pytest.mark.slow
def test_migrate_from_an_installed_wheel(tmp_path: Path) -> None:
    """A wheel installed in a fresh virtual environment carries its migrations."""
    pip = [sys.executable, "-m", "pip"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    [wheel] = list((tmp_path / "dist").glob("flowq_durable-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    installed = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    done = subprocess.run(
        [str(bin_dir / "flowq"), "migrate", "--database-url", f"sqlite:///{workdir / 'w.db'}"],
        cwd=workdir, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "0001_initial" in done.stdout and "0002_child_outcome_seq" in done.stdout
    site = subprocess.run(
        [str(bin_dir / "python"), "-c", "import flowq, os; print(os.path.dirname(flowq.__file__))"],
        capture_output=True, text=True, check=True, cwd=workdir,
    ).stdout.strip()  # fmt: skip
    assert Path(site, "migrations", "postgres", "0002_child_outcome_seq.sql").is_file()
    assert not site.startswith(str(ROOT))
    assert shutil.which("flowq", path=str(bin_dir))
    assert sysconfig.get_paths()["purelib"]
    _pytest_with_the_plugin(bin_dir, workdir)


PLUGIN_TESTS = """
import pytest

import flowq

import flowq


@flowq.step
async def greet(name: str) -> str:
    return f"hi {name}"


@flowq.workflow(name="greeter")
async def greeter(payload: dict, ctx: flowq.Context) -> str:
    await ctx.sleep("1d")
    return await greet(payload["name"])


async def check(env, clock) -> None:
    start = clock.now()
    job_id = await env.start(greeter, {"name": "ada"})
    assert await env.result(job_id) == "hi ada"
    assert (clock.now() - start).days == 1


@pytest.mark.anyio
async def test_under_anyio(flowq_env, fake_clock):
    await check(flowq_env, fake_clock)


@pytest.mark.asyncio
async def test_under_pytest_asyncio(flowq_env, fake_clock):
    await check(flowq_env, fake_clock)


@pytest.mark.anyio
async def test_on_sqlite_even_with_trio_installed(tmp_path, fake_clock):
    from flowq_testing import WorkflowEnvironment

    url = f"sqlite+aiosqlite:///{tmp_path / 'user.db'}"
    async with WorkflowEnvironment([greeter], store=url, clock=fake_clock) as env:
        await check(env, fake_clock)
"""


def _pytest_with_the_plugin(bin_dir: Path, workdir: Path) -> None:
    """In the wheel's venv, a user's test file gets flowq_env and fake_clock from the
    plugin with no conftest, under pytest-anyio and pytest-asyncio alike; with trio
    installed, anyio tests still run on asyncio only (the plugin pins it)."""
    installed = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", "pytest", "pytest-asyncio",
         "trio"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    (workdir / "test_user_workflows.py").write_text(PLUGIN_TESTS)
    (workdir / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
    )
    ran = subprocess.run(
        [str(bin_dir / "python"), "-m", "pytest", "-v", "test_user_workflows.py"],
        cwd=workdir, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "3 passed" in ran.stdout and "[trio]" not in ran.stdout, ran.stdout


@pytest.mark.slow
def test_export_then_replay_before_a_deploy(tmp_path: Path) -> None:
    """`flowq jobs export ID` prints the history; `flowq replay` passes on the same code
    and fails (exit 1, the position named) on code that swapped two steps."""
    import asyncio

    from tests.acceptance import history_workloads

    url = f"sqlite+aiosqlite:///{tmp_path / 'orders.db'}"

    async def park_one() -> int:
        async with flowq.App(url, registry=history_workloads.registry, auto_migrate=True) as app:
            job_id = await app.start(history_workloads.orders, {"order": 3})
            await app.create_worker().run_until_idle()
            return job_id

    job_id = asyncio.run(park_one())
    exported = _flowq("jobs", "export", str(job_id), "--database-url", url, cwd=ROOT)
    assert exported.returncode == 0, exported.stderr
    history = tmp_path / "history.json"
    history.write_text(exported.stdout)
    assert '"format":"flowq.job-history"' in exported.stdout

    same = _flowq("replay", str(history), "--workflow",
                  "tests.acceptance.history_workloads:orders", cwd=ROOT)  # fmt: skip
    assert same.returncode == 0, same.stderr
    assert f"job {job_id}: 3 recorded call(s) replayed" in same.stdout
    changed = _flowq("replay", str(history), "--workflow",
                     "tests.acceptance.history_workloads:orders_swapped", cwd=ROOT)  # fmt: skip
    assert changed.returncode == 1
    assert "position 0" in changed.stderr and "Traceback" not in changed.stderr
    missing = _flowq("jobs", "export", "999", "--database-url", url, cwd=ROOT)
    assert (missing.returncode, missing.stderr.strip()) == (1, "flowq: error: there is no job 999")


@pytest.mark.slow
def test_operator_commands_on_sqlite(tmp_path: Path) -> None:
    """jobs list/show/events/steps/retry/cancel, tokens complete, reclaim, cleanup:
    tables for people, --json for scripts, FLOWQ_* settings, exit status 1 with one
    line for flowq errors."""
    import asyncio
    import json

    url = f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}"
    registry = flowq.Registry()

    @registry.workflow(name="ops.ok")
    async def ok(payload: dict[str, int]) -> int:
        return payload["n"]

    @registry.workflow(name="ops.bad", max_attempts=1)
    async def bad(payload: dict[str, int]) -> None:
        raise ValueError("nope")

    @registry.workflow(name="ops.ask")
    async def ask(payload: dict[str, int], ctx: flowq.Context) -> object:
        token = await ctx.create_token()
        return (await ctx.wait_for_token(token)).output

    async def prepare() -> dict[str, int]:
        async with flowq.App(url, registry=registry, auto_migrate=True) as app:
            ids = {
                "ok": await app.start(ok, {"n": 1}, tags=["t1"]),
                "bad": await app.start(bad, {"n": 2}),
                "ask": await app.start(ask, {"n": 3}),
            }
            await app.create_worker().run_until_idle()
            ids["later"] = await app.start(ok, {"n": 4}, delay=3600)
            return ids

    ids = asyncio.run(prepare())
    db = ("--database-url", url)
    listed = _flowq("jobs", "list", "--json", *db, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [job["id"] for job in json.loads(listed.stdout)] == sorted(ids.values(), reverse=True)
    failed = _flowq("jobs", "list", "--status", "failed", *db, cwd=tmp_path)
    assert failed.stdout.splitlines()[0].split() == [
        "id", "workflow", "status", "attempts", "run_at", "tags",
    ]  # fmt: skip
    [row] = [line.split()[:3] for line in failed.stdout.splitlines()[1:]]
    assert row == [str(ids["bad"]), "ops.bad", "failed"]
    paged = _flowq(
        "jobs", "list", cwd=tmp_path, env={"FLOWQ_DATABASE_URL": url, "FLOWQ_LIMIT": "1"}
    )
    assert f"more: flowq jobs list --cursor {ids['later']}" in paged.stdout, paged.stderr

    shown = json.loads(_flowq("jobs", "show", str(ids["bad"]), "--json", *db, cwd=tmp_path).stdout)
    assert shown["status"] == "failed" and shown["error_history"][0]["message"] == "nope"
    events = _flowq("jobs", "events", str(ids["ok"]), *db, cwd=tmp_path).stdout
    assert [line.split()[2] for line in events.splitlines()[1:]] == [
        "added", "processing", "completed",
    ]  # fmt: skip
    steps = _flowq("jobs", "steps", str(ids["ask"]), *db, cwd=tmp_path).stdout
    assert "@token" in steps

    assert _flowq("jobs", "retry", str(ids["bad"]), *db, cwd=tmp_path).stdout.strip() == (
        f"job {ids['bad']} retried"
    )
    assert _flowq("jobs", "cancel", str(ids["later"]), *db, cwd=tmp_path).stdout.strip() == (
        f"job {ids['later']} cancelled"
    )
    assert _flowq("jobs", "cancel", str(ids["later"]), *db, cwd=tmp_path).stdout.strip() == (
        f"job {ids['later']} unchanged"
    )
    [token_step] = [s for s in json.loads(
        _flowq("jobs", "steps", str(ids["ask"]), "--json", *db, cwd=tmp_path).stdout
    ) if s["name"] == "@token"]  # fmt: skip
    completed = _flowq("tokens", "complete", token_step["output"], "--output", '{"yes": 1}', *db,
                       cwd=tmp_path)  # fmt: skip
    assert completed.stdout.strip() == f"token {token_step['output']} completed", completed.stderr
    again = _flowq("tokens", "complete", token_step["output"], *db, cwd=tmp_path)
    assert again.returncode == 1 and again.stderr.startswith("flowq: error: ")

    reclaimed = _flowq("reclaim", "--json", *db, cwd=tmp_path)
    assert json.loads(reclaimed.stdout) == {"reclaimed_jobs": 0}
    cleaned = _flowq("cleanup", "--days", "0", *db, cwd=tmp_path)
    assert cleaned.stdout.startswith("cleaned up jobs: "), cleaned.stderr

    unknown = _flowq("jobs", "show", "999", *db, cwd=tmp_path)
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "flowq: error: there is no job 999")
    no_url = _flowq("worker", "some.module", cwd=tmp_path)
    assert no_url.returncode == 1 and "no database URL" in no_url.stderr
    bare = _flowq("migrate", "--database-url", "ops.db", cwd=tmp_path)
    assert bare.returncode == 1 and "is not a database URL" in bare.stderr
    version = _flowq("--version", cwd=tmp_path)
    assert version.stdout.strip() == f"flowq {flowq.__version__}"


def test_migrate_sql_prints_what_migrate_applies(tmp_path: Path) -> None:
    """`flowq migrate --sql` prints SQL that, applied by another tool, gives a schema
    flowq accepts as current."""
    import sqlite3

    printed = _flowq("migrate", "--sql", "--embedded", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert not (tmp_path / "flowq.db").exists()
    database = tmp_path / "own-tool.db"
    with sqlite3.connect(database) as connection:
        connection.executescript(printed.stdout)
    listed = _flowq("jobs", "list", "--database-url", f"sqlite:///{database}", cwd=tmp_path)
    assert (listed.returncode, listed.stdout.strip()) == (0, "(none)"), listed.stderr


def test_tokens_cron_and_doctor_commands(tmp_path: Path) -> None:
    """tokens list, cron list/show/pause/resume/enqueue/remove and doctor: tables for
    people, --json for scripts, one-line errors."""
    import asyncio
    import json
    from datetime import UTC, datetime, timedelta

    from flowq_testing import FakeClock

    url = f"sqlite+aiosqlite:///{tmp_path / 'ops2.db'}"
    registry = flowq.Registry()

    @registry.workflow(name="ops.tick")
    async def tick(payload: dict[str, int]) -> int:
        return payload["n"]

    async def prepare() -> tuple[str, int]:
        an_hour_ago = FakeClock(datetime.now(UTC) - timedelta(hours=1))
        async with flowq.App(url, registry=registry, clock=an_hour_ago, auto_migrate=True) as app:
            token = await app.create_token(tags=["review"])
            schedule_id = await app.add_cron_job("hourly-tick", "@hourly", tick, {"n": 1})
            await app.start(tick, {"n": 2})  # due for an hour: doctor notices
            return token.id, schedule_id

    token_id, schedule_id = asyncio.run(prepare())
    db = ("--database-url", url)
    tokens = _flowq("tokens", "list", *db, cwd=tmp_path)
    assert tokens.stdout.splitlines()[0].split()[:3] == ["id", "job", "status"], tokens.stderr
    assert token_id in tokens.stdout and "review" in tokens.stdout
    waiting = json.loads(_flowq("tokens", "list", "--status", "waiting", "--json", *db,
                                cwd=tmp_path).stdout)  # fmt: skip
    assert [t["id"] for t in waiting] == [token_id]

    listed = json.loads(_flowq("cron", "list", "--json", *db, cwd=tmp_path).stdout)
    assert [(s["id"], s["schedule_name"], s["status"]) for s in listed] == [
        (schedule_id, "hourly-tick", "active")
    ]
    shown = _flowq("cron", "show", "hourly-tick", *db, cwd=tmp_path).stdout
    assert "cron_expression" in shown and "@hourly" in shown
    enqueued = _flowq("cron", "enqueue", "--json", *db, cwd=tmp_path)
    assert json.loads(enqueued.stdout) == {"enqueued": 1}, enqueued.stderr
    paused = _flowq("cron", "pause", str(schedule_id), *db, cwd=tmp_path)
    assert paused.stdout.strip() == "schedule 'hourly-tick' paused", paused.stderr
    assert "paused" in _flowq("cron", "list", *db, cwd=tmp_path).stdout
    assert _flowq("cron", "resume", "hourly-tick", *db, cwd=tmp_path).returncode == 0
    missing = _flowq("cron", "pause", "nope", *db, cwd=tmp_path)
    assert (missing.returncode, missing.stderr.strip()) == (
        1, "flowq: error: there is no schedule 'nope'",
    )  # fmt: skip

    doctor = _flowq("doctor", *db, cwd=tmp_path)
    assert doctor.returncode == 0, doctor.stderr
    assert "PROBLEM: a due job has waited" in doctor.stdout
    assert "workers seen      none (in the last 2 min)" in doctor.stdout
    report = json.loads(_flowq("doctor", "--json", *db, cwd=tmp_path).stdout)
    assert report["report"]["schema_version"] == report["report"]["latest_schema_version"]
    assert report["report"]["jobs_by_status"] == {"pending": 2}
    assert report["report"]["waiting_tokens"] == 1
    assert report["report"]["table_bytes"]["database"] > 0
    assert len(report["problems"]) == 1
    assert report["workers"] == []
    assert _flowq("cron", "remove", "hourly-tick", *db, cwd=tmp_path).returncode == 0
    assert json.loads(_flowq("cron", "list", "--json", *db, cwd=tmp_path).stdout) == []
