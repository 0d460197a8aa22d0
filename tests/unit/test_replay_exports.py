"""The modules under ctx (context, current, durable, replay and their helpers) export
exactly what they define."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = ["flowq.context", "flowq.current", "flowq.durable", "flowq.steps", "flowq.replay",
           "flowq.codec", "flowq.durations", "flowq.failures"]  # fmt: skip


@pytest.mark.parametrize("module_name", MODULES)
def test_all_lists_every_public_class_and_function_and_nothing_else(module_name: str) -> None:
    """Every public class or function defined there is in __all__, and every name in
    it exists (ruff keeps it sorted)."""
    module = importlib.import_module(module_name)
    names = list(module.__all__)
    defined = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == module_name
    }
    assert sorted(defined - set(names)) == []
    assert [name for name in names if not hasattr(module, name)] == []


def test_steps_and_context_import_each_other_no_more() -> None:
    """The running job's ctx is found through flowq.current, which steps imports; only
    context imports steps (for ctx.run)."""
    import ast
    from pathlib import Path

    steps = importlib.import_module("flowq.steps")
    tree = ast.parse(Path(inspect.getfile(steps)).read_text())
    imported = {
        alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not any("context" in name for name in imported), imported
