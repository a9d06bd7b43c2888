"""A realistic backfill: compute ``tax_cents`` for every order that lacks it, by keyset.

    iterctl run jobs_examples.backfill:Backfill --job-id backfill-1
    iterctl run jobs_examples.backfill:Backfill --param db=/tmp/shop.db --param rows=1000000
    iterctl run jobs_examples.backfill:Backfill --store sqlite:///shop.db --job-id exact-1

On first use it creates ``orders`` in the SQLite file ``db`` (default ``shop.db`` in the
current folder) with ``rows`` orders (default 100,000), many sharing a ``created_at``. The
walk is in ``created_at`` order: ties are broken by the primary key, which iterctl appends,
so no order is skipped at a batch's edge. Stop it (Ctrl-C, SIGTERM) and run the same command
again: it resumes after the last order done. The walk reads 500 orders per query, each query
an index range scan.

Where the UPDATEs commit depends on ``--store``:

- On another store (the default ``iterctl.db``), each order is updated in its own short
  transaction, and the cursor is saved apart from it every few seconds: after a SIGKILL the
  orders since the last checkpoint are updated again (harmless here: the tax is recomputed).
- With ``--store sqlite:///shop.db`` (the orders' own file), ``coupled_writes`` is True: the
  UPDATEs go through ``self.transaction`` and commit in the checkpoint's transaction, with
  the cursor, once per checkpoint interval. Exactly once even after kill -9, and many times
  faster, since SQLite then commits a few times a minute rather than once per order.
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
    bindparam,
    func,
    insert,
    inspect,
    select,
    update,
)

from iterctl import Job
from iterctl.enumerators import records
from jobs_examples.sqlite_file import is_sqlite_file, sqlite_engine

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
#: One order's UPDATE, built once: each item only binds its two values.
SET_TAX = update(orders).where(orders.c.id == bindparam("order_id")).values(
    tax_cents=bindparam("tax")
)


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

    @cached_property
    def coupled_writes(self) -> bool:
        """True when the store is the orders' SQLite file: the UPDATEs then commit with
        the cursor, in the checkpoint's transaction."""
        return is_sqlite_file(self.store_location, self.params.db)

    def build_enumerator(self, cursor: list[Any] | None) -> Iterable[tuple[Any, Any]]:
        pending = select(orders.c.id, orders.c.amount_cents).where(orders.c.tax_cents.is_(None))
        return records(
            self.engine, pending, columns=[orders.c.created_at], batch_size=500, cursor=cursor,
            count=True,
        )

    def each_iteration(self, order: Any) -> None:
        values = {"order_id": order.id, "tax": order.amount_cents * TAX_RATE_PERCENT // 100}
        if self.coupled_writes:
            self.transaction.execute(SET_TAX, values)  # commits with the next checkpoint
        else:
            with self.engine.begin() as connection:
                connection.execute(SET_TAX, values)
        if self.params.delay:
            time.sleep(self.params.delay)

    def on_complete(self) -> None:
        missing_query = select(func.count()).where(orders.c.tax_cents.is_(None))
        if self.coupled_writes:  # the last orders are not committed yet: ask the transaction
            missing = self.transaction.execute(missing_query).scalar_one()
        else:
            with self.engine.connect() as connection:
                missing = connection.execute(missing_query).scalar_one()
        if missing:
            raise RuntimeError(f"{missing} orders still lack tax_cents")
