"""Jobs built on iterctl's enumerators, run by the end-to-end tests through ``iterctl``.

Copied into each test's working directory and imported from there as ``enumjobs``. Each
job appends "item N" to ``--param log=PATH`` after each item, so a test can wait for
observable progress and check that every item was done once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, select

from iterctl import Job
from iterctl.enumerators import csv_rows, nested, records, sequence

metadata = MetaData()
events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("grp", Integer, nullable=False),
    Column("note", String(20), nullable=True),
)


class Logged(Job):
    """Logs "item N" after an optional delay; subclasses say what N is."""

    def done(self, number: object) -> None:
        time.sleep(float(self.params.get("delay", "0")))
        with open(self.params["log"], "a", encoding="utf-8") as log:
            log.write(f"item {number}\n")


class SqlRows(Logged):
    """Rows of ``events`` by (grp, id): ties on grp, broken by the appended primary key."""

    columns: Any = "grp"

    def build_enumerator(self, cursor: Any) -> Iterable[tuple[Any, Any]]:
        engine = create_engine(f"sqlite:///{self.params['db']}")
        return records(engine, self.query(), columns=[self.columns], batch_size=7,
                       cursor=cursor, count=True)  # fmt: skip

    def query(self) -> Any:
        return select(events)

    def each_iteration(self, row: Any) -> None:
        self.done(row.id)


class SqlNullable(SqlRows):
    columns = "note"


class SqlOrdered(SqlRows):
    def query(self) -> Any:
        return select(events).order_by(events.c.id)


class CsvRows(Logged):
    def build_enumerator(self, cursor: Any) -> Iterable[tuple[Any, Any]]:
        return csv_rows(self.params["csv"], cursor=cursor)

    def each_iteration(self, row: dict[str, str]) -> None:
        self.done(row["id"])


class NestedRows(Logged):
    """Groups of groups of numbers (JSON in --param tree), some empty at every level."""

    def build_enumerator(self, cursor: Any) -> Iterable[tuple[Any, Any]]:
        tree = json.loads(self.params["tree"])
        return nested(
            lambda c: sequence(tree, cursor=c),
            lambda middle, c: sequence(middle, cursor=c),
            lambda leaves, c: sequence(leaves, cursor=c),
            cursor=cursor,
        )

    def each_iteration(self, number: int) -> None:
        self.done(number)


class TupleCursor(Logged):
    def build_enumerator(self, cursor: Any) -> Iterable[tuple[Any, Any]]:
        return [(1, (1, 2))]

    def each_iteration(self, item: Any) -> None:
        self.done(item)
