"""Records and small value types."""

from __future__ import annotations

from datetime import timedelta

import pytest

import flowq
from flowq import RetryPolicy, TagQuery
from flowq.durations import MAX_DURATION


def test_backoff_doubles_up_to_the_cap() -> None:
    """Without jitter, waits double per attempt and stop at max_delay."""
    policy = RetryPolicy(10, max_delay=60, jitter=False)
    waits = [policy.wait_after(attempt, 0.0) for attempt in range(1, 6)]
    assert waits == [timedelta(seconds=s) for s in (10, 20, 40, 60, 60)]


@pytest.mark.parametrize("jitter", [False, True])
def test_backoff_never_overflows_up_to_10000_attempts(jitter: bool) -> None:
    """RetryPolicy("2m", max_delay="1h") after attempt 42 or 10,000 waits the cap
    (no ``delay * 2**n`` formed before capping), also with the largest max_delay."""
    policy = RetryPolicy("2m", max_delay="1h", jitter=jitter)
    for attempt in range(1, 10_001):
        wait = policy.wait_after(attempt, 0.999)
        assert timedelta(minutes=1) <= wait <= timedelta(hours=1)
    assert RetryPolicy("2m", max_delay="1h", jitter=False).wait_after(42, 0.0) == timedelta(hours=1)
    widest = RetryPolicy("2m", max_delay=MAX_DURATION, jitter=jitter)  # the longest accepted
    assert widest.wait_after(10_000, 0.999) <= MAX_DURATION
    assert widest.wait_after(3, 0.0) == timedelta(minutes=8 if not jitter else 4)


def test_a_first_delay_above_the_cap_waits_the_cap() -> None:
    """The cap holds for the first wait too, with or without backoff."""
    for backoff in (True, False):
        policy = RetryPolicy(90, backoff=backoff, max_delay=60, jitter=False)
        assert policy.wait_after(1, 0.0) == policy.wait_after(7, 0.0) == timedelta(seconds=60)


def test_fixed_delay_without_backoff() -> None:
    """backoff=False waits the same delay after every attempt."""
    policy = RetryPolicy("2s", backoff=False, jitter=False)
    assert {policy.wait_after(attempt, 0.5) for attempt in range(1, 10)} == {timedelta(seconds=2)}


@pytest.mark.parametrize("attempt", [1, 2, 3, 8, 30])
def test_jitter_stays_in_the_upper_half(attempt: int) -> None:
    """With jitter, the wait after attempt n lies in [w/2, w] of the unjittered wait w."""
    jittered = RetryPolicy(1, max_delay=300)
    plain = RetryPolicy(1, max_delay=300, jitter=False)
    full = plain.wait_after(attempt, 0.0)
    assert jittered.wait_after(attempt, 0.0) == full / 2
    assert full / 2 <= jittered.wait_after(attempt, 0.999) <= full


def test_default_retry_policy() -> None:
    """The default policy: 10 s doubling, capped at one hour, with jitter."""
    policy = RetryPolicy()
    assert (policy.delay, policy.max_delay, policy.backoff, policy.jitter) == (
        timedelta(seconds=10), timedelta(hours=1), True, True,
    )  # fmt: skip


def test_retry_policy_rejects_bad_durations() -> None:
    """A malformed retry delay raises ValidationError."""
    with pytest.raises(flowq.ValidationError, match="retry delay"):
        RetryPolicy("fast")


def test_tag_query_dedupes_and_checks_mode() -> None:
    """TagQuery keeps tags once, in order, and rejects unknown modes."""
    assert TagQuery(["a", "b", "a"]).values == ("a", "b")
    assert TagQuery("solo", "any").values == ("solo",)
    with pytest.raises(flowq.ValidationError, match="mode"):
        TagQuery(["a"], "some")  # type: ignore[arg-type]


def test_batch_dep_ref_needs_an_index() -> None:
    """batch_dep_ref takes a non-negative integer."""
    assert flowq.batch_dep_ref(3).index == 3
    with pytest.raises(flowq.ValidationError):
        flowq.batch_dep_ref(-1)


def test_status_and_event_enums_are_strings() -> None:
    """JobStatus and EventType compare equal to their names."""
    assert flowq.JobStatus.PENDING == "pending"
    assert flowq.EventType.RECLAIMED == "reclaimed"
    assert [s.value for s in flowq.JobStatus] == [
        "pending", "processing", "waiting", "completed", "failed", "cancelled",
    ]  # fmt: skip


def test_a_fixed_delay_is_exact_unless_jitter_is_asked_for() -> None:
    """backoff=False turns jitter off by default; jitter=True turns it back on."""
    assert RetryPolicy(10, backoff=False).wait_after(3, 0.0) == timedelta(seconds=10)
    assert RetryPolicy(10, backoff=False, jitter=True).wait_after(3, 0.0) == timedelta(seconds=5)
    assert RetryPolicy(10).jitter is True


def test_token_ids_are_unguessable_and_never_look_like_options() -> None:
    """192 random bits (32 URL-safe characters), none alike, none starting with '-'
    (``flowq tokens complete ID`` would take such an id for an option)."""
    from flowq.models import new_token_id

    ids = [new_token_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert all(len(token_id) == 32 for token_id in ids)
    assert not [token_id for token_id in ids if token_id.startswith("-")]
