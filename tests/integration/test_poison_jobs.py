"""One bad job never kills a worker (issue 7, item 2): whatever a handler raises is
stored as a readable error, and the jobs beside it run on, on every store.

Each test runs a real worker loop (``run_until_idle``) over a bad job and healthy
jobs: the worker returns normally, the bad job ends failed with a readable error,
the healthy jobs complete.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

import flowq
from flowq import EventType, JobStatus
from flowq.codec import MAX_VALUE_BYTES
from flowq.failures import MAX_ERROR_BYTES
from flowq.store.sql import SqlStore
from flowq.store.sql.schema import jobs
from flowq_testing import FakeClock, InMemoryStore

pytestmark = pytest.mark.anyio


async def _healthy_and_bad(
    app: flowq.App, registry: flowq.Registry, raise_it: Any, **bad_options: Any
) -> tuple[int, list[int]]:
    """Add two healthy jobs around one bad job (whose handler calls ``raise_it``), run
    a worker until idle, and return the ids (bad, healthy)."""

    @registry.workflow(name="healthy")
    async def healthy(payload: dict[str, Any]) -> int:
        return int(payload["n"])

    @registry.workflow(name="bad", max_attempts=1)
    async def bad(payload: dict[str, Any]) -> None:
        raise_it()

    first = await app.start(healthy, {"n": 1})
    bad_id = await app.start(bad, {}, **bad_options)
    second = await app.start(healthy, {"n": 2})
    await app.create_worker(concurrency=4).run_until_idle()
    return bad_id, [first, second]


async def _assert_healthy_completed(app: flowq.App, healthy: list[int]) -> None:
    for n, job_id in enumerate(healthy, start=1):
        job = await app.get_job(job_id)
        assert job is not None and (job.status, job.output) == (JobStatus.COMPLETED, n)


async def _failed_error(app: flowq.App, job_id: int) -> flowq.ErrorEntry:
    job = await app.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED
    assert job.next_attempt_at is None
    [error] = job.error_history
    return error


async def test_a_message_with_lone_surrogates_is_stored_escaped(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """A file name read with os.listdir from undecodable bytes has lone surrogates:
    they are stored as escapes (every database takes UTF-8 only), as are NULs."""
    name = b"report-\xff\xfe.csv".decode("utf-8", "surrogateescape")

    def raise_it() -> None:
        raise FileNotFoundError(f"cannot open {name}\x00")

    bad, healthy = await _healthy_and_bad(app, registry, raise_it)
    error = await _failed_error(app, bad)
    assert error.type == "FileNotFoundError"
    assert error.message == "cannot open report-\\udcff\\udcfe.csv\\x00"
    [failed] = [e for e in await app.get_job_events(bad) if e.event_type is EventType.FAILED]
    assert failed.metadata["message"] == error.message
    await _assert_healthy_completed(app, healthy)


async def test_a_message_over_16_mib_is_cut_to_64_kib(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """A message larger than any stored value is cut to MAX_ERROR_BYTES, with a note
    of its full length."""
    size = MAX_VALUE_BYTES + 1_000

    def raise_it() -> None:
        raise ValueError("é" * size)

    bad, healthy = await _healthy_and_bad(app, registry, raise_it)
    error = await _failed_error(app, bad)
    assert error.type == "ValueError"
    assert len(error.message.encode()) <= MAX_ERROR_BYTES
    assert error.message.startswith("é" * 1000)
    assert error.message.endswith(f"[truncated by flowq: {size:,} characters in all]")
    await _assert_healthy_completed(app, healthy)


class Unprintable(Exception):
    """An exception whose __str__ and __repr__ raise."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class StrRaises(Exception):
    """An exception whose __str__ raises (its repr works)."""

    def __str__(self) -> str:
        raise RuntimeError("no str")


@pytest.mark.parametrize(
    ("exc", "message"),
    [(Unprintable(), "<unprintable Unprintable object>"), (StrRaises("x"), "StrRaises('x')")],
)
async def test_an_exception_whose_str_raises_is_stored_by_its_type(
    app: flowq.App, registry: flowq.Registry, exc: Exception, message: str
) -> None:
    """str() raising falls back to repr(), and repr() raising to the type name."""

    def raise_it() -> None:
        raise exc

    bad, healthy = await _healthy_and_bad(app, registry, raise_it)
    error = await _failed_error(app, bad)
    assert (error.type, error.message) == (f"{__name__}.{type(exc).__qualname__}", message)
    await _assert_healthy_completed(app, healthy)


async def test_a_step_whose_error_cannot_be_printed_is_recorded(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """A step's failure is recorded through the same text: a surrogate message in a
    step, and an unprintable step error, fail the job readably."""

    @flowq.step
    async def open_file() -> None:
        raise OSError("bad name \udcff")

    @flowq.step
    async def unprintable() -> None:
        raise Unprintable()

    @registry.workflow(name="steps", max_attempts=1)
    async def steps(payload: dict[str, Any]) -> None:
        if payload["which"] == "surrogate":
            await open_file()
        else:
            await unprintable()

    first = await app.start(steps, {"which": "surrogate"})
    second = await app.start(steps, {"which": "unprintable"})
    await app.create_worker().run_until_idle()
    error = await _failed_error(app, first)
    assert (error.type, error.message) == ("OSError", "bad name \\udcff")
    [step] = await app.get_job_steps(first)
    assert step.error is not None and step.error["message"] == "bad name \\udcff"
    error = await _failed_error(app, second)
    assert error.message == "<unprintable Unprintable object>"


async def test_a_dead_letter_over_the_size_limit_leaves_the_payload_out(
    app: flowq.App, registry: flowq.Registry
) -> None:
    """A payload that fits alone but not inside the dead-letter record: the dead
    letter is added with payload None and payload_omitted saying why; the failed job
    keeps its payload."""
    letters: list[dict[str, Any]] = []

    @registry.workflow(name="letters")
    async def on_letter(payload: dict[str, Any]) -> None:
        letters.append(payload)

    @registry.workflow(name="big", max_attempts=1, dead_letter="letters")
    async def big(payload: dict[str, Any]) -> None:
        raise ValueError("rejected")

    blob = "x" * (MAX_VALUE_BYTES - 100)
    job_id = await app.start(big, {"blob": blob})
    await app.create_worker().run_until_idle()
    error = await _failed_error(app, job_id)
    assert error.message == "rejected"
    job = await app.get_job(job_id)
    assert job is not None and job.payload == {"blob": blob}
    letter_job = await app.get_job(job.dead_letter_job_id or 0)
    assert letter_job is not None and letter_job.status is JobStatus.COMPLETED
    [letter] = letters
    assert letter["job_id"] == job_id and letter["payload"] is None
    assert letter["error"]["message"] == "rejected"
    assert f"the payload of job {job_id}" in letter["payload_omitted"]
    assert "limit" in letter["payload_omitted"]


async def test_retry_backoff_past_42_attempts_does_not_overflow(
    app: flowq.App, registry: flowq.Registry, clock: FakeClock
) -> None:
    """RetryPolicy("2m", max_delay="1h") doubles up to an hour and stays there: a job
    failing 45 times waits at most an hour between attempts and then fails for good."""
    attempts = 45

    @registry.workflow(
        name="flaky",
        max_attempts=attempts,
        retry=flowq.RetryPolicy("2m", max_delay="1h", jitter=False),
    )
    async def flaky(payload: dict[str, Any]) -> None:
        raise ValueError("again")

    job_id = await app.start(flaky, {})
    worker = app.create_worker()
    for _ in range(attempts):
        await worker.run_until_idle()
        clock.advance(timedelta(hours=1))
    job = await app.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED and job.next_attempt_at is None
    assert job.attempts == attempts and len(job.error_history) == attempts
    gaps = [b.at - a.at for a, b in zip(job.error_history, job.error_history[1:], strict=False)]
    assert gaps[:5] == [timedelta(hours=1)] * 5  # each run waits for the clock
    events = [e for e in await app.get_job_events(job_id) if e.event_type is EventType.FAILED]
    waits = [
        datetime.fromisoformat(e.metadata["retry_at"]) - e.at
        for e in events
        if e.metadata["will_retry"]
    ]
    assert waits[:6] == [timedelta(minutes=m) for m in (2, 4, 8, 16, 32, 60)]
    assert set(waits[5:]) == {timedelta(hours=1)}


# -- rows that cannot be read back ----------------------------------------------------


async def _write_columns(app: flowq.App, job_id: int, **values: Any) -> None:
    """Write column values straight into a job's row, as an older version or a manual
    UPDATE would have left them (no validation on the way)."""
    store = app.store
    if isinstance(store, InMemoryStore):
        store._rows[job_id].update(values)
        return
    assert isinstance(store, SqlStore)
    async with store.engine.begin() as conn:
        await conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))


DEEP = "[" * 5_000 + "]" * 5_000


@pytest.mark.parametrize(
    ("columns", "error_type", "words"),
    [
        ({"timeout_ms": 2**62}, "UnreadableJobError", "stored timeout"),
        (
            {"retry": '{"delay_ms":1000,"backoff":true,"max_delay_ms":9223372036854775807,'
             '"jitter":true}'},
            "UnreadableJobError",
            "stored retry policy",
        ),
        ({"payload": DEEP}, "PayloadError", "RecursionError"),
    ],
    ids=["timeout", "retry", "payload"],
)  # fmt: skip
async def test_a_row_that_cannot_be_decoded_fails_and_its_batch_runs(
    app: flowq.App,
    registry: flowq.Registry,
    caplog: pytest.LogCaptureFixture,
    columns: dict[str, Any],
    error_type: str,
    words: str,
) -> None:
    """A stored timeout or retry policy out of range, or a payload nested too deep,
    fails that job for good with the reason (logged too); the healthy jobs claimed in
    the same batch complete."""
    ran: list[int] = []

    @registry.workflow(name="mixed", max_attempts=5)
    async def mixed(payload: Any) -> str:
        ran.append(payload["n"])
        return "ok"

    ids = [await app.start(mixed, {"n": n}) for n in range(3)]
    await _write_columns(app, ids[1], **columns)
    with caplog.at_level(logging.ERROR, logger="flowq"):
        await app.create_worker(concurrency=3, batch_size=3).run_until_idle()
    assert sorted(ran) == [0, 2]
    for job_id in (ids[0], ids[2]):
        job = await app.get_job(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED
    [failed] = [e for e in await app.get_job_events(ids[1]) if e.event_type is EventType.FAILED]
    assert failed.metadata["type"] == error_type
    assert words in failed.metadata["message"]
    assert (failed.metadata["will_retry"], failed.metadata["attempt"]) == (False, 1)
    assert any(str(ids[1]) in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    [row] = [j for j in await _job_statuses(app) if j[0] == ids[1]]
    assert row[1] == JobStatus.FAILED.value


async def _job_statuses(app: flowq.App) -> list[tuple[int, str]]:
    """(id, status) of every job, read without decoding the rest of the row."""
    store = app.store
    if isinstance(store, InMemoryStore):
        return [(i, str(r["status"])) for i, r in store._rows.items()]
    assert isinstance(store, SqlStore)
    async with store.engine.connect() as conn:
        result = await conn.execute(jobs.select().with_only_columns(jobs.c.id, jobs.c.status))
        return [(row.id, row.status) for row in result]
