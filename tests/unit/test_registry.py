"""Registering workflows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

import flowq


class Order(msgspec.Struct):
    """A typed payload."""

    order_id: int


def test_default_name_and_payload_type() -> None:
    """A workflow is named module.qualname and knows its payload annotation."""
    registry = flowq.Registry()

    @registry.workflow
    async def ship(payload: Order, ctx: Any) -> None:
        """Ships an order."""

    assert ship.name == f"{__name__}.test_default_name_and_payload_type.<locals>.ship"
    assert ship.payload_type is Order and ship.takes_context and ship.is_async
    assert registry.get(ship.name) is ship and ship.name in registry


def test_options_are_kept_as_defaults() -> None:
    """Options given to the decorator become the workflow's job defaults."""
    registry = flowq.Registry()

    @registry.workflow(name="bill", max_attempts=5, timeout="5m", tags=["money"], priority=3)
    def bill(payload: dict[str, int]) -> int:
        return 1

    assert (bill.name, bill.max_attempts, bill.tags, bill.priority) == ("bill", 5, ("money",), 3)
    assert bill.timeout is not None and bill.timeout.total_seconds() == 300
    assert not bill.is_async and not bill.takes_context
    assert bill({"x": 1}) == 1


def test_a_taken_name_raises_registration_error() -> None:
    """Registering a different function under a taken name raises RegistrationError."""
    registry = flowq.Registry()

    @registry.workflow(name="dup")
    async def first(payload: dict[str, Any]) -> None: ...

    with pytest.raises(flowq.RegistrationError, match="dup"):

        @registry.workflow(name="dup")
        async def second(payload: dict[str, Any]) -> None: ...

    assert registry.require("dup") is first


def test_registering_the_same_function_again_is_allowed() -> None:
    """Re-registering the same function (e.g. a module reload) replaces it quietly."""
    registry = flowq.Registry()

    async def handler(payload: dict[str, Any]) -> None: ...

    registry.workflow(name="same")(handler)
    again = registry.workflow(name="same")(handler)
    assert registry.require("same") is again


@pytest.mark.parametrize("signature", ["()", "(a, b, c)", "(*, payload)"])
def test_handler_signature_is_checked(signature: str) -> None:
    """A handler that does not take (payload) or (payload, ctx) is refused at decoration."""
    namespace: dict[str, Any] = {}
    exec(f"async def handler{signature}: pass", namespace)  # noqa: S102
    with pytest.raises(flowq.RegistrationError, match="payload"):
        flowq.Registry().workflow(namespace["handler"])


def test_unknown_name_lists_registered_ones() -> None:
    """require() on an unknown name raises UnknownWorkflowError listing what exists."""
    registry = flowq.Registry()
    registry.workflow(name="known")(lambda payload: None)
    with pytest.raises(flowq.UnknownWorkflowError, match="known"):
        registry.require("unknown")


def test_bad_max_attempts_is_refused() -> None:
    """max_attempts below 1 is refused when the workflow is declared."""
    with pytest.raises(flowq.ValidationError, match="max_attempts"):
        flowq.Registry().workflow(name="x", max_attempts=0)(lambda payload: None)


@pytest.mark.parametrize(
    "options",
    [
        {"tags": "email"},
        {"tags": ["ok", ""]},
        {"priority": "high"},
        {"retry": "fast"},
        {"timeout": "soon"},
        {"dead_letter": ""},
    ],
)
def test_workflow_options_are_checked_at_decoration(options: dict[str, Any]) -> None:
    """Malformed workflow defaults fail when the workflow is declared, not at start()."""
    with pytest.raises(flowq.ValidationError):
        flowq.Registry().workflow(name="checked", **options)(lambda payload: None)


def test_dead_letter_may_be_a_workflow_object() -> None:
    """dead_letter accepts the dead-letter workflow object and stores its name."""
    registry = flowq.Registry()
    letters = registry.workflow(name="letters")(lambda payload: None)
    main = registry.workflow(name="main", dead_letter=letters)(lambda payload: None)
    assert main.dead_letter == "letters"


def test_an_unknown_workflow_option_is_named() -> None:
    """A misspelled option is a ValidationError listing the valid ones, not a TypeError."""
    registry = flowq.Registry()
    with pytest.raises(flowq.ValidationError, match=r"retry_delay.*valid: dead_letter"):

        @registry.workflow(retry_delay=1)  # type: ignore[call-overload]
        async def handler(payload: dict[str, int]) -> None: ...

    assert len(registry) == 0


def test_a_nameless_workflow_in_a_script_is_warned_about(tmp_path: Path) -> None:
    """A workflow defined in __main__ without name= warns at decoration, pointing at the
    script's line; one with name= does not."""
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text(
        "import flowq\n"
        "\n"
        "@flowq.workflow\n"
        "async def nameless(payload: dict) -> None: ...\n"
        "\n"
        "@flowq.workflow(name='named')\n"
        "async def named(payload: dict) -> None: ...\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    )
    assert f"{script}:3: MainModuleWorkflowWarning: workflow 'nameless'" in done.stderr
    assert "'__main__.nameless'" in done.stderr
    assert "workflow 'named'" not in done.stderr
