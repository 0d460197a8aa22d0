"""The public names of flowq and flowq_testing."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import logging
import pkgutil
import typing
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


def _all_modules() -> list[str]:
    import flowq
    import flowq_testing

    names = []
    for package in (flowq, flowq_testing):
        names.append(package.__name__)
        names += [
            info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
        ]
    return sorted(names)


def _defined_public_names(module: object) -> set[str]:
    """Names a module defines at its top level (classes, functions, assignments),
    without underscores, type variables and loggers."""
    tree = ast.parse(Path(inspect.getfile(module)).read_text())  # type: ignore[arg-type]
    defined: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined |= {t.id for t in targets if isinstance(t, ast.Name)}
    return {
        name
        for name in defined
        if not name.startswith("_")
        and not isinstance(
            getattr(module, name, None), typing.TypeVar | typing.ParamSpec | logging.Logger
        )
    }


@pytest.mark.parametrize("module_name", _all_modules())
def test_every_module_exports_exactly_what_it_defines(module_name: str) -> None:
    """Both directions, as httpx checks: every public name a module defines is in its
    ``__all__``, and every name in ``__all__`` exists (ruff keeps it sorted)."""
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    assert names is not None, f"{module_name} has no __all__"
    assert [name for name in names if not hasattr(module, name)] == []
    assert sorted(_defined_public_names(module) - set(names)) == []


def test_what_users_catch_is_exported() -> None:
    """Every exception class of flowq.errors is a top-level name."""
    import flowq
    import flowq.errors

    errors = {
        name
        for name, value in vars(flowq.errors).items()
        if isinstance(value, type) and issubclass(value, Exception)
    }
    assert sorted(errors - set(flowq.__all__)) == []


def test_every_error_derives_from_flowq_error() -> None:
    """Every exception flowq exports is a FlowqError; validation ones are ValueErrors too."""
    import flowq

    errors = [getattr(flowq, n) for n in flowq.__all__ if n.endswith("Error")]
    assert errors and all(issubclass(e, flowq.FlowqError) for e in errors)
    for error in (flowq.ValidationError, flowq.PayloadError, flowq.ScheduleError,
                  flowq.SerializationError, flowq.DependencyError):  # fmt: skip
        assert issubclass(error, ValueError)


PURE_MODULES = ["flowq.registry", "flowq.models", "flowq.durations", "flowq.errors", "flowq.cron",
                "flowq.schedules",
                "flowq.codec", "flowq.failures", "flowq.replay", "flowq.clock", "flowq.current",
                "flowq.validate", "flowq.options", "flowq.steps",
                "flowq.store", "flowq.store.base", "flowq.store.transitions", "flowq.store.rows",
                "flowq.store.batch", "flowq.store.wakeups"]  # fmt: skip
IO_LIBRARIES = ("sqlalchemy", "anyio", "asyncpg", "aiosqlite")


class _Imports(ast.NodeVisitor):
    """The modules a module's code imports (``if TYPE_CHECKING:`` blocks left out)."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [alias.name for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module is None:
            return
        self.found.append(node.module)
        # ``from flowq.store import rows`` imports the module flowq.store.rows too.
        package = importlib.util.find_spec(node.module) if node.module.startswith("flowq") else None
        if package is not None and package.submodule_search_locations is not None:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                if importlib.util.find_spec(name) is not None:
                    self.found.append(name)


def _packages_of(module_name: str) -> list[str]:
    """The packages whose ``__init__`` importing ``module_name`` runs first, except the
    root ``flowq`` (the public facade, which re-exports the client and so everything)."""
    parts = module_name.split(".")
    return [".".join(parts[:n]) for n in range(2, len(parts))]


def _imports_of(module_name: str) -> set[str]:
    """Every module that importing ``module_name`` loads: following flowq's own
    modules, the ``__init__`` of every package on the way, and ``from package import
    module`` forms."""
    seen: set[str] = set()
    todo = [module_name]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if not name.startswith("flowq."):
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        todo += _packages_of(name)
        imports = _Imports()
        imports.visit(ast.parse(Path(spec.origin).read_text()))
        todo += imports.found
    return seen


@pytest.mark.parametrize("module_name", PURE_MODULES)
def test_pure_layers_import_no_io_library(module_name: str) -> None:
    """Definitions, replay decisions and the store port stay free of I/O libraries
    (DESIGN section 7), through every package ``__init__`` on the way."""
    imported = _imports_of(module_name)
    assert sorted(m for m in imported if m.split(".")[0] in IO_LIBRARIES) == []


def test_the_purity_check_follows_packages_and_from_imports() -> None:
    """The import walk sees a package's __init__ and modules imported by ``from``."""
    assert "flowq.store" in _imports_of("flowq.store.batch")
    assert "flowq.store.rows" in _imports_of("flowq.store.transitions")
    assert "sqlalchemy" in _imports_of("flowq.store.sql.render")
