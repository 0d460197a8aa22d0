"""``flowq.App``: the user-facing API over a store."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

import anyio
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from flowq import codec, history, validate
from flowq import options as job_options
from flowq.clock import Clock
from flowq.cron_jobs import CronJobs
from flowq.durations import (
    Duration,
    parse_age,
    parse_duration,
    parse_optional_duration,
    to_utc,
)
from flowq.errors import JobFailedError, TokenError, ValidationError
from flowq.hooks import HookCallback, Hooks
from flowq.models import (
    Job,
    JobEvent,
    JobStatus,
    StepRecord,
    TagQuery,
    Token,
    TokenStatus,
    new_token_id,
)
from flowq.options import JobOptions, JobSpec
from flowq.registry import Registry, Workflow, default_registry
from flowq.store import rows
from flowq.store.base import JobFilter, NewJob, NewToken, RunAtOp, Store
from flowq.store.report import HealthReport
from flowq.store.sql import SqlStore
from flowq.store.workers import WorkerRecord
from flowq.supervisor import Supervisor, SupervisorOptions
from flowq.system_clock import SystemClock
from flowq.worker import Worker, WorkerOptions
from flowq.workflow_ref import WorkflowRef

__all__ = ["DEFAULT_DATABASE_URL", "App"]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///flowq.db"
"""Where jobs go when neither ``database_url`` nor ``FLOWQ_DATABASE_URL`` is set."""

PayloadT = TypeVar("PayloadT")
_RUN_AT_OPS: tuple[RunAtOp, ...] = ("gt", "gte", "lt", "lte")


class App(CronJobs):
    """The entry point: add, inspect and manage jobs and cron schedules (an async
    context manager; the cron verbs are :class:`flowq.cron_jobs.CronJobs`'s).

    Args:
        database_url: A PostgreSQL or SQLite URL. ``None`` reads
            ``FLOWQ_DATABASE_URL``, else uses ``sqlite+aiosqlite:///flowq.db``.
        registry: Where workflows are looked up (``flowq.default_registry``). Read
            lazily, so workflows may be registered after the App is created.
        clock: The time source (the system clock); ``flowq_testing.FakeClock`` in tests.
            With ``store``, the App and the store share one clock: ``clock`` replaces
            the store's default wall clock; a store with a clock of its own keeps it
            (and another ``clock`` is refused with ``ValidationError``).
        store: A ready store instead of a URL (e.g. ``flowq_testing.InMemoryStore()``).
        auto_migrate: Apply missing migrations when the App opens, instead of raising
            ``SchemaError``.
        schema: PostgreSQL only: the schema holding flowq's tables (created by
            ``migrate``). ``None`` reads ``FLOWQ_SCHEMA`` when the URL comes from
            ``FLOWQ_DATABASE_URL`` too, else uses the connection's ``search_path``
            (usually ``public``). Raises ``ValidationError`` for a name PostgreSQL
            cannot use and on SQLite.

    Example:
        >>> async def main() -> None:
        ...     async with flowq.App("sqlite+aiosqlite:///app.db") as app:
        ...         job_id = await app.start(send_welcome, {"user_id": 42})
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        registry: Registry | None = None,
        clock: Clock | None = None,
        store: Store | None = None,
        auto_migrate: bool = False,
        schema: str | None = None,
    ) -> None:
        if store is not None and database_url is not None:
            raise ValidationError("pass database_url or store, not both")
        if store is not None and schema is not None:
            raise ValidationError("pass schema with database_url, not with store")
        if store is None:
            self.clock: Clock = clock or SystemClock()
            url = database_url or os.environ.get("FLOWQ_DATABASE_URL") or DEFAULT_DATABASE_URL
            if schema is None and database_url is None:
                schema = os.environ.get("FLOWQ_SCHEMA") or None
            self.store: Store = SqlStore(url, clock=self.clock, schema=schema)
        else:
            self.clock = _shared_clock(store, clock)
            self.store = store
        self.registry = registry if registry is not None else default_registry
        self.auto_migrate = auto_migrate
        self.hooks = Hooks()
        self._opened = False

    def __repr__(self) -> str:
        return f"<flowq.App on {self.store!r}>"

    # -- life cycle -----------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect and check the schema (``async with app`` does this).

        Raises:
            DatabaseUnavailableError: The database cannot be reached.
            SchemaError: flowq's tables are missing: run ``flowq migrate``.
        """
        if self._opened:
            return
        try:
            if self.auto_migrate:
                await self.store.migrate()
            await self.store.open()
        except BaseException:
            await self.store.close()
            raise
        self._opened = True

    async def close(self) -> None:
        """Release the store's connections."""
        self._opened = False
        await self.store.close()

    async def migrate(self) -> list[str]:
        """Apply the migrations this database lacks; return their names."""
        return await self.store.migrate()

    async def _ready(self, connection: AsyncConnection | AsyncSession | None = None) -> Store:
        """The store, opened on first use. With the caller's ``connection`` the App does
        not open a transaction of its own (on SQLite it would wait for the caller's
        write lock); a missing schema then shows up as ``SchemaError`` from the insert."""
        if not self._opened and connection is None:
            await self.open()
        return self.store

    # -- workers and hooks ------------------------------------------------------------

    def create_worker(self, **options: Unpack[WorkerOptions]) -> Worker:
        """A :class:`flowq.Worker` for this App; ``options`` are the Worker's
        (``concurrency``, ``batch_size``, ``poll_interval``, ``workflows``,
        ``worker_id``, ``group_concurrency``, ``heartbeat_interval``,
        ``drain_timeout``, ``notify``)."""
        validate.option_names(options, WorkerOptions.__annotations__, "worker")
        worker_id = options.get("worker_id")
        if isinstance(worker_id, str):
            validate.text(worker_id, "worker_id")
        return Worker(
            self.store,
            self.registry,
            self.clock,
            self.hooks,
            migrate=self.auto_migrate,
            **options,
        )

    def create_supervisor(self, **options: Unpack[SupervisorOptions]) -> Supervisor:
        """A :class:`flowq.Supervisor` of this App's store and clock; ``options`` are
        the Supervisor's (``interval``, ``stuck_jobs_timeout``,
        ``cleanup_jobs_days_to_keep``, ``cleanup_events_days_to_keep``,
        ``reclaim_stuck_jobs``, ``expire_timed_out_tokens``, ``on_error``)."""
        validate.option_names(options, SupervisorOptions.__annotations__, "supervisor")
        return Supervisor(self.store, self.clock, **options)

    def on(self, event: str, callback: HookCallback) -> None:
        """Call ``callback(flowq.HookEvent)`` (sync or async) when this process's
        workers see ``event``: ``job:started``, ``job:completed``, ``job:failed``
        (with ``error`` and ``will_retry``), ``job:waiting`` or ``job:cancelled``."""
        self.hooks.on(event, callback)

    async def result(self, job_id: int, *, timeout: Duration | None = None) -> Any:
        """Wait until the job completes and return its output.

        Raises:
            JobFailedError: The job failed permanently or was cancelled.
            TimeoutError: ``timeout`` passed first.
            ValidationError: No such job.
        """
        store = await self._ready()
        limit = None if timeout is None else parse_duration(timeout, name="timeout")
        delay = 0.005
        with anyio.fail_after(None if limit is None else limit.total_seconds()):
            while True:
                job = await store.get_job(_job_id(job_id))
                if job is None:
                    raise ValidationError(f"there is no job {job_id}")
                if job.status is JobStatus.COMPLETED:
                    return job.output
                if job.status is JobStatus.CANCELLED or (
                    job.status is JobStatus.FAILED and job.next_attempt_at is None
                ):
                    raise JobFailedError(job)
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.25)

    # -- tokens and history -----------------------------------------------------------

    async def create_token(
        self, *, timeout: Duration | None = None, tags: Sequence[str] = ()
    ) -> Token:
        """Create a token outside any job (e.g. to hand to a job in its payload).

        Args:
            timeout: After this the token can no longer be completed.
            tags: Labels for finding it later.
        """
        limit = parse_optional_duration(timeout, name="token timeout")
        now = self.clock.now()
        new = NewToken(
            id=new_token_id(),
            tags=validate.tags(tags),
            timeout_at=None if limit is None else now + limit,
        )
        token = await (await self._ready()).create_token(new, None)
        if token is None:  # only a lease can go stale, and there is none here
            raise TokenError(f"token {new.id!r} could not be created")
        return token

    async def complete_token(self, token_id: str, output: Any = None) -> Token:
        """Complete a waiting token with ``output``; the job waiting on it resumes.

        Raises:
            TokenError: The token is unknown, already completed, or timed out. Nothing
                changes then; in particular no job is resumed.
            SerializationError: ``output`` cannot be encoded as JSON.
        """
        text = codec.encode_input(output, what=f"output of token {_token_id(token_id)!r}")
        return await (await self._ready()).complete_token(token_id, text)

    async def get_token(self, token_id: str) -> Token | None:
        """The token (its status, output and deadline), or None."""
        return await (await self._ready()).get_token(_token_id(token_id))

    async def get_tokens(
        self,
        *,
        job_id: int | None = None,
        status: TokenStatus | str | None = None,
        limit: int = 100,
    ) -> list[Token]:
        """Tokens, newest first: those of one job (``job_id``), of one status
        (``"waiting"``, ``"completed"``, ``"timed_out"``), at most ``limit``.

        Raises:
            ValidationError: An unknown status, or a bad id or limit.
        """
        try:
            wanted = None if status is None else TokenStatus(status)
        except ValueError:
            names = ", ".join(s.value for s in TokenStatus)
            raise ValidationError(f"a token's status is one of {names}, got {status!r}") from None
        store = await self._ready()
        return await store.get_tokens(
            job_id=None if job_id is None else validate.integer(job_id, "job_id"),
            status=wanted,
            limit=validate.integer(limit, "limit", minimum=1),
        )

    async def expire_timed_out_tokens(self) -> int:
        """Mark waiting tokens past their deadline as timed out and resume the jobs
        waiting on them (workers also do this on their own when the deadline comes);
        return how many tokens timed out."""
        return await (await self._ready()).expire_timed_out_tokens()

    async def export_job(self, job_id: int) -> str:
        """The job's history as JSON text: the job, its recorded calls, the tokens it
        created and its events (format in :mod:`flowq.history`), for
        ``flowq_testing.replay`` or a bug report.

        Raises:
            ValidationError: There is no such job.
        """
        return await history.export_job(await self._ready(), _job_id(job_id))

    async def get_job_steps(self, job_id: int) -> list[StepRecord]:
        """The job's recorded durable calls (steps, waits, tokens...) in call order."""
        calls = await (await self._ready()).load_history(_job_id(job_id))
        return [rows.step_record(call) for call in calls]

    # -- adding jobs ----------------------------------------------------------------

    async def start(
        self,
        workflow: Workflow[PayloadT, Any] | WorkflowRef[PayloadT, Any],
        payload: PayloadT,
        /,
        *,
        connection: AsyncConnection | AsyncSession | None = None,
        **options: Unpack[JobOptions],
    ) -> int:
        """Add a job for ``workflow`` and return its id.

        Args:
            workflow: A ``@flowq.workflow`` object, or a :func:`flowq.workflow_ref`
                handle on a workflow implemented elsewhere (its declared defaults are
                then applied by the worker that runs the job, unless registered here).
            payload: Checked against the handler's (or the reference's) payload type.
            connection: An open SQLAlchemy ``AsyncConnection`` or ``AsyncSession``: the
                job and its ``added`` event join that transaction and commit or roll
                back with it.
            **options: See :class:`flowq.JobOptions` (``run_at``, ``delay``,
                ``priority``, ``idempotency_key``, ``depends_on``...).

        Raises:
            PayloadError: The payload does not fit the workflow; nothing is written.
            ValidationError: An option is malformed.
            DependencyError: ``depends_on`` names an unknown, dead or cyclic job.
        """
        if not isinstance(workflow, Workflow | WorkflowRef):
            raise ValidationError(
                f"start() takes a @flowq.workflow object or a flowq.workflow_ref(...), got "
                f"{workflow!r}; use add_job() to add a job by workflow name"
            )
        new_job = self._new_job(self._declaration(workflow), payload, options)
        [job_id] = await (await self._ready(connection)).add_jobs([new_job], connection=connection)
        return job_id

    async def add_job(
        self,
        workflow_name: str,
        payload: Any = None,
        /,
        *,
        connection: AsyncConnection | AsyncSession | None = None,
        **options: Unpack[JobOptions],
    ) -> int:
        """Add a job by workflow name and return its id (options as in :meth:`start`).

        The workflow need not be registered in this process (a web service, a script,
        another team's producer): its payload is then only encoded, and the options
        it declares (timeout, retry policy, max attempts, dead letter,
        ``force_kill_on_timeout``) are applied by the worker that runs the job,
        except those given here. Priority and tags are fixed here.

        Raises:
            ValidationError: ``workflow_name`` is not a name, or an option is malformed.
            PayloadError: The workflow is registered here and the payload does not fit.
        """
        new_job = self._new_job(self._declaration(workflow_name), payload, options)
        [job_id] = await (await self._ready(connection)).add_jobs([new_job], connection=connection)
        return job_id

    async def add_jobs(
        self,
        jobs: Sequence[JobSpec | Mapping[str, Any]],
        *,
        connection: AsyncConnection | AsyncSession | None = None,
    ) -> list[int]:
        """Add many jobs in one transaction; return their ids in input order.

        Each item is a :class:`flowq.JobSpec` or a dict ``{"workflow": ...,
        "payload": ..., **options}``. Inside the batch, ``flowq.batch_dep_ref(i)``
        in ``depends_on`` names the i-th job. If any item is invalid, nothing is
        written.
        """
        if isinstance(jobs, str | bytes) or not isinstance(jobs, Sequence):
            raise ValidationError(f"add_jobs takes a list of JobSpec or dicts, got {jobs!r}")
        items = []
        for item in jobs:
            if not isinstance(item, JobSpec | Mapping):
                raise ValidationError(
                    f"add_jobs takes a list of JobSpec or dicts, got an item {item!r}"
                )
            spec = item if isinstance(item, JobSpec) else job_options.spec_from_dict(dict(item))
            items.append((self._declaration(spec.workflow), spec.payload, spec.options))
        new_jobs = job_options.build_new_jobs(items, self.clock.now())
        known = {definition.name for definition, _, _ in items if isinstance(definition, Workflow)}
        for letter in {
            job.dead_letter
            for job in new_jobs
            if job.dead_letter is not None and job.workflow in known
        }:
            self.registry.require(letter)  # where the workflow is known, a typo check
        return await (await self._ready(connection)).add_jobs(new_jobs, connection=connection)

    def _declaration(
        self, workflow: Workflow[Any, Any] | WorkflowRef[Any, Any] | str
    ) -> Workflow[Any, Any] | WorkflowRef[Any, Any]:
        """The registered workflow for ``workflow`` (an object or a name), or a
        reference when this process does not know it."""
        if isinstance(workflow, Workflow):
            return workflow
        ref = workflow if isinstance(workflow, WorkflowRef) else WorkflowRef(workflow)
        found = self.registry.get(ref.name)
        return ref if found is None else found

    def _new_job(
        self,
        definition: Workflow[Any, Any] | WorkflowRef[Any, Any],
        payload: Any,
        options: JobOptions,
    ) -> NewJob:
        new_job = job_options.build_new_job(definition, payload, options, self.clock.now())
        if new_job.dead_letter is not None and isinstance(definition, Workflow):
            # Where the workflow is known, so should its dead letter be (a typo check).
            self.registry.require(new_job.dead_letter)
        return new_job

    # -- reading --------------------------------------------------------------------

    async def get_job(self, job_id: int) -> Job | None:
        """The job with this id, or ``None``."""
        return await (await self._ready()).get_job(_job_id(job_id))

    async def get_job_by_key(self, idempotency_key: str) -> Job | None:
        """The job added with this ``idempotency_key``, or ``None``."""
        key = validate.text(idempotency_key, "idempotency_key")
        return await (await self._ready()).get_job_by_key(key)

    async def get_workers(self, *, seen_within: Duration = 60) -> list[WorkerRecord]:
        """Workers that recorded themselves within ``seen_within`` (seconds or a
        duration string): running workers do when they start and every heartbeat,
        and remove themselves when they stop. The most recently seen first."""
        window = parse_duration(seen_within, name="seen_within")
        return await (await self._ready()).get_workers(window)

    async def get_jobs(
        self,
        *,
        status: JobStatus | str | Sequence[JobStatus | str] | None = None,
        will_retry: bool | None = None,
        workflow: Workflow[Any, Any] | str | None = None,
        tags: TagQuery | Sequence[str] | None = None,
        priority: int | None = None,
        run_at: datetime | Mapping[str, datetime] | None = None,
        limit: int | None = 100,
        cursor: int | None = None,
    ) -> list[Job]:
        """Jobs matching every given filter, newest first (id descending).

        Args:
            status: One status or several.
            will_retry: True: failed jobs with a next attempt scheduled; False: every
                other job (with ``status="failed"``: the failed jobs that gave up).
                See :attr:`Job.will_retry`.
            workflow: A workflow object or name.
            tags: A :class:`TagQuery`; a plain list means ``TagQuery(list, "all")``.
            priority: Exact priority.
            run_at: A datetime (equal) or ``{"gt"|"gte"|"lt"|"lte": datetime}``.
            limit: Page size (``None`` for no limit).
            cursor: The id of the last job of the previous page.
        """
        if limit is not None:
            validate.integer(limit, "limit", minimum=1)
        if will_retry is not None:
            validate.flag(will_retry, "will_retry")
        where = _filter(
            workflow, tags, priority, run_at, statuses=_statuses(status), will_retry=will_retry
        )
        return await (await self._ready()).get_jobs(
            where, limit=limit, cursor=None if cursor is None else _job_id(cursor)
        )

    async def get_job_events(self, job_id: int) -> list[JobEvent]:
        """The job's event log, oldest first (``[]`` for an unknown job)."""
        return await (await self._ready()).get_job_events(_job_id(job_id))

    # -- changing -------------------------------------------------------------------

    async def cancel_job(self, job_id: int) -> bool:
        """Cancel a job that has not finished (and, transitively, its dependants).

        Upcoming jobs (pending, waiting, or failed and due to retry) are cancelled
        at once. A running job is cancelled too: its worker sets ``ctx.cancelled``
        and cancels the handler at its next ``await``; nothing the old run writes
        afterwards is kept.

        Returns:
            True if the job was cancelled; False if it does not exist or has
            finished (then nothing is recorded).
        """
        return await (await self._ready()).cancel_job(_job_id(job_id))

    async def retry_job(self, job_id: int) -> bool:
        """Make a failed job runnable now, granting one more attempt if none remain.

        Returns:
            True if the job was failed and is now pending; False otherwise.
        """
        return await (await self._ready()).retry_job(_job_id(job_id))

    async def edit_job(self, job_id: int, **changes: Any) -> bool:
        """Change a pending job: ``payload``, ``priority``, ``max_attempts``, ``run_at``
        or ``delay``, ``tags``, ``timeout``, ``retry`` / ``retry_*``, ``group``,
        ``dead_letter``, ``force_kill_on_timeout``.

        Returns:
            True if the job was pending and a value changed (an ``edited`` event
            lists the fields); False otherwise.
        """
        job_options.check_change_names(changes)
        store = await self._ready()
        job = await store.get_job(_job_id(job_id))
        if job is None:
            return False
        definition = self.registry.get(job.workflow)
        if "payload" in changes and definition is None:
            raise ValidationError(
                f"cannot check the new payload of job {job.id}: workflow {job.workflow!r} is "
                "not registered in this process"
            )
        checked = job_options.check_changes(
            definition, changes, self.clock.now(), current_retry=job.retry
        )
        if checked.get("dead_letter") is not None:
            self.registry.require(checked["dead_letter"])
        return await store.edit_job(job.id, checked)

    async def edit_all_pending_jobs(
        self,
        updates: Mapping[str, Any],
        *,
        workflow: Workflow[Any, Any] | str | None = None,
        tags: TagQuery | Sequence[str] | None = None,
        priority: int | None = None,
        run_at: datetime | Mapping[str, datetime] | None = None,
    ) -> int:
        """Apply ``updates`` (as in :meth:`edit_job`) to every pending job matching
        the filters (as in :meth:`get_jobs`); return how many were edited."""
        where = _filter(workflow, tags, priority, run_at)
        definition = None
        if where.workflow is not None and "payload" in updates:
            definition = self.registry.require(where.workflow)
        checked = job_options.check_changes(
            definition, dict(updates), self.clock.now(), current_retry=None
        )
        if checked.get("dead_letter") is not None:
            self.registry.require(checked["dead_letter"])
        return await (await self._ready()).edit_jobs(where, checked)

    async def cancel_all_upcoming_jobs(
        self,
        *,
        workflow: Workflow[Any, Any] | str | None = None,
        tags: TagQuery | Sequence[str] | None = None,
        priority: int | None = None,
        run_at: datetime | Mapping[str, datetime] | None = None,
    ) -> int:
        """Cancel every upcoming job (pending, waiting, or failed and due to retry)
        matching the filters; return the count. Running jobs are left alone.

        Dependants of those jobs are cancelled too (not counted).
        """
        where = _filter(workflow, tags, priority, run_at)
        return await (await self._ready()).cancel_jobs(where)

    # -- maintenance ----------------------------------------------------------------

    async def reclaim_stuck_jobs(self, minutes: float = 10) -> int:
        """Take back jobs stuck in ``processing`` (their worker died).

        A job is stuck when its lock is older than ``minutes`` and older than its own
        timeout. It returns to ``pending`` if attempts remain, else fails for good
        (reason ``timeout``). Returns how many were taken back (each gets a
        ``reclaimed`` event).
        """
        return await (await self._ready()).reclaim_stuck_jobs(_age(minutes, "minutes", 60))

    async def health_report(self, *, stuck_minutes: float = 10) -> HealthReport:
        """The store's state at a glance (what ``flowq doctor`` prints): schema
        version, jobs per status, retrying jobs, the oldest due job's wait, jobs locked
        longer than ``stuck_minutes``, waiting tokens, schedules, table sizes."""
        stuck = parse_duration(stuck_minutes * 60, name="stuck_minutes")
        return await (await self._ready()).health_report(stuck)

    async def cleanup_old_jobs(self, days: float = 30, *, batch_size: int = 1000) -> int:
        """Delete completed, permanently failed and cancelled jobs that finished more
        than ``days`` ago (``0`` = all of them), with their events and step results.
        Deletes ``batch_size`` jobs per transaction; returns the number deleted."""
        size = validate.integer(batch_size, "batch_size", minimum=1)
        store = await self._ready()
        return await store.cleanup_old_jobs(_age(days, "days", 86400), batch_size=size)

    async def cleanup_old_job_events(self, days: float = 30, *, batch_size: int = 1000) -> int:
        """Delete job events older than ``days`` (``0`` = all), ``batch_size`` per
        transaction; return the count."""
        size = validate.integer(batch_size, "batch_size", minimum=1)
        store = await self._ready()
        return await store.cleanup_old_job_events(_age(days, "days", 86400), batch_size=size)


def _shared_clock(store: Store, clock: Clock | None) -> Clock:
    """The one clock of an App and the store it was given: the store's, or ``clock``
    when the store runs on the default wall clock (which keeps no state to lose).

    Raises:
        ValidationError: Both have clocks of their own, and they differ.
    """
    if clock is None or clock is store.clock:
        return store.clock
    if type(store.clock) is not SystemClock:
        raise ValidationError(
            f"the store already has a clock of its own ({store.clock!r}), not {clock!r}: "
            "pass one clock, to the store or to the App"
        )
    store.clock = clock
    return clock


def _job_id(value: Any) -> int:
    return validate.integer(value, "a job id")


def _age(value: Any, unit: str, seconds: int) -> timedelta:
    return parse_age(value, unit=unit, unit_seconds=seconds)


def _token_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"token ids are non-empty strings, got {value!r}")
    return validate.text(value, "a token id")


def _statuses(value: Any) -> tuple[JobStatus, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    try:
        return tuple(JobStatus(item) for item in items)
    except ValueError:
        valid = ", ".join(status.value for status in JobStatus)
        raise ValidationError(f"unknown status in {value!r}; valid: {valid}") from None


def _filter(
    workflow: Workflow[Any, Any] | str | None,
    tags: TagQuery | Sequence[str] | None,
    priority: int | None,
    run_at: datetime | Mapping[str, datetime] | None,
    *,
    statuses: tuple[JobStatus, ...] = (),
    will_retry: bool | None = None,
) -> JobFilter:
    name = workflow.name if isinstance(workflow, Workflow) else workflow
    if name is not None and not isinstance(name, str):
        raise ValidationError(f"workflow must be a workflow object or name, got {workflow!r}")
    if name is not None:
        validate.text(name, "workflow")
    if tags is not None and not isinstance(tags, TagQuery):
        tags = TagQuery(tags, "all")
    if priority is not None:
        validate.priority(priority)
    comparisons: list[tuple[RunAtOp, datetime]] = []
    if isinstance(run_at, datetime):
        comparisons.append(("eq", to_utc(run_at, name="run_at")))
    elif run_at is not None:
        if not isinstance(run_at, Mapping) or not run_at:
            raise ValidationError(
                f"run_at must be a datetime or a dict like {{'gt': dt}}, got {run_at!r}"
            )
        for op, value in run_at.items():
            if op not in _RUN_AT_OPS:
                raise ValidationError(f"run_at filter keys are gt, gte, lt, lte; got {op!r}")
            comparisons.append((op, to_utc(value, name=f"run_at[{op!r}]")))
    return JobFilter(
        statuses=statuses,
        will_retry=will_retry,
        workflow=name,
        tags=tags,
        priority=priority,
        run_at=tuple(comparisons),
    )
