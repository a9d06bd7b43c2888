"""Ranges, sequences, iterables, once, nesting and batching: resuming from any cursor they
yielded (after a JSON round trip) gives exactly the remaining items, in order, once each."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iterctl.cursor import check_cursor
from iterctl.enumerators import batched, int_range, iterable, nested, once, sequence
from iterctl.errors import UsageError


def roundtrip(cursor: Any) -> Any:
    return json.loads(json.dumps(cursor))


def assert_resumes_exactly(build: Any, data: st.DataObject) -> list[tuple[Any, Any]]:
    """The property itself: every yielded cursor is JSON, and resuming from one that the
    draw picks (JSON round-tripped) gives exactly the pairs after it."""
    full = list(build(None))
    for _item, cursor in full:
        check_cursor(cursor, "test")
    if full:
        index = data.draw(st.integers(0, len(full) - 1), label="resume after")
        rest = list(build(roundtrip(full[index][1])))
        assert [item for item, _ in rest] == [item for item, _ in full[index + 1 :]]
        assert [c for _, c in rest] == [roundtrip(c) for _, c in full[index + 1 :]]
    return full


@given(st.integers(-50, 50), st.integers(-50, 50), st.integers(-7, 7).filter(bool), st.data())
def test_int_range_resumes_exactly_and_totals_the_whole_range(
    start: int, stop: int, step: int, data: st.DataObject
) -> None:
    """int_range yields range(start, stop, step) with each item its own cursor; total()
    counts the whole range whatever the cursor."""
    full = assert_resumes_exactly(lambda c: int_range(start, stop, step, cursor=c), data)
    assert [n for n, _ in full] == list(range(start, stop, step))
    if full:
        assert int_range(start, stop, step, cursor=full[-1][1]).total() == len(full)


def test_int_range_without_stop_counts_on() -> None:
    """Without ``stop`` the range is endless and its total unknown."""
    pairs = iter(int_range(5, cursor=9))
    assert [next(pairs) for _ in range(3)] == [(10, 10), (11, 11), (12, 12)]
    assert int_range(5).total() is None


@given(st.lists(st.text(max_size=3)), st.data())
def test_sequence_and_iterable_resume_by_index(items: list[str], data: st.DataObject) -> None:
    """sequence (O(1) resume) and iterable (skips the items done) yield the items with
    their index as cursor, and resume after it."""
    full = assert_resumes_exactly(lambda c: sequence(items, cursor=c), data)
    assert full == [(item, index) for index, item in enumerate(items)]
    again = assert_resumes_exactly(lambda c: iterable(iter(items), cursor=c), data)
    assert again == full
    assert sequence(tuple(items)).total() == len(items)
    assert iterable(items).total() == len(items)
    assert iterable(iter(items)).total() is None


def test_once_yields_one_item_then_nothing_on_resume() -> None:
    """once: a single item on the first run; nothing after its cursor."""
    [(item, cursor)] = once("migrate")
    assert item == "migrate"
    assert list(once("migrate", cursor=roundtrip(cursor))) == []
    assert once("x").total() == 1


@pytest.mark.parametrize(
    "build",
    [lambda: int_range(0, 5, cursor="3"), lambda: sequence([1], cursor=[0]),
     lambda: nested(lambda c: sequence([1], cursor=c), lambda i, c: sequence([i], cursor=c),
                    cursor=[0])],
    ids=["int_range-text", "sequence-list", "nested-short"],
)
def test_a_cursor_of_the_wrong_shape_is_refused(build: Any) -> None:
    """A cursor these builders cannot have yielded is a usage error that says to pass the
    yielded cursor unchanged."""
    with pytest.raises(UsageError, match="unchanged"):
        list(build())


TREE = st.lists(st.lists(st.lists(st.integers(0, 9), max_size=3), max_size=3), max_size=4)


@given(TREE, st.data())
def test_nested_three_levels_resume_exactly_with_empty_levels(
    tree: list[list[list[int]]], data: st.DataObject
) -> None:
    """Nested levels (some empty, at any depth) yield every leaf once, in order; resuming
    from any cursor yields exactly the leaves after it, on first run and resume alike."""

    def build(cursor: Any) -> Any:
        return nested(
            lambda c: sequence(tree, cursor=c),
            lambda middle, c: sequence(middle, cursor=c),
            lambda leaves, c: sequence(leaves, cursor=c),
            cursor=cursor,
        )

    full = assert_resumes_exactly(build, data)
    assert [leaf for leaf, _ in full] == [x for middle in tree for leaves in middle for x in leaves]
    assert all(len(cursor) == 3 for _, cursor in full)


@given(st.lists(st.integers()), st.integers(1, 5), st.data())
def test_batched_groups_items_and_resumes_after_the_last_batch_done(
    items: list[int], size: int, data: st.DataObject
) -> None:
    """batched yields lists of ``size`` items (the last shorter) with the last item's
    cursor; rebuilding the inner enumerator from it resumes with the next batch."""
    full = assert_resumes_exactly(lambda c: batched(sequence(items, cursor=c), size), data)
    assert [x for batch, _ in full for x in batch] == items
    assert all(len(batch) == size for batch, _ in full[:-1])
    assert batched(sequence(items), size).total() == len(full)


def test_batched_refuses_a_size_below_one() -> None:
    """A batch size of 0 is a usage error."""
    with pytest.raises(UsageError, match="batch size 0"):
        batched(sequence([1]), 0)


def test_batched_splits_as_its_inner_enumerator_does() -> None:
    """A batched walk splits where its inner one does, so no batch straddles partitions;
    one that cannot split says so."""
    whole = batched(int_range(0, 10), 3)
    bounds = whole.split(2)
    assert bounds == [[0, 5], [5, 10]]
    assert [b for b, _ in whole.within(bounds[1])] == [[5, 6, 7], [8, 9]]
    with pytest.raises(UsageError, match="cannot be split"):
        batched(iterable(iter([1])), 2).split(2)
