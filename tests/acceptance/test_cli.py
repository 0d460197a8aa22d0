"""The real `flowq` command in subprocesses, and an installed wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

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
    assert "applied 2 migration(s)" in first.stdout and "0001_initial" in first.stdout
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


def test_demo_runs_on_the_sqlite_default(tmp_path: Path) -> None:
    """`flowq demo` runs a worker over example jobs on ./flowq.db and prints what happened."""
    env = {k: v for k, v in os.environ.items() if k != "FLOWQ_DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "flowq.cli", "demo"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "flowq.db").exists()
    out = done.stdout
    assert "started send_welcome as #1; the same idempotency key returned #1" in out
    assert "demo.flaky_api       completed  attempts=3 -> answered" in out
    assert "demo.charge_card     failed     attempts=1" in out
    assert "dead letter #" in out and "refunded order 7" in out
    assert "Events of #4: added, processing, completed" in out


@pytest.mark.slow
def test_migrate_from_an_installed_wheel(tmp_path: Path) -> None:
    """A wheel installed in a fresh virtual environment carries its migrations."""
    pip = [sys.executable, "-m", "pip"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    [wheel] = list((tmp_path / "dist").glob("flowq-*.whl"))
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
"""


def _pytest_with_the_plugin(bin_dir: Path, workdir: Path) -> None:
    """In the wheel's venv, a user's test file gets flowq_env and fake_clock from the
    plugin with no conftest, under pytest-anyio and pytest-asyncio alike."""
    installed = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", "pytest", "pytest-asyncio"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    (workdir / "test_user_workflows.py").write_text(PLUGIN_TESTS)
    (workdir / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
    )
    ran = subprocess.run(
        [str(bin_dir / "python"), "-m", "pytest", "-q", "test_user_workflows.py"],
        cwd=workdir, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "2 passed" in ran.stdout


@pytest.mark.slow
def test_export_then_replay_before_a_deploy(tmp_path: Path) -> None:
    """`flowq jobs export ID` prints the history; `flowq replay` passes on the same code
    and fails (exit 1, the position named) on code that swapped two steps."""
    import asyncio

    import flowq
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
