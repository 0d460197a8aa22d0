"""One integer check for every integer option: a clear ValidationError naming it."""

from __future__ import annotations

import pytest

import flowq
from flowq import validate
from flowq.errors import DependencyError


@pytest.mark.parametrize(
    ("value", "minimum", "bounds"),
    [
        (True, None, validate.INT64),
        ("3", None, validate.INT64),
        (3.0, None, validate.INT64),
        (2**70, None, validate.INT64),
        (2**31, None, validate.INT32),
        (0, 1, validate.INT64),
        (None, 0, validate.INT64),
    ],
    ids=["bool", "str", "float", "2**70", "over 32 bits", "below minimum", "None"],
)
def test_integers_out_of_rule_are_refused_by_name(
    value: object, minimum: int | None, bounds: tuple[int, int]
) -> None:
    """The message names the option and the value."""
    with pytest.raises(flowq.ValidationError, match=r"^concurrency must be an integer"):
        validate.integer(value, "concurrency", minimum=minimum, bounds=bounds)


def test_integers_in_rule_come_back() -> None:
    """Bounds are inclusive; the error type can be a ValidationError subclass."""
    assert validate.integer(2**63 - 1, "id") == 2**63 - 1
    assert validate.integer(1, "n", minimum=1, bounds=validate.INT32) == 1
    with pytest.raises(DependencyError, match="depends_on"):
        validate.integer(0, "a job id in depends_on", minimum=1, error=DependencyError)


@pytest.mark.parametrize(
    "build",
    [
        lambda: flowq.batch_dep_ref(-1),
        lambda: flowq.App(store=None).create_worker(concurrency=0),
        lambda: flowq.App(store=None).create_worker(workflows="a.b"),
    ],
    ids=["batch_dep_ref(-1)", "concurrency=0", "workflows='a.b'"],
)
def test_bad_integers_and_lists_at_the_api(build: object) -> None:
    """Public entry points refuse them with ValidationError."""
    with pytest.raises(flowq.ValidationError):
        build()  # type: ignore[operator]


@pytest.mark.parametrize("value", ["a\x00", "\x00", "\ud800x", "x\udfff"])
def test_text_refuses_nul_and_lone_surrogates(value: str) -> None:
    """validate.text names the value and the rule."""
    with pytest.raises(flowq.ValidationError, match="group must not contain"):
        validate.text(value, "group")


def test_text_keeps_other_strings() -> None:
    """Any other string, non-ASCII and astral characters included, passes unchanged."""
    for value in ("", "plain", "é ü 日本", "\U0001f600", "tab\tnewline\n"):
        assert validate.text(value, "group") == value


@pytest.mark.parametrize("value", ["false", "no", 0, 1, None])
def test_flags_must_be_bools(value: object) -> None:
    """validate.flag refuses anything but True/False instead of converting it."""
    with pytest.raises(flowq.ValidationError, match="retry_backoff must be True or False"):
        validate.flag(value, "retry_backoff")
    assert validate.flag(False, "retry_backoff") is False


def test_unknown_option_names_are_listed() -> None:
    """option_names names the unknown options and the valid ones."""
    with pytest.raises(
        flowq.ValidationError, match=r"unknown worker option\(s\) bogus; valid: a, b"
    ):
        validate.option_names({"bogus": 1, "a": 2}, ["b", "a"], "worker")
