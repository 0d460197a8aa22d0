"""flowq's tables as Python dicts: the storage under :class:`flowq_testing.InMemoryStore`.

Jobs are dicts shaped like ``flowq_jobs`` rows (column names as keys) so that the SQL
and in-memory stores share the row mapping of :mod:`flowq.store.rows`; recorded
calls and tokens likewise (``flowq_steps``, ``flowq_tokens``). Every change of a job
row is a transition of the state machine (:mod:`flowq.store.transitions`) applied by
:meth:`MemoryTables._apply`, and :meth:`MemoryTables._write` does what the database
triggers do. The conditions here mirror the SQL of :class:`flowq.store.sql.SqlStore`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flowq import replay
from flowq.clock import Clock
from flowq.models import EventType, Job, JobEvent, JobStatus, TagQuery
from flowq.store import rows, transitions
from flowq.store.base import JobFilter, Lease
from flowq.store.wakeups import LocalWakeups
from flowq.store.workers import WorkerRecord

__all__ = [
    "EventRow",
    "Events",
    "MemoryTables",
    "matches",
    "tags_match",
    "utc",
    "utc_values",
]

_RUN_AT_OPS: dict[str, Callable[[datetime, datetime], bool]] = {
    "eq": operator.eq,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
Events = Sequence[tuple[int, EventType, Mapping[str, Any] | None]]


@dataclass(frozen=True, slots=True)
class EventRow:
    """A row of ``flowq_job_events``; ``metadata`` is JSON text or ``None``."""

    id: int
    job_id: int
    event_type: str
    at: datetime
    metadata: str | None

    def to_event(self) -> JobEvent:
        """A fresh :class:`JobEvent` (its metadata dict is decoded anew every time)."""
        return rows.event_from_row(
            {
                "id": self.id,
                "job_id": self.job_id,
                "event_type": self.event_type,
                "at": self.at,
                "metadata": self.metadata,
            }
        )


class MemoryTables:
    """The rows of jobs, dependency edges, events, recorded calls, tokens and cron
    schedules, with the low-level writes."""

    clock: Clock
    wakeups: LocalWakeups

    def _reset_tables(self) -> None:
        self._rows: dict[int, dict[str, Any]] = {}
        self._edges: dict[int, set[int]] = {}  # job id -> prerequisite ids
        self._events: dict[int, EventRow] = {}
        self._keys: dict[str, int] = {}  # idempotency key -> job id
        self._steps: dict[int, dict[int, dict[str, Any]]] = {}  # job id -> seq -> call row
        self._tokens: dict[str, dict[str, Any]] = {}  # token id -> token row
        self._schedules: dict[int, dict[str, Any]] = {}  # schedule id -> schedule row
        self._workers: dict[str, WorkerRecord] = {}  # worker id -> its row
        self._last_schedule_id = 0
        self._last_job_id = 0  # like AUTOINCREMENT: ids are never reused
        self._last_event_id = 0

    def _wake(self, hint: str) -> None:
        self.wakeups.wake(hint)

    def _now(self) -> datetime:
        return utc(self.clock.now())

    def _job(self, row: Mapping[str, Any]) -> Job:
        return rows.job_from_row(row, tuple(sorted(self._edges.get(row["id"], ()))))

    def _insert(self, row: dict[str, Any]) -> None:
        for column, value in row.items():
            if isinstance(value, datetime):
                row[column] = utc(value)
        row["tags"] = tuple(row["tags"])
        self._rows[row["id"]] = row
        self._last_job_id = max(self._last_job_id, row["id"])
        if row["idempotency_key"] is not None:
            self._keys[row["idempotency_key"]] = row["id"]

    def _apply(
        self,
        transition: transitions.Transition,
        row: dict[str, Any],
        now: datetime,
        **params: Any,
    ) -> None:
        """Move a stored job row through ``transition`` (as the SQL store's UPDATE).

        Raises:
            RuntimeError: The row's status is not one ``transition`` starts from (a
                bug of this store: the SQL store's conditions never select it).
        """
        if row["status"] not in transition.sources:
            raise RuntimeError(
                f"InMemoryStore bug: {transition.name} of job {row['id']} "
                f"in status {row['status']!r}"
            )
        self._write(row, transition.values(row, now, **params))

    def _write(self, row: dict[str, Any], values: Mapping[str, Any]) -> None:
        """Update a stored job row: every change of a job goes through here.

        Like the ``flowq_jobs_wake_parent`` trigger: when a child job finishes (its
        ``finished_at`` goes from unset to set, whatever the path), a parent waiting
        for it (``flowq.replay.child_wait_id``) is woken (``transitions.WAKE``) at the
        child's ``finished_at``. Like ``flowq_jobs_unblock_dependants``: when a job
        completes, its blocked dependants count it (``transitions.UNBLOCK``).
        """
        was_finished = row["finished_at"] is not None
        was_completed = row["status"] == JobStatus.COMPLETED
        row.update(values)
        if not was_completed and row["status"] == JobStatus.COMPLETED and row["has_dependants"]:
            self._unblock_dependants(row["id"])
        finished_at = row["finished_at"]
        if was_finished or finished_at is None or row["parent_job_id"] is None:
            return
        parent = self._rows.get(row["parent_job_id"])
        if (
            parent is not None
            and parent["status"] == JobStatus.WAITING
            and parent["wait_token_id"] == replay.child_wait_id(row["id"])
        ):
            self._apply(transitions.WAKE, parent, finished_at)

    def _unblock_dependants(self, job_id: int) -> None:
        """Count a completed prerequisite on the blocked jobs depending on it."""
        for dependant_id, prerequisites in sorted(self._edges.items()):
            dependant = self._rows.get(dependant_id)
            if (
                job_id in prerequisites
                and dependant is not None
                and dependant["status"] == JobStatus.PENDING
                and dependant["blocked_by"] > 0
            ):
                self._apply(transitions.UNBLOCK, dependant, self._now())

    def _add_events(self, events: Events, now: datetime) -> None:
        for job_id, event_type, meta in events:
            self._last_event_id += 1
            text = rows.event_metadata(meta)
            self._events[self._last_event_id] = EventRow(
                self._last_event_id, job_id, event_type.value, now, text
            )

    def _select(self, where: JobFilter, statuses: Iterable[str] | None = None) -> list[int]:
        """Ids (ascending) of the jobs matching ``where`` whose status is in ``statuses``."""
        wanted = None if statuses is None else {str(status) for status in statuses}
        return [
            job_id
            for job_id, row in sorted(self._rows.items())
            if (wanted is None or row["status"] in wanted) and matches(row, where)
        ]

    def _unfinished_ids_with_tags(self, tags: tuple[str, ...]) -> list[int]:
        return [
            job_id
            for job_id in self._select(JobFilter(tags=TagQuery(tags, "all")))
            if self._rows[job_id]["finished_at"] is None
        ]

    def _leased(self, lease: Lease) -> dict[str, Any] | None:
        """The row if ``lease`` still holds it (same lease id, still processing)."""
        row = self._rows.get(lease.job_id)
        if row is None or row["lease_id"] != lease.lease_id:
            return None
        return row if row["status"] == JobStatus.PROCESSING else None

    def _held(self, leases: Iterable[Lease]) -> dict[int, dict[str, Any]]:
        """The rows still held by ``leases``, by job id (as the SQL store's ``held``)."""
        return {lease.job_id: row for lease in leases if (row := self._leased(lease)) is not None}

    def _has_dependants(self, job_ids: Collection[int]) -> bool:
        """Whether any job depends on one of ``job_ids`` (whatever its status)."""
        return any(not edges.isdisjoint(job_ids) for edges in self._edges.values())

    def _forget(self, job_ids: Collection[int]) -> None:
        """Delete jobs with their edges, events, recorded calls and tokens (their ids
        are never reused)."""
        for job_id in job_ids:
            row = self._rows.pop(job_id)
            self._edges.pop(job_id, None)
            self._steps.pop(job_id, None)
            if row["idempotency_key"] is not None:
                del self._keys[row["idempotency_key"]]
        self._events = {key: e for key, e in self._events.items() if e.job_id not in job_ids}
        self._tokens = {
            token_id: row for token_id, row in self._tokens.items() if row["job_id"] not in job_ids
        }

    def _cancel(self, ids: list[int], metadata: dict[str, Any]) -> None:
        if not ids:
            return
        now = self._now()
        for job_id in ids:
            self._apply(transitions.CANCEL, self._rows[job_id], now)
        self._add_events([(job_id, EventType.CANCELLED, metadata) for job_id in ids], now)
        self._cancel_dependants(ids, "dependency_cancelled")

    def _cancel_dependants(self, prerequisites: Iterable[int], reason: str) -> None:
        """Cancel, transitively, upcoming jobs that depend on ``prerequisites``.

        Direct dependants' events carry ``reason`` (``dependency_cancelled`` or
        ``dependency_failed``); jobs further down get ``dependency_cancelled``.
        """
        causes_of = set(prerequisites)
        while causes_of:
            causes = {
                job_id: min(found)
                for job_id, edges in self._edges.items()
                if (found := edges & causes_of)
                and job_id in self._rows
                and transitions.is_upcoming(self._rows[job_id])
            }
            if not causes:
                return
            now = self._now()
            for job_id in causes:
                self._apply(transitions.CANCEL, self._rows[job_id], now)
            self._add_events(
                [
                    (job_id, EventType.CANCELLED, {"reason": reason, "dependency": cause})
                    for job_id, cause in sorted(causes.items())
                ],
                now,
            )
            causes_of = set(causes)
            reason = "dependency_cancelled"


def utc(value: datetime) -> datetime:
    """A datetime as the database returns it: converted to UTC (``UtcDateTime``)."""
    return value.astimezone(UTC)


def tags_match(tags: tuple[str, ...], query: TagQuery) -> bool:
    """Whether a job's tags satisfy ``query`` (``none`` matches untagged jobs)."""
    if query.mode == "all":
        return all(value in tags for value in query.values)
    if query.mode == "any":
        return any(value in tags for value in query.values)
    if query.mode == "none":
        return not any(value in tags for value in query.values)
    return set(tags) == set(query.values)


def matches(row: Mapping[str, Any], where: JobFilter) -> bool:
    """Whether a ``flowq_jobs`` row satisfies every field of ``where``."""
    if where.statuses and row["status"] not in where.statuses:
        return False
    if where.will_retry is not None and where.will_retry != (
        row["status"] == JobStatus.FAILED and row["next_attempt_at"] is not None
    ):
        return False
    if where.workflow is not None and row["workflow"] != where.workflow:
        return False
    if where.tags is not None and not tags_match(row["tags"], where.tags):
        return False
    if where.priority is not None and row["priority"] != where.priority:
        return False
    return all(_RUN_AT_OPS[op](row["run_at"], utc(value)) for op, value in where.run_at)


def utc_values(values: dict[str, Any]) -> dict[str, Any]:
    """Column values with datetimes in UTC, as a database would store them."""
    return {c: utc(v) if isinstance(v, datetime) else v for c, v in values.items()}
