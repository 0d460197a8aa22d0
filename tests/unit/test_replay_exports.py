"""The modules under ctx import each other in one direction (their exports are checked
with every module's in test_public_api)."""

from __future__ import annotations

import importlib
import inspect


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
