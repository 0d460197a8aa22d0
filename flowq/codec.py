"""JSON in and out of the database, through msgspec."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import msgspec

from flowq.errors import PayloadError, SerializationError

__all__ = [
    "MAX_NESTING",
    "MAX_VALUE_BYTES",
    "decode",
    "decode_result",
    "encode",
    "encode_input",
    "encode_payload",
    "encode_result",
    "result_decoder",
]

MAX_VALUE_BYTES = 16 * 1024 * 1024
"""The largest encoded payload, output or step result flowq stores (16 MiB)."""

MAX_NESTING = 256
"""The deepest nesting of lists and dicts flowq stores: deeper values would not decode
again in a worker (Python's recursion limit), so they are refused when encoded."""

_encoder = msgspec.json.Encoder()
_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE = bytes(set(range(256)) - set(b'[]{}"'))
_FLOAT_NOT_FINITE = re.compile(rb"\xcb[\x7f\xff][\xf0-\xff]")  # msgpack float64 inf/NaN
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def encode(value: Any, *, what: str) -> str:
    """Encode ``value`` as JSON text.

    Args:
        value: Anything msgspec encodes: builtins, Structs, dataclasses, datetimes...
        what: Names the value in the error ("payload of job 'x'", "step 'fetch'").

    Raises:
        SerializationError: The value cannot be encoded, is larger than
            :data:`MAX_VALUE_BYTES` or nested deeper than :data:`MAX_NESTING`.
    """
    try:
        data = _encoder.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(f"{what} cannot be encoded as JSON: {exc}") from None
    except RecursionError:
        raise SerializationError(_too_deep(what)) from None
    if len(data) > MAX_VALUE_BYTES:
        raise SerializationError(
            f"{what} is {len(data):,} bytes as JSON, over the {MAX_VALUE_BYTES:,}-byte "
            "limit; store large data elsewhere and pass a reference"
        )
    if _nesting_over(data, MAX_NESTING):
        raise SerializationError(_too_deep(what))
    return data.decode()


def decode(text: str | bytes | None, type_: Any = Any) -> Any:
    """Decode JSON text stored by :func:`encode` (``None`` stays ``None``)."""
    if text is None:
        return None
    return msgspec.json.decode(text, type=type_)


def encode_input(value: Any, *, what: str) -> str:
    """Encode a value a user hands in (a payload, a token's output) with the rules
    every store applies alike: :func:`encode`'s, and no NaN or infinite numbers (JSON
    has none: they would be stored as null) and no NUL characters in strings.

    Raises:
        SerializationError: naming ``what`` and the rule.
    """
    text = encode_result(value, what=what)
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise SerializationError(f"{what} contains a NUL character, which flowq does not store")
    return text


def encode_result(value: Any, *, what: str) -> str:
    """Encode a value a handler produces (a step's result, a job's output) with
    :func:`encode`'s rules, and no NaN or infinite numbers: msgspec writes them as
    ``null``, so the value read back would not be the one given.

    The check costs nothing unless the JSON holds a ``null``; then one MessagePack
    encoding (in C) looks for such floats, and only when it finds one is the value
    walked, to name where it is.

    Raises:
        SerializationError: naming ``what`` and, for NaN or infinity, where it is
            (``['prices'][2]``).
    """
    text = encode(value, what=what)
    if "null" in text:
        path = _non_finite_path(value)
        if path is not None:
            raise SerializationError(
                f"{what} contains NaN or an infinite number at {path or 'the top level'}, "
                "which JSON cannot hold (it would be stored as null)"
            )
    return text


def _too_deep(what: str) -> str:
    return f"{what} is nested more than {MAX_NESTING} lists/dicts deep, the most flowq stores"


def _nesting_over(data: bytes, limit: int) -> bool:
    """Whether the JSON ``data`` nests lists and objects more than ``limit`` deep."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = unescaped.translate(_SQUARE, delete=_NOT_STRUCTURE)
    # Two adjacent quotes close one string and open the next, or enclose an empty
    # one: dropping them keeps what lies inside strings inside; then what is left
    # between quotes (strings holding brackets) is dropped.
    structure = structure.replace(b'""', b"")
    brackets = b"".join(structure.split(b'"')[::2]) if b'"' in structure else structure
    for _ in range(limit):
        brackets = brackets.replace(b"[]", b"")
        if not brackets:
            return False
    return True


def _non_finite_path(value: Any) -> str | None:
    """Where the first NaN or infinite float of ``value`` is (``""``: ``value``
    itself), or None when it has none: a fast look at its MessagePack form, where
    such floats have a telltale prefix, and a walk only when it might have one."""
    try:
        if not _FLOAT_NOT_FINITE.search(msgspec.msgpack.encode(value)):
            return None
    except (TypeError, ValueError, OverflowError):
        pass
    stack: list[tuple[Any, str]] = [(msgspec.to_builtins(value, str_keys=True), "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return path
        elif isinstance(item, dict):
            stack.extend((v, f"{path}[{k!r}]") for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(item))))
    return None


def encode_payload(payload: Any, payload_type: Any, *, workflow: str) -> str:
    """Encode a payload and check that it decodes as the workflow's payload type.

    Raises:
        SerializationError: The payload cannot be encoded as JSON.
        PayloadError: The encoded payload does not fit ``payload_type``.
    """
    text = encode_input(payload, what=f"payload for workflow {workflow!r}")
    if payload_type is not Any:
        try:
            msgspec.json.decode(text, type=payload_type)
        except msgspec.ValidationError as exc:
            raise PayloadError(
                f"payload for workflow {workflow!r} does not fit {_type_name(payload_type)}: {exc}"
            ) from None
    return text


_DECODERS: dict[Any, Callable[[str], Any]] = {}
_DECODERS_KEPT = 512
"""At most this many result types keep a decoder (annotations are few; a program that
makes types on the fly gets a fresh decoder past this)."""


def result_decoder(type_: Any) -> Callable[[str], Any]:
    """``msgspec.json.decode(text, type=type_)`` as a function, its decoder made once
    per type (a type that cannot be a dictionary key gets a new one each time).

    Raises:
        TypeError: msgspec cannot decode into ``type_``.
    """
    try:
        return _DECODERS[type_]
    except KeyError:
        pass
    except TypeError:  # an unhashable annotation
        return msgspec.json.Decoder(type_).decode
    decode_text = msgspec.json.Decoder(type_).decode
    if len(_DECODERS) < _DECODERS_KEPT:
        _DECODERS[type_] = decode_text
    return decode_text


def _type_name(type_: Any) -> str:
    return getattr(type_, "__qualname__", None) or repr(type_)


def decode_result(text: str, type_: Any, *, what: str) -> Any:
    """Decode a stored result into its annotated type.

    The decoder of each type is made once (:func:`result_decoder`): a replay decodes
    every recorded step's result.

    Raises:
        SerializationError: The value does not fit ``type_`` (e.g. a step annotated
            ``-> int`` returned a string): named, instead of failing on every replay.
    """
    try:
        return result_decoder(type_)(text)
    except msgspec.ValidationError as exc:
        raise SerializationError(
            f"{what} does not fit its annotation {_type_name(type_)}: {exc}"
        ) from None
