"""The SQL store: every verb of :class:`flowq.store.base.Store` on PostgreSQL or SQLite."""

from __future__ import annotations

from flowq.store.sql.durable import SqlDurableVerbs
from flowq.store.sql.report import SqlReportVerbs
from flowq.store.sql.runs import SqlRunVerbs
from flowq.store.sql.schedules import SqlScheduleVerbs
from flowq.store.sql.workers import SqlWorkerVerbs

__all__ = ["SqlStore"]


class SqlStore(SqlScheduleVerbs, SqlRunVerbs, SqlDurableVerbs, SqlReportVerbs, SqlWorkerVerbs):
    """flowq's tables in PostgreSQL (asyncpg) or SQLite (aiosqlite).

    The verbs are grouped by topic as the contract suite is: jobs (adding, reading,
    changing; :class:`~flowq.store.sql.jobs.SqlJobVerbs`), runs (claiming,
    completing, failing, maintenance; :class:`~flowq.store.sql.runs.SqlRunVerbs`),
    durable calls (recorded calls, tokens, waits;
    :class:`~flowq.store.sql.durable.SqlDurableVerbs`) and cron schedules
    (:class:`~flowq.store.sql.schedules.SqlScheduleVerbs`, over the job verbs), and
    worker presence (:class:`~flowq.store.sql.workers.SqlWorkerVerbs`). What
    differs between the databases is the dialect's (:attr:`dialect`, a
    :class:`~flowq.store.sql.dialect.SqlDialect`).

    Args:
        url: A database URL; ``postgresql://`` and ``sqlite:///`` pick flowq's drivers.
        clock: Where "now" comes from (the system clock by default).
        schema: PostgreSQL only: the schema holding flowq's tables (None: wherever
            the connection's ``search_path`` leads, usually ``public``).
    """
