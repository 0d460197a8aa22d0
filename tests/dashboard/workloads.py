"""Workflows the dashboard tests show: steps and a wait, a token, a failure, a child."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import flowq


@flowq.step
async def fetch_user(user_id: int) -> dict[str, Any]:
    """A step that returns a record."""
    return {"id": user_id, "name": f"user {user_id}"}


@flowq.step
async def send_mail(address: str) -> str:
    """A step after the wait."""
    return f"sent to {address}"


@dataclass
class Workloads:
    """The workflows of one registry."""

    onboarding: flowq.Workflow[Any, Any]
    approval: flowq.Workflow[Any, Any]
    broken: flowq.Workflow[Any, Any]
    parent: flowq.Workflow[Any, Any]
    child: flowq.Workflow[Any, Any]


def register(registry: flowq.Registry) -> Workloads:
    """Register the test workflows in ``registry``."""

    @registry.workflow(name="onboarding")
    async def onboarding(payload: dict[str, Any], ctx: flowq.Context) -> str:
        user = await fetch_user(payload["user_id"])
        await ctx.sleep("1h")
        return await send_mail(user["name"])

    @registry.workflow(name="approval")
    async def approval(payload: dict[str, Any], ctx: flowq.Context) -> Any:
        token = await ctx.create_token(timeout="1d")
        result = await ctx.wait_for_token(token)
        return {"approved": result.output}

    @registry.workflow(name="broken", max_attempts=1)
    async def broken(payload: dict[str, Any]) -> None:
        raise RuntimeError(payload.get("message", "boom"))

    @registry.workflow(name="child")
    async def child(payload: int) -> int:
        return payload * 2

    @registry.workflow(name="parent")
    async def parent(payload: int, ctx: flowq.Context) -> int:
        return int(await ctx.call(child, payload))

    return Workloads(onboarding, approval, broken, parent, child)
