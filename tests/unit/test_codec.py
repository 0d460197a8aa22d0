"""JSON in and out of the database (flowq.codec), without a database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import pytest

import flowq
from flowq import codec


class Order(msgspec.Struct, frozen=True):
    """A typed payload."""

    sku: str
    quantity: int


@dataclass(frozen=True)
class Point:
    """A dataclass value."""

    x: int
    y: int


MOMENT = datetime(2030, 1, 31, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "type_"),
    [
        (None, Any),
        (0, int),
        (1.5, float),
        ("text", str),
        ([1, "a", None], list[Any]),
        ({"a": {"b": [1, 2]}}, dict[str, Any]),
        (MOMENT, datetime),
        (uuid.UUID(int=7), uuid.UUID),
        (Order("pen", 3), Order),
        (Point(1, 2), Point),
    ],
)
def test_values_round_trip_through_their_type(value: Any, type_: Any) -> None:
    """What encode writes, decode reads back equal when given the type."""
    text = codec.encode(value, what="a value")
    assert isinstance(text, str)
    assert codec.decode(text, type_) == value


def test_decode_without_a_type_gives_builtins_and_none_stays_none() -> None:
    """Untyped decoding yields plain JSON values; a missing value stays None."""
    assert codec.decode(codec.encode(Order("pen", 3), what="x")) == {"sku": "pen", "quantity": 3}
    assert codec.decode(codec.encode(MOMENT, what="x")) == "2030-01-31T12:30:00Z"
    assert codec.decode(None) is None
    assert codec.decode(None, int) is None


@pytest.mark.parametrize("value", [object(), {1j: 2}, {"f": lambda: None}, [1, object()]])
def test_values_json_cannot_hold_name_what_they_are(value: Any) -> None:
    """SerializationError (a ValidationError and ValueError) names the value."""
    with pytest.raises(
        flowq.SerializationError, match=r"^result of step 'fetch' cannot be encoded"
    ):
        codec.encode(value, what="result of step 'fetch'")
    assert issubclass(flowq.SerializationError, ValueError)


def test_values_over_the_size_limit_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """At the limit a value is stored; one byte more is a SerializationError saying so."""
    monkeypatch.setattr(codec, "MAX_VALUE_BYTES", 12)
    assert codec.encode("x" * 10, what="output") == '"' + "x" * 10 + '"'
    with pytest.raises(flowq.SerializationError, match=r"output is 13 bytes as JSON, over the 12"):
        codec.encode("x" * 11, what="output")


def test_the_default_limit_is_16_mib() -> None:
    """Payloads, outputs and step results up to 16 MiB are stored."""
    assert codec.MAX_VALUE_BYTES == 16 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "type_", "annotation"),
    [
        ('"ten"', int, "int"),
        ('{"sku": "pen"}', Order, "Order"),
        ("[1, 2]", dict[str, int], "dict"),
    ],
)
def test_decode_result_names_a_value_that_does_not_fit_its_annotation(
    text: str, type_: Any, annotation: str
) -> None:
    """A stored result that does not fit the annotation raises SerializationError
    naming it and the annotation (not msgspec's error)."""
    with pytest.raises(flowq.SerializationError) as raised:
        codec.decode_result(text, type_, what="result of step 'count' (job 3)")
    message = str(raised.value)
    assert message.startswith("result of step 'count' (job 3) does not fit its annotation")
    assert annotation in message


def test_decode_result_gives_the_annotated_type() -> None:
    """A fitting result comes back as its annotated type."""
    assert codec.decode_result('{"sku": "pen", "quantity": 2}', Order, what="x") == Order("pen", 2)
    assert codec.decode_result("[1, 2]", Any, what="x") == [1, 2]


def test_a_result_type_gets_one_decoder_and_unhashable_ones_still_decode() -> None:
    """Replays decode through one decoder per annotation (made once), which decodes as
    msgspec does; an annotation that cannot be a dictionary key still decodes, and an
    annotation msgspec cannot decode into raises TypeError when it is used."""
    assert codec.result_decoder(Order) is codec.result_decoder(Order)
    assert codec.result_decoder(list[int])("[1, 2]") == [1, 2]
    unhashable = Annotated[int, msgspec.Meta(ge=0), {"not": "hashable"}]
    with pytest.raises(TypeError):
        hash(unhashable)
    assert codec.decode_result("3", unhashable, what="x") == 3
    with pytest.raises(flowq.SerializationError, match="does not fit"):
        codec.decode_result("-1", unhashable, what="x")
    with pytest.raises(TypeError):
        codec.decode_result("1", object(), what="x")


def test_payloads_are_checked_against_the_workflow_payload_type() -> None:
    """encode_payload encodes, then refuses a payload that does not fit (PayloadError)."""
    assert codec.encode_payload(Order("pen", 1), Order, workflow="ship") == (
        '{"sku":"pen","quantity":1}'
    )
    assert codec.encode_payload({"any": "thing"}, Any, workflow="ship") == '{"any":"thing"}'
    with pytest.raises(flowq.PayloadError, match=r"payload for workflow 'ship' does not fit Order"):
        codec.encode_payload({"sku": "pen"}, Order, workflow="ship")
    with pytest.raises(flowq.SerializationError, match=r"payload for workflow 'ship' cannot be"):
        codec.encode_payload(object(), Order, workflow="ship")


def _nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for index in range(depth):
        value = [value] if index % 2 else {"k": value}
    return value


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        (_nested(codec.MAX_NESTING), False),
        (_nested(codec.MAX_NESTING + 1), True),
        (_nested(2000), True),  # past Python's recursion limit while encoding
        (["[[[[{{{{"] * 400, False),  # brackets inside strings do not nest
        ([{'"[': '\\"]['}] * 400, False),  # escaped quotes and backslashes
        ([{"": "", "a": "[", "b": "]"}] * 400, False),
        ([_nested(200)] * 5, False),  # wide, not deep
    ],
)
def test_values_nested_too_deep_are_refused(value: Any, refused: bool) -> None:
    """encode refuses more than MAX_NESTING lists/dicts, counted outside strings."""
    if refused:
        with pytest.raises(flowq.SerializationError, match="nested more than 256"):
            codec.encode(value, what="v")
    else:
        assert msgspec.json.decode(codec.encode(value, what="v")) == msgspec.json.decode(
            msgspec.json.encode(value)
        )


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ({"x": float("nan")}, "NaN"),
        ([1.0, float("-inf")], "NaN"),
        (Order(sku="a", quantity=1), None),
        ({"x": None, "y": 1.5e308, "z": -0.0}, None),
        ("a\x00b", "NUL"),
        ({"k\x00": 1}, "NUL"),
        ("a\\u0000b", None),  # a backslash followed by u0000 is text, not NUL
        ("a\\\x00", "NUL"),
        ("\udc80", "surrogate"),
    ],
)
def test_input_values_follow_the_same_rules_everywhere(value: Any, rule: str | None) -> None:
    """encode_input refuses NaN/inf, NUL and lone surrogates and keeps everything else."""
    if rule is None:
        assert codec.encode_input(value, what="v") == codec.encode(value, what="v")
    else:
        with pytest.raises(flowq.SerializationError, match=rule):
            codec.encode_input(value, what="v")
