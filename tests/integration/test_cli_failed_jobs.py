"""`flowq jobs list|show` and `flowq doctor` tell a failed job that will retry from one
that gave up (the real command, in-process, on a SQLite file)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import flowq
from flowq import cli


def _prepare(url: str) -> tuple[int, int, int, str]:
    """A job that will retry in an hour, one that gave up, one that completed; and
    the retry time as the table prints it."""
    registry = flowq.Registry()

    @registry.workflow(name="cli.flaky")
    async def flaky(payload: dict[str, Any]) -> None:
        raise RuntimeError("down")

    @registry.workflow(name="cli.fine")
    async def fine(payload: dict[str, Any]) -> str:
        return "ok"

    async def run() -> tuple[int, int, int, str]:
        async with flowq.App(url, registry=registry, auto_migrate=True) as app:
            retrying = await app.start(flaky, {}, max_attempts=3, retry_delay="1h")
            gave_up = await app.start(flaky, {}, max_attempts=1)
            done = await app.start(fine, {})
            await app.create_worker().run_until_idle()
            job = await app.get_job(retrying)
            assert job is not None and job.next_attempt_at is not None
            when = job.next_attempt_at.isoformat(sep=" ", timespec="seconds")
            return retrying, gave_up, done, when

    return asyncio.run(run())


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_jobs_list_show_and_doctor_tell_retrying_from_gave_up(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The status column reads "failed (retries at ...)" or "failed (gave up)";
    --retrying and --gave-up filter; --json carries will_retry; doctor splits failed."""
    monkeypatch.delenv("FLOWQ_DATABASE_URL", raising=False)
    retrying, gave_up, done, when = _prepare(sqlite_url)
    db = ("--database-url", sqlite_url)

    table = _run(capsys, "jobs", "list", *db)
    rows = {int(line.split()[0]): line for line in table.splitlines()[1:]}
    assert f"failed (retries at {when})" in rows[retrying]
    assert "failed (gave up)" in rows[gave_up] and "retries" not in rows[gave_up]
    assert "completed" in rows[done] and "(" not in rows[done].split("completed")[1][:3]

    def listed(*options: str) -> list[int]:
        found = json.loads(_run(capsys, "jobs", "list", "--json", *options, *db))
        return [job["id"] for job in found]

    assert listed("--retrying") == [retrying]
    assert listed("--gave-up") == [gave_up]
    assert listed("--gave-up", "--status", "failed") == [gave_up]
    every = json.loads(_run(capsys, "jobs", "list", "--json", *db))
    assert {job["id"]: job["will_retry"] for job in every} == {
        retrying: True,
        gave_up: False,
        done: False,
    }

    shown = _run(capsys, "jobs", "show", str(gave_up), *db)
    assert "failed (gave up)" in shown and "will_retry" in shown
    shown_json = json.loads(_run(capsys, "jobs", "show", str(retrying), "--json", *db))
    assert (shown_json["status"], shown_json["will_retry"]) == ("failed", True)

    assert cli.main(["jobs", "list", "--gave-up", "--status", "pending", *db]) == 1
    assert "--gave-up lists failed jobs" in capsys.readouterr().err
    assert cli.main(["jobs", "list", "--retrying", "--status", "completed", *db]) == 1
    assert "--retrying lists failed jobs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["jobs", "list", "--gave-up", "--retrying", *db])
    capsys.readouterr()

    doctor = _run(capsys, "doctor", *db)
    assert "1 retrying, 1 gave up" in doctor
    report = json.loads(_run(capsys, "doctor", "--json", *db))["report"]
    assert (report["retrying_jobs"], report["gave_up_jobs"]) == (1, 1)
