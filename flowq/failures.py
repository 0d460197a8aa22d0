"""Stored errors: how a failed durable call is written down, and raised again on replay.

Writing (:func:`error_json`): a failed step's error is stored as ``{"message",
"type"}``, plus ``"args"`` when the exception's arguments are not just its message
and survive JSON unchanged (:func:`error_args`). A child that ``ctx.call`` waited
for and that failed for good is stored the same way plus a snapshot of the child
(:func:`child_failure_json`, read back by :func:`child_failure`).

Reading (:func:`replayed_error`): when a handler runs again in the same attempt, the
step raises what is rebuilt from that record, so an ``except`` that caught the
original catches the replay too:

- ``type`` names a builtin (``ValueError``) or ``module.Qualname``; the module is
  imported if it is not yet, and the name must lead to that very class, a subclass
  of :class:`Exception` (never ``KeyboardInterrupt``, ``SystemExit``, a
  cancellation or other ``BaseException``-only types);
- the exception is made as ``cls(*args)``, or ``cls(message)`` without stored args
  (records written before args were stored, too);
- when any of that fails (a class defined inside a function, a module that no longer
  imports, a constructor that rejects the arguments), the replay raises
  :class:`flowq.StepError` carrying the type name instead.

Either way the exception carries a note (:pep:`678`) saying it was replayed.

Whatever a handler or a step raises can be written down (:func:`exception_message`,
:func:`exception_name`, :func:`storable_text`): an exception whose ``__str__`` and
``__repr__`` raise is named by its type, lone surrogates and NUL characters are
escaped, and the text is cut to :data:`MAX_ERROR_BYTES`.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import importlib
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from flowq import codec
from flowq.errors import JobFailedError, SerializationError, StepError
from flowq.models import Job

__all__ = [
    "MAX_ARGS_BYTES",
    "MAX_ERROR_BYTES",
    "REPLAYED_NOTE",
    "ChildFailure",
    "child_failure",
    "child_failure_json",
    "error_args",
    "error_json",
    "exception_message",
    "exception_name",
    "rebuild_exception",
    "replayed_error",
    "storable_text",
]

REPLAYED_NOTE = "flowq: replayed"
"""How the note added to every replayed step failure begins."""

MAX_ARGS_BYTES = 64 * 1024
"""The largest encoded ``args`` stored with a step error; longer ones are left out."""


MAX_ERROR_BYTES = 64 * 1024
"""The longest error message (and error type name) stored, in UTF-8 bytes; longer
ones are cut and end with a note giving their full length."""

_TRUNCATED = "... [truncated by flowq: {} characters in all]"


def exception_name(exc: BaseException) -> str:
    """``ValueError`` for builtins, ``package.module.Error`` for the rest (storable:
    see :func:`storable_text`)."""
    try:
        name = _type_name(type(exc))
    except Exception:  # a metaclass whose __module__ or __qualname__ misbehaves
        name = "<unnamed exception type>"
    return storable_text(name)


def exception_message(exc: BaseException) -> str:
    """The exception's text, or its repr when it has none, made storable.

    Never raises: when ``str()`` raises, the repr is used; when that raises too,
    ``"<unprintable TypeName object>"``. The text is passed through
    :func:`storable_text` (escaped, at most :data:`MAX_ERROR_BYTES`).
    """
    try:
        text = str(exc)
    except Exception:
        text = ""
    if not text:
        try:
            text = repr(exc)
        except Exception:
            text = ""
    if not text:
        text = f"<unprintable {_safe_type_name(exc)} object>"
    return storable_text(text)


def storable_text(text: str, limit: int = MAX_ERROR_BYTES) -> str:
    """``text`` as it can be stored in every database, and read back, anywhere.

    Lone surrogates (a file name read with ``os.listdir`` from undecodable bytes)
    and NUL characters are written as escapes (``\\udcff``, ``\\x00``), and text of
    more than ``limit`` UTF-8 bytes is cut to fit, with a note of its full length.

    Args:
        text: Any string (a ``str`` subclass is turned into a plain ``str``).
        limit: The most UTF-8 bytes of the result.
    """
    text = str.__str__(text)
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        data = text.encode()
    except UnicodeEncodeError:
        data = text.encode("utf-8", "backslashreplace")
        text = data.decode()
    if len(data) <= limit:
        return text
    note = _TRUNCATED.format(f"{len(text):,}")
    kept = data[: max(0, limit - len(note.encode()))].decode("utf-8", "ignore")
    return kept + note


def error_json(exc: BaseException) -> str:
    """A failed call's error as stored: ``{"message": ..., "type": ...}``, with
    ``"args"`` when a replay needs them to rebuild it (:func:`error_args`)."""
    message = exception_message(exc)
    error: dict[str, Any] = {"message": message, "type": exception_name(exc)}
    args = error_args(exc, message)
    if args is not None:
        error["args"] = args
    return codec.encode(error, what="step error")


def error_args(exc: BaseException, message: str) -> list[Any] | None:
    """The arguments to store with a failure, or None when there is no need or no way.

    None when ``exc.args`` is just ``(message,)`` (rebuilding from the message is
    the same), or when the arguments do not come back equal from JSON (objects,
    tuples, bytes, non-string keys...) or take more than :data:`MAX_ARGS_BYTES`.
    """
    args = exc.args
    try:
        if len(args) == 1 and isinstance(args[0], str) and args[0] == message:
            return None
        arguments = list(args)
        text = codec.encode(arguments, what="step error arguments")
        if len(text) > MAX_ARGS_BYTES:
            return None
        decoded = codec.decode(text)
        same = bool(decoded == arguments)
    except Exception:  # not JSON (SerializationError), or an __eq__ that raises
        return None
    return decoded if same and isinstance(decoded, list) else None


def rebuild_exception(type_name: str, message: str, args: Any = None) -> Exception | str:
    """Rebuild a recorded exception, or say why it cannot be.

    Args:
        type_name: ``ValueError`` for a builtin, ``package.module.Qualname`` otherwise.
        message: The recorded message; the only argument when ``args`` is None.
        args: The recorded arguments (a list), or None.

    Returns:
        The new exception, or a short reason why it could not be made.
    """
    found = _exception_class(type_name)
    if isinstance(found, str):
        return found
    arguments = list(args) if isinstance(args, list) else [message]
    try:
        rebuilt = found(*arguments)
    except Exception as exc:
        return f"{type_name}(*args) raised {type(exc).__name__}"
    if not isinstance(rebuilt, found):
        return f"{type_name}(*args) did not return a {type_name}"
    return rebuilt


def replayed_error(step: str, recorded: str | bytes) -> Exception:
    """The exception a replay raises for a step failure recorded in this attempt.

    Args:
        step: The step's name (for :class:`flowq.StepError` and the note).
        recorded: The stored error (JSON ``{"message", "type"[, "args"]}``).

    Returns:
        The rebuilt exception, else a :class:`flowq.StepError` with the type name;
        either has a note that begins with :data:`REPLAYED_NOTE`.
    """
    try:
        error = codec.decode(recorded)
    except Exception:
        error = None
    if not isinstance(error, dict):
        error = {}
    message = str(error.get("message", ""))
    type_name = str(error.get("type", ""))
    rebuilt = rebuild_exception(type_name, message, error.get("args"))
    if isinstance(rebuilt, str):
        note = (
            f"{REPLAYED_NOTE}: step {step!r} failed earlier in this attempt and did not "
            f"run again; its {type_name} could not be rebuilt ({rebuilt})"
        )
        rebuilt = StepError(step, message, type_name)
    else:
        note = (
            f"{REPLAYED_NOTE}: step {step!r} failed with this exception earlier in this "
            f"attempt and did not run again; recorded message: {message}"
        )
    with contextlib.suppress(Exception):  # a class that refuses new attributes
        rebuilt.add_note(note)
    return rebuilt


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildFailure:
    """A child failure as ``ctx.call`` records it (``job`` is None in older records,
    which hold only ``job_id``)."""

    message: str = ""
    type: str = ""
    job: Job | None = None
    job_id: int | None = None


def child_failure_json(child: Job) -> str:
    """How ``ctx.call`` records a child that failed for good or was cancelled.

    ``{"message", "type"}`` like a failed step, plus ``job``: the child as stored, so
    that a replay raises the same :class:`flowq.JobFailedError` without reading the
    child's row (which ``cleanup_old_jobs`` may have deleted by then). A child whose
    payload and output are too large to record together is recorded without them
    (``None``).
    """
    error = JobFailedError(child)
    what = f"failure of child job {child.id}"
    record: dict[str, Any] = {"message": str(error), "type": exception_name(error), "job": child}
    try:
        return codec.encode(record, what=what)
    except SerializationError:
        record["job"] = dataclasses.replace(child, payload=None, output=None)
        return codec.encode(record, what=what)


def child_failure(recorded: str) -> ChildFailure:
    """Read a child failure written by :func:`child_failure_json` (or by an older
    version, which stored only ``{"job_id": N}``)."""
    return codec.decode(recorded, ChildFailure)  # type: ignore[no-any-return]


def _exception_class(type_name: str) -> type[Exception] | str:
    """The Exception subclass ``type_name`` names, or why there is none."""
    parts = type_name.split(".")
    if not all(part.isidentifier() for part in parts):
        return f"{type_name!r} is not an importable name"
    if len(parts) == 1:
        found: object = getattr(builtins, type_name, None)
        if not (isinstance(found, type) and _type_name(found) == type_name):
            found = None
    else:
        found = _find_in_modules(type_name, parts)
    if not isinstance(found, type):
        return f"{type_name!r} was not found"
    if not issubclass(found, Exception):
        return f"{type_name} is not an Exception subclass"
    return found


def _find_in_modules(type_name: str, parts: list[str]) -> type | None:
    """The class named ``a.b.C.D``: looked up in module ``a.b.C``, then ``a.b``, then
    ``a`` (a qualname may have dots); modules already imported first, then importing
    them. It must be that very class (module and qualname), not an alias."""
    cuts = range(len(parts) - 1, 0, -1)
    for importing in (False, True):
        for cut in cuts:
            module_name = ".".join(parts[:cut])
            module = sys.modules.get(module_name)
            if module is None and importing:
                module = _import(module_name)
            if module is None:
                continue
            found: Any = module
            for attribute in parts[cut:]:
                found = getattr(found, attribute, None)
                if found is None:
                    break
            if isinstance(found, type) and _type_name(found) == type_name:
                return found
    return None


def _import(module_name: str) -> ModuleType | None:
    try:
        return importlib.import_module(module_name)
    except Exception:  # not a module, or one that fails to import now
        return None


def _safe_type_name(exc: BaseException) -> str:
    try:
        return type(exc).__qualname__
    except Exception:
        return "exception"


def _type_name(kind: type) -> str:
    """How :func:`exception_name` names an exception of this class."""
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"
