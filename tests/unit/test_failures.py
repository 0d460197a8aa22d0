"""Recorded step failures rebuilt for a replay (flowq.failures), without a database."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import flowq
from flowq.failures import (
    MAX_ARGS_BYTES,
    MAX_ERROR_BYTES,
    error_args,
    error_json,
    exception_message,
    exception_name,
    rebuild_exception,
    replayed_error,
    storable_text,
)


class CardDeclined(Exception):
    """A user error taking two arguments."""

    def __init__(self, card: str, code: int) -> None:
        super().__init__(card, code)
        self.card = card
        self.code = code


class Outer:
    """Holds a nested exception class (a qualname with a dot)."""

    class Inner(LookupError):
        """Nested, still importable."""


class NeedsKeyword(Exception):
    """A class whose constructor does not take its own args."""

    def __init__(self, *, reason: str) -> None:
        super().__init__(f"because {reason}")


@dataclass(eq=False)
class BadEquality:
    """An argument that JSON can hold (as an object), whose == raises."""

    value: int = 1

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no comparing")

    __hash__ = object.__hash__


Alias = CardDeclined


def replay(exc: BaseException, step: str = "s") -> Exception:
    """Record ``exc`` as a step failure, then rebuild it as a replay would."""
    return replayed_error(step, error_json(exc))


def record(message: str, type_name: str, **extra: Any) -> str:
    """A stored error, written by hand (as an older flowq, or a corrupt row, would)."""
    return json.dumps({"message": message, "type": type_name, **extra})


# -- what is stored -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "name", "message"),
    [
        (ValueError("bad"), "ValueError", "bad"),
        (KeyError("k"), "KeyError", "'k'"),
        (TimeoutError(), "TimeoutError", "TimeoutError()"),  # no text: its repr
        (CardDeclined("visa", 51), f"{__name__}.CardDeclined", "('visa', 51)"),
        (Outer.Inner("nested"), f"{__name__}.Outer.Inner", "nested"),
        (flowq.TokenError("gone"), "flowq.errors.TokenError", "gone"),
    ],
)
def test_stored_errors_name_the_type_and_message(
    exc: BaseException, name: str, message: str
) -> None:
    """exception_name: bare for builtins, module-qualified otherwise; exception_message:
    the text, else the repr; error_json stores both."""
    assert (exception_name(exc), exception_message(exc)) == (name, message)
    stored = json.loads(error_json(exc))
    assert (stored["type"], stored["message"]) == (name, message)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ValueError("bad"), None),  # args are the message: nothing more to store
        (KeyError("k"), ["k"]),  # str(KeyError('k')) is "'k'"
        (ValueError(), []),
        (OSError(2, "No such file"), [2, "No such file"]),
        (CardDeclined("visa", 51), ["visa", 51]),
        (ValueError({"field": "amount", "limits": [1, 2.5, None, True]}),
         [{"field": "amount", "limits": [1, 2.5, None, True]}]),
        (ValueError(("a", 1)), None),  # a tuple comes back a list
        (ValueError(b"raw"), None),
        (ValueError(datetime(2030, 1, 1, tzinfo=UTC)), None),
        (ValueError({1: "int key"}), None),
        (ValueError(object()), None),
        (ValueError(BadEquality()), None),
        (ValueError(float("nan")), None),
        (ValueError("x" * MAX_ARGS_BYTES, 1), None),  # too long to store
    ],
)  # fmt: skip
def test_args_are_stored_only_when_needed_and_exact(
    exc: BaseException, expected: list[Any] | None
) -> None:
    """error_args: None when (message,) rebuilds the exception or JSON would change the
    arguments; else the arguments as a list."""
    message = str(exc) or repr(exc)
    assert error_args(exc, message) == expected
    stored = json.loads(error_json(exc))
    stored_message = exception_message(exc)  # the same, cut to MAX_ERROR_BYTES
    assert stored["message"] == stored_message and ("args" in stored) == (expected is not None)


# -- rebuilt as the original type ------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("invalid literal for int() with base 10: 'ten'"),
        KeyError("missing"),
        LookupError(),
        TimeoutError(),
        ConnectionError("gateway down"),
        FileNotFoundError(2, "No such file or directory"),
        UnicodeError("bad text"),
        CardDeclined("visa", 51),
        Outer.Inner("nested"),
        flowq.ValidationError("a flowq error, too"),
    ],
)
def test_replayed_failures_keep_their_type_args_and_message(exc: Exception) -> None:
    """Builtins and importable classes come back as the same type, equal args and
    message, with a note saying they were replayed."""
    rebuilt = replay(exc, step="charge")
    assert type(rebuilt) is type(exc)
    assert rebuilt.args == exc.args and str(rebuilt) == str(exc)
    assert rebuilt.__notes__ == [
        "flowq: replayed: step 'charge' failed with this exception earlier in this "
        f"attempt and did not run again; recorded message: {str(exc) or repr(exc)}"
    ]


def test_user_attributes_are_rebuilt_by_the_constructor() -> None:
    """cls(*args) runs the class's own __init__, so its attributes are back."""
    rebuilt = replay(CardDeclined("visa", 51))
    assert isinstance(rebuilt, CardDeclined) and (rebuilt.card, rebuilt.code) == ("visa", 51)


def test_a_record_without_args_rebuilds_from_its_message() -> None:
    """Records written before args were stored: cls(message)."""
    rebuilt = replayed_error("s", record("bad amount", "ValueError"))
    assert type(rebuilt) is ValueError and rebuilt.args == ("bad amount",)
    rebuilt = replayed_error("s", record("gone", f"{__name__}.Outer.Inner"))
    assert type(rebuilt) is Outer.Inner and rebuilt.args == ("gone",)


def test_a_module_not_imported_yet_is_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A class from a module this process has not imported (the step body imported it
    in another process) is found by importing its module."""
    module_name = f"flowq_test_errors_{uuid.uuid4().hex}"
    (tmp_path / f"{module_name}.py").write_text(
        "class RateLimited(Exception):\n"
        "    def __init__(self, retry_after: int) -> None:\n"
        "        super().__init__(retry_after)\n"
        "        self.retry_after = retry_after\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert module_name not in sys.modules
    try:
        stored = record("retry after 30s", f"{module_name}.RateLimited", args=[30])
        rebuilt = replayed_error("s", stored)
        assert type(rebuilt).__module__ == module_name
        assert type(rebuilt).__qualname__ == "RateLimited"
        assert rebuilt.retry_after == 30  # type: ignore[attr-defined]
    finally:
        sys.modules.pop(module_name, None)


# -- the StepError fallback ------------------------------------------------------------


def test_a_class_defined_in_a_function_falls_back_to_step_error() -> None:
    """Not importable: StepError with the step, the type name and the message."""

    class LocalError(Exception):
        pass

    rebuilt = replay(LocalError("not found"), step="probe")
    assert type(rebuilt) is flowq.StepError
    assert rebuilt.step == "probe" and rebuilt.message == "not found"
    assert rebuilt.error_type == f"{__name__}.{LocalError.__qualname__}"
    assert str(rebuilt) == f"step 'probe' failed: {rebuilt.error_type}: not found"
    [note] = rebuilt.__notes__
    assert note.startswith("flowq: replayed: step 'probe' failed earlier in this attempt")
    assert "is not an importable name" in note


@pytest.mark.parametrize(
    ("type_name", "args", "reason"),
    [
        ("KeyboardInterrupt", None, "not an Exception subclass"),
        ("SystemExit", [1], "not an Exception subclass"),
        ("GeneratorExit", None, "not an Exception subclass"),
        (f"{asyncio.CancelledError.__module__}.CancelledError", None, "not an Exception"),
        ("flowq.durable.Suspend", [None, None], "not an Exception subclass"),
        ("int", None, "not an Exception subclass"),
        ("NoSuchBuiltinError", None, "was not found"),
        ("flowq_no_such_module_anywhere.Error", None, "was not found"),
        ("flowq.errors.NoSuchError", None, "was not found"),
        (f"{__name__}.Alias", ["visa", 51], "was not found"),  # an alias, not the class
        ("builtins.ValueError", None, "was not found"),  # builtins are stored bare
        (f"{__name__}.NeedsKeyword", None, "raised TypeError"),
        (f"{__name__}.CardDeclined", ["only one"], "raised TypeError"),
        ("ExceptionGroup", None, "raised TypeError"),
        ("os.path.join", None, "was not found"),
    ],
)
def test_types_that_cannot_be_rebuilt_fall_back_to_step_error(
    type_name: str, args: list[Any] | None, reason: str
) -> None:
    """BaseException-only types are never rebuilt; unknown names, aliases and
    constructors that refuse the args fall back to StepError naming the type."""
    extra = {} if args is None else {"args": args}
    rebuilt = replayed_error("s", record("recorded message", type_name, **extra))
    assert type(rebuilt) is flowq.StepError
    assert rebuilt.error_type == type_name and rebuilt.message == "recorded message"
    assert reason in rebuilt.__notes__[0]
    assert isinstance(rebuild_exception(type_name, "recorded message", args), str)


@pytest.mark.parametrize("stored", ["not json", "[1, 2]", "{}", '{"type": 5}'])
def test_a_malformed_record_still_raises_step_error(stored: str) -> None:
    """A row that is not a recorded error at all: StepError, never a crash."""
    assert type(replayed_error("s", stored)) is flowq.StepError


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class _StrSubclass(str):
    pass


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("plain", "plain"),
        ("caf\u00e9 \u2603", "caf\u00e9 \u2603"),  # any valid Unicode is kept
        ("name-\udcff\udcfe.csv", "name-\\udcff\\udcfe.csv"),  # lone surrogates escaped
        ("a\x00b", "a\\x00b"),  # NUL escaped
        (_StrSubclass("sub"), "sub"),
    ],
)
def test_storable_text_escapes_what_databases_refuse(text: str, stored: str) -> None:
    """Lone surrogates and NULs become visible escapes; the result encodes as UTF-8."""
    result = storable_text(text)
    assert result == stored and type(result) is str
    result.encode()


@pytest.mark.parametrize("char", ["x", "\u00e9", "\u2603", "\U0001f600", "\udcff"])
def test_storable_text_cuts_long_text_to_the_byte_limit(char: str) -> None:
    """Text over MAX_ERROR_BYTES (counted in UTF-8) is cut, never inside a character,
    and says how long it was."""
    text = char * (MAX_ERROR_BYTES + 10)
    result = storable_text(text)
    assert len(result.encode()) <= MAX_ERROR_BYTES
    shown = len(text) * (6 if char == "\udcff" else 1)  # a surrogate is escaped first
    assert result.endswith(f"... [truncated by flowq: {shown:,} characters in all]")
    assert len(result.encode()) > MAX_ERROR_BYTES - 100
    assert storable_text("y" * MAX_ERROR_BYTES) == "y" * MAX_ERROR_BYTES


def test_exception_message_never_raises() -> None:
    """str() raising falls back to repr(), repr() raising to the type name; errors of
    either are stored escaped and cut."""
    assert exception_message(_Unprintable()) == "<unprintable _Unprintable object>"
    assert exception_message(ValueError("bad \udcff")) == "bad \\udcff"
    assert len(exception_message(ValueError("x" * 20_000_000)).encode()) <= MAX_ERROR_BYTES
    stored = json.loads(error_json(_Unprintable()))
    assert stored["message"] == "<unprintable _Unprintable object>"
    assert stored["type"].endswith("._Unprintable")
