"""Fixtures, helpers and workflows shared by the store contract tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

import flowq
from flowq.models import ErrorEntry, FailureReason
from flowq.options import JobOptions, build_child_job
from flowq.store.base import ClaimedJob, Completion, GroupLimits, Store
from flowq_testing.clock import FakeClock

__all__ = [
    "ContractBase",
    "Signup",
    "contract_registry",
    "dead_letters",
    "echo",
    "event_types",
    "signup",
    "start_child",
]

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


async def start_child(
    app: flowq.App,
    workflow: flowq.Workflow[Any, Any],
    payload: Any,
    options: JobOptions,
    parent_id: int,
    position: int,
    outcome_position: int | None = None,
) -> int:
    """Add the child job a parent's ``ctx.start_child`` (or ``ctx.call``, with
    ``outcome_position``) adds at ``position``, as the engine does; return its id."""
    child = build_child_job(
        workflow,
        payload,
        options,
        app.clock.now(),
        parent_id=parent_id,
        position=position,
        outcome_position=outcome_position,
    )
    [child_id] = await app.store.add_jobs([child])
    return child_id


def event_types(events: list[flowq.JobEvent]) -> list[str]:
    return [event.event_type.value for event in events]


class ContractBase:
    """Fixtures and helpers of the contract; subclasses hold the tests.

    Every test runs twice, once per value of the :meth:`paths` fixture: through a
    store's fast paths and through its general ones.
    """

    pytestmark = pytest.mark.anyio
    paths: str = "fast"
    """The paths of the running test (set by the :meth:`paths` fixture)."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        """flowq runs on asyncio."""
        return "asyncio"

    @pytest.fixture(params=["fast", "general"], name="paths")
    def paths_fixture(self, request: pytest.FixtureRequest) -> str:
        """Which implementation of claiming and adding the test goes through.

        ``"fast"``: :meth:`claim` claims without group limits (a SQL store's one-
        statement path). ``"general"``: :meth:`claim` passes unlimited
        :class:`GroupLimits` (the group-limited path). A ``store`` fixture may take
        ``paths`` too, to add jobs through its general path as well (the SQL stores
        turn off ``fast_paths``).
        """
        self.paths = str(request.param)
        return self.paths

    @pytest.fixture
    def clock(self) -> FakeClock:
        """The fake clock every test starts with."""
        return FakeClock(datetime(2030, 1, 1, 12, tzinfo=UTC))

    @pytest.fixture
    async def app(self, store: Store, clock: FakeClock, paths: str) -> AsyncIterator[flowq.App]:
        """An App on the store under test (claims go through ``paths``)."""
        app = flowq.App(store=store, clock=clock, registry=contract_registry)
        async with app:
            yield app

    def connection(self, store: Store) -> AbstractAsyncContextManager[Any] | None:
        """An ``AsyncConnection`` on the store's database, or None if it has none."""
        return None

    async def claim(
        self, app: flowq.App, limit: int = 10, workflows: Any = None
    ) -> list[ClaimedJob]:
        """Claim like a worker would: for the workflows it runs (default: all of
        the contract's), through the :meth:`paths` of the test."""
        names = contract_registry.names() if workflows is None else workflows
        groups = GroupLimits() if self.paths == "general" else None
        return await app.store.claim_jobs("contract-worker", limit, names, groups)

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

    async def complete(self, app: flowq.App, claimed: ClaimedJob, output: str | None) -> bool:
        """Complete one claimed job with ``output`` (JSON text)."""
        [done] = await app.store.complete_jobs([Completion(claimed.lease, output)])
        return done

    async def run_to_completion(self, app: flowq.App, job_id: int) -> None:
        """Claim ``job_id`` and complete it."""
        [claimed] = [c for c in await self.claim(app, 100) if c.job.id == job_id]
        assert await self.complete(app, claimed, '"done"')
