"""Nesting: an outer enumerator, and inner ones built from each outer item.

    def build_enumerator(self, cursor):
        return nested(
            lambda c: records(engine, select(shops), cursor=c),
            lambda shop, c: records(
                engine, select(products).where(products.c.shop_id == shop.id), cursor=c
            ),
            cursor=cursor,
        )

    def each_iteration(self, product): ...      # items are those of the innermost level

The cursor is a list with one entry per level. For an outer level it is the cursor from which
that level, rebuilt, yields the current outer item again (None for its first item); the last
entry is the innermost item's own cursor. An empty inner level yields nothing and the walk
moves on to the next outer item, on a first run and on resume alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from iterctl.cursor import Cursor
from iterctl.enumerators.base import Enumerator
from iterctl.errors import UsageError

Pairs = Iterable[tuple[Any, Cursor]]
#: Level 0 is built from its cursor; each later level from the outer item and its cursor.
OuterBuilder = Callable[[Cursor], Pairs]
InnerBuilder = Callable[[Any, Cursor], Pairs]


class Nested(Enumerator[Any]):
    """The innermost items of a walk through nested levels; cursor = one entry per level."""

    def __init__(
        self, outer: OuterBuilder, inners: tuple[InnerBuilder, ...], cursor: Cursor
    ) -> None:
        if not inners:
            raise UsageError("nested needs an outer builder and at least one inner builder")
        levels = 1 + len(inners)
        if cursor is not None and not (type(cursor) is list and len(cursor) == levels):
            raise UsageError(
                f"nested cannot resume from cursor {cursor!r}: it expects a list of {levels} "
                "cursors, one per level — pass the cursor this enumerator yielded, unchanged"
            )
        self._outer = outer
        self._inners = inners
        self._resume: list[Cursor] | None = cursor

    def __iter__(self) -> Iterator[tuple[Any, Cursor]]:
        resume = self._resume
        start = None if resume is None else resume[0]
        yield from self._walk(0, self._outer(start), start, [], resume)

    def _walk(
        self,
        level: int,
        pairs: Pairs,
        before: Cursor,
        outer: list[Cursor],
        resume: list[Cursor] | None,
    ) -> Iterator[tuple[Any, Cursor]]:
        """Items under ``pairs`` (level ``level``, built from cursor ``before``).

        ``outer`` holds the cursors of the levels above; ``resume`` the saved cursor, used
        for the first item of each level only.
        """
        if level == len(self._inners):
            for item, cursor in pairs:
                yield item, [*outer, cursor]
            return
        inner = self._inners[level]
        for item, cursor in pairs:
            # Resume inside the first outer item only; later ones start from None.
            here = None if resume is None else resume[level + 1]
            prefix = [*outer, before]
            yield from self._walk(level + 1, inner(item, here), here, prefix, resume)
            resume = None
            before = cursor


def nested(outer: OuterBuilder, *inners: InnerBuilder, cursor: Cursor = None) -> Nested:
    """Walk ``outer(cursor)``, and for each of its items ``inner(item, cursor)``, and so on."""
    return Nested(outer, inners, cursor)
