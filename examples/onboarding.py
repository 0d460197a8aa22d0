"""An onboarding workflow: steps, a durable wait and a human approval.

Run a worker for it (it uses ``FLOWQ_DATABASE_URL``, else ``./flowq.db``)::

    flowq worker examples.onboarding:registry

and add jobs from another shell with ``python -m examples.onboarding add 42`` (an
optional third argument sets the wait before approval, in seconds; default a day).
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

import msgspec

import flowq

registry = flowq.Registry()


class Signup(msgspec.Struct):
    """Who signed up."""

    user_id: int
    email: str
    review_after: float = 86400.0
    """Seconds to wait before asking for approval (a day)."""


@flowq.step
async def create_account(user_id: int) -> dict[str, int]:
    """Creates the account (its result is recorded: never created twice)."""
    return {"account_id": 1000 + user_id}


@flowq.step(retries=3)
async def send_email(to: str, subject: str) -> str:
    """Sends one email (retried in place up to three times)."""
    return f"sent {subject!r} to {to}"


@registry.workflow(name="examples.onboard", max_attempts=5, tags=["onboarding"])
async def onboard(payload: Signup, ctx: flowq.Context) -> dict[str, object]:
    """Create the account, welcome, wait (a day), ask for approval, finish."""
    account = await create_account(payload.user_id)
    await send_email(payload.email, "welcome")
    await ctx.sleep(timedelta(seconds=payload.review_after))
    token = await ctx.create_token(timeout="48h", tags=["approval"])
    await send_email("admin@example.com", f"approve user {payload.user_id}: {token.id}")
    decision = await ctx.wait_for_token(token)
    approved = bool(decision.ok and decision.output and decision.output.get("approved"))
    return {"account": account["account_id"], "approved": approved}


async def add(user_id: int, review_after: float = 86400.0) -> int:
    """Add an onboarding job for ``user_id``; return its id."""
    async with flowq.App(registry=registry, auto_migrate=True) as app:
        signup = Signup(user_id, f"user{user_id}@example.com", review_after)
        return await app.start(onboard, signup, idempotency_key=f"onboard-{user_id}")


if __name__ == "__main__":
    if len(sys.argv) in (3, 4) and sys.argv[1] == "add":
        after = float(sys.argv[3]) if len(sys.argv) == 4 else 86400.0
        print(f"added job {asyncio.run(add(int(sys.argv[2]), after))}")
    else:
        print(__doc__)
