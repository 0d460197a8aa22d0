"""flowq's tables as Python dicts: the storage under :class:`flowq_testing.InMemoryStore`.

Jobs are dicts shaped like ``flowq_jobs`` rows (column names as keys) so that the SQL
and in-memory stores share :func:`flowq.store.records.job_from_row`; recorded calls
and tokens likewise (``flowq_steps``, ``flowq_tokens``). The conditions here mirror
the SQL of :class:`flowq.store.sql.SqlStore`, and :meth:`MemoryTables._write` does
what the database triggers do.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from flowq import codec
from flowq.clock import Clock
from flowq.models import ErrorEntry, EventType, FailureReason, Job, JobEvent, JobStatus, TagQuery
from flowq.store import records
from flowq.store.base import ClaimedJob, GroupLimits, JobFilter, Lease
from flowq.store.wakeups import LocalWakeups

__all__ = ["EventRow", "MemoryTables", "matches", "utc", "utc_values"]

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
        return JobEvent(
            id=self.id,
            job_id=self.job_id,
            event_type=EventType(self.event_type),
            at=self.at,
            metadata=codec.decode(self.metadata) if self.metadata else {},
        )


class _Candidate(NamedTuple):
    """A runnable job as the group helpers of :mod:`flowq.store.records` see it."""

    id: int
    group_name: str | None


class MemoryTables:
    """The rows of jobs, dependency edges, events, recorded calls and tokens, with the
    low-level writes."""

    clock: Clock
    wakeups: LocalWakeups

    def _reset_tables(self) -> None:
        self._rows: dict[int, dict[str, Any]] = {}
        self._edges: dict[int, set[int]] = {}  # job id -> prerequisite ids
        self._events: dict[int, EventRow] = {}
        self._keys: dict[str, int] = {}  # idempotency key -> job id
        self._steps: dict[int, dict[int, dict[str, Any]]] = {}  # job id -> seq -> call row
        self._tokens: dict[str, dict[str, Any]] = {}  # token id -> token row
        self._last_job_id = 0  # like AUTOINCREMENT: ids are never reused
        self._last_event_id = 0

    def _wake(self, hint: str) -> None:
        self.wakeups.wake(hint)

    def _now(self) -> datetime:
        return utc(self.clock.now())

    def _job(self, row: Mapping[str, Any]) -> Job:
        return records.job_from_row(row, tuple(sorted(self._edges.get(row["id"], ()))))

    def _insert(self, row: dict[str, Any]) -> None:
        for column, value in row.items():
            if isinstance(value, datetime):
                row[column] = utc(value)
        row["tags"] = tuple(row["tags"])
        self._rows[row["id"]] = row
        self._last_job_id = max(self._last_job_id, row["id"])
        if row["idempotency_key"] is not None:
            self._keys[row["idempotency_key"]] = row["id"]

    def _set(self, job_id: int, now: datetime, **values: Any) -> None:
        self._write(self._rows[job_id], {**values, "updated_at": now})

    def _write(self, row: dict[str, Any], values: Mapping[str, Any]) -> None:
        """Update a stored job row: every change of a job goes through here.

        Like the ``flowq_jobs_wake_parent`` trigger: when a child job finishes (its
        ``finished_at`` goes from unset to set, whatever the path), a parent waiting
        for it (``wait_token_id`` ``child:<id>``) gets ``ready_at`` and ``updated_at``
        set to the child's ``finished_at``.
        """
        was_finished = row["finished_at"] is not None
        row.update(values)
        finished_at = row["finished_at"]
        if was_finished or finished_at is None or row["parent_job_id"] is None:
            return
        parent = self._rows.get(row["parent_job_id"])
        if (
            parent is not None
            and parent["status"] == JobStatus.WAITING
            and parent["wait_token_id"] == records.child_wait_id(row["id"])
        ):
            self._write(parent, {"ready_at": finished_at, "updated_at": finished_at})

    def _add_events(self, events: Events, now: datetime) -> None:
        for job_id, event_type, meta in events:
            self._last_event_id += 1
            text = codec.encode(dict(meta), what="event metadata") if meta else None
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
        """The rows still held by ``leases``, by job id (as SqlStore's ``_held``)."""
        return {lease.job_id: row for lease in leases if (row := self._leased(lease)) is not None}

    def _has_dependants(self, job_ids: Collection[int]) -> bool:
        """Whether any job depends on one of ``job_ids`` (whatever its status)."""
        return any(not edges.isdisjoint(job_ids) for edges in self._edges.values())

    def _claimable(
        self,
        now: datetime,
        limit: int,
        workflows: Collection[str] | None,
        groups: GroupLimits | None,
    ) -> list[dict[str, Any]]:
        """The rows a claim takes, in claim order, as SqlStore's ``claim_jobs`` picks them.

        Like the SQL: runnable jobs by priority then id, skipping (with ``groups``)
        those whose group is full, the first ``limit``.
        """
        rows = [
            row
            for row in self._rows.values()
            if self._runnable(row, now) and (workflows is None or row["workflow"] in workflows)
        ]
        rows.sort(key=lambda row: (-row["priority"], row["id"]))
        if groups is None:
            return rows[: max(limit, 0)]
        taken: dict[str, int] = {}
        for row in self._rows.values():
            if row["status"] == JobStatus.PROCESSING and row["group_name"] is not None:
                taken[row["group_name"]] = taken.get(row["group_name"], 0) + 1
        candidates = [_Candidate(row["id"], row["group_name"]) for row in rows]
        candidates = records.fit_groups(candidates, taken, groups)[: max(limit, 0)]
        return [self._rows[candidate.id] for candidate in candidates]

    def _claim_row(self, row: dict[str, Any], worker_id: str, now: datetime) -> ClaimedJob:
        """Lock a runnable row for ``worker_id`` (a new attempt unless it resumes)."""
        resumed = row["status"] == JobStatus.WAITING
        self._set(
            row["id"],
            now,
            status=JobStatus.PROCESSING.value,
            attempts=row["attempts"] + (0 if resumed else 1),
            started_at=row["started_at"] if resumed else now,
            lease_id=row["lease_id"] + 1,
            locked_by=worker_id,
            locked_at=now,
            ready_at=None,
            next_attempt_at=None,
            wait_until=None,
            wait_token_id=None,
            pending_reason=None,
        )
        job = records.job_from_row(row, ())  # as SqlStore: depends_on is not loaded
        lease = Lease(job.id, row["lease_id"], worker_id)
        return ClaimedJob(job, lease, resumed, row["payload"], bool(self._steps.get(job.id)))

    def _unclaimed_ids(self, workflows: Collection[str], now: datetime) -> list[int]:
        """Ids (ascending) of due pending jobs without a reason, outside ``workflows``."""
        return [
            job_id
            for job_id, row in sorted(self._rows.items())
            if row["status"] == JobStatus.PENDING
            and row["ready_at"] is not None
            and row["ready_at"] <= now
            and row["pending_reason"] is None
            and row["workflow"] not in workflows
        ]

    def _runnable(self, row: Mapping[str, Any], now: datetime) -> bool:
        if row["ready_at"] is None or row["ready_at"] > now:
            return False
        # A prerequisite deleted by cleanup no longer holds its dependants back.
        return all(
            self._rows[p]["status"] == JobStatus.COMPLETED
            for p in self._edges.get(row["id"], ())
            if p in self._rows
        )

    def _fail_row(
        self,
        row: dict[str, Any],
        error: ErrorEntry,
        reason: FailureReason,
        retry_at: datetime | None,
    ) -> None:
        now = self._now()
        values, will_retry = records.failure_values(
            row, error, reason, None if retry_at is None else utc(retry_at), now
        )
        dead_letter_id = None
        if not will_retry and row["dead_letter"] is not None:
            dead_letter_id = self._last_job_id + 1
            letter = records.dead_letter_job(row, error, reason, now)
            self._insert(records.new_job_row(letter, dead_letter_id, now))
            meta = {"dead_letter_for": row["id"]}
            self._add_events([(dead_letter_id, EventType.ADDED, meta)], now)
            values["dead_letter_job_id"] = dead_letter_id
        self._write(row, values)
        meta = records.failed_metadata(row, error, reason, values, dead_letter_id)
        self._add_events([(row["id"], EventType.FAILED, meta)], now)
        if not will_retry:
            self._cancel_dependants([row["id"]], "dependency_failed")

    def _cancel(self, ids: list[int], metadata: dict[str, Any]) -> None:
        if not ids:
            return
        now = self._now()
        for job_id in ids:
            self._write(self._rows[job_id], records.cancelled_values(now))
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
                and records.is_upcoming(self._rows[job_id])
            }
            if not causes:
                return
            now = self._now()
            for job_id in causes:
                self._write(self._rows[job_id], records.cancelled_values(now))
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
