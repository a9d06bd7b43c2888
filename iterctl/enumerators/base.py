"""What every builder returns: an iterable of ``(item, cursor)`` pairs that may know its size.

    pairs = int_range(0, 1000, cursor=cursor)
    pairs.total()           # 1000: the whole job, whatever the cursor
    for item, cursor in pairs: ...

The runner asks ``total()`` once, at start, when the job's own ``count()`` returns None.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from iterctl.cursor import Cursor
from iterctl.errors import UsageError

T_co = TypeVar("T_co", covariant=True)


class Enumerator(Generic[T_co]):
    """An iterable of ``(item, cursor)`` pairs; subclasses define :meth:`__iter__`."""

    def __iter__(self) -> Iterator[tuple[T_co, Cursor]]:
        raise NotImplementedError

    def total(self) -> int | None:
        """How many items the whole job has (not only those after the cursor); None if unknown."""
        return None

    def source_identity(self, recorded: Cursor) -> Cursor:
        """What this walk reads, as a JSON value the runner records with the job at its
        first run (``recorded`` None) and hands back on every resume: a walk whose source
        is no longer the one recorded raises (a usage error, exit 2) rather than resume
        into other data. None: nothing to check (the default)."""
        return None

    def split(self, count: int) -> list[Cursor]:
        """The bounds (JSON values) of ``count`` partitions that together cover the whole
        walk, each a contiguous piece; :meth:`within` restricts the walk to one of them."""
        raise UsageError(
            f"{type(self).__name__} cannot be split into partitions — use a builder that "
            "splits (int_range, sequence, records, csv_rows, ...), or define "
            "partition_plan(count) on the job"
        )

    def within(self, bounds: Cursor) -> Enumerator[T_co]:
        """This walk restricted to one partition's ``bounds``, resuming from its cursor."""
        raise UsageError(f"{type(self).__name__} cannot be split into partitions")


def even_slices(length: int, count: int) -> list[tuple[int, int]]:
    """``count`` contiguous ``[lo, hi)`` index slices of ``range(length)``, sizes within one."""
    return [(i * length // count, (i + 1) * length // count) for i in range(count)]
