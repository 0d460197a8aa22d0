"""The public names of flowq and flowq_testing."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest


@pytest.mark.parametrize("module_name", ["flowq", "flowq_testing"])
def test_all_is_sorted_and_complete(module_name: str) -> None:
    """__all__ is sorted, and every name in it exists."""
    module = importlib.import_module(module_name)
    names = list(module.__all__)
    assert names == sorted(names)
    missing = [name for name in names if not hasattr(module, name)]
    assert missing == []


def test_every_error_derives_from_flowq_error() -> None:
    """Every exception flowq exports is a FlowqError; validation ones are ValueErrors too."""
    import flowq

    errors = [getattr(flowq, n) for n in flowq.__all__ if n.endswith("Error")]
    assert errors and all(issubclass(e, flowq.FlowqError) for e in errors)
    for error in (flowq.ValidationError, flowq.PayloadError, flowq.ScheduleError,
                  flowq.SerializationError, flowq.DependencyError):  # fmt: skip
        assert issubclass(error, ValueError)


PURE_MODULES = ["flowq.registry", "flowq.models", "flowq.durations", "flowq.errors",
                "flowq.codec", "flowq.failures", "flowq.store.batch", "flowq.replay"]  # fmt: skip


def _imports_of(module_name: str) -> set[str]:
    """Every module that ``module_name`` imports, following flowq's own modules."""
    seen: set[str] = set()
    todo = [module_name]
    while todo:
        name = todo.pop()
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or name in seen:
            continue
        seen.add(name)
        tree = ast.parse(Path(spec.origin).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                found = [node.module]
            else:
                continue
            for imported in found:
                if imported.startswith("flowq."):
                    todo.append(imported)
                else:
                    seen.add(imported)
    return seen


@pytest.mark.parametrize("module_name", PURE_MODULES)
def test_pure_layers_import_neither_sqlalchemy_nor_anyio(module_name: str) -> None:
    """Definitions and replay decisions stay free of I/O libraries (DESIGN section 7)."""
    imported = _imports_of(module_name)
    assert sorted(m for m in imported if m.split(".")[0] in ("sqlalchemy", "anyio")) == []
