"""`flowq worker` as real OS processes on real databases: sharing work, signals, crashes,
LISTEN/NOTIFY, lost connections and startup errors.

The workers run :mod:`tests.acceptance.workloads`, whose handlers leave traces in files,
so that what really ran is checked apart from what flowq recorded.
"""

from __future__ import annotations

import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

import flowq
from flowq import JobStatus
from tests.acceptance import workloads
from tests.acceptance.processes import (
    UNFINISHED,
    WorkerProcess,
    Workers,
    child_environment,
    events_of,
    eventually,
    job_of,
    read_lines,
    status_counts,
    until_listening,
)
from tests.pg_server import asyncpg_dsn, listening_sessions

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def describe(app: flowq.App) -> Any:
    """A ``state`` callback for :func:`eventually`: the job counts by status."""

    async def state() -> str:
        return str(await status_counts(app))

    return state


def slow_once_payload(tmp_path: Path, seconds: float) -> dict[str, Any]:
    """A payload of ``acceptance.slow_once``: first run takes ``seconds``, later runs none."""
    return {
        "seconds": seconds,
        "marker": str(tmp_path / "first-run-started"),
        "runs": str(tmp_path / "runs.txt"),
    }


async def wait_until_running(
    app: flowq.App, job_id: int, tmp_path: Path, worker: WorkerProcess
) -> None:
    """Until the ``slow_once`` handler of the job is inside its first run."""

    async def running() -> bool:
        if not (tmp_path / "first-run-started").exists():
            return False
        return (await job_of(app, job_id)).status is JobStatus.PROCESSING

    await eventually(
        running, f"job {job_id} runs in {worker.name}", state=describe(app), watch=[worker]
    )


# -- 1. two processes share the work, each job exactly once ------------------------------


async def test_two_worker_processes_run_every_job_exactly_once(
    database_url: str, app: flowq.App, workers: Workers, tmp_path: Path
) -> None:
    """Two worker processes complete 2,000 jobs between them, each job exactly once."""
    names = ("w1", "w2")
    ran_files = {name: tmp_path / f"ran-by-{name}.txt" for name in names}

    def batch(size: int) -> list[dict[str, Any]]:
        return [{"workflow": "acceptance.record", "payload": {"sleep": 0.001}}] * size

    job_ids = await app.add_jobs(batch(500))
    procs = []
    for name in names:
        env = {workloads.RECORD_LOG_ENV: str(ran_files[name])}
        procs.append(await workers.start(database_url, "--concurrency", "10", name=name, env=env))
    for _ in range(15):  # the rest arrives while both run
        job_ids += await app.add_jobs(batch(100))
        await anyio.sleep(0.05)  # pacing of the stream, not a wait for a result
    assert len(set(job_ids)) == 2000

    async def all_finished() -> bool:
        return not await app.get_jobs(status=UNFINISHED, limit=1)

    await eventually(all_finished, "all 2,000 jobs finished", state=describe(app), watch=procs)
    for proc in procs:
        proc.signal(signal.SIGTERM)
    for proc in procs:
        assert await proc.exit_status(30) == 0, proc.describe()

    # The side effects: every id written exactly once, by one of the two processes.
    ran_by = {name: [int(line) for line in read_lines(path)] for name, path in ran_files.items()}
    runs = Counter(job_id for ids in ran_by.values() for job_id in ids)
    duplicates = {job_id: n for job_id, n in runs.items() if n > 1}
    assert not duplicates, f"jobs whose handler ran more than once: {duplicates}"
    assert set(runs) == set(job_ids), f"never ran: {sorted(set(job_ids) - set(runs))[:20]}"
    assert all(ran_by.values()), {name: len(ids) for name, ids in ran_by.items()}

    # flowq's records agree: one claim and one completion each, by the process that ran it.
    jobs = await app.get_jobs(limit=None)
    assert len(jobs) == 2000
    not_done = [
        (j.id, j.status.value, j.attempts) for j in jobs if j.status is not JobStatus.COMPLETED
    ]
    assert not not_done, not_done[:20]
    assert {j.attempts for j in jobs} == {1}
    ran_where = {job_id: name for name, ids in ran_by.items() for job_id in ids}
    claimed_by: Counter[str] = Counter()
    for job_id in job_ids:
        events = await app.get_job_events(job_id)
        types = [event.event_type.value for event in events]
        assert types.count("processing") == 1 and types.count("completed") == 1, (job_id, types)
        assert types == ["added", "processing", "completed"], (job_id, types)
        worker_id = events[1].metadata["worker_id"]
        assert worker_id == ran_where[job_id], (job_id, worker_id, ran_where[job_id])
        claimed_by[worker_id] += 1
    assert set(claimed_by) == set(names), claimed_by


# -- 2. SIGTERM: drain, or hand back --------------------------------------------------------


async def test_sigterm_lets_the_running_job_finish(
    database_url: str, app: flowq.App, workers: Workers, tmp_path: Path
) -> None:
    """On SIGTERM a worker finishes its 1 s job within --drain-timeout, then exits 0."""
    job_id = await app.add_job("acceptance.slow_once", slow_once_payload(tmp_path, 1.0))
    worker = await workers.start(database_url, "--drain-timeout", "10", name="drainer")
    await wait_until_running(app, job_id, tmp_path, worker)

    worker.signal(signal.SIGTERM)
    assert await worker.exit_status(15) == 0, worker.describe()

    job = await job_of(app, job_id)
    assert (job.status, job.output, job.attempts) == (JobStatus.COMPLETED, "first run", 1)
    assert await events_of(app, job_id) == ["added", "processing", "completed"]
    assert len(read_lines(tmp_path / "runs.txt")) == 1
    assert "SIGTERM received" in worker.output()


async def test_sigterm_hands_back_a_job_that_outlasts_the_drain_timeout(
    database_url: str, app: flowq.App, workers: Workers, tmp_path: Path
) -> None:
    """A job outliving --drain-timeout after SIGTERM goes back to pending, uncounted, and reruns."""
    job_id = await app.add_job("acceptance.slow_once", slow_once_payload(tmp_path, 60))
    worker = await workers.start(database_url, "--drain-timeout", "0.5", name="impatient")
    await wait_until_running(app, job_id, tmp_path, worker)

    signalled = anyio.current_time()
    worker.signal(signal.SIGTERM)
    status = await worker.exit_status(10)
    took = anyio.current_time() - signalled
    assert status == 0, worker.describe()
    assert took < 5, f"exit took {took:.1f}s after SIGTERM with --drain-timeout 0.5"

    job = await job_of(app, job_id)
    assert (job.status, job.attempts, job.locked_by) == (JobStatus.PENDING, 0, None), job
    events = await app.get_job_events(job_id)
    assert [e.event_type.value for e in events] == ["added", "processing", "reclaimed"]
    released = events[-1].metadata
    assert released["reason"] == "released" and released["worker_id"] == "impatient", released

    finisher = await workers.run(database_url, "--until-idle", name="finisher", within=30)
    assert finisher.returncode == 0, finisher.describe()
    job = await job_of(app, job_id)
    assert (job.status, job.output, job.attempts) == (JobStatus.COMPLETED, "second run", 1)
    assert await events_of(app, job_id) == [
        "added", "processing", "reclaimed", "processing", "completed",
    ]  # fmt: skip
    assert len(read_lines(tmp_path / "runs.txt")) == 2


async def test_a_second_sigterm_hands_the_job_back_at_once(
    database_url: str, app: flowq.App, workers: Workers, tmp_path: Path
) -> None:
    """SIGTERM starts a 60 s drain; a second SIGTERM hands the running job back at
    once, says so, and exits 0; the job is pending, its attempt not counted."""
    job_id = await app.add_job("acceptance.slow_once", slow_once_payload(tmp_path, 60))
    worker = await workers.start(database_url, "--drain-timeout", "60", name="twice")
    await wait_until_running(app, job_id, tmp_path, worker)

    worker.signal(signal.SIGTERM)

    async def draining() -> bool:
        return "send it again" in worker.output()

    await eventually(draining, "the worker drains", state=describe(app), watch=[worker])
    signalled = anyio.current_time()
    worker.signal(signal.SIGTERM)
    assert await worker.exit_status(15) == 0, worker.describe()
    took = anyio.current_time() - signalled
    assert took < 5, f"exit took {took:.1f}s after the second SIGTERM"
    assert "received again; handing 1 running job(s) back now" in worker.output()
    job = await job_of(app, job_id)
    assert (job.status, job.attempts, job.locked_by) == (JobStatus.PENDING, 0, None), job
    assert await events_of(app, job_id) == ["added", "processing", "reclaimed"]


# -- 3. SIGKILL: stuck until reclaimed ------------------------------------------------------


async def test_a_killed_workers_job_is_reclaimed_and_finished_once(
    database_url: str, app: flowq.App, workers: Workers, tmp_path: Path
) -> None:
    """A SIGKILLed worker's job stays processing until reclaimed, then completes once elsewhere."""
    job_id = await app.add_job("acceptance.slow_once", slow_once_payload(tmp_path, 60))
    doomed = await workers.start(database_url, name="doomed")
    await wait_until_running(app, job_id, tmp_path, doomed)

    doomed.process.kill()
    assert await doomed.exit_status(10) == -signal.SIGKILL
    job = await job_of(app, job_id)
    assert (job.status, job.locked_by, job.attempts) == (JobStatus.PROCESSING, "doomed", 1), job

    assert await app.reclaim_stuck_jobs(0) == 1
    job = await job_of(app, job_id)
    assert (job.status, job.locked_by, job.attempts) == (JobStatus.PENDING, None, 1), job

    rescuer = await workers.run(database_url, "--until-idle", name="rescuer", within=30)
    assert rescuer.returncode == 0, rescuer.describe()
    job = await job_of(app, job_id)
    assert (job.status, job.output, job.attempts) == (JobStatus.COMPLETED, "second run", 2)
    events = await app.get_job_events(job_id)
    assert [e.event_type.value for e in events] == [
        "added", "processing", "reclaimed", "processing", "completed",
    ]  # fmt: skip
    claims = [e.metadata["worker_id"] for e in events if e.event_type.value == "processing"]
    assert claims == ["doomed", "rescuer"]
    assert events[2].metadata["worker_id"] == "doomed"
    runs = [line.split()[:2] for line in read_lines(tmp_path / "runs.txt")]
    assert runs == [[str(job_id), "1"], [str(job_id), "2"]]


async def test_a_running_worker_takes_back_a_killed_workers_job_by_itself(
    database_url: str, app: flowq.App, workers: Workers, tmp_path: Path
) -> None:
    """With a second worker running, a SIGKILLed worker's job is taken back within the
    lease timeout (here 2 s) and finishes there, with no reclaim call by anyone."""
    job_id = await app.add_job("acceptance.slow_once", slow_once_payload(tmp_path, 60))
    fast = ("--heartbeat-interval", "0.2", "--lease-timeout", "2")
    doomed = await workers.start(database_url, *fast, name="doomed")
    await wait_until_running(app, job_id, tmp_path, doomed)
    survivor = await workers.start(database_url, *fast, name="survivor")

    killed_at = anyio.current_time()
    doomed.process.kill()
    assert await doomed.exit_status(10) == -signal.SIGKILL

    async def finished() -> bool:
        return (await job_of(app, job_id)).status is JobStatus.COMPLETED

    await eventually(finished, "the survivor finishes the job", state=describe(app),
                     watch=[survivor], within=20)  # fmt: skip
    took = anyio.current_time() - killed_at
    assert took < 10, f"the job was finished {took:.1f}s after the kill (lease 2 s)"
    job = await job_of(app, job_id)
    assert (job.output, job.attempts) == ("second run", 2)
    events = await app.get_job_events(job_id)
    claims = [e.metadata["worker_id"] for e in events if e.event_type.value == "processing"]
    assert claims == ["doomed", "survivor"]
    assert "took back 1 job(s) whose worker stopped heartbeating" in survivor.output()
    survivor.signal(signal.SIGTERM)
    assert await survivor.exit_status(15) == 0, survivor.describe()


# -- 3b. maintenance in the worker's process and in its own ---------------------------------


async def test_a_supervising_worker_and_a_supervisor_keep_the_database_tidy(
    database_url: str, app: flowq.App, workers: Workers, tmp_path: Path
) -> None:
    """`flowq worker --supervise` deletes finished jobs past their retention; `flowq
    supervisor` does it on its own and stops on SIGTERM with status 0."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    done = await app.add_job("acceptance.slow_once", slow_once_payload(tmp_path / "a", 0))
    finisher = await workers.run(database_url, "--until-idle", name="finisher")
    assert finisher.returncode == 0, finisher.describe()
    assert (await job_of(app, done)).status is JobStatus.COMPLETED
    tidy = ("--interval", "0.2", "--keep-jobs-days", "0")
    supervising = await workers.start(database_url, "--supervise", *tidy, name="tidy")

    async def gone() -> bool:
        return await app.get_job(done) is None

    await eventually(gone, "the finished job is cleaned up", state=describe(app),
                     watch=[supervising])  # fmt: skip
    supervising.signal(signal.SIGTERM)
    assert await supervising.exit_status(15) == 0, supervising.describe()

    second = await app.add_job("acceptance.slow_once", slow_once_payload(tmp_path / "b", 0))
    finisher = await workers.run(database_url, "--until-idle", name="finisher-2")
    assert finisher.returncode == 0, finisher.describe()
    command = [sys.executable, "-m", "flowq.cli", "supervisor", "--database-url", database_url,
               *tidy]  # fmt: skip
    async with await anyio.open_process(command, env=child_environment()) as supervisor:

        async def second_gone() -> bool:
            return await app.get_job(second) is None

        await eventually(second_gone, "flowq supervisor cleans up", state=describe(app))
        supervisor.send_signal(signal.SIGTERM)
        with anyio.fail_after(15):
            assert await supervisor.wait() == 0


# -- 4. PostgreSQL: LISTEN/NOTIFY and lost connections --------------------------------------


async def terminate_other_backends(admin: asyncpg.Connection) -> int:
    """Kill every other session of the test database; return how many were killed."""
    rows = await admin.fetch(
        "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    return sum(1 for row in rows if row["killed"])


@pytest.mark.postgres
async def test_notify_wakes_an_idle_worker_at_once(
    postgres_url: str, workers: Workers, tmp_path: Path
) -> None:
    """On PostgreSQL an idle worker starts a new job in well under its 2 s poll interval."""
    admin = await asyncpg.connect(asyncpg_dsn(postgres_url))
    try:
        async with flowq.App(postgres_url, registry=workloads.registry) as app:
            worker = await workers.start(postgres_url, name="listener")

            await until_listening(admin, worker, state=describe(app))
            stamps = tmp_path / "stamps.txt"
            latencies = []
            for _ in range(3):
                # Each job is added right after the previous one completed, when the worker
                # has just gone back to sleep: only a NOTIFY can make it start within 2 s.
                added_at = time.time()
                job_id = await app.add_job("acceptance.stamp", {"file": str(stamps)})

                async def completed(job_id: int = job_id) -> bool:
                    return (await job_of(app, job_id)).status is JobStatus.COMPLETED

                await eventually(
                    completed, f"job {job_id} completed", state=describe(app), watch=[worker]
                )
                started = {int(i): float(t) for i, t in map(str.split, read_lines(stamps))}
                latencies.append(started[job_id] - added_at)
            assert max(latencies) < 1.0, f"handler start latencies (s): {latencies}"
            worker.signal(signal.SIGTERM)
            assert await worker.exit_status(15) == 0, worker.describe()
    finally:
        await admin.close()


@pytest.mark.postgres
async def test_worker_survives_its_connections_being_terminated(
    postgres_url: str, workers: Workers, tmp_path: Path
) -> None:
    """A worker whose database sessions keep being killed still completes all 200 jobs."""
    ran = tmp_path / "ran.txt"
    admin = await asyncpg.connect(asyncpg_dsn(postgres_url))

    # The test's own App lives only for one call, so that the terminations hit the
    # worker's sessions alone (the admin session is spared by pid <> pg_backend_pid()).
    async def jobs(**filters: Any) -> list[flowq.Job]:
        async with flowq.App(postgres_url, registry=workloads.registry) as app:
            return await app.get_jobs(limit=None, **filters)

    async def state() -> str:
        async with flowq.App(postgres_url, registry=workloads.registry) as app:
            listening = await listening_sessions(admin)
            return f"{await status_counts(app)}, {listening} LISTENing session(s)"

    try:
        worker = await workers.start(
            postgres_url, "--concurrency", "10", name="survivor",
            env={workloads.RECORD_LOG_ENV: str(ran)},
        )  # fmt: skip

        await until_listening(admin, worker, state=state)
        # Once while idle: its next claim meets a dead pooled connection.
        killed = [await terminate_other_backends(admin)]
        job_ids: list[int] = []
        for number in range(20):
            tag = f"batch-{number}"
            spec = {"workflow": "acceptance.record", "payload": {"sleep": 0.1}, "tags": [tag]}
            async with flowq.App(postgres_url, registry=workloads.registry) as app:
                job_ids += await app.add_jobs([spec] * 10)

            async def claimed(tag: str = tag) -> bool:
                return not await jobs(tags=[tag], status="pending")

            if number % 4 == 1:
                # While the handlers of this batch sleep: their completions, the pooled
                # connections and the LISTEN session all lose their connection.
                await eventually(claimed, f"{tag} claimed", state=state, watch=[worker])
                killed.append(await terminate_other_backends(admin))
            elif number % 4 == 3:
                # Right after the insert: the NOTIFY and the claim it triggers race the kill.
                killed.append(await terminate_other_backends(admin))
            await eventually(claimed, f"{tag} claimed", state=state, watch=[worker])

        async def all_completed() -> bool:
            return len(await jobs(status="completed")) == len(job_ids)

        await eventually(all_completed, "all 200 jobs completed", state=state, watch=[worker])
        await until_listening(admin, worker, state=state, what="the worker LISTENs again")
        assert len(killed) == 11 and all(n >= 1 for n in killed), killed
        assert set(map(int, read_lines(ran))) == set(job_ids)
        worker.signal(signal.SIGTERM)
        assert await worker.exit_status(15) == 0, worker.describe()
    finally:
        await admin.close()


# -- 5. nothing to run ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.acceptance.no_workflows", "registers no workflows"),
        ("tests.acceptance.workloads:empty", "registers no workflows"),
        ("tests.acceptance.no_such_module", "cannot import 'tests.acceptance.no_such_module'"),
        ("tests.acceptance.workloads:not_a_registry", "should name a flowq.App or flowq.Registry"),
    ],
)
async def test_a_worker_with_nothing_to_run_exits_1_with_one_line(
    target: str, message: str, sqlite_url: str, workers: Workers
) -> None:
    """`flowq worker` with no workflows or a bad MODULE exits 1 with one `flowq: error:` line."""
    worker = await workers.run(sqlite_url, target=target, name="nothing", within=30)
    output = worker.output()
    assert worker.returncode == 1, worker.describe()
    [line] = output.splitlines()
    assert line.startswith("flowq: error: ") and message in line, output
    assert "Traceback" not in output
