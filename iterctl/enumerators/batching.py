"""Batching any enumerator into lists of N items.

    def build_enumerator(self, cursor):
        return batched(int_range(0, 10_000, cursor=cursor), 500)   # items: lists of 500

    def each_iteration(self, numbers):
        bulk_insert(numbers)

A batch's cursor is the cursor of its last item, so the inner enumerator, rebuilt from it,
resumes with the first item of the next batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, TypeVar

from iterctl.cursor import Cursor
from iterctl.enumerators.base import Enumerator
from iterctl.errors import UsageError

T = TypeVar("T")


class Batched(Enumerator[list[T]]):
    """Lists of up to ``size`` consecutive items of ``pairs``; cursor = the last item's."""

    def __init__(self, pairs: Iterable[tuple[T, Cursor]], size: int) -> None:
        if size < 1:
            raise UsageError(f"batch size {size} is less than 1 — use a batch size of 1 or more")
        self._pairs = pairs
        self._size = size

    def __iter__(self) -> Iterator[tuple[list[T], Cursor]]:
        pairs = iter(self._pairs)
        size = self._size
        while chunk := list(islice(pairs, size)):
            yield [item for item, _ in chunk], chunk[-1][1]

    def total(self) -> int | None:
        total: Any = getattr(self._pairs, "total", None)
        inner = total() if callable(total) else None
        return None if inner is None else -(-int(inner) // self._size)

    def source_identity(self, recorded: Cursor) -> Cursor:
        return inner_source_identity(self._pairs, recorded)

    def split(self, count: int) -> list[Cursor]:
        """The inner enumerator's partitions (batches never straddle two)."""
        return inner_split(self._pairs, count, self)

    def within(self, bounds: Cursor) -> Batched[T]:
        return Batched(inner_within(self._pairs, bounds, self), self._size)


def inner_source_identity(pairs: object, recorded: Cursor) -> Cursor:
    """``pairs.source_identity(recorded)`` for a wrapper around ``pairs``; None without one."""
    identity = getattr(pairs, "source_identity", None)
    return identity(recorded) if callable(identity) else None


def inner_split(pairs: object, count: int, outer: Enumerator[Any]) -> list[Cursor]:
    """``pairs.split(count)`` for a wrapper around ``pairs``; refused if it cannot split."""
    split = getattr(pairs, "split", None)
    if split is None:
        return Enumerator.split(outer, count)
    bounds: list[Cursor] = split(count)
    return bounds


def inner_within(pairs: object, bounds: Cursor, outer: Enumerator[Any]) -> Any:
    within = getattr(pairs, "within", None)
    return Enumerator.within(outer, bounds) if within is None else within(bounds)


def batched(pairs: Iterable[tuple[T, Cursor]], size: int) -> Batched[T]:
    """Group the items of ``pairs`` (already built from the cursor) into lists of ``size``."""
    return Batched(pairs, size)
