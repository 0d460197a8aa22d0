"""``StoreContract``: the behaviour suite every :class:`flowq.store.base.Store` passes.

Subclass it in a test module and provide a ``store`` fixture that yields a fresh,
migrated, empty store using the ``clock`` fixture::

    class TestMyStore(StoreContract):
        @pytest.fixture
        async def store(self, clock):
            store = MyStore(clock=clock)
            await store.migrate()
            yield store
            await store.close()

Stores that can join a caller's transaction also override :meth:`connection` to open
a SQLAlchemy ``AsyncConnection`` on the same database. The tests drive the store
through :class:`flowq.App`, so they check what a user sees.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

import flowq
from flowq import EventType, JobStatus, TagQuery
from flowq.models import ErrorEntry, FailureReason
from flowq.store.base import ClaimedJob, Store
from flowq_testing.clock import FakeClock

__all__ = ["StoreContract", "contract_registry"]

contract_registry = flowq.Registry()
"""The workflows the contract adds jobs for."""


class Signup(msgspec.Struct):
    """A typed payload."""

    user_id: int
    email: str


@contract_registry.workflow(name="contract.echo")
async def echo(payload: dict[str, Any]) -> Any:
    """Returns its payload."""
    return payload


@contract_registry.workflow(name="contract.signup", max_attempts=5, tags=["users"])
async def signup(payload: Signup) -> None:
    """Takes a typed payload."""


@contract_registry.workflow(name="contract.dead_letters")
async def dead_letters(payload: dict[str, Any]) -> None:
    """Receives jobs that failed permanently."""


def _types(events: list[flowq.JobEvent]) -> list[str]:
    return [event.event_type.value for event in events]


class StoreContract:
    """Behaviours every store must show, checked through :class:`flowq.App`."""

    pytestmark = [pytest.mark.anyio]

    @pytest.fixture
    def anyio_backend(self) -> str:
        """flowq runs on asyncio."""
        return "asyncio"

    @pytest.fixture
    def clock(self) -> FakeClock:
        """The fake clock every test starts with."""
        return FakeClock(datetime(2030, 1, 1, 12, tzinfo=UTC))

    @pytest.fixture
    async def app(self, store: Store, clock: FakeClock) -> AsyncIterator[flowq.App]:
        """An App on the store under test."""
        app = flowq.App(store=store, clock=clock, registry=contract_registry)
        async with app:
            yield app

    def connection(self, store: Store) -> AbstractAsyncContextManager[Any] | None:
        """An ``AsyncConnection`` on the store's database, or None if it has none."""
        return None

    async def claim(
        self, app: flowq.App, limit: int = 10, workflows: Any = None
    ) -> list[ClaimedJob]:
        """Claim like a worker would."""
        return await app.store.claim_jobs("contract-worker", limit, workflows)

    async def fail(
        self, app: flowq.App, claimed: ClaimedJob, *, retry_in: timedelta | None
    ) -> bool:
        """Fail a claimed job, retrying after ``retry_in`` (None: no retry)."""
        now = app.clock.now()
        error = ErrorEntry(
            message="boom", type="RuntimeError", at=now, attempt=claimed.job.attempts
        )
        return await app.store.fail_job(
            claimed.lease,
            error,
            reason=FailureReason.HANDLER_ERROR,
            retry_at=None if retry_in is None else now + retry_in,
        )

    async def run_to_completion(self, app: flowq.App, job_id: int) -> None:
        """Claim ``job_id`` and complete it."""
        [claimed] = [c for c in await self.claim(app, 100) if c.job.id == job_id]
        assert await app.store.complete_job(claimed.lease, '"done"')

    # -- adding -----------------------------------------------------------------------

    async def test_new_job_is_pending_with_defaults(self, app: flowq.App, clock: FakeClock) -> None:
        """A started job is pending, runnable now, with one ``added`` event."""
        job_id = await app.start(echo, {"a": 1})
        job = await app.get_job(job_id)
        assert job is not None
        assert job.status is JobStatus.PENDING
        assert (job.workflow, job.payload, job.attempts, job.max_attempts) == (
            "contract.echo",
            {"a": 1},
            0,
            3,
        )
        assert job.run_at == clock.now() and job.created_at == clock.now()
        assert job.run_at.tzinfo is not None and job.run_at.utcoffset() == timedelta(0)
        assert _types(await app.get_job_events(job_id)) == ["added"]

    async def test_workflow_defaults_apply_and_options_override(self, app: flowq.App) -> None:
        """Workflow defaults (max_attempts, tags) apply; job options override or extend them."""
        first = await app.start(signup, Signup(1, "a@example.com"))
        second = await app.start(signup, Signup(2, "b@example.com"), max_attempts=2, tags=["vip"])
        a, b = await app.get_job(first), await app.get_job(second)
        assert a is not None and b is not None
        assert (a.max_attempts, a.tags) == (5, ("users",))
        assert (b.max_attempts, b.tags) == (2, ("users", "vip"))
        assert a.payload == {"user_id": 1, "email": "a@example.com"}

    async def test_every_option_round_trips(self, app: flowq.App, clock: FakeClock) -> None:
        """Every job option is stored and read back as given."""
        prerequisite = await app.start(echo, {})
        job_id = await app.start(
            echo,
            {"x": 1},
            delay="90s",
            priority=7,
            max_attempts=4,
            retry_delay="2s",
            retry_backoff=False,
            retry_delay_max="1m",
            timeout="10m",
            force_kill_on_timeout=True,
            tags=["t1", "t2"],
            idempotency_key="key-1",
            group="tenant-1",
            depends_on=[prerequisite],
            dead_letter=dead_letters,
        )
        job = await app.get_job(job_id)
        assert job is not None
        assert job.run_at == clock.now() + timedelta(seconds=90)
        assert (job.priority, job.max_attempts, job.tags) == (7, 4, ("t1", "t2"))
        assert job.retry == flowq.RetryPolicy(2, backoff=False, max_delay=60)
        assert job.timeout == timedelta(minutes=10) and job.force_kill_on_timeout
        assert (job.idempotency_key, job.group, job.depends_on) == (
            "key-1",
            "tenant-1",
            (prerequisite,),
        )
        assert job.dead_letter == "contract.dead_letters"

    async def test_same_idempotency_key_returns_first_id(self, app: flowq.App) -> None:
        """A second add with the same idempotency key returns the first id and keeps its payload."""
        first = await app.start(echo, {"n": 1}, idempotency_key="welcome-42")
        second = await app.start(echo, {"n": 2}, idempotency_key="welcome-42")
        third = await app.add_job("contract.echo", {"n": 3}, idempotency_key="welcome-42")
        assert first == second == third
        job = await app.get_job(first)
        assert job is not None and job.payload == {"n": 1}
        assert _types(await app.get_job_events(first)) == ["added"]
        assert len(await app.get_jobs()) == 1

    async def test_idempotency_keys_inside_one_batch(self, app: flowq.App) -> None:
        """Inside add_jobs, a repeated key (new or existing) maps to one job."""
        existing = await app.start(echo, {"n": 0}, idempotency_key="old")
        ids = await app.add_jobs(
            [
                flowq.JobSpec(echo, {"n": 1}, idempotency_key="new"),
                flowq.JobSpec(echo, {"n": 2}, idempotency_key="old"),
                {"workflow": "contract.echo", "payload": {"n": 3}, "idempotency_key": "new"},
                flowq.JobSpec(echo, {"n": 4}),
            ]
        )
        assert ids[1] == existing and ids[0] == ids[2] and len(set(ids)) == 3
        assert len(await app.get_jobs()) == 3

    async def test_add_jobs_returns_ids_in_input_order(self, app: flowq.App) -> None:
        """add_jobs returns one id per input, in order, each job carrying its own payload."""
        ids = await app.add_jobs([flowq.JobSpec(echo, {"n": n}) for n in range(25)])
        assert len(ids) == 25 and ids == sorted(ids)
        for n, job_id in enumerate(ids):
            job = await app.get_job(job_id)
            assert job is not None and job.payload == {"n": n}

    async def test_payload_that_does_not_fit_writes_nothing(self, app: flowq.App) -> None:
        """A payload that does not match the annotation raises PayloadError; nothing is stored."""
        with pytest.raises(flowq.PayloadError, match=r"contract\.signup"):
            await app.start(signup, {"user_id": "not-a-number", "email": "x"})
        with pytest.raises(flowq.PayloadError):
            await app.add_jobs(
                [flowq.JobSpec(echo, {"ok": 1}), flowq.JobSpec(signup, {"user_id": 1})]
            )
        assert await app.get_jobs() == []

    async def test_unencodable_or_oversized_payload_writes_nothing(self, app: flowq.App) -> None:
        """A payload that cannot be JSON-encoded, or is too large, raises SerializationError."""
        with pytest.raises(flowq.SerializationError, match="payload"):
            await app.start(echo, {"handle": object()})
        with pytest.raises(flowq.SerializationError, match="limit"):
            await app.start(echo, {"blob": "x" * (17 * 1024 * 1024)})
        assert await app.get_jobs() == []

    async def test_unknown_workflow_name_is_rejected(self, app: flowq.App) -> None:
        """add_job for a name nobody registered raises UnknownWorkflowError naming it."""
        with pytest.raises(flowq.UnknownWorkflowError, match="no.such.workflow"):
            await app.add_job("no.such.workflow", {})
        assert await app.get_jobs() == []

    async def test_bad_options_raise_validation_errors(self, app: flowq.App) -> None:
        """Malformed options raise ValidationError naming the option; nothing is stored."""
        cases: list[dict[str, Any]] = [
            {"priority": "high"},
            {"max_attempts": 0},
            {"delay": "soon"},
            {"delay": -5},
            {"timeout": "0s"},
            {"run_at": datetime(2030, 1, 1), "delay": 5},
            {"tags": "single-string"},
            {"idempotency_key": ""},
            {"retry": "fast"},
        ]
        for options in cases:
            with pytest.raises(flowq.ValidationError):
                await app.start(echo, {}, **options)
        with pytest.raises(flowq.ValidationError, match="priorty"):
            await app.add_jobs([{"workflow": "contract.echo", "payload": {}, "priorty": 1}])
        assert await app.get_jobs() == []

    async def test_run_at_round_trips_as_the_same_instant(self, app: flowq.App) -> None:
        """run_at given in any time zone comes back as the same instant in UTC."""
        tokyo = timezone(timedelta(hours=9))
        when = datetime(2031, 3, 4, 5, 6, 7, 123456, tzinfo=tokyo)
        job = await app.get_job(await app.start(echo, {}, run_at=when))
        assert job is not None
        assert job.run_at == when and job.run_at.tzinfo == UTC
        assert job.run_at.isoformat() == "2031-03-03T20:06:07.123456+00:00"

    async def test_naive_datetimes_are_rejected(self, app: flowq.App) -> None:
        """A naive run_at (or run_at filter) raises ValidationError saying it is naive."""
        with pytest.raises(flowq.ValidationError, match="naive"):
            await app.start(echo, {}, run_at=datetime(2031, 1, 1))
        with pytest.raises(flowq.ValidationError, match="naive"):
            await app.get_jobs(run_at={"gt": datetime(2031, 1, 1)})
        assert await app.get_jobs() == []

    # -- reading ----------------------------------------------------------------------

    async def test_unknown_ids_read_as_nothing(self, app: flowq.App) -> None:
        """get_job of an unknown id is None and its events are []."""
        assert await app.get_job(999) is None
        assert await app.get_job_events(999) == []

    async def test_get_jobs_filters_and_orders_newest_first(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """get_jobs filters by status, workflow, priority and run_at, newest first."""
        a = await app.start(echo, {}, priority=1)
        b = await app.start(echo, {}, priority=5, delay=3600)
        c = await app.start(signup, Signup(1, "x@example.com"), priority=5)
        await app.cancel_job(a)
        ids = lambda jobs: [job.id for job in jobs]  # noqa: E731
        assert ids(await app.get_jobs()) == [c, b, a]
        assert ids(await app.get_jobs(status="cancelled")) == [a]
        assert ids(await app.get_jobs(status=["pending", JobStatus.CANCELLED])) == [c, b, a]
        assert ids(await app.get_jobs(workflow=echo)) == [b, a]
        assert ids(await app.get_jobs(workflow="contract.signup")) == [c]
        assert ids(await app.get_jobs(priority=5)) == [c, b]
        later = clock.now() + timedelta(minutes=30)
        assert ids(await app.get_jobs(run_at={"gt": later})) == [b]
        assert ids(await app.get_jobs(run_at={"lte": later})) == [c, a]
        assert ids(await app.get_jobs(run_at={"gte": clock.now(), "lt": later})) == [c, a]
        assert ids(await app.get_jobs(run_at=clock.now() + timedelta(hours=1))) == [b]
        assert ids(await app.get_jobs(workflow=echo, priority=5)) == [b]

    async def test_get_jobs_pages_with_a_cursor(self, app: flowq.App) -> None:
        """limit + cursor (the last id of the previous page) walk every job once."""
        ids = await app.add_jobs([flowq.JobSpec(echo, {"n": n}) for n in range(7)])
        seen: list[int] = []
        cursor = None
        while True:
            page = await app.get_jobs(limit=3, cursor=cursor)
            if not page:
                break
            seen += [job.id for job in page]
            cursor = page[-1].id
        assert seen == sorted(ids, reverse=True)

    async def test_tag_queries(self, app: flowq.App) -> None:
        """Tag modes: all = superset, any = intersection, exact = equal, none = disjoint."""
        ab = await app.start(echo, {}, tags=["a", "b"])
        a = await app.start(echo, {}, tags=["a"])
        bc = await app.start(echo, {}, tags=["b", "c"])
        untagged = await app.start(echo, {})

        async def matching(values: list[str], mode: Any) -> set[int]:
            return {job.id for job in await app.get_jobs(tags=TagQuery(values, mode))}

        assert await matching(["a"], "all") == {ab, a}
        assert await matching(["a", "b"], "all") == {ab}
        assert await matching(["a", "c"], "any") == {ab, a, bc}
        assert await matching(["c"], "any") == {bc}
        assert await matching(["a", "b"], "exact") == {ab}
        assert await matching(["b", "a"], "exact") == {ab}
        assert await matching(["a"], "exact") == {a}
        assert await matching(["a"], "none") == {bc, untagged}
        assert await matching(["a", "c"], "none") == {untagged}
        assert await matching([], "exact") == {untagged}
        assert {job.id for job in await app.get_jobs(tags=["b"])} == {ab, bc}

    # -- cancelling -------------------------------------------------------------------

    async def test_cancel_pending_job(self, app: flowq.App, clock: FakeClock) -> None:
        """Cancelling a pending job records it and it is never claimed."""
        job_id = await app.start(echo, {})
        assert await app.cancel_job(job_id) is True
        job = await app.get_job(job_id)
        assert job is not None and job.status is JobStatus.CANCELLED
        assert job.last_cancelled_at == clock.now()
        assert _types(await app.get_job_events(job_id)) == ["added", "cancelled"]
        assert await self.claim(app) == []

    async def test_cancel_waiting_job_clears_wait(self, app: flowq.App, clock: FakeClock) -> None:
        """Cancelling a waiting job clears its wait fields; the timer never wakes it."""
        job_id = await app.start(echo, {})
        [claimed] = await self.claim(app)
        wake = clock.now() + timedelta(hours=1)
        assert await app.store.suspend_job(claimed.lease, wait_until=wake, token_id=None)
        waiting = await app.get_job(job_id)
        assert (
            waiting is not None
            and waiting.status is JobStatus.WAITING
            and waiting.wait_until == wake
        )
        assert await app.cancel_job(job_id) is True
        job = await app.get_job(job_id)
        assert job is not None and job.status is JobStatus.CANCELLED
        assert job.wait_until is None and job.wait_token_id is None
        clock.advance(timedelta(hours=2))
        assert await self.claim(app) == []
        assert _types(await app.get_job_events(job_id))[-1] == "cancelled"

    async def test_cancel_finished_job_changes_nothing(self, app: flowq.App) -> None:
        """cancel_job on a completed, failed or unknown job returns False and records nothing."""
        done = await app.start(echo, {})
        failed = await app.start(echo, {}, max_attempts=1)
        first, second = await self.claim(app)
        assert await app.store.complete_job(first.lease, None)
        assert await self.fail(app, second, retry_in=None)
        for job_id in (done, failed):
            before = await app.get_job_events(job_id)
            assert await app.cancel_job(job_id) is False
            assert await app.get_job_events(job_id) == before
        assert await app.cancel_job(12345) is False
        done_job = await app.get_job(done)
        assert done_job is not None and done_job.status is JobStatus.COMPLETED

    async def test_cancel_processing_job_is_refused(self, app: flowq.App) -> None:
        """cancel_job on a running job returns False (the worker owns it)."""
        job_id = await app.start(echo, {})
        await self.claim(app)
        assert await app.cancel_job(job_id) is False
        job = await app.get_job(job_id)
        assert job is not None and job.status is JobStatus.PROCESSING

    async def test_cancel_cascades_to_dependants(self, app: flowq.App) -> None:
        """Cancelling a prerequisite cancels its dependants transitively, naming the cause."""
        ids = await app.add_jobs(
            [
                flowq.JobSpec(echo, {"step": 0}),
                flowq.JobSpec(echo, {"step": 1}, depends_on=[flowq.batch_dep_ref(0)]),
                flowq.JobSpec(echo, {"step": 2}, depends_on=[flowq.batch_dep_ref(1)]),
                flowq.JobSpec(echo, {"unrelated": True}),
            ]
        )
        assert await app.cancel_job(ids[0]) is True
        statuses = [job.status for job in [await app.get_job(i) for i in ids] if job]
        assert statuses == [JobStatus.CANCELLED] * 3 + [JobStatus.PENDING]
        last = (await app.get_job_events(ids[2]))[-1]
        assert last.event_type is EventType.CANCELLED and last.metadata["dependency"] == ids[1]
        assert last.metadata["reason"] == "dependency_cancelled"

    async def test_cancel_all_upcoming_jobs(self, app: flowq.App) -> None:
        """cancel_all_upcoming_jobs cancels matching pending and waiting jobs and counts them."""
        running = await app.start(echo, {}, tags=["batch"])
        await self.claim(app)
        waiting = await app.start(echo, {}, tags=["batch"])
        [claimed] = await self.claim(app)
        await app.store.suspend_job(claimed.lease, wait_until=None, token_id="token-1")
        pending = await app.start(echo, {}, tags=["batch"])
        other = await app.start(echo, {}, tags=["other"])
        assert await app.cancel_all_upcoming_jobs(tags=["batch"]) == 2
        status = {i: (await app.get_job(i)).status for i in (running, waiting, pending, other)}  # type: ignore[union-attr]
        assert status == {
            running: JobStatus.PROCESSING,
            waiting: JobStatus.CANCELLED,
            pending: JobStatus.CANCELLED,
            other: JobStatus.PENDING,
        }
        for job_id in (waiting, pending):
            assert _types(await app.get_job_events(job_id))[-1] == "cancelled"
        assert await app.cancel_all_upcoming_jobs(workflow=echo) == 1

    # -- retrying and editing ---------------------------------------------------------

    async def test_retry_job_grants_an_attempt_when_exhausted(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """retry_job makes a permanently failed job runnable even with no attempts left."""
        job_id = await app.start(echo, {}, max_attempts=1)
        [claimed] = await self.claim(app)
        await self.fail(app, claimed, retry_in=timedelta(seconds=1))
        failed = await app.get_job(job_id)
        assert (
            failed is not None
            and failed.status is JobStatus.FAILED
            and failed.next_attempt_at is None
        )
        clock.advance(timedelta(hours=1))
        assert await self.claim(app) == []
        assert await app.retry_job(job_id) is True
        job = await app.get_job(job_id)
        assert job is not None and job.status is JobStatus.PENDING
        assert job.max_attempts >= 2 and job.last_retried_at == clock.now()
        [again] = await self.claim(app)
        assert again.job.id == job_id and again.job.attempts == 2
        assert _types(await app.get_job_events(job_id)) == [
            "added", "processing", "failed", "retried", "processing",
        ]  # fmt: skip

    async def test_retry_job_on_other_states_is_a_no_op(self, app: flowq.App) -> None:
        """retry_job on a completed, pending or unknown job returns False and records nothing."""
        done = await app.start(echo, {})
        await self.run_to_completion(app, done)
        pending = await app.start(echo, {})
        for job_id in (done, pending):
            before = await app.get_job_events(job_id)
            assert await app.retry_job(job_id) is False
            assert await app.get_job_events(job_id) == before
        assert await app.retry_job(4242) is False

    async def test_edit_pending_job(self, app: flowq.App, clock: FakeClock) -> None:
        """edit_job changes a pending job and records which fields changed."""
        job_id = await app.start(echo, {"v": 1}, priority=1)
        when = clock.now() + timedelta(days=1)
        assert (
            await app.edit_job(job_id, priority=9, payload={"v": 2}, run_at=when, tags=["x"])
            is True
        )
        job = await app.get_job(job_id)
        assert job is not None
        assert (job.priority, job.payload, job.run_at, job.tags) == (9, {"v": 2}, when, ("x",))
        edited = (await app.get_job_events(job_id))[-1]
        assert edited.event_type is EventType.EDITED
        assert edited.metadata["fields"] == ["payload", "priority", "run_at", "tags"]
        assert await self.claim(app) == []  # run_at moved to tomorrow

    async def test_edit_that_changes_nothing_says_so(self, app: flowq.App) -> None:
        """edit_job with equal values, on a non-pending job or an unknown id returns False."""
        job_id = await app.start(echo, {}, priority=3, group="g")
        assert await app.edit_job(job_id, priority=3, group="g") is False
        await self.claim(app)
        assert await app.edit_job(job_id, priority=4) is False
        assert await app.edit_job(777, priority=4) is False
        assert _types(await app.get_job_events(job_id)) == ["added", "processing"]

    async def test_edit_checks_values(self, app: flowq.App) -> None:
        """edit_job validates payloads against the workflow and rejects unknown fields."""
        job_id = await app.start(signup, Signup(1, "a@example.com"))
        with pytest.raises(flowq.PayloadError):
            await app.edit_job(job_id, payload={"user_id": "x"})
        with pytest.raises(flowq.ValidationError, match="status"):
            await app.edit_job(job_id, status="completed")
        job = await app.get_job(job_id)
        assert job is not None and job.payload == {"user_id": 1, "email": "a@example.com"}

    async def test_edit_all_pending_jobs(self, app: flowq.App) -> None:
        """edit_all_pending_jobs edits matching pending jobs only and returns the count."""
        a = await app.start(echo, {}, tags=["bulk"])
        b = await app.start(echo, {}, tags=["bulk"])
        running = await app.start(echo, {}, tags=["bulk"], priority=100)
        [claimed] = await self.claim(app, 1)
        assert claimed.job.id == running
        await app.start(echo, {}, tags=["other"])
        assert await app.edit_all_pending_jobs({"priority": 42}, tags=["bulk"]) == 2
        for job_id in (a, b):
            job = await app.get_job(job_id)
            assert job is not None and job.priority == 42
            assert (await app.get_job_events(job_id))[-1].metadata["fields"] == ["priority"]
        job = await app.get_job(running)
        assert job is not None and job.priority == 100

    # -- dependencies -----------------------------------------------------------------

    async def test_depends_on_rejects_bad_references(self, app: flowq.App) -> None:
        """Unknown ids, self-references and cycles raise DependencyError; nothing is written."""
        with pytest.raises(flowq.DependencyError, match="999"):
            await app.start(echo, {}, depends_on=[999])
        with pytest.raises(flowq.DependencyError, match="itself"):
            await app.add_jobs([flowq.JobSpec(echo, {}, depends_on=[flowq.batch_dep_ref(0)])])
        with pytest.raises(flowq.DependencyError, match="cycle"):
            await app.add_jobs(
                [
                    flowq.JobSpec(echo, {}, depends_on=[flowq.batch_dep_ref(2)]),
                    flowq.JobSpec(echo, {}, depends_on=[flowq.batch_dep_ref(0)]),
                    flowq.JobSpec(echo, {}, depends_on=[flowq.batch_dep_ref(1)]),
                ]
            )
        with pytest.raises(flowq.DependencyError, match="batch"):
            await app.add_jobs([flowq.JobSpec(echo, {}, depends_on=[flowq.batch_dep_ref(5)])])
        assert await app.get_jobs() == []

    async def test_depends_on_a_dead_job_is_rejected(self, app: flowq.App) -> None:
        """Depending on a cancelled job raises DependencyError (it can never complete)."""
        dead = await app.start(echo, {})
        await app.cancel_job(dead)
        with pytest.raises(flowq.DependencyError, match=str(dead)):
            await app.start(echo, {}, depends_on=[dead])

    async def test_batch_references_resolve_to_real_ids(self, app: flowq.App) -> None:
        """batch_dep_ref(i) becomes the id of the i-th job of the same add_jobs call."""
        earlier = await app.start(echo, {})
        ids = await app.add_jobs(
            [
                flowq.JobSpec(echo, {}, depends_on=[flowq.batch_dep_ref(1), earlier]),
                flowq.JobSpec(echo, {}),
                flowq.JobSpec(echo, {}, depends_on=flowq.DependsOn([flowq.batch_dep_ref(0)])),
            ]
        )
        first, last = await app.get_job(ids[0]), await app.get_job(ids[2])
        assert first is not None and last is not None
        assert set(first.depends_on) == {ids[1], earlier}
        assert last.depends_on == (ids[0],)

    async def test_dependants_run_only_after_prerequisites(self, app: flowq.App) -> None:
        """A dependant is not claimed until every prerequisite completed."""
        ids = await app.add_jobs(
            [
                flowq.JobSpec(echo, {}),
                flowq.JobSpec(echo, {}),
                flowq.JobSpec(
                    echo, {}, depends_on=[flowq.batch_dep_ref(0), flowq.batch_dep_ref(1)]
                ),
            ]
        )
        first = await self.claim(app)
        assert sorted(c.job.id for c in first) == ids[:2]
        assert await app.store.complete_job(first[0].lease, None)
        assert await self.claim(app) == []
        assert await app.store.complete_job(first[1].lease, None)
        [dependant] = await self.claim(app)
        assert dependant.job.id == ids[2]

    async def test_depends_on_tags(self, app: flowq.App) -> None:
        """DependsOn(tags=...) waits for the unfinished jobs carrying all those tags."""
        done = await app.start(echo, {}, tags=["import"])
        await self.run_to_completion(app, done)
        a = await app.start(echo, {}, tags=["import", "eu"])
        b = await app.start(echo, {}, tags=["import"])
        await app.start(echo, {}, tags=["eu"])
        report = await app.start(echo, {}, depends_on=flowq.DependsOn(tags=["import"]))
        job = await app.get_job(report)
        assert job is not None and job.depends_on == (a, b)

    async def test_permanent_failure_cancels_dependants(self, app: flowq.App) -> None:
        """A prerequisite that will retry keeps dependants; one that fails for good cancels them."""
        ids = await app.add_jobs(
            [
                flowq.JobSpec(echo, {}, max_attempts=2),
                flowq.JobSpec(echo, {}, depends_on=[flowq.batch_dep_ref(0)]),
            ]
        )
        [claimed] = await self.claim(app)
        await self.fail(app, claimed, retry_in=timedelta(0))
        dependant = await app.get_job(ids[1])
        assert dependant is not None and dependant.status is JobStatus.PENDING
        [claimed] = await self.claim(app)
        await self.fail(app, claimed, retry_in=timedelta(0))
        dependant = await app.get_job(ids[1])
        assert dependant is not None and dependant.status is JobStatus.CANCELLED
        cancelled = (await app.get_job_events(ids[1]))[-1]
        assert cancelled.metadata == {"reason": "dependency_failed", "dependency": ids[0]}

    # -- running ----------------------------------------------------------------------

    async def test_claim_order_and_future_jobs(self, app: flowq.App, clock: FakeClock) -> None:
        """Claims take higher priority first, then older; future run_at waits."""
        low = await app.start(echo, {}, priority=1)
        high = await app.start(echo, {}, priority=9)
        low2 = await app.start(echo, {}, priority=1)
        future = await app.start(echo, {}, priority=99, delay=60)
        assert [c.job.id for c in await self.claim(app, 2)] == [high, low]
        assert [c.job.id for c in await self.claim(app)] == [low2]
        clock.advance(timedelta(seconds=60))
        [claimed] = await self.claim(app)
        assert claimed.job.id == future and claimed.job.status is JobStatus.PROCESSING

    async def test_claim_only_listed_workflows(self, app: flowq.App) -> None:
        """A claim restricted to some workflows leaves other jobs alone."""
        await app.start(echo, {})
        mine = await app.start(signup, Signup(1, "s@example.com"))
        [claimed] = await self.claim(app, workflows=["contract.signup"])
        assert claimed.job.id == mine
        assert await self.claim(app, workflows=["contract.signup"]) == []

    async def test_run_once_events(self, app: flowq.App, clock: FakeClock) -> None:
        """A job that runs once has exactly added, processing, completed; output stored."""
        job_id = await app.start(echo, {"x": 1})
        [claimed] = await self.claim(app)
        assert claimed.job.attempts == 1 and claimed.job.started_at == clock.now()
        clock.advance(timedelta(seconds=5))
        assert await app.store.complete_job(claimed.lease, '{"answer": 42}')
        job = await app.get_job(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED
        assert job.output == {"answer": 42} and job.completed_at == clock.now()
        assert _types(await app.get_job_events(job_id)) == ["added", "processing", "completed"]

    async def test_stale_lease_writes_are_refused(self, app: flowq.App, clock: FakeClock) -> None:
        """After a reclaim, the old holder cannot complete, fail or suspend the job."""
        job_id = await app.start(echo, {})
        [old] = await self.claim(app)
        clock.advance(timedelta(minutes=30))
        assert await app.reclaim_stuck_jobs(10) == 1
        [new] = await self.claim(app)
        assert new.lease != old.lease
        assert await app.store.complete_job(old.lease, '"stale"') is False
        assert await self.fail(app, old, retry_in=None) is False
        assert await app.store.suspend_job(old.lease, wait_until=None, token_id="t") is False
        assert await app.store.complete_job(new.lease, '"fresh"') is True
        job = await app.get_job(job_id)
        assert job is not None and job.output == "fresh"
        assert _types(await app.get_job_events(job_id)).count("completed") == 1

    async def test_failures_retry_then_fail_permanently(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """Failed attempts are recorded; with attempts left the job retries at the given time."""
        job_id = await app.start(echo, {}, max_attempts=2)
        [claimed] = await self.claim(app)
        await self.fail(app, claimed, retry_in=timedelta(seconds=30))
        job = await app.get_job(job_id)
        assert job is not None and job.status is JobStatus.FAILED
        assert job.next_attempt_at == clock.now() + timedelta(seconds=30)
        assert job.failure_reason is FailureReason.HANDLER_ERROR
        assert await self.claim(app) == []
        clock.advance(timedelta(seconds=30))
        [claimed] = await self.claim(app)
        assert claimed.job.attempts == 2
        await self.fail(app, claimed, retry_in=timedelta(seconds=30))
        job = await app.get_job(job_id)
        assert job is not None and job.next_attempt_at is None and job.last_failed_at == clock.now()
        assert [e.attempt for e in job.error_history] == [1, 2]
        assert (
            job.error_history[0].message == "boom" and job.error_history[0].type == "RuntimeError"
        )
        clock.advance(timedelta(days=1))
        assert await self.claim(app) == []

    async def test_dead_letter_job_is_added_on_permanent_failure(self, app: flowq.App) -> None:
        """A permanently failed job with dead_letter enqueues a job carrying the original."""
        job_id = await app.start(
            echo, {"order": 7}, max_attempts=1, dead_letter="contract.dead_letters"
        )
        [claimed] = await self.claim(app)
        await self.fail(app, claimed, retry_in=timedelta(seconds=1))
        job = await app.get_job(job_id)
        assert job is not None and job.dead_letter_job_id is not None
        letter = await app.get_job(job.dead_letter_job_id)
        assert letter is not None and letter.workflow == "contract.dead_letters"
        assert letter.payload["job_id"] == job_id
        assert letter.payload["workflow"] == "contract.echo"
        assert letter.payload["payload"] == {"order": 7}
        assert letter.payload["error"]["message"] == "boom"

    async def test_resuming_from_a_wait_keeps_the_attempt(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """A job woken from a timer is claimed again without consuming an attempt."""
        job_id = await app.start(echo, {}, max_attempts=1)
        for _ in range(3):
            [claimed] = await self.claim(app)
            until = clock.now() + timedelta(hours=1)
            assert await app.store.suspend_job(claimed.lease, wait_until=until, token_id=None)
            assert await self.claim(app) == []
            clock.advance(timedelta(hours=1))
        [claimed] = await self.claim(app)
        assert claimed.resumed and claimed.job.attempts == 1
        assert await app.store.complete_job(claimed.lease, None)
        job = await app.get_job(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED and job.attempts == 1

    # -- maintenance ------------------------------------------------------------------

    async def test_reclaim_respects_minutes_and_job_timeout(
        self, app: flowq.App, clock: FakeClock
    ) -> None:
        """reclaim_stuck_jobs takes jobs locked longer than max(minutes, their timeout)."""
        short = await app.start(echo, {})
        long = await app.start(echo, {}, timeout=timedelta(hours=1))
        await self.claim(app)
        clock.advance(timedelta(minutes=15))
        assert await app.reclaim_stuck_jobs(10) == 1
        job = await app.get_job(short)
        assert job is not None and job.status is JobStatus.PENDING
        assert _types(await app.get_job_events(short))[-1] == "reclaimed"
        still = await app.get_job(long)
        assert still is not None and still.status is JobStatus.PROCESSING
        clock.advance(timedelta(hours=1))
        assert await app.reclaim_stuck_jobs(0) == 1
        assert await app.reclaim_stuck_jobs(0) == 0

    async def test_reclaim_zero_minutes_takes_every_running_job(self, app: flowq.App) -> None:
        """reclaim_stuck_jobs(0) returns every running job without a timeout to pending."""
        await app.add_jobs([flowq.JobSpec(echo, {}) for _ in range(3)])
        await self.claim(app)
        assert await app.reclaim_stuck_jobs(0) == 3
        assert [c.job.attempts for c in await self.claim(app)] == [2, 2, 2]

    async def test_cleanup_old_jobs(self, app: flowq.App, clock: FakeClock) -> None:
        """cleanup_old_jobs deletes finished jobs older than the cutoff with their events."""
        old_done = await app.start(echo, {}, idempotency_key="nightly")
        await self.run_to_completion(app, old_done)
        old_cancelled = await app.start(echo, {})
        await app.cancel_job(old_cancelled)
        clock.advance(timedelta(days=10))
        recent_done = await app.start(echo, {})
        await self.run_to_completion(app, recent_done)
        pending = await app.start(echo, {})
        clock.advance(timedelta(days=1))
        assert await app.cleanup_old_jobs(days=5) == 2
        assert await app.get_job(old_done) is None and await app.get_job(old_cancelled) is None
        assert await app.get_job_events(old_done) == []
        assert {job.id for job in await app.get_jobs()} == {recent_done, pending}
        again = await app.start(echo, {"fresh": True}, idempotency_key="nightly")
        assert again != old_done
        assert await app.cleanup_old_jobs(days=0) == 1
        assert {job.id for job in await app.get_jobs()} == {pending, again}

    async def test_cleanup_deletes_in_batches(self, app: flowq.App) -> None:
        """cleanup_old_jobs deletes more jobs than one batch holds and counts them all."""
        await app.add_jobs([flowq.JobSpec(echo, {"n": n}) for n in range(1050)])
        assert await app.cancel_all_upcoming_jobs() == 1050
        assert await app.cleanup_old_jobs(days=0) == 1050
        assert await app.get_jobs() == []

    async def test_cleanup_old_job_events(self, app: flowq.App, clock: FakeClock) -> None:
        """cleanup_old_job_events deletes events older than the cutoff and counts them."""
        job_id = await app.start(echo, {})
        clock.advance(timedelta(days=3))
        await app.cancel_job(job_id)
        assert await app.cleanup_old_job_events(days=2) == 1
        assert _types(await app.get_job_events(job_id)) == ["cancelled"]
        assert await app.cleanup_old_job_events(days=0) == 1

    async def test_maintenance_rejects_negative_ages(self, app: flowq.App) -> None:
        """Negative minutes or days raise ValidationError."""
        with pytest.raises(flowq.ValidationError):
            await app.reclaim_stuck_jobs(-1)
        with pytest.raises(flowq.ValidationError):
            await app.cleanup_old_jobs(days=-1)

    # -- transactions -----------------------------------------------------------------

    async def test_enqueue_joins_the_callers_transaction(
        self, app: flowq.App, store: Store
    ) -> None:
        """With connection=, the job commits or rolls back with the caller's transaction."""
        opener = self.connection(store)
        if opener is None:
            with pytest.raises(flowq.ValidationError, match="connection"):
                await app.start(echo, {}, connection=object())  # type: ignore[arg-type]
            assert await app.get_jobs() == []
            return
        async with opener as connection:
            transaction = await connection.begin()
            rolled_back = await app.start(echo, {"n": 1}, connection=connection)
            await transaction.rollback()
        assert await app.get_job(rolled_back) is None
        assert await app.get_job_events(rolled_back) == []
        async with self.connection(store) as connection:  # type: ignore[union-attr]
            transaction = await connection.begin()
            [kept] = await app.add_jobs([flowq.JobSpec(echo, {"n": 2})], connection=connection)
            await transaction.commit()
        job = await app.get_job(kept)
        assert job is not None and job.payload == {"n": 2}
        assert _types(await app.get_job_events(kept)) == ["added"]
