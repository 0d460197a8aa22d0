"""A FastAPI service that enqueues in its own transaction, and the worker that runs it.

The service stores an order and enqueues its fulfilment **in the same database
transaction** (``connection=`` takes the request's ``AsyncSession``): either both exist
or neither does. Fulfilment reserves stock, waits for a person to approve (a token),
then ships. A person approves through an endpoint that completes the token.

Run it (one database for the service's tables and flowq's)::

    export FLOWQ_DATABASE_URL=sqlite+aiosqlite:///shop.db
    flowq migrate --database-url $FLOWQ_DATABASE_URL
    flowq worker examples.fastapi_service:registry      # the worker process
    uvicorn examples.fastapi_service:api                # the service (pip install uvicorn)

then ``POST /orders {"item": "book", "quantity": 2}``, look at ``GET /orders/{id}``,
approve with ``POST /approvals/{token_id}``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import msgspec
from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel
from sqlalchemy import Column, Integer, MetaData, Table, Text, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

import flowq

DATABASE_URL = os.environ.get("FLOWQ_DATABASE_URL", "sqlite+aiosqlite:///shop.db")

registry = flowq.Registry()
"""The workflows the worker process runs (``flowq worker examples.fastapi_service:registry``)."""

metadata = MetaData()
orders = Table(
    "shop_orders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("item", Text, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("job_id", Integer),
)


class Fulfilment(msgspec.Struct):
    """What the fulfilment job gets."""

    order_id: int
    item: str
    quantity: int


@flowq.step(name="shop.reserve_stock")
async def reserve_stock(item: str, quantity: int) -> str:
    """Reserve the items (recorded: never reserved twice)."""
    return f"reservation-{item}-{quantity}"


@flowq.step(name="shop.ship")
async def ship(order_id: int, reservation: str) -> str:
    """Hand the parcel to the carrier."""
    return f"parcel-{order_id}"


@registry.workflow(name="shop.fulfil", max_attempts=5)
async def fulfil(payload: Fulfilment, ctx: flowq.Context) -> dict[str, Any]:
    """Reserve, wait for a person's approval (a day at most), ship."""
    reservation = await reserve_stock(payload.item, payload.quantity)
    token = await ctx.create_token(timeout="1d", tags=[f"order:{payload.order_id}"])
    decision = await ctx.wait_for_token(token)
    if not decision.ok or not (decision.output or {}).get("approved"):
        return {"order": payload.order_id, "shipped": False}
    parcel = await ship(payload.order_id, reservation)
    return {"order": payload.order_id, "shipped": True, "parcel": parcel}


class NewOrder(BaseModel):
    """The body of ``POST /orders``."""

    item: str
    quantity: int


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as opened:
        yield opened


def _jobs(request: Request) -> flowq.App:
    jobs: flowq.App = request.app.state.jobs
    return jobs


Session = Annotated[AsyncSession, Depends(_session)]
"""The request's database session (the service's engine)."""
Jobs = Annotated[flowq.App, Depends(_jobs)]
"""The flowq App on the same database."""


def create_api(database_url: str = DATABASE_URL) -> FastAPI:
    """The service: its own engine and sessions, and a flowq App on the same database."""

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(database_url)
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        api.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
        async with flowq.App(database_url, registry=registry) as jobs:
            api.state.jobs = jobs
            yield
        await engine.dispose()

    api = FastAPI(lifespan=lifespan)
    api.post("/orders", status_code=201)(place_order)
    api.get("/orders/{order_id}")(order_status)
    api.post("/approvals/{token_id}")(approve)
    return api


async def place_order(order: NewOrder, db: Session, jobs: Jobs) -> dict[str, int]:
    """Store the order and enqueue its fulfilment in one transaction."""
    async with db.begin():
        inserted = insert(orders).values(item=order.item, quantity=order.quantity)
        order_id = (await db.execute(inserted.returning(orders.c.id))).scalar_one()
        job_id = await jobs.start(
            fulfil, Fulfilment(order_id, order.item, order.quantity), connection=db
        )
        if order.quantity < 1:  # checked late on purpose: the rollback drops the job too
            raise HTTPException(422, "quantity must be at least 1")
        await db.execute(orders.update().where(orders.c.id == order_id).values(job_id=job_id))
    return {"order_id": order_id, "job_id": job_id}


async def order_status(order_id: int, db: Session, jobs: Jobs) -> dict[str, Any]:
    """The order and where its fulfilment stands."""
    row = (await db.execute(select(orders).where(orders.c.id == order_id))).first()
    if row is None:
        raise HTTPException(404, f"there is no order {order_id}")
    job = await jobs.get_job(row.job_id)
    tokens = await jobs.get_tokens(job_id=row.job_id, status="waiting")
    return {
        "order_id": order_id,
        "status": None if job is None else job.status.value,
        "output": None if job is None else job.output,
        "awaiting_approval": [token.id for token in tokens],
    }


async def approve(token_id: str, jobs: Jobs) -> dict[str, str]:
    """A person approves: the waiting job resumes."""
    try:
        token = await jobs.complete_token(token_id, {"approved": True})
    except flowq.TokenError as error:
        raise HTTPException(409, str(error)) from None
    return {"token": token.id, "status": token.status.value}


api = create_api()
"""The ASGI app (``uvicorn examples.fastapi_service:api``)."""
