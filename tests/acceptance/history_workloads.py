"""Workflows for `flowq jobs export` and `flowq replay` in the CLI tests: one order
workflow, and the same workflow after an incompatible change (steps swapped)."""

from __future__ import annotations

import flowq

registry = flowq.Registry()
"""The original workflow (what the worker ran)."""


@flowq.step(name="reserve")
async def reserve(order: int) -> str:
    """Reserves stock."""
    return f"r{order}"


@flowq.step(name="charge")
async def charge(order: int) -> str:
    """Charges the card."""
    return f"c{order}"


@registry.workflow(name="orders")
async def orders(payload: dict[str, int], ctx: flowq.Context) -> list[str]:
    """Reserve, charge, then wait a day."""
    done = [await reserve(payload["order"]), await charge(payload["order"])]
    await ctx.sleep("1d")
    return done


async def _swapped(payload: dict[str, int], ctx: flowq.Context) -> list[str]:
    done = [await charge(payload["order"]), await reserve(payload["order"])]
    await ctx.sleep("1d")
    return done


orders_swapped = flowq.Registry().workflow(name="orders")(_swapped)
"""The same workflow after a deploy that charges before reserving."""
