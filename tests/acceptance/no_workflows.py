"""A module without workflows: `flowq worker tests.acceptance.no_workflows` must refuse it."""

from __future__ import annotations


def not_a_workflow(payload: object) -> object:
    """A plain function, never decorated with ``@flowq.workflow``."""
    return payload
