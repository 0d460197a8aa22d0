"""What a value comes back as after a real job run, for the values JSON has no exact
form for (docs/jobs.md, "What comes back"): NaN and infinity are refused wherever a
value goes in; bytes, sets, tuples, non-string keys, datetimes, UUIDs, decimals and
enums come back as themselves where an annotation says what they are, and as their
JSON form where nothing does."""

from __future__ import annotations

import enum
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

import flowq
from flowq import JobStatus

pytestmark = pytest.mark.anyio


class Color(enum.Enum):
    """An enum payload."""

    RED = "red"


@dataclass(frozen=True)
class Case:
    """A value, the annotation that brings it back, and what comes back without one."""

    value: Any
    annotation: Any
    untyped: Any


CASES = {
    "bytes": Case(b"\x00\xff", bytes, "AP8="),
    "bytearray": Case(bytearray(b"ab"), bytearray, "YWI="),
    "set": Case({1, 2, 3}, set[int], [1, 2, 3]),
    "frozenset": Case(frozenset({"a"}), frozenset[str], ["a"]),
    "tuple": Case((1, "a"), tuple[int, str], [1, "a"]),
    "int keys": Case({1: "a", 2: "b"}, dict[int, str], {"1": "a", "2": "b"}),
    "float keys": Case({1.5: "x"}, dict[float, str], {"1.5": "x"}),
    "datetime": Case(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), datetime, "2026-01-02T03:04:05Z"),
    "uuid": Case(uuid.UUID(int=1), uuid.UUID, "00000000-0000-0000-0000-000000000001"),
    "decimal": Case(Decimal("1.10"), Decimal, "1.10"),
    "enum": Case(Color.RED, Color, "red"),
}


def _typed(fn: Any, **annotations: Any) -> Any:
    """``fn`` with these annotations (real types, not strings: the cases' types are
    not module globals of this file)."""
    fn.__annotations__ = annotations
    return fn


@pytest.mark.parametrize("name", list(CASES))
async def test_what_a_value_comes_back_as(
    app: flowq.App, registry: flowq.Registry, name: str
) -> None:
    """In a payload, a step result and a job's output: the value itself with an
    annotation that says what it is; its JSON form without one (job.output has none)."""
    case = CASES[name]
    seen: dict[str, Any] = {}

    async def produce() -> Any:
        return case.value

    async def produce_untyped() -> Any:
        return case.value

    typed_step = flowq.step(name="typed")(_typed(produce, **{"return": case.annotation}))
    untyped_step = flowq.step(name="untyped")(_typed(produce_untyped))

    async def handler(payload: Any) -> Any:
        seen["payload"] = payload
        seen["typed step"] = await typed_step()
        seen["untyped step"] = await untyped_step()
        return case.value

    async def untyped_handler(payload: Any) -> None:
        seen["untyped payload"] = payload

    typed_flow = registry.workflow(name="typed")(_typed(handler, payload=case.annotation))
    untyped_flow = registry.workflow(name="untyped")(_typed(untyped_handler))
    job_id = await app.start(typed_flow, case.value)
    await app.start(untyped_flow, {"value": case.value})
    await app.create_worker().run_until_idle()

    job = await app.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED, job and job.error_history
    for where in ("payload", "typed step"):
        assert seen[where] == case.value and type(seen[where]) is type(case.value), where
    assert seen["untyped step"] == case.untyped
    assert seen["untyped payload"] == {"value": case.untyped}
    assert job.output == case.untyped
    assert job.payload == case.untyped


async def test_keys_that_become_equal_keep_the_last_value(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """1 and "1" are the same JSON key: the stored object keeps the last one (documented:
    flowq does not look for this, as it would walk every value)."""

    @registry.workflow(name="keys")
    async def keys(payload: dict[str, Any]) -> dict[Any, str]:
        return {1: "int", "1": "str"}

    job_id = await app.start(keys, {})
    await app.create_worker().run_until_idle()
    job = await app.get_job(job_id)
    assert job is not None and job.output == {"1": "str"}


NOT_FINITE = [
    pytest.param(math.nan, "the top level", id="nan"),
    pytest.param({"prices": [1.0, math.inf]}, "['prices'][1]", id="inf in a list"),
    pytest.param([{"x": -math.inf}], "[0]['x']", id="-inf in a dict"),
]


@pytest.mark.parametrize(("value", "path"), NOT_FINITE)
async def test_nan_and_infinity_are_refused_as_payloads_and_token_outputs(
    app: flowq.App, registry: flowq.Registry, value: Any, path: str
) -> None:
    """A payload or a token's output holding NaN or infinity raises SerializationError
    naming where; nothing is written."""

    @registry.workflow(name="takes")
    async def takes(payload: Any) -> None:
        """Never runs."""

    with pytest.raises(flowq.SerializationError, match=f"at {_escaped(path)}"):
        await app.start(takes, value)
    assert await app.get_jobs() == []
    token = await app.create_token()
    with pytest.raises(flowq.SerializationError, match="NaN or an infinite number"):
        await app.complete_token(token.id, value)
    stored = await app.get_token(token.id)
    assert stored is not None and stored.status is flowq.TokenStatus.WAITING


@pytest.mark.parametrize("where", ["step result", "return value", "set_output"])
@pytest.mark.parametrize(("value", "path"), NOT_FINITE)
async def test_nan_and_infinity_fail_the_attempt_instead_of_becoming_null(
    app: flowq.App, registry: flowq.Registry, where: str, value: Any, path: str
) -> None:
    """A step result or a job output holding NaN or infinity fails the attempt with a
    SerializationError naming the step or job and where the number is; no null is
    stored in its place."""

    @flowq.step(name="measure")
    async def measure() -> Any:
        return value

    @registry.workflow(name="produces", max_attempts=1)
    async def produces(payload: dict[str, Any], ctx: flowq.Context) -> Any:
        if where == "step result":
            await measure()
        elif where == "set_output":
            await ctx.set_output(value)
        else:
            return value
        return None

    job_id = await app.start(produces, {})
    await app.create_worker().run_until_idle()
    job = await app.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED and job.output is None
    [error] = job.error_history
    assert error.type == "flowq.errors.SerializationError"
    assert "NaN or an infinite number" in error.message and f"at {path}" in error.message
    named = "step 'measure'" if where == "step result" else f"output of job {job_id}"
    assert named in error.message
    if where == "step result":
        [step] = await app.get_job_steps(job_id)
        assert step.output is None and step.error is not None


def _escaped(text: str) -> str:
    import re

    return re.escape(text)
