"""``StoreContract``: the behaviour suite every :class:`flowq.store.base.Store` passes.

Subclass it in a test module and provide a ``store`` fixture that yields a fresh,
migrated, empty store using the ``clock`` fixture::

    class TestMyStore(StoreContract):
        @pytest.fixture
        async def store(self, clock):
            store = MyStore(clock=clock)
            await store.migrate()
            yield store
            await store.close()

Stores that can join a caller's transaction also override :meth:`connection` to open
a SQLAlchemy ``AsyncConnection`` on the same database. Every test runs twice, for
each value of the ``paths`` fixture (``"fast"``, ``"general"``): the ``claim`` helper
claims without, then with group limits, and a ``store`` fixture that takes ``paths``
can switch its own second implementation (the SQL stores' general statements). The
tests drive the store through :class:`flowq.App`, so they check what a user sees.
"""

from __future__ import annotations

from flowq_testing.contract.base import contract_registry as contract_registry
from flowq_testing.contract.durable import DurableVerbsContract
from flowq_testing.contract.jobs import JobVerbsContract
from flowq_testing.contract.report import ReportContract
from flowq_testing.contract.runs import RunVerbsContract
from flowq_testing.contract.schedules import ScheduleVerbsContract
from flowq_testing.contract.volume import VolumeContract
from flowq_testing.contract.workers import WorkerPresenceContract

__all__ = ["StoreContract", "contract_registry"]


class StoreContract(
    JobVerbsContract,
    RunVerbsContract,
    DurableVerbsContract,
    ScheduleVerbsContract,
    ReportContract,
    WorkerPresenceContract,
    VolumeContract,
):
    """Behaviours every store must show, checked through :class:`flowq.App`."""
