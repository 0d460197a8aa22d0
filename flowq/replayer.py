"""Replaying an exported job history against the current code, before a deploy
(``flowq_testing.replay`` and ``flowq replay``).

``replay(history, workflow)`` runs the workflow's handler once more over the calls
the history recorded, with the real replay engine, without executing anything: a
step, a token, a wait or a child at a recorded position gets its recorded result,
and the run stops where the history ends. If the code now makes another call at a
recorded position, it raises :class:`flowq.NonDeterminismError` naming the job, the
position, the recorded and the called name, as a worker would after the deploy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

import msgspec

from flowq import codec, current
from flowq.context import Context, JobInfo
from flowq.durable import Calls, LeaseLost, Suspend, effective
from flowq.errors import NonDeterminismError, PayloadError, ValidationError
from flowq.history import JobHistory, parse_history
from flowq.models import Token, TokenStatus
from flowq.registry import Workflow
from flowq.replay import History
from flowq.store.base import Lease, Store

__all__ = ["ReplayResult", "replay"]

_LATE = datetime(9000, 1, 1, tzinfo=UTC)
"""The replay's clock: every recorded timer is over."""


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """How a replay ended (it raised NonDeterminismError otherwise).

    Attributes:
        job_id: The exported job.
        replayed: How many recorded calls the handler made again, in order.
        ended: ``"returned"`` (the handler finished), ``"history end"`` (it reached a
            call the history does not hold yet: a job still running), or ``"raised"``
            (it raised as the exported job's failed attempt did).
    """

    job_id: int
    replayed: int
    ended: Literal["returned", "history end", "raised"]


async def replay(
    history: str | bytes | Mapping[str, Any] | JobHistory, workflow: Workflow[Any, Any]
) -> ReplayResult:
    """Re-run an exported history (``App.export_job``) against ``workflow``'s code.

    Nothing is executed: no step body runs, no token, child or timer is created.

    Raises:
        NonDeterminismError: The code makes another call than the recorded one at a
            position (the message names job, position, recorded and called names).
        ValidationError: ``history`` is not a flowq job history, or is of another
            workflow; ``PayloadError`` if its payload no longer fits the handler.
        Exception: Whatever the handler raises, unless the exported job failed too.
    """
    document = parse_history(history)
    job = document.job
    if job.workflow != workflow.name:
        raise ValidationError(f"the history is of workflow {job.workflow!r}, not {workflow.name!r}")
    if not workflow.is_async:
        raise ValidationError(f"workflow {workflow.name!r} is sync: it has no history to replay")
    context, calls = _replay_context(document)
    try:
        payload = msgspec.json.decode(codec.encode(job.payload, what="payload"),
                                      type=workflow.payload_type)  # fmt: skip
    except msgspec.ValidationError as exc:
        raise PayloadError(
            f"the recorded payload no longer fits {workflow.name!r}: {exc}"
        ) from None
    token = current.bind(context)
    try:
        args = (payload, context) if workflow.takes_context else (payload,)
        await workflow.fn(*args)
        ended: Literal["returned", "history end", "raised"] = "returned"
    except BaseException as raised:
        stopped = effective(raised)
        if isinstance(stopped, Suspend | LeaseLost):
            ended = "history end"
        elif isinstance(stopped, NonDeterminismError):
            raise stopped from None
        elif isinstance(stopped, Exception) and job.status == "failed":
            ended = "raised"
        else:
            raise
    finally:
        current.reset(token)
    replayed = calls.history.position if calls.history is not None else 0
    return ReplayResult(job.id, min(replayed, len(document.steps)), ended)


class _HistoryStore:
    """What a replayed ctx may ask of a store, answered from the history: the tokens
    the job created; progress and output are accepted and dropped. Nothing else is
    asked, because a replay executes nothing."""

    def __init__(self, document: JobHistory) -> None:
        self.clock = _LateClock()
        self._tokens = {
            token.id: Token(
                id=token.id,
                job_id=document.job.id,
                status=TokenStatus(token.status),
                output=token.output,
                tags=tuple(token.tags),
                timeout_at=token.timeout_at,
                created_at=_LATE,
                completed_at=None,
            )
            for token in document.tokens
        }

    async def get_token(self, token_id: str) -> Token | None:
        return self._tokens.get(token_id)

    async def record_progress(self, lease: Lease, percent: int) -> bool:
        return True

    async def record_output(self, lease: Lease, output: str) -> bool:
        return True


class _LateClock:
    """A clock at which every recorded timer is over."""

    def now(self) -> datetime:
        return _LATE

    async def sleep_until(self, deadline: datetime) -> None:
        return None


def _replay_context(document: JobHistory) -> tuple[Context, Calls]:
    """The ctx of a run over the recorded calls (nothing outside them is executed)."""
    job = document.job
    store = cast(Store, _HistoryStore(document))
    lease = Lease(job.id, 0, "flowq-replay")
    attempt = max(job.attempts, 1)
    calls = Calls(
        job_id=job.id,
        attempt=attempt,
        lease=lease,
        store=store,
        clock=store.clock,
        history_loaded=True,
        history=History(job.id, [step.recorded_call() for step in document.steps]),
        replay_only=True,
    )
    info = JobInfo(
        id=job.id,
        workflow=job.workflow,
        attempt=attempt,
        max_attempts=job.max_attempts,
        tags=tuple(job.tags),
        group=job.group,
    )
    return Context(info, lease, store, calls, durable=True, start_child=None), calls
