"""JSON in and out of the database, through msgspec."""

from __future__ import annotations

from typing import Any

import msgspec

from flowq.errors import PayloadError, SerializationError

__all__ = ["MAX_VALUE_BYTES", "decode", "decode_result", "encode", "encode_payload"]

MAX_VALUE_BYTES = 16 * 1024 * 1024
"""The largest encoded payload, output or step result flowq stores (16 MiB)."""

_encoder = msgspec.json.Encoder()


def encode(value: Any, *, what: str) -> str:
    """Encode ``value`` as JSON text.

    Args:
        value: Anything msgspec encodes: builtins, Structs, dataclasses, datetimes...
        what: Names the value in the error ("payload of job 'x'", "step 'fetch'").

    Raises:
        SerializationError: The value cannot be encoded or is larger than
            :data:`MAX_VALUE_BYTES`.
    """
    try:
        data = _encoder.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(f"{what} cannot be encoded as JSON: {exc}") from None
    if len(data) > MAX_VALUE_BYTES:
        raise SerializationError(
            f"{what} is {len(data):,} bytes as JSON, over the {MAX_VALUE_BYTES:,}-byte "
            "limit; store large data elsewhere and pass a reference"
        )
    return data.decode()


def decode(text: str | bytes | None, type_: Any = Any) -> Any:
    """Decode JSON text stored by :func:`encode` (``None`` stays ``None``)."""
    if text is None:
        return None
    return msgspec.json.decode(text, type=type_)


def encode_payload(payload: Any, payload_type: Any, *, workflow: str) -> str:
    """Encode a payload and check that it decodes as the workflow's payload type.

    Raises:
        SerializationError: The payload cannot be encoded as JSON.
        PayloadError: The encoded payload does not fit ``payload_type``.
    """
    text = encode(payload, what=f"payload for workflow {workflow!r}")
    if payload_type is not Any:
        try:
            msgspec.json.decode(text, type=payload_type)
        except msgspec.ValidationError as exc:
            raise PayloadError(
                f"payload for workflow {workflow!r} does not fit {_type_name(payload_type)}: {exc}"
            ) from None
    return text


def _type_name(type_: Any) -> str:
    return getattr(type_, "__qualname__", None) or repr(type_)


def decode_result(text: str, type_: Any, *, what: str) -> Any:
    """Decode a stored result into its annotated type.

    Raises:
        SerializationError: The value does not fit ``type_`` (e.g. a step annotated
            ``-> int`` returned a string): named, instead of failing on every replay.
    """
    try:
        return msgspec.json.decode(text, type=type_)
    except msgspec.ValidationError as exc:
        raise SerializationError(
            f"{what} does not fit its annotation {_type_name(type_)}: {exc}"
        ) from None
