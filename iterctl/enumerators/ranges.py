"""Integer ranges, sequences, any iterable, and a single item, with an index cursor.

    def build_enumerator(self, cursor):
        return int_range(1, 1_000_001, cursor=cursor)      # items 1..1_000_000, cursor = item
        return sequence(["a", "b", "c"], cursor=cursor)   # cursor = index of the item
        return iterable(read_names(), cursor=cursor)       # resume skips the items done
        return once("vacuum", cursor=cursor)               # one item, then done

``total()`` is exact and free for all of them except an iterable without ``len``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import count, islice
from typing import TypeVar

from iterctl.cursor import Cursor
from iterctl.enumerators.base import Enumerator, even_slices
from iterctl.errors import UsageError

T = TypeVar("T")


def _index_after(cursor: Cursor, what: str) -> int:
    """The first index to yield after ``cursor`` (an index cursor, or None to start)."""
    if cursor is None:
        return 0
    if type(cursor) is not int:
        raise UsageError(
            f"{what} cannot resume from cursor {cursor!r}: it expects an integer index "
            "— pass the cursor this enumerator yielded, unchanged"
        )
    return cursor + 1


class IntRange(Enumerator[int]):
    """Integers of ``range(start, stop, step)``; each is its own cursor."""

    def __init__(self, start: int, stop: int | None, step: int, cursor: Cursor) -> None:
        if step == 0:
            raise UsageError("int_range step is 0 — use a positive or negative step")
        if cursor is not None and type(cursor) is not int:
            raise UsageError(
                f"int_range cannot resume from cursor {cursor!r}: it expects an integer "
                "— pass the cursor this enumerator yielded, unchanged"
            )
        self._start, self._stop, self._step = start, stop, step
        self._first = start if cursor is None else cursor + step

    def __iter__(self) -> Iterator[tuple[int, Cursor]]:
        # zip of two C iterators: no Python frame per item.
        if self._stop is None:
            return zip(count(self._first, self._step), count(self._first, self._step))
        numbers = range(self._first, self._stop, self._step)
        return zip(numbers, numbers, strict=False)

    def total(self) -> int | None:
        if self._stop is None:
            return None
        return len(range(self._start, self._stop, self._step))

    def split(self, count: int) -> list[Cursor]:
        if self._stop is None:
            return super().split(count)  # an endless range has no even split
        length = len(range(self._start, self._stop, self._step))
        # [first, end) values of contiguous runs; `end` is exclusive, as in range(). An
        # empty range gives N empty runs [start, start).
        return [
            [self._start + lo * self._step, self._start + hi * self._step]
            for lo, hi in even_slices(length, count)
        ]

    def within(self, bounds: Cursor) -> IntRange:
        first, end = bounds
        part = IntRange(first, end, self._step, None)
        # Resume inside the partition: the later of its start and the cursor's successor.
        ahead = max if self._step > 0 else min
        part._first = ahead(first, self._first)
        return part


class SequenceEnumerator(Enumerator[T]):
    """Items of a sequence (list, tuple, str, range, ...); the cursor is the item's index."""

    def __init__(self, items: Sequence[T], cursor: Cursor) -> None:
        self._items = items
        self._first = _index_after(cursor, "sequence")
        self._lo, self._end = 0, len(items)

    def __iter__(self) -> Iterator[tuple[T, Cursor]]:
        indexes = range(self._first, self._end)
        # Indexing from the cursor is O(1) to resume, unlike skipping with islice.
        return zip(map(self._items.__getitem__, indexes), indexes, strict=False)

    def total(self) -> int | None:
        return self._end - self._lo

    def split(self, count: int) -> list[Cursor]:
        return [[lo, hi] for lo, hi in even_slices(len(self._items), count)]

    def within(self, bounds: Cursor) -> SequenceEnumerator[T]:
        part = SequenceEnumerator(self._items, None)
        part._lo, part._end = bounds
        part._first = max(part._lo, self._first)
        return part


class IterableEnumerator(Enumerator[T]):
    """Items of any iterable; the cursor is the item's index, so resume skips the items done."""

    def __init__(self, items: Iterable[T], cursor: Cursor) -> None:
        self._items = items
        self._first = _index_after(cursor, "iterable")

    def __iter__(self) -> Iterator[tuple[T, Cursor]]:
        return zip(islice(self._items, self._first, None), count(self._first))

    def total(self) -> int | None:
        size = getattr(self._items, "__len__", None)
        return None if size is None else int(size())


class Once(Enumerator[T]):
    """A single item, with cursor 0; resumed from any cursor, it yields nothing."""

    def __init__(self, item: T, cursor: Cursor) -> None:
        self._item = item
        self._done = cursor is not None

    def __iter__(self) -> Iterator[tuple[T, Cursor]]:
        return iter(() if self._done else ((self._item, 0),))

    def total(self) -> int | None:
        return 1


def int_range(
    start: int, stop: int | None = None, step: int = 1, *, cursor: Cursor = None
) -> IntRange:
    """Integers from ``start`` up to ``stop`` (excluded; None for no end) by ``step``."""
    return IntRange(start, stop, step, cursor)


def sequence(items: Sequence[T], *, cursor: Cursor = None) -> SequenceEnumerator[T]:
    """Each item of ``items`` with its index as cursor; resume is O(1)."""
    return SequenceEnumerator(items, cursor)


def iterable(items: Iterable[T], *, cursor: Cursor = None) -> IterableEnumerator[T]:
    """Each item of ``items`` with its index as cursor; resume skips ``cursor + 1`` items."""
    return IterableEnumerator(items, cursor)


def once(item: T, *, cursor: Cursor = None) -> Once[T]:
    """Just ``item``, once: for a job that is one step, e.g. a migration."""
    return Once(item, cursor)
