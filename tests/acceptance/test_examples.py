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


@pytest.mark.slow
async def test_fastapi_example_enqueues_in_its_transaction_and_approves(tmp_path: Path) -> None:
    """The FastAPI example with a real `flowq worker` process: an order and its job
    commit together (a rejected order leaves neither), the job waits for approval,
    the approval endpoint completes the token and the worker ships."""
    import httpx

    from examples import fastapi_service
    from tests.acceptance.processes import Workers, eventually

    url = f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}"
    async with flowq.App(url, auto_migrate=True):
        pass  # flowq's tables; the service creates its own
    api = fastapi_service.create_api(url)
    workers = Workers(tmp_path)
    try:
        worker = await workers.start(url, name="shop", target="examples.fastapi_service:registry")
        async with (
            api.router.lifespan_context(api),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://t") as http,
        ):
            placed = await http.post("/orders", json={"item": "book", "quantity": 2})
            assert placed.status_code == 201, placed.text
            order_id = placed.json()["order_id"]
            rejected = await http.post("/orders", json={"item": "book", "quantity": 0})
            assert rejected.status_code == 422
            async with flowq.App(url) as app:
                assert len(await app.get_jobs()) == 1  # the rejected order's job rolled back

            async def status() -> dict[str, object]:
                return dict((await http.get(f"/orders/{order_id}")).json())

            async def awaiting() -> bool:
                return bool((await status())["awaiting_approval"])

            async def state() -> str:
                return str(await status()) + "\n" + workers.describe()

            await eventually(awaiting, "the order waits for approval", state=state, watch=[worker])
            [token_id] = (await status())["awaiting_approval"]  # type: ignore[misc]
            approved = await http.post(f"/approvals/{token_id}")
            assert approved.json() == {"token": token_id, "status": "completed"}

            async def shipped() -> bool:
                return (await status())["status"] == "completed"

            await eventually(shipped, "the order shipped", state=state, watch=[worker])
            assert (await status())["output"] == {
                "order": order_id, "shipped": True, "parcel": f"parcel-{order_id}",
            }  # fmt: skip
            missing = await http.get("/orders/999")
            assert missing.status_code == 404
    finally:
        await workers.kill_all()
