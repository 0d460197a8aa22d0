"""flowq_testing: the in-memory store, a fake clock and the store contract suite.

``StoreContract`` needs pytest; it is imported on first use, so ``import
flowq_testing`` works without pytest installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowq_testing.clock import FakeClock as FakeClock
from flowq_testing.memory import InMemoryStore as InMemoryStore

if TYPE_CHECKING:
    from flowq_testing.contract import StoreContract as StoreContract

__all__ = ["FakeClock", "InMemoryStore", "StoreContract"]


def __getattr__(name: str) -> Any:
    if name == "StoreContract":
        from flowq_testing.contract import StoreContract

        return StoreContract
    raise AttributeError(f"module 'flowq_testing' has no attribute {name!r}")
