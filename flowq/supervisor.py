"""The supervisor: the maintenance a deployment needs, every ``interval``.

It takes back jobs stuck in ``processing`` (``reclaim_stuck_jobs``), deletes finished
jobs and old events past their retention, and times out tokens whose deadline passed
(resuming their jobs with ``ok=False``). Each task runs on its own: one that fails is
logged and passed to ``on_error``, and the others still run. Several supervisors at
once are safe (every task is a set of short transactions that skip locked rows).
Running workers already take back dead workers' jobs and time out the tokens their
jobs wait on; the supervisor is for retention and for when no worker runs.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypedDict

import anyio

from flowq import validate
from flowq.clock import Clock
from flowq.durations import Duration, parse_duration
from flowq.errors import ValidationError
from flowq.store.base import Store

__all__ = ["ErrorCallback", "Supervisor", "SupervisorOptions", "SupervisorResult"]

log = logging.getLogger("flowq.supervisor")

ErrorCallback = Callable[[str, Exception], Awaitable[None] | None]
"""``on_error(task, exception)``: sync or async; ``task`` names the maintenance task."""


class SupervisorOptions(TypedDict, total=False):
    """Keyword options of :class:`Supervisor` and ``App.create_supervisor``."""

    interval: Duration
    stuck_jobs_timeout: Duration
    cleanup_jobs_days_to_keep: float | None
    cleanup_events_days_to_keep: float | None
    cleanup_batch_size: int
    reclaim_stuck_jobs: bool
    expire_timed_out_tokens: bool
    on_error: ErrorCallback | None


@dataclass(frozen=True, slots=True)
class SupervisorResult:
    """What one round of maintenance did (0 for a task that is off or failed)."""

    reclaimed_jobs: int = 0
    cleaned_up_jobs: int = 0
    cleaned_up_events: int = 0
    expired_tokens: int = 0


class Supervisor:
    """Runs maintenance every ``interval``. Made by ``App.create_supervisor``.

    Args:
        store: The store to maintain.
        clock: For the retention cut-offs (default: the store's).
        interval: Time between rounds of :meth:`run` (60 s).
        stuck_jobs_timeout: A job locked longer than this (and its own timeout) is
            taken back (10 min).
        cleanup_jobs_days_to_keep: Finished jobs are deleted this many days after they
            finished (30; None: never).
        cleanup_events_days_to_keep: Events are deleted after this many days (30;
            None: never).
        cleanup_batch_size: Rows deleted per transaction by the cleanups (1000):
            smaller batches hold locks for less time.
        reclaim_stuck_jobs: Whether to take back stuck jobs.
        expire_timed_out_tokens: Whether to time out tokens past their deadline.
        on_error: Called with the task's name and the exception when a task fails.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock | None = None,
        *,
        interval: Duration = 60,
        stuck_jobs_timeout: Duration = "10m",
        cleanup_jobs_days_to_keep: float | None = 30,
        cleanup_events_days_to_keep: float | None = 30,
        cleanup_batch_size: int = 1000,
        reclaim_stuck_jobs: bool = True,
        expire_timed_out_tokens: bool = True,
        on_error: ErrorCallback | None = None,
    ) -> None:
        self.store = store
        self.clock = clock or store.clock
        self.interval = parse_duration(interval, name="interval")
        self.stuck_jobs_timeout = parse_duration(stuck_jobs_timeout, name="stuck_jobs_timeout")
        self.cleanup_jobs_after = _days(cleanup_jobs_days_to_keep, "cleanup_jobs_days_to_keep")
        self.cleanup_events_after = _days(
            cleanup_events_days_to_keep, "cleanup_events_days_to_keep"
        )
        self.cleanup_batch_size = validate.integer(
            cleanup_batch_size, "cleanup_batch_size", minimum=1
        )
        self.reclaim_stuck_jobs = bool(reclaim_stuck_jobs)
        self.expire_timed_out_tokens = bool(expire_timed_out_tokens)
        self.on_error = on_error

    def __repr__(self) -> str:
        return f"<Supervisor of {self.store!r} every {self.interval}>"

    async def run_once(self) -> SupervisorResult:
        """One round of every task that is on; return what they did."""
        await self.store.open()
        counts: dict[str, int] = {}
        if self.reclaim_stuck_jobs:
            counts["reclaimed_jobs"] = await self._task(
                "reclaim_stuck_jobs", self.store.reclaim_stuck_jobs(self.stuck_jobs_timeout)
            )
        if self.cleanup_jobs_after is not None:
            counts["cleaned_up_jobs"] = await self._task(
                "cleanup_old_jobs",
                self.store.cleanup_old_jobs(
                    self.cleanup_jobs_after, batch_size=self.cleanup_batch_size
                ),
            )
        if self.cleanup_events_after is not None:
            counts["cleaned_up_events"] = await self._task(
                "cleanup_old_job_events",
                self.store.cleanup_old_job_events(
                    self.cleanup_events_after, batch_size=self.cleanup_batch_size
                ),
            )
        if self.expire_timed_out_tokens:
            counts["expired_tokens"] = await self._task(
                "expire_timed_out_tokens", self.store.expire_timed_out_tokens()
            )
        result = SupervisorResult(**counts)
        if any(counts.values()):
            log.info("flowq: supervisor round: %s", _summary(result))
        return result

    async def run(self) -> None:
        """Run a round every ``interval`` (real time) until cancelled."""
        while True:
            await self.run_once()
            await anyio.sleep(self.interval.total_seconds())

    async def _task(self, name: str, work: Awaitable[int]) -> int:
        try:
            return await work
        except Exception as exc:
            log.warning("flowq: supervisor task %s failed: %s", name, exc, exc_info=exc)
            if self.on_error is not None:
                try:
                    outcome: Any = self.on_error(name, exc)
                    if inspect.isawaitable(outcome):
                        await outcome
                except Exception as callback_error:
                    log.warning("flowq: the supervisor's on_error failed: %s", callback_error)
            return 0


def _days(value: float | None, name: str) -> timedelta | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 36500:
        raise ValidationError(
            f"{name} must be a number of days from 0 to 36500, or None; got {value!r}"
        )
    return timedelta(days=value)


def _summary(result: SupervisorResult) -> str:
    return ", ".join(
        f"{name.replace('_', ' ')} {count}"
        for name, count in (
            ("reclaimed_jobs", result.reclaimed_jobs),
            ("cleaned_up_jobs", result.cleaned_up_jobs),
            ("cleaned_up_events", result.cleaned_up_events),
            ("expired_tokens", result.expired_tokens),
        )
        if count
    )
