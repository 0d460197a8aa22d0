"""One log line per database outage and interval (flowq.outages)."""

from __future__ import annotations

import logging

import pytest

from flowq.errors import DatabaseUnavailableError
from flowq.outages import OutageLog


def test_an_outage_is_logged_once_per_interval_and_its_end_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 failed calls within the interval make one line; the next line after the
    interval counts the quiet ones; a success ends the outage with one line."""
    now = [1000.0]
    monkeypatch.setattr("flowq.outages.time.monotonic", lambda: now[0])
    outages = OutageLog(logging.getLogger("test.outages"), every=30)
    error = DatabaseUnavailableError("connection refused")
    with caplog.at_level(logging.WARNING, logger="test.outages"):
        for n in range(100):
            outages.failed(f"recording job {n}", error)
        now[0] += 31
        outages.failed("recording job 100", error)
        outages.succeeded()
        outages.succeeded()  # nothing more: the outage is over
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[0].startswith("flowq: the database is unreachable: recording job 0 failed")
    assert "(99 more failed calls since the last line)" in lines[1]
    assert lines[2] == "flowq: the database is reachable again after 31.0s"
