"""flowq_testing: test workflows on the real engine under a fake clock.

``WorkflowEnvironment`` runs workflows in memory (or on any store) and skips time;
``replay`` re-runs an exported job history against current code; ``FakeClock`` and
``InMemoryStore`` are its parts; ``StoreContract`` is the behaviour suite of stores.
``StoreContract`` needs pytest; it is imported on first use, so ``import
flowq_testing`` works without pytest installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowq.replayer import ReplayResult as ReplayResult
from flowq.replayer import replay as replay
from flowq_testing.clock import FakeClock as FakeClock
from flowq_testing.environment import JobNotFinishedError as JobNotFinishedError
from flowq_testing.environment import TimeSkipLimitError as TimeSkipLimitError
from flowq_testing.environment import WorkflowEnvironment as WorkflowEnvironment
from flowq_testing.memory import InMemoryStore as InMemoryStore

if TYPE_CHECKING:
    from flowq_testing.contract import StoreContract as StoreContract

__all__ = [
    "FakeClock",
    "InMemoryStore",
    "JobNotFinishedError",
    "ReplayResult",
    "StoreContract",
    "TimeSkipLimitError",
    "WorkflowEnvironment",
    "replay",
]


def __getattr__(name: str) -> Any:
    if name == "StoreContract":
        from flowq_testing.contract import StoreContract

        return StoreContract
    raise AttributeError(f"module 'flowq_testing' has no attribute {name!r}")
