"""Jobs whose enumerators break the resume contract, each in one way that users ship.

``iterctl check`` must catch every one of them and name the cause. Each job's
``each_iteration`` leaves a mark (a file named by ``--param marks=DIR``, and a count in
:data:`RAN`), so that a test can prove the check never ran it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from iterctl import Job
from iterctl.cursor import Cursor

#: How many times any each_iteration below ran in this process.
RAN: list[Any] = []


class Marking(Job):
    """Counts to ``count`` (default 100); each_iteration leaves a mark."""

    def size(self) -> int:
        return int(self.params.get("count", "100"))

    def each_iteration(self, item: Any) -> None:
        RAN.append(item)
        marks = self.params.get("marks")
        if marks:
            (Path(marks) / f"ran-{item}").write_text("each_iteration ran\n")


class Correct(Marking):
    """What the broken ones get wrong, done right: starts after the cursor."""

    def build_enumerator(self, cursor: Cursor) -> Iterator[tuple[int, int]]:
        start = 0 if cursor is None else cursor + 1
        return ((n, n) for n in range(start, self.size()))

    def count(self) -> int:
        return self.size()


class OffByOne(Marking):
    """Resumes AT the cursor instead of after it: the last item done is done again."""

    def build_enumerator(self, cursor: Cursor) -> Iterator[tuple[int, int]]:
        start = 0 if cursor is None else cursor  # should be cursor + 1
        return ((n, n) for n in range(start, self.size()))


class SkipsOne(Marking):
    """Resumes one past the item after the cursor: that item is never done."""

    def build_enumerator(self, cursor: Cursor) -> Iterator[tuple[int, int]]:
        start = 0 if cursor is None else cursor + 2
        return ((n, n) for n in range(start, self.size()))


#: Rows (group, id), ordered by group; several rows share each group.
ROWS = [(n // 4, n) for n in range(40)]


class NonUniqueCursor(Marking):
    """The cursor is the group alone, and resume takes groups > cursor: the rest of the
    group after the cursor row is skipped (job-iteration's ties at batch edges)."""

    def build_enumerator(self, cursor: Cursor) -> Iterator[tuple[Any, Any]]:
        rows = ROWS if cursor is None else [row for row in ROWS if row[0] > cursor]
        return ((list(row), row[0]) for row in rows)


#: Shops, each with its products; the walk is every product of every shop.
SHOPS = [[f"shop{s}-product{p}" for p in range(5)] for s in range(6)]


class StaleNestedCursor(Marking):
    """Cursor [shop, product]; on resume, the saved product index is applied to every later
    shop too, not only to the first one (job-iteration's #366): their first products are
    skipped."""

    def build_enumerator(self, cursor: Cursor) -> Iterator[tuple[str, list[int]]]:
        shop_start, product_after = (0, -1) if cursor is None else cursor
        for shop in range(shop_start, len(SHOPS)):
            for product in range(product_after + 1, len(SHOPS[shop])):
                yield SHOPS[shop][product], [shop, product]
            # the bug: `product_after = -1` belongs here


#: Events at local times in a +02:00 zone, one every 20 minutes.
ZONE = timezone(timedelta(hours=2))
EVENTS = [datetime(2026, 3, 1, 8, 0, tzinfo=ZONE) + timedelta(minutes=20 * n) for n in range(30)]


class LossyDatetimeCursor(Marking):
    """The cursor is the event time without its zone; resume reads it as UTC, two hours
    later than it was (job-iteration's #512): the events between are skipped."""

    def build_enumerator(self, cursor: Cursor) -> Iterator[tuple[str, str]]:
        after = None if cursor is None else datetime.fromisoformat(cursor).replace(tzinfo=UTC)
        for at in EVENTS:
            if after is None or at > after:
                yield at.isoformat(), at.replace(tzinfo=None).isoformat()


class Shuffled(Marking):
    """A walk whose order changes every time (a set, a query without ORDER BY…)."""

    def build_enumerator(self, cursor: Cursor) -> Iterable[tuple[int, int]]:
        numbers = list(range(self.size()))
        random.shuffle(numbers)
        return [(n, n) for n in numbers if cursor is None or n > cursor]


class CountsWrong(Correct):
    """Resumes right, but says it has one item more than it yields."""

    def count(self) -> int:
        return self.size() + 1


class OverlappingPartitions(Correct):
    """Splits itself into ranges that share their edge item."""

    def partition_plan(self, count: int) -> list[Cursor]:
        size = self.size()
        return [[size * i // count, size * (i + 1) // count + 1] for i in range(count)]

    def build_enumerator(self, cursor: Cursor) -> Iterator[tuple[int, int]]:
        first, end = (0, self.size()) if self.partition is None else self.partition.bounds
        start = first if cursor is None else cursor + 1
        return ((n, n) for n in range(start, min(end, self.size())))


class TupleCursor(Marking):
    """A cursor the store would give back as a list."""

    def build_enumerator(self, cursor: Cursor) -> Iterator[tuple[int, Any]]:
        return ((n, (n, "x")) for n in range(self.size()))


class RaisesOnResume(Marking):
    """Cannot resume from its own cursors."""

    def build_enumerator(self, cursor: Cursor) -> Iterator[tuple[int, int]]:
        if cursor is not None:
            raise KeyError(cursor)
        return ((n, n) for n in range(self.size()))
