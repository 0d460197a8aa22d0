"""The examples in examples/ keep working with the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

import flowq
from examples import onboarding

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.anyio


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


async def test_onboarding_example_runs_with_flowq_worker(tmp_path: Path) -> None:
    """The example's script adds a job; `flowq worker --until-idle` runs it to the end."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'example.db'}"
    env = {**os.environ, "FLOWQ_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    added = _run("-m", "examples.onboarding", "add", "7", "0.3", env=env)
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "added job 1"
    worker = ["-m", "flowq.cli", "worker", "examples.onboarding:registry", "--until-idle"]
    assert _run(*worker, env=env).returncode == 0
    async with flowq.App(url, registry=onboarding.registry) as app:
        job = await app.get_job(1)
        assert job is not None and job.status == "waiting" and job.wait_until is not None
        names = [step.name for step in await app.get_job_steps(1)]
        assert names == ["create_account", "send_email", "@timer"]
        # The worker uses the real clock: sleep exactly until the stored wake time.
        await anyio.sleep(max(0.0, (job.wait_until - datetime.now(UTC)).total_seconds()))
    assert _run(*worker, env=env).returncode == 0
    async with flowq.App(url, registry=onboarding.registry) as app:
        job = await app.get_job(1)
        assert job is not None and job.wait_token_id is not None
        await app.complete_token(job.wait_token_id, {"approved": True})
    assert _run(*worker, env=env).returncode == 0
    async with flowq.App(url, registry=onboarding.registry) as app:
        assert await app.result(1, timeout=timedelta(seconds=10)) == {
            "account": 1007, "approved": True,
        }  # fmt: skip
