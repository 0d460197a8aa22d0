"""Real `flowq worker` processes for the acceptance tests, and waiting on conditions.

Nothing here sleeps and hopes: every wait polls a condition every 50 ms until it
holds or a deadline passes, then fails with the state it saw (job counts, worker
exit codes, the tail of each worker's log).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from signal import Signals

import anyio
import anyio.abc
import asyncpg
import pytest

import flowq
from flowq import JobStatus
from tests.pg_server import listening_sessions

ROOT = Path(__file__).resolve().parents[2]
"""The repository root: the workers' working directory, so ``tests.acceptance`` imports."""

TARGET = "tests.acceptance.workloads:registry"
"""What the workers run (see :mod:`tests.acceptance.workloads`)."""

DEADLINE = 60.0
"""The longest any condition is waited for."""

POLL = 0.05
"""How often conditions are checked."""

UNFINISHED = ("pending", "processing", "waiting")
"""The statuses of a job that has not reached its end."""


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without FLOWQ_DATABASE_URL, with the repo importable."""
    env = {k: v for k, v in os.environ.items() if k != "FLOWQ_DATABASE_URL"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass
class WorkerProcess:
    """One ``python -m flowq.cli worker ...`` process; stdout and stderr go to ``log_path``."""

    name: str
    process: anyio.abc.Process
    log_path: Path

    @property
    def returncode(self) -> int | None:
        """The exit status, or None while it runs."""
        return self.process.returncode

    def output(self) -> str:
        """Everything it printed so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def describe(self, lines: int = 40) -> str:
        """Its state and the end of its log, for failure messages."""
        state = "running" if self.returncode is None else f"exited with {self.returncode}"
        tail = "\n".join(self.output().splitlines()[-lines:])
        return f"--- worker {self.name} (pid {self.process.pid}, {state}); log tail:\n{tail}"

    def signal(self, signum: Signals) -> None:
        """Send ``signum`` if it still runs."""
        if self.returncode is None:
            self.process.send_signal(signum)

    async def exit_status(self, within: float = DEADLINE) -> int:
        """Wait (at most ``within`` seconds) for it to exit; return its status."""
        with anyio.move_on_after(within):
            return await self.process.wait()
        pytest.fail(f"worker {self.name} did not exit within {within:g}s\n{self.describe()}")


class Workers:
    """Starts worker processes and makes sure none outlives its test."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[WorkerProcess] = []

    async def start(
        self,
        database_url: str,
        *options: str,
        name: str,
        env: Mapping[str, str] | None = None,
        target: str = TARGET,
    ) -> WorkerProcess:
        """Start ``flowq worker TARGET --database-url URL --worker-id NAME *options``."""
        command = [
            sys.executable, "-m", "flowq.cli", "worker", target,
            "--database-url", database_url, "--worker-id", name, *options,
        ]  # fmt: skip
        log_path = self.log_dir / f"worker-{name}.log"
        with log_path.open("ab") as log:
            process = await anyio.open_process(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=child_environment(env),
            )
        worker = WorkerProcess(name, process, log_path)
        self.started.append(worker)
        return worker

    async def run(
        self,
        database_url: str,
        *options: str,
        name: str,
        env: Mapping[str, str] | None = None,
        target: str = TARGET,
        within: float = DEADLINE,
    ) -> WorkerProcess:
        """Run a worker to its end (e.g. with ``--until-idle``) and return it."""
        worker = await self.start(database_url, *options, name=name, env=env, target=target)
        await worker.exit_status(within)
        return worker

    def describe(self) -> str:
        """Every worker's state and log tail."""
        return "\n".join(worker.describe() for worker in self.started)

    async def kill_all(self) -> None:
        """SIGKILL whatever still runs and reap every process."""
        for worker in self.started:
            if worker.returncode is None:
                worker.process.kill()
        with anyio.CancelScope(shield=True), anyio.fail_after(30):
            for worker in self.started:
                await worker.process.aclose()


async def eventually(
    condition: Callable[[], Awaitable[bool]],
    what: str,
    *,
    state: Callable[[], Awaitable[str]],
    watch: Iterable[WorkerProcess] = (),
    within: float = DEADLINE,
) -> None:
    """Poll ``condition`` every 50 ms until it holds; fail after ``within`` seconds, or at
    once if a watched worker exits meanwhile, showing ``state()`` and the workers' logs."""
    watched = list(watch)
    deadline = anyio.current_time() + within
    while not await condition():
        died = [w for w in watched if w.returncode is not None]
        if died or anyio.current_time() > deadline:
            why = "a worker exited" if died else f"still false after {within:g}s"
            logs = "\n".join(w.describe() for w in watched)
            pytest.fail(f"waiting until {what}: {why}\nstate: {await state()}\n{logs}")
        await anyio.sleep(POLL)


async def until_listening(
    admin: asyncpg.Connection,
    worker: WorkerProcess,
    *,
    state: Callable[[], Awaitable[str]],
    what: str = "the worker LISTENs",
) -> None:
    """:func:`eventually` a session of ``admin``'s database LISTENs (``worker``'s wake-up
    line; PostgreSQL)."""

    async def listening() -> bool:
        return await listening_sessions(admin) > 0

    await eventually(listening, what, state=state, watch=[worker])


async def job_of(app: flowq.App, job_id: int) -> flowq.Job:
    """The job, which must exist."""
    job = await app.get_job(job_id)
    assert job is not None, f"job {job_id} vanished"
    return job


async def events_of(app: flowq.App, job_id: int) -> list[str]:
    """The event types of a job, oldest first."""
    return [event.event_type.value for event in await app.get_job_events(job_id)]


async def status_counts(app: flowq.App) -> dict[str, int]:
    """How many jobs are in each status (statuses with none left out)."""
    counts = {}
    for status in JobStatus:
        found = len(await app.get_jobs(status=status, limit=None))
        if found:
            counts[status.value] = found
    return counts


def read_lines(path: Path) -> list[str]:
    """The lines of ``path`` (none if it does not exist yet)."""
    return path.read_text().splitlines() if path.exists() else []
