"""A FastAPI shop: each request has an async SQLAlchemy session, and the endpoint that
creates an order enqueues its receipt job in the same transaction.

Run it (``SHOP_DATABASE`` is a postgresql:// URL; the asyncpg dialect is used)::

    python -m pgjobs migrate --dsn "$SHOP_DATABASE"
    PGJOBS_EMBEDDED_WORKER=1 uvicorn examples.fastapi.app:app

``PGJOBS_EMBEDDED_WORKER=1`` starts a worker inside the app's event loop (lifespan), for
development; in production run it on its own::

    python -m pgjobs worker examples.fastapi.app:server --dsn "$SHOP_DATABASE"
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import pgjobs

DATABASE = os.environ.get("SHOP_DATABASE", "postgresql://localhost/shop")
engine = create_async_engine(DATABASE.replace("postgresql://", "postgresql+asyncpg://", 1))
sessions = async_sessionmaker(engine, expire_on_commit=False)
server = pgjobs.Server(pgjobs.Config(dsn=DATABASE))


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "shop_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str]
    receipt_sent: Mapped[bool] = mapped_column(default=False)


@server.handler("send_receipt")
async def send_receipt(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
    # Sending the email goes here. The handler's write and the job's completion commit
    # together; through the app's own engine and session it would commit on its own.
    async with ctx.atransaction() as conn:
        await conn.execute(
            "update shop_orders set receipt_sent = true where id = %s", (task.payload["order"],)
        )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with engine.begin() as conn:  # the app's tables; pgjobs' come from its migrate
        await conn.run_sync(Base.metadata.create_all)
    embedded = os.environ.get("PGJOBS_EMBEDDED_WORKER") == "1"
    if embedded:
        await server.start()
    try:
        yield
    finally:
        if embedded:
            await server.stop()
        await engine.dispose()


app = FastAPI(lifespan=lifespan)


async def session() -> AsyncIterator[AsyncSession]:
    async with sessions() as s:
        yield s


Session = Annotated[AsyncSession, Depends(session)]


class NewOrder(BaseModel):
    email: str


@app.post("/orders", status_code=201)
async def create_order(new: NewOrder, db: Session) -> dict[str, int]:
    async with db.begin():  # the order and its job: both or neither
        order = Order(email=new.email)
        db.add(order)
        await db.flush()  # to know the order's id
        job = await pgjobs.enqueue_async(db, pgjobs.Task("send_receipt", {"order": order.id}))
    return {"order": order.id, "job": job}


@app.get("/orders/{order_id}")
async def get_order(order_id: int, db: Session) -> dict[str, object]:
    order = await db.get(Order, order_id)
    if order is None:
        raise HTTPException(404)
    return {"order": order.id, "receipt_sent": order.receipt_sent}


__all__ = ["app", "server"]
