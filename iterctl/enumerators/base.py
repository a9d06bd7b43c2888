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

T_co = TypeVar("T_co", covariant=True)


class Enumerator(Generic[T_co]):
    """An iterable of ``(item, cursor)`` pairs; subclasses define :meth:`__iter__`."""

    def __iter__(self) -> Iterator[tuple[T_co, Cursor]]:
        raise NotImplementedError

    def total(self) -> int | None:
        """How many items the whole job has (not only those after the cursor); None if unknown."""
        return None
