"""One log line per database outage and interval, not one per job per retry.

While the database is unreachable, every waiting write, claim and heartbeat of a
worker fails and retries. :data:`database_outages` logs the first failure at once,
then at most one line per :data:`EVERY` seconds saying how many more failed meanwhile,
and one line when a write goes through again.
"""

from __future__ import annotations

import logging
import time

__all__ = ["EVERY", "OutageLog", "database_outages"]

EVERY = 30.0
"""Seconds between two log lines about the same outage."""


class OutageLog:
    """Rate-limited warnings about one kind of outage (safe from any thread).

    Args:
        logger: Where the lines go.
        every: Seconds between two lines while the outage lasts.
    """

    def __init__(self, logger: logging.Logger, every: float = EVERY) -> None:
        self.logger = logger
        self.every = every
        self.since: float | None = None
        """When the outage began (``time.monotonic()``), None while all is well."""
        self._last_line = 0.0
        self._quiet = 0

    def failed(self, what: str, error: BaseException) -> None:
        """A database call failed because the database is unreachable."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
        elif now - self._last_line < self.every:
            self._quiet += 1
            return
        more = f" ({self._quiet} more failed calls since the last line)" if self._quiet else ""
        self.logger.warning(
            "flowq: the database is unreachable: %s failed (%s); retrying with backoff%s",
            what, error, more,
        )  # fmt: skip
        self._last_line, self._quiet = now, 0

    def reset(self) -> None:
        """Forget any outage in progress (tests start each with a clean slate)."""
        self.since, self._quiet, self._last_line = None, 0, 0.0

    def succeeded(self) -> None:
        """A database call went through: if an outage was on, say it is over."""
        if self.since is None:
            return
        lasted = time.monotonic() - self.since
        self.since, self._quiet, self._last_line = None, 0, 0.0
        self.logger.warning("flowq: the database is reachable again after %.1fs", lasted)


database_outages = OutageLog(logging.getLogger("flowq.worker"))
"""The process's log of database outages (shared by every worker and write)."""
