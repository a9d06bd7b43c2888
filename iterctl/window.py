"""The watermark window: an exact cursor while items finish out of order (--concurrency).

    window = Window(capacity=4 * n, watermark=saved_cursor, done_json=saved_done)
    for item, cursor in pairs:
        if window.skip(cursor):          # done by an earlier run: not dispatched again
            continue
        ticket = window.add(cursor)      # the caller waits while ``window.full``
        ...                              # later, on the same thread: window.complete(ticket)
    store.checkpoint(encode(window.watermark), window.done_json())

Invariant (what a checkpoint may rely on):

- Items enter in enumeration order (``add`` or ``skip``) and are *completed* in any order.
- The **watermark** is the cursor of the last item such that it and every item before it in
  enumeration order are complete (initially the saved cursor: everything up to it was done
  by earlier runs). A resumed enumerator built from it yields exactly the items after it.
- The **done set** is the cursors of completed items past the watermark, in enumeration
  order, plus the cursors restored from the last checkpoint that this run has not met yet.
  An item in progress, or one that raised, is in neither: a resume does it again.
- Resume = rebuild the enumerator from the watermark and ``skip`` the items whose cursor is
  in the restored done set. Every item is then done exactly once across any number of
  stops, whatever the completion order and wherever a stop falls.
- **Bounded**: the caller dispatches only while not ``full`` (fewer than ``capacity`` items
  between the watermark and the last item entered), so the done set holds fewer than
  ``capacity`` cursors, or at most as many as it was restored with: one slow item cannot
  make the saved state grow without bound. While full, dispatch waits (back-pressure). The
  lowest item in the window is never complete, so a full window always has work in flight.
- Cursors are opaque: they are compared as their encoded JSON text, never as numbers, and
  the done set is saved as a JSON list of them (``Checkpoint.done_json``; None when empty).

The class is pure (no threads, no clock): one owner thread calls every method.
"""

from __future__ import annotations

import json
from typing import Any

from iterctl.cursor import Cursor, encode_cursor


class Window:
    """Tickets for items in flight past the watermark; see the module docstring."""

    def __init__(
        self,
        capacity: int,
        *,
        watermark: Cursor = None,
        done_json: str | None = None,
        name: str = "job",
    ) -> None:
        if capacity < 1:
            raise ValueError(f"a window needs a capacity of at least 1, not {capacity}")
        self.capacity = capacity
        self.watermark: Cursor = watermark
        self._name = name
        #: ticket -> cursor for every item entered and not yet passed by the watermark.
        self._cursors: dict[int, Cursor] = {}
        self._done: set[int] = set()
        self._first = 0  # the lowest ticket still in the window
        self._next = 0  # the ticket the next item gets
        restored: list[Any] = [] if done_json is None else json.loads(done_json)
        #: Encoded cursors done by earlier runs and not yet met, in their saved order.
        self._restored: dict[str, Cursor] = {
            encode_cursor(cursor, name): cursor for cursor in restored
        }

    # -- entering and completing items ------------------------------------------------------

    @property
    def full(self) -> bool:
        """True while no item may be dispatched: wait for a completion first."""
        return self._next - self._first >= self.capacity

    @property
    def restoring(self) -> bool:
        """True while some cursors restored from the checkpoint have not been met."""
        return bool(self._restored)

    def __len__(self) -> int:
        """Items between the watermark and the last one entered."""
        return self._next - self._first

    def skip(self, cursor: Cursor) -> bool:
        """True (and the item counts as complete) if an earlier run completed it."""
        if not self._restored:
            return False
        if self._restored.pop(encode_cursor(cursor, self._name), _MISSING) is _MISSING:
            return False
        self.complete(self.add(cursor))
        return True

    def add(self, cursor: Cursor) -> int:
        """Enter the next item in enumeration order; returns its ticket."""
        ticket = self._next
        self._next = ticket + 1
        self._cursors[ticket] = cursor
        return ticket

    def complete(self, ticket: int) -> None:
        """The item of ``ticket`` is done: move the watermark past every done item in a row."""
        if ticket != self._first:
            self._done.add(ticket)
            return
        cursors, done = self._cursors, self._done
        first = ticket
        self.watermark = cursors.pop(first)
        first += 1
        while first in done:
            done.remove(first)
            self.watermark = cursors.pop(first)
            first += 1
        self._first = first

    def cursor_of(self, ticket: int) -> Cursor:
        """The cursor of an item not yet complete."""
        return self._cursors[ticket]

    def cursor_before(self, ticket: int) -> Cursor:
        """The cursor of the item entered just before ``ticket`` (not yet complete): the
        one to rebuild the enumerator from to meet that item again."""
        before = self._cursors.get(ticket - 1, _MISSING)
        # Passed by the watermark: then the watermark stops right before this item.
        return self.watermark if before is _MISSING else before

    # -- what a checkpoint saves --------------------------------------------------------------

    def done_cursors(self) -> list[Cursor]:
        """The done set: completed past the watermark, then restored and not yet met."""
        cursors = self._cursors
        return [cursors[t] for t in sorted(self._done)] + list(self._restored.values())

    def done_json(self) -> str | None:
        """The done set as the JSON list ``Checkpoint.done_json`` holds; None when empty."""
        if not self._done and not self._restored:
            return None
        name = self._name
        return "[" + ",".join(encode_cursor(c, name) for c in self.done_cursors()) + "]"

    def in_flight(self) -> list[Cursor]:
        """Cursors entered and not complete, in enumeration order (what a stop abandons)."""
        done = self._done
        return [c for t, c in sorted(self._cursors.items()) if t not in done]


_MISSING = object()
