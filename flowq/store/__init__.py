"""Storage: the :class:`Store` port and the pure parts every store shares.

Importing it loads no SQL library. ``flowq.store.base`` declares the port (the
:class:`Store` protocol and its records); ``transitions`` the job state machine;
``rows`` the row mapping; ``batch`` the planning of batches; ``wakeups`` the
in-process wake-up hints (these five are pure); ``batching`` the worker's
group-commit wrapper around any store. The SQL implementation is
:mod:`flowq.store.sql`.
"""

from __future__ import annotations

from flowq.store.base import Store as Store
from flowq.store.base import StoreCapabilities as StoreCapabilities

__all__ = ["Store", "StoreCapabilities"]
