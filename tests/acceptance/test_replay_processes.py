"""The replay engine with real `flowq worker` processes on real databases: a SIGKILL
between two steps, a 10,000-job soak of steps, durable sleeps and tokens across two
workers, and a token's wake-up of an idle worker on PostgreSQL.

The workers run :mod:`tests.acceptance.replay_workloads`, whose step bodies count their
runs outside flowq (a counter table in the test database, or lines in per-process
files), so that "ran exactly once" is checked apart from what flowq recorded.
"""

from __future__ import annotations

import signal
import time
from collections import Counter, defaultdict
from pathlib import Path

import anyio
import asyncpg
import pytest

import flowq
from flowq import JobStatus
from tests.acceptance import replay_workloads
from tests.acceptance.processes import (
    UNFINISHED,
    Workers,
    events_of,
    eventually,
    job_of,
    read_lines,
    status_counts,
    until_listening,
)
from tests.acceptance.replay_workloads import TARGET
from tests.pg_server import asyncpg_dsn, listening_sessions

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def steps_of(app: flowq.App, job_id: int) -> list[tuple[int, str, int]]:
    """The job's recorded durable calls as ``(position, name, attempt)``."""
    return [(s.seq, s.name, s.attempt) for s in await app.get_job_steps(job_id)]


# -- 1. SIGKILL between two steps -----------------------------------------------------------


@pytest.mark.parametrize("hang", ["in_b", "before_b"])
async def test_a_worker_killed_between_two_steps_does_not_repeat_the_first(
    hang: str, database_url: str, app: flowq.App, workers: Workers, tmp_path: Path
) -> None:
    """A worker SIGKILLed between steps A and B: the job finishes elsewhere, A not rerun."""
    await replay_workloads.create_side_effects(database_url)
    marker = tmp_path / "handler-hangs-before-b"
    payload = {"database_url": database_url, "hang": hang, "marker": str(marker)}
    job_id = await app.start(replay_workloads.crash_between_steps, payload)
    a_key, b_key = f"{job_id}:crash.a", f"{job_id}:crash.b"

    async def state() -> str:
        job = await job_of(app, job_id)
        return (
            f"job {job_id} {job.status.value} attempts={job.attempts} locked_by={job.locked_by}"
            f"; steps={await steps_of(app, job_id)}; events={await events_of(app, job_id)}"
            f"; side effects={await replay_workloads.side_effects(database_url)}"
        )

    doomed = await workers.start(database_url, name="doomed", target=TARGET)

    async def stopped_after_a() -> bool:
        """A is recorded and the handler has reached its hang (in B's body, or before B)."""
        if [name for _, name, _ in await steps_of(app, job_id)] != ["crash.a"]:
            return False
        if hang == "in_b":
            return (await replay_workloads.side_effects(database_url)).get(b_key, 0) >= 1
        return marker.exists()

    await eventually(
        stopped_after_a, f"job {job_id} hangs after step A", state=state, watch=[doomed]
    )
    doomed.process.kill()
    assert await doomed.exit_status(10) == -signal.SIGKILL
    job = await job_of(app, job_id)
    assert (job.status, job.locked_by, job.attempts) == (JobStatus.PROCESSING, "doomed", 1), (
        await state()
    )
    assert await steps_of(app, job_id) == [(0, "crash.a", 1)], await state()

    assert await app.reclaim_stuck_jobs(0) == 1, await state()
    rescuer = await workers.run(database_url, "--until-idle", name="rescuer", target=TARGET)
    assert rescuer.returncode == 0, rescuer.describe()

    job = await job_of(app, job_id)
    assert (job.status, job.attempts) == (JobStatus.COMPLETED, 2), await state()
    assert job.output == {"a": 1, "b": "b saw a=1"}, await state()
    effects = await replay_workloads.side_effects(database_url)
    b_runs = 2 if hang == "in_b" else 1  # the hung run of B, if any, and the one that finished
    assert effects == {a_key: 1, b_key: b_runs}, await state()
    assert await steps_of(app, job_id) == [(0, "crash.a", 1), (1, "crash.b", 2)], await state()
    assert await events_of(app, job_id) == [
        "added", "processing", "reclaimed", "processing", "completed",
    ], await state()  # fmt: skip


# -- 1b. SIGTERM with a job that outlives the drain timeout -----------------------------------


async def test_a_job_handed_back_on_sigterm_keeps_its_charge_and_its_token(
    database_url: str, app: flowq.App, workers: Workers, tmp_path: Path
) -> None:
    """A first attempt handed back after SIGTERM: the next worker does not charge again,
    returns the recorded charge, and waits on the token created before the hand-back."""
    await replay_workloads.create_side_effects(database_url)
    marker, go = tmp_path / "paused-with-token", tmp_path / "go"
    payload = {"database_url": database_url, "marker": str(marker), "go": str(go)}
    job_id = await app.start(replay_workloads.charge_then_approval, payload)
    charge_key = f"{job_id}:handback.charge"

    async def state() -> str:
        job = await job_of(app, job_id)
        return (
            f"job {job_id} {job.status.value} attempts={job.attempts} output={job.output}"
            f"; steps={await steps_of(app, job_id)}; events={await events_of(app, job_id)}"
            f"; side effects={await replay_workloads.side_effects(database_url)}"
        )

    deploying = await workers.start(
        database_url, "--drain-timeout", "0.3", name="deploying", target=TARGET
    )

    async def paused() -> bool:
        return marker.exists()

    await eventually(paused, "the job pauses after its charge", state=state, watch=[deploying])
    deploying.signal(signal.SIGTERM)
    assert await deploying.exit_status(15) == 0, deploying.describe()
    job = await job_of(app, job_id)
    assert (job.status, job.attempts) == (JobStatus.PENDING, 0), await state()
    [first_token] = read_lines(marker)

    go.touch()
    resumed = await workers.run(database_url, "--until-idle", name="resumed", target=TARGET)
    assert resumed.returncode == 0, resumed.describe()
    job = await job_of(app, job_id)
    assert (job.status, job.wait_token_id) == (JobStatus.WAITING, first_token), await state()

    await app.complete_token(first_token, {"approved": True})
    finisher = await workers.run(database_url, "--until-idle", name="finisher", target=TARGET)
    assert finisher.returncode == 0, finisher.describe()
    job = await job_of(app, job_id)
    [charge] = [s for s in await app.get_job_steps(job_id) if s.name == "handback.charge"]
    assert job.status is JobStatus.COMPLETED, await state()
    assert job.output == {
        "charge": charge.output, "token": first_token, "approval": {"approved": True},
    }, await state()  # fmt: skip
    assert (await replay_workloads.side_effects(database_url))[charge_key] == 1, await state()


# -- 1c. steps beside waits -------------------------------------------------------------------


async def test_steps_beside_waits_in_task_groups_and_gather_run_once(
    database_url: str, app: flowq.App, workers: Workers, tmp_path: Path
) -> None:
    """Through `flowq worker`: a wait in a task group and a wait under gather park the
    job (the worker lives on), the steps beside them finish first, and no step body
    runs twice."""
    await replay_workloads.create_side_effects(database_url)
    payload = {"database_url": database_url}
    job_ids = [await app.start(replay_workloads.beside_waits, payload) for _ in range(5)]

    async def state() -> str:
        return f"{await status_counts(app)}; {await replay_workloads.side_effects(database_url)}"

    async def all_completed() -> bool:
        return (await status_counts(app)).get("completed", 0) == len(job_ids)

    worker = await workers.start(database_url, name="beside", target=TARGET)
    await eventually(all_completed, "every job completes", state=state, watch=[worker])
    worker.signal(signal.SIGTERM)
    assert await worker.exit_status(15) == 0, worker.describe()
    effects = await replay_workloads.side_effects(database_url)
    for job_id in job_ids:
        job = await job_of(app, job_id)
        assert (job.output, job.attempts) == (["grouped", "gathered"], 1), await state()
        assert effects[f"{job_id}:beside.grouped"] == 1, await state()
        assert effects[f"{job_id}:beside.gathered"] == 1, await state()
    assert "Traceback" not in worker.output(), worker.describe()


# -- 2. the soak ----------------------------------------------------------------------------

SOAK_JOBS = 10_000
"""Jobs in the soak."""
SOAK_CONCURRENCY = "100"
"""Jobs each soak worker runs at once (waiting jobs hold no slot)."""
SCAN_EVERY = 0.25
"""Seconds between two looks for tokens to answer (on SQLite every read of the test
takes the write lock the workers need, so the test looks less often than it polls)."""


@pytest.mark.timeout(600)
async def test_soak_of_steps_sleeps_and_tokens_across_two_workers(
    database_url: str, app: flowq.App, workers: Workers, tmp_path: Path
) -> None:
    """10,000 jobs of steps, sleeps and tokens on two workers complete, each step run once."""
    began = time.monotonic()
    job_ids: list[int] = []
    spec = {"workflow": replay_workloads.soak, "payload": {}}
    for _ in range(SOAK_JOBS // 1000):
        job_ids += await app.add_jobs([spec] * 1000)
    added = time.monotonic()

    names = ("w1", "w2")
    logs = {name: tmp_path / f"soak-{name}.txt" for name in names}
    procs = []
    for name in names:
        env = {replay_workloads.SOAK_LOG_ENV: str(logs[name])}
        options = ("--concurrency", SOAK_CONCURRENCY)
        procs.append(await workers.start(database_url, *options, name=name, target=TARGET, env=env))

    answered: dict[str, int] = {}  # token id -> job id, completed by this test
    left_alone: dict[str, int] = {}  # token id -> job id, left to time out

    next_scan = 0.0

    async def answer_tokens_and_check_done() -> bool:
        """Complete the ``answer`` tokens jobs wait on; True once no job is unfinished."""
        nonlocal next_scan
        if anyio.current_time() < next_scan:
            return False
        next_scan = anyio.current_time() + SCAN_EVERY
        for job in await app.get_jobs(status="waiting", limit=None):
            token_id = job.wait_token_id
            if token_id is None or token_id in answered or token_id in left_alone:
                continue
            token = await app.get_token(token_id)
            assert token is not None and token.job_id == job.id, (job, token)
            if replay_workloads.ANSWER_TAG in token.tags:
                await app.complete_token(token_id, {"answer_for": job.id})
                answered[token_id] = job.id
            else:
                left_alone[token_id] = job.id
        return not await app.get_jobs(status=UNFINISHED, limit=1)

    async def state() -> str:
        return (
            f"{await status_counts(app)}; {len(answered)} token(s) answered, "
            f"{len(left_alone)} left to time out"
        )

    await eventually(
        answer_tokens_and_check_done,
        f"all {SOAK_JOBS:,} jobs finished",
        state=state,
        watch=procs,
        within=420,
    )
    finished = time.monotonic()
    for proc in procs:
        proc.signal(signal.SIGTERM)
    for proc in procs:
        assert await proc.exit_status(30) == 0, proc.describe()

    # Every job completed, in one attempt, with one `completed` event.
    jobs = {job.id: job for job in await app.get_jobs(limit=None)}
    assert sorted(jobs) == sorted(job_ids)
    not_done = [
        (j.id, j.status.value, j.attempts, j.error_history)
        for j in jobs.values()
        if j.status is not JobStatus.COMPLETED or j.attempts != 1
    ]
    assert not not_done, f"{len(not_done)} job(s) not completed in one attempt: {not_done[:10]}"

    # The step bodies' own traces: each (job, step) line once, across both processes.
    lines = {name: read_lines(path) for name, path in logs.items()}
    assert all(lines.values()), {name: len(found) for name, found in lines.items()}
    runs = Counter(line for found in lines.values() for line in found)
    repeated = {line: n for line, n in runs.items() if n > 1}
    assert not repeated, f"{len(repeated)} step bodies ran more than once: {repeated}"
    ran: defaultdict[int, set[str]] = defaultdict(set)
    for line in runs:
        traced_id, _, step = line.partition(":")
        ran[int(traced_id)].add(step)

    # flowq's records agree with the traces and the outputs, job by job.
    waited: Counter[str] = Counter()
    mismatches = []
    for job_id in job_ids:
        job = jobs[job_id]
        recorded = [s for s in await app.get_job_steps(job_id) if not s.name.startswith("@")]
        names_recorded = [s.name for s in recorded]
        events = await events_of(app, job_id)
        output = job.output
        waited[output["waited"]] += 1
        expected_token = {
            "answered token": {"ok": True, "output": {"answer_for": job_id}, "error": ""},
            "expired token": {"ok": False, "output": None, "error": "timed out"},
        }.get(output["waited"])
        token = output["token"]
        if token is not None:  # the error is "timed out at <deadline>"
            token = {**token, "error": (token["error"] or "")[: len("timed out")]}
        if (
            len(names_recorded) != len(set(names_recorded))
            or set(names_recorded) != ran[job_id]
            or names_recorded != output["steps"]
            or token != expected_token
            or events.count("completed") != 1
        ):
            mismatches.append((job_id, names_recorded, sorted(ran[job_id]), output, events))
    assert not mismatches, f"{len(mismatches)} job(s) disagree: {mismatches[:10]}"
    assert set(waited) == {"slept", "answered token", "expired token", "nothing"}, waited
    assert waited["answered token"] == len(answered), (waited, len(answered))
    checked = time.monotonic()
    per_worker = {name: len(found) for name, found in lines.items()}
    print(
        f"\nsoak on {database_url.split(':')[0]}: {SOAK_JOBS:,} jobs added in "
        f"{added - began:.1f}s, all finished {finished - added:.1f}s after the add, "
        f"checked in {checked - finished:.1f}s; waits {dict(waited)}; "
        f"step bodies run per worker {per_worker}"
    )


# -- 3. PostgreSQL: a completed token wakes an idle worker at once --------------------------


@pytest.mark.postgres
async def test_completing_a_token_resumes_its_job_at_once(
    postgres_url: str, workers: Workers, tmp_path: Path
) -> None:
    """On PostgreSQL complete_token resumes its job within 1 s, though workers poll every 2 s."""
    stamps = tmp_path / "resumed.txt"
    admin = await asyncpg.connect(asyncpg_dsn(postgres_url))
    try:
        async with flowq.App(postgres_url, registry=replay_workloads.registry) as app:
            worker = await workers.start(postgres_url, name="idle", target=TARGET)

            async def state() -> str:
                return f"{await status_counts(app)}; {await listening_sessions(admin)} LISTENing"

            await until_listening(admin, worker, state=state)
            latencies = []
            for number in range(3):
                job_id = await app.start(replay_workloads.token_then_stamp, {"file": str(stamps)})

                async def parked(job_id: int = job_id) -> bool:
                    job = await job_of(app, job_id)
                    return job.status is JobStatus.WAITING and job.wait_token_id is not None

                await eventually(
                    parked, f"job {job_id} waits on its token", state=state, watch=[worker]
                )
                # The worker went back to sleep after parking the job (its next poll is
                # about 2 s away): only the NOTIFY of complete_token can wake it sooner.
                token_id = (await job_of(app, job_id)).wait_token_id
                assert token_id is not None
                completed_at = time.time()
                await app.complete_token(token_id, {"answer": number})

                async def completed(job_id: int = job_id) -> bool:
                    return (await job_of(app, job_id)).status is JobStatus.COMPLETED

                await eventually(completed, f"job {job_id} completed", state=state, watch=[worker])
                assert (await job_of(app, job_id)).output == {"answer": number}
                resumed = {int(i): float(t) for i, t in map(str.split, read_lines(stamps))}
                latencies.append(resumed[job_id] - completed_at)
            assert max(latencies) < 1.0, f"resume latencies after complete_token (s): {latencies}"
            worker.signal(signal.SIGTERM)
            assert await worker.exit_status(15) == 0, worker.describe()
    finally:
        await admin.close()
