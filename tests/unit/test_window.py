"""The watermark window (iterctl/window.py): any completion order, any stop, exact resume."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iterctl.cursor import decode_cursor, encode_cursor
from iterctl.window import Window

#: Cursor shapes a job may yield; none of them is compared as a number by the window.
SHAPES: list[Any] = [
    lambda i: i,
    lambda i: f"row-{i:04d}",
    lambda i: [i // 3, i % 3],
    lambda i: {"id": i, "part": "a" if i % 2 else "b"},
    lambda i: float(i) + 0.5,
]


def resume_from(cursors: list[Any], watermark_json: str | None) -> list[int]:
    """What a rebuilt enumerator yields: the indexes after the watermark (found by JSON text)."""
    if watermark_json is None:
        return list(range(len(cursors)))
    encoded = [encode_cursor(c, "t") for c in cursors]
    return list(range(encoded.index(watermark_json) + 1, len(cursors)))


class Saved:
    """What a store holds: the watermark as JSON text and the done set."""

    def __init__(self) -> None:
        self.watermark_json: str | None = None
        self.done_json: str | None = None

    def save(self, window: Window) -> None:
        self.watermark_json = (
            None if window.watermark is None else encode_cursor(window.watermark, "t")
        )
        self.done_json = window.done_json()


def one_run(
    data: st.DataObject, cursors: list[Any], saved: Saved, capacity: int, workers: int
) -> tuple[list[int], bool]:
    """One process: read in order, complete in a random order, stop at a random point.

    At the stop each item in flight either finishes (a SIGTERM drain) or is abandoned (it
    raised, or a second SIGINT). Returns the items completed and whether the walk ended.
    """
    window = Window(
        capacity,
        watermark=decode_cursor(saved.watermark_json),
        done_json=saved.done_json,
        name="t",
    )
    pending = resume_from(cursors, saved.watermark_json)
    in_flight: dict[int, int] = {}  # ticket -> item index
    completed: list[int] = []
    while True:
        can_read = bool(pending) and len(in_flight) < workers and not window.full
        if not can_read and not in_flight:
            break  # the end of the walk
        moves = ["read"] * can_read + ["complete"] * bool(in_flight) + ["stop"]
        action = data.draw(st.sampled_from(moves))
        if action == "stop":
            for ticket, index in sorted(in_flight.items()):
                if data.draw(st.booleans()):
                    window.complete(ticket)
                    completed.append(index)
            saved.save(window)
            return completed, False
        if action == "read":
            index = pending.pop(0)
            if not window.skip(cursors[index]):
                in_flight[window.add(cursors[index])] = index
        else:
            ticket = data.draw(st.sampled_from(sorted(in_flight)))
            window.complete(ticket)
            completed.append(in_flight.pop(ticket))
        # The bound holds at every step, not only at a stop.
        assert len(window.done_cursors()) < capacity
    saved.save(window)
    return completed, True


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    size=st.integers(0, 40),
    shape=st.sampled_from(range(len(SHAPES))),
    workers=st.integers(1, 6),
    spare=st.integers(0, 8),
)
def test_any_order_any_stops_every_item_exactly_once(
    data: st.DataObject, size: int, shape: int, workers: int, spare: int
) -> None:
    """Runs until the walk ends: each resume yields exactly the items not yet done, and over
    all runs every item completes exactly once; the done set stays under the capacity."""
    cursors = [SHAPES[shape](i) for i in range(size)]
    capacity = workers + spare
    saved = Saved()
    done: list[int] = []
    for _ in range(200):
        left = set(range(size)) - set(done)
        restored = {encode_cursor(c, "t") for c in json.loads(saved.done_json or "[]")}
        to_do = {
            i for i in resume_from(cursors, saved.watermark_json)
            if encode_cursor(cursors[i], "t") not in restored
        }  # fmt: skip
        assert to_do == left  # resume would do exactly what is left
        completed, ended = one_run(data, cursors, saved, capacity, workers)
        done += completed
        if ended:
            break
    assert sorted(done) == list(range(size))
    assert max(Counter(done).values(), default=1) == 1


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    size=st.integers(0, 40),
    capacities=st.lists(st.integers(1, 8), min_size=1, max_size=6),
)
def test_a_different_capacity_on_resume_keeps_exactness_and_the_larger_bound(
    data: st.DataObject, size: int, capacities: list[int]
) -> None:
    """Resuming with another --concurrency: still exactly once; the done set never exceeds
    the largest capacity used."""
    cursors = [SHAPES[3](i) for i in range(size)]
    saved = Saved()
    done: list[int] = []
    for run, stops_left in enumerate(range(len(capacities) - 1, -1, -1)):
        capacity = capacities[run]
        window_bound = max(capacities)
        completed, ended = one_run_any_bound(
            data, cursors, saved, capacity, window_bound, may_stop=stops_left > 0
        )
        done += completed
        if ended:
            break
    assert sorted(done) == list(range(size))


def one_run_any_bound(
    data: st.DataObject,
    cursors: list[Any],
    saved: Saved,
    capacity: int,
    bound: int,
    *,
    may_stop: bool,
) -> tuple[list[int], bool]:
    window = Window(
        capacity, watermark=decode_cursor(saved.watermark_json), done_json=saved.done_json
    )
    pending = resume_from(cursors, saved.watermark_json)
    in_flight: dict[int, int] = {}
    completed: list[int] = []
    while pending or in_flight:
        can_read = bool(pending) and not window.full
        moves = ["read"] * can_read + ["complete"] * bool(in_flight) + ["stop"] * may_stop
        move = data.draw(st.sampled_from(moves))
        if move == "read":
            index = pending.pop(0)
            if not window.skip(cursors[index]):
                in_flight[window.add(cursors[index])] = index
        elif move == "complete":
            ticket = data.draw(st.sampled_from(sorted(in_flight)))
            window.complete(ticket)
            completed.append(in_flight.pop(ticket))
        else:
            saved.save(window)  # stop; whatever was in flight is abandoned
            assert len(window.done_cursors()) <= bound
            return completed, False
        assert len(window.done_cursors()) <= bound
    saved.save(window)
    return completed, True


@settings(max_examples=100, deadline=None)
@given(data=st.data(), size=st.integers(1, 40), workers=st.integers(1, 6))
def test_after_a_kill_nothing_is_skipped_and_redo_is_what_followed_the_last_checkpoint(
    data: st.DataObject, size: int, workers: int
) -> None:
    """SIGKILL: the store keeps its last checkpoint; resume redoes only items completed
    after it (or in flight), and skips none."""
    cursors = list(range(size))
    saved = Saved()
    done: list[int] = []
    for kills_left in range(data.draw(st.integers(0, 4)), -1, -1):
        window = Window(
            workers * 2, watermark=decode_cursor(saved.watermark_json), done_json=saved.done_json
        )
        pending = resume_from(cursors, saved.watermark_json)
        in_flight: dict[int, int] = {}
        since_checkpoint: list[int] = []
        killed = False
        while pending or in_flight:
            can_read = bool(pending) and len(in_flight) < workers and not window.full
            moves = ["read"] * can_read + ["complete"] * bool(in_flight) + ["checkpoint"]
            moves += ["kill"] * (kills_left > 0)
            move = data.draw(st.sampled_from(moves))
            if move == "read":
                index = pending.pop(0)
                if not window.skip(cursors[index]):
                    in_flight[window.add(cursors[index])] = index
            elif move == "complete":
                ticket = data.draw(st.sampled_from(sorted(in_flight)))
                window.complete(ticket)
                since_checkpoint.append(in_flight.pop(ticket))
            elif move == "checkpoint":
                saved.save(window)
                done += since_checkpoint
                since_checkpoint = []
            elif move == "kill":
                killed = True
                break
        if not killed:
            saved.save(window)
            done += since_checkpoint
            break
        # The killed run's unsaved work is lost from the store: it will be done again.
        left = set(range(size)) - set(done)
        restored = set(json.loads(saved.done_json or "[]"))
        assert {i for i in resume_from(cursors, saved.watermark_json) if i not in restored} == left
    assert sorted(done) == list(range(size))


def test_the_done_set_is_saved_as_json_text_in_enumeration_order() -> None:
    """Out-of-order completions are saved in enumeration order, as JSON of the cursors."""
    window = Window(8)
    tickets = [window.add({"k": k}) for k in "abcde"]
    for ticket in (tickets[3], tickets[1], tickets[4]):
        window.complete(ticket)
    assert window.watermark is None
    assert window.done_json() == '[{"k":"b"},{"k":"d"},{"k":"e"}]'
    window.complete(tickets[0])
    assert window.watermark == {"k": "b"}
    assert window.done_json() == '[{"k":"d"},{"k":"e"}]'
    assert window.in_flight() == [{"k": "c"}]
    window.complete(tickets[2])
    watermark: Any = window.watermark
    assert (watermark, window.done_json(), len(window)) == ({"k": "e"}, None, 0)


def test_cursors_are_compared_as_json_text_not_as_numbers() -> None:
    """1 and 1.0 and True are different cursors; a restored 1.0 does not skip the item 1."""
    window = Window(4, done_json="[1.0, true]")
    assert not window.skip(1)
    assert window.skip(1.0)
    assert window.skip(True)
    assert not window.restoring


def test_a_full_window_holds_back_dispatch_until_its_lowest_item_completes() -> None:
    """Back-pressure: with capacity 3 and the first item slow, a fourth cannot enter."""
    window = Window(3)
    slow, *others = (window.add(n) for n in range(3))
    for ticket in others:
        window.complete(ticket)
    assert window.full
    window.complete(slow)
    assert not window.full
    assert window.watermark == 2


def test_a_window_needs_a_capacity() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Window(0)


def test_the_cursor_before_an_unfinished_item_is_the_one_to_rebuild_from() -> None:
    """cursor_before(t): the previous item's cursor, or the watermark once it passed it."""
    window = Window(8, watermark="w")
    first, second, third = (window.add(c) for c in ("a", "b", "c"))
    assert (window.cursor_before(first), window.cursor_before(third)) == ("w", "b")
    window.complete(first)
    window.complete(third)
    assert (window.cursor_of(second), window.cursor_before(second)) == ("b", "a")
