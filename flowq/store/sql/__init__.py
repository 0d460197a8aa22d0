"""flowq's store on PostgreSQL and SQLite (SQLAlchemy Core, asyncpg, aiosqlite).

Layout: ``store`` (:class:`SqlStore`), its verbs by topic (``jobs``, ``runs``,
``durable``) over ``base`` (connections, transactions, shared helpers); ``dialect``
(the :class:`~flowq.store.sql.dialect.SqlDialect` protocol) with one module per
database owning its hot-path statements (``postgres``, ``sqlite``; ``pg_schema``: a
PostgreSQL schema's checked name, channel and lock keys); ``render`` (the
job state machine as SQL); ``schema`` (the tables) and ``migrate``.
"""

from __future__ import annotations

from flowq.store.sql.store import SqlStore as SqlStore

__all__ = ["SqlStore"]
