"""Machine facts recorded with every benchmark run: what the figures were measured on.

``start()`` before the first figure and ``finish(facts)`` after the last one give: the CPU
count, the load average at both ends, the share of CPU time stolen by the hypervisor
over the run (``/proc/stat``, Linux only; ``None`` where unreadable), and for each
database the settings that decide what a commit costs.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

POSTGRES_SETTINGS = (
    "synchronous_commit",
    "fsync",
    "wal_sync_method",
    "full_page_writes",
    "shared_buffers",
    "max_connections",
)
"""PostgreSQL settings read with ``current_setting`` and recorded."""


def _cpu_times() -> list[int] | None:
    """The aggregate ``cpu`` line of ``/proc/stat`` (jiffies), or ``None``."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if not first or first[0] != "cpu":
        return None
    return [int(value) for value in first[1:]]


def _load() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def start() -> dict[str, Any]:
    """Facts known before the run; pass the result to :func:`finish` at the end."""
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "load_average_start": _load(),
        "_cpu_times": _cpu_times(),
    }


def finish(facts: dict[str, Any]) -> dict[str, Any]:
    """Add the load at the end and the steal share (%) over the run (``/proc/stat``:
    the 8th field of the ``cpu`` line, over the sum of the first eight)."""
    before, after = facts.pop("_cpu_times", None), _cpu_times()
    facts["load_average_end"] = _load()
    facts["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    steal = None
    if before and after and len(before) >= 8 and len(after) >= 8:
        total = sum(after[:8]) - sum(before[:8])
        if total > 0:
            steal = round(100 * (after[7] - before[7]) / total, 2)
    facts["steal_percent"] = steal
    return facts


async def postgres(dsn: str) -> dict[str, Any]:
    """The server version and :data:`POSTGRES_SETTINGS`."""
    connection = await asyncpg.connect(dsn)
    try:
        facts: dict[str, Any] = {"version": await connection.fetchval("SHOW server_version")}
        for name in POSTGRES_SETTINGS:
            facts[name] = await connection.fetchval("SELECT current_setting($1)", name)
        return facts
    finally:
        await connection.close()


def sqlite(path: str) -> dict[str, Any]:
    """SQLite's version and the journal mode of the flowq database at ``path``.

    ``synchronous`` is a per-connection setting: flowq sets ``NORMAL`` on each of its
    connections (``flowq/store/sql/sqlite.py``) and the raw-commit figure uses the same.
    """
    connection = sqlite3.connect(path)
    try:
        journal = connection.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        connection.close()
    return {
        "version": sqlite3.sqlite_version,
        "journal_mode": journal,
        "synchronous": "NORMAL (set by flowq on every connection)",
    }


def lines(facts: dict[str, Any]) -> list[str]:
    """The facts as printable lines."""
    out = [
        f"machine: {facts['cpu_count']} CPUs, {facts['platform']}, Python {facts['python']}",
        f"load average start {facts['load_average_start']}, end {facts.get('load_average_end')}"
        f", steal over the run {facts.get('steal_percent')}%",
    ]
    for kind in ("postgres", "sqlite"):
        if kind in facts:
            settings = ", ".join(f"{key}={value}" for key, value in facts[kind].items())
            out.append(f"{kind}: {settings}")
    return out
