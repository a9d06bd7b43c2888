"""A realistic backfill: compute ``tax_cents`` for every order that lacks it, by keyset.

    iterctl run jobs_examples.backfill:Backfill --job-id backfill-1
    iterctl run jobs_examples.backfill:Backfill --param db=/tmp/shop.db --param rows=1000000

On first use it creates ``orders`` in the SQLite file ``db`` (default ``shop.db`` in the
current folder) with ``rows`` orders (default 100,000), many sharing a ``created_at``. The
walk is in ``created_at`` order: ties are broken by the primary key, which iterctl appends,
so no order is skipped at a batch's edge. Stop it (Ctrl-C, SIGTERM) and run the same command
again: it resumes after the last order done. Each order is updated in its own short
transaction; the walk reads 500 orders per query, each query an index range scan.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    inspect,
    select,
    update,
)

from iterctl import Job
from iterctl.enumerators import records
from jobs_examples.sqlite_file import sqlite_engine

metadata = MetaData()
orders = Table(
    "orders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("customer", String(40), nullable=False),
    Column("amount_cents", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("tax_cents", Integer, nullable=True),  # the column being backfilled
    Index("ix_orders_created_at_id", "created_at", "id"),
)
TAX_RATE_PERCENT = 20


class BackfillParams(BaseModel):
    db: str = Field(default="shop.db", description="SQLite file holding the orders table")
    rows: int = Field(default=100_000, ge=0, description="orders to create on first use")
    delay: float = Field(default=0.0, ge=0, description="extra seconds per order, for demos")


def open_shop(path: str, rows: int) -> Engine:
    """The SQLite engine of ``path``, with the orders table created and filled if absent."""
    engine = sqlite_engine(path)
    if not inspect(engine).has_table("orders"):
        metadata.create_all(engine)
        start = datetime(2026, 1, 1)
        with engine.begin() as connection:
            for first in range(0, rows, 10_000):
                connection.execute(insert(orders), [
                    {"id": n + 1, "customer": f"customer-{n % 997}",
                     "amount_cents": 100 + n * 37 % 50_000,
                     "created_at": start + timedelta(seconds=n // 10)}  # 10 orders a second
                    for n in range(first, min(first + 10_000, rows))
                ])  # fmt: skip
    return engine


class Backfill(Job):
    """Items are order rows still missing ``tax_cents``; the cursor is [created_at, id]."""

    Params = BackfillParams
    params: BackfillParams

    @cached_property
    def engine(self) -> Engine:
        return open_shop(self.params.db, self.params.rows)

    def build_enumerator(self, cursor: list[Any] | None) -> Iterable[tuple[Any, Any]]:
        pending = select(orders.c.id, orders.c.amount_cents).where(orders.c.tax_cents.is_(None))
        return records(
            self.engine, pending, columns=[orders.c.created_at], batch_size=500, cursor=cursor,
            count=True,
        )

    def each_iteration(self, order: Any) -> None:
        tax = order.amount_cents * TAX_RATE_PERCENT // 100
        with self.engine.begin() as connection:
            connection.execute(update(orders).where(orders.c.id == order.id).values(tax_cents=tax))
        if self.params.delay:
            time.sleep(self.params.delay)

    def on_complete(self) -> None:
        with self.engine.connect() as connection:
            missing = connection.execute(
                select(func.count()).where(orders.c.tax_cents.is_(None))
            ).scalar_one()
        if missing:
            raise RuntimeError(f"{missing} orders still lack tax_cents")
