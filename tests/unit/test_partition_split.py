"""Ranges and sequences split into partitions: properties that hold for any data and any N.

What a partitioned job relies on (issue 5): the plan's bounds, stored as JSON, restrict
the walk to contiguous pieces whose union, in partition order, is exactly the
unpartitioned walk (no item twice, none missing); the pieces are even (sizes within one);
each piece's total() is its size, so a partition's progress never passes its total; and a
partition resumed from any cursor it yielded gives the rest of that partition only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iterctl.cursor import Cursor
from iterctl.enumerators.base import Enumerator
from iterctl.enumerators.ranges import int_range, sequence

COUNTS = st.integers(1, 16)
BOUND = st.integers(-300, 300)
STEPS = st.integers(-7, 7).filter(lambda step: step != 0)
ITEMS = st.one_of(st.lists(st.integers(), max_size=80), st.text(max_size=80))

Build = Callable[[Cursor], Enumerator[Any]]


def check_partitions(build: Build, count: int) -> None:
    """split(count), through JSON as the store keeps it, then within() each bound: the
    union in order is the whole walk, sizes within one, totals exact, resumes exact."""
    whole = list(build(None))
    bounds = json.loads(json.dumps(build(None).split(count)))
    assert len(bounds) == count
    parts = [list(build(None).within(bound)) for bound in bounds]
    assert [pair for part in parts for pair in part] == whole
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1, sizes
    for bound, part in zip(bounds, parts, strict=True):
        assert build(None).within(bound).total() == len(part)
        for at, (_item, cursor) in enumerate(part):
            assert list(build(cursor).within(bound)) == part[at + 1 :], (bound, cursor)


@given(start=BOUND, stop=BOUND, step=STEPS, count=COUNTS)
def test_int_range_partitions_are_the_whole_range_once_even_and_resumable(
    start: int, stop: int, step: int, count: int
) -> None:
    """Any int_range (empty, descending, steps that overshoot stop) and any N in 1..16:
    the partitions together are the range, in order, once each item; their sizes differ
    by at most one; each resumes from any of its own cursors to its own end."""
    check_partitions(lambda cursor: int_range(start, stop, step, cursor=cursor), count)


@given(items=ITEMS, count=COUNTS)
def test_sequence_partitions_are_the_whole_sequence_once_even_and_resumable(
    items: list[int] | str, count: int
) -> None:
    """Any sequence (a list with repeats, a string, empty) and any N in 1..16: the same
    properties as for ranges, with the item's index as cursor."""
    check_partitions(lambda cursor: sequence(items, cursor=cursor), count)


@given(size=st.integers(0, 10_000), count=COUNTS)
def test_large_int_range_splits_evenly_without_walking_it(size: int, count: int) -> None:
    """For longer ranges, checked from the bounds alone: contiguous [first, end) pieces
    from 0 to size, each of size // N or size // N + 1 items."""
    bounds = int_range(0, size).split(count)
    ends = [end for _first, end in bounds]
    assert [first for first, _end in bounds] == [0, *ends[:-1]]
    assert ends[-1] == size
    totals = [int_range(0, size).within(bound).total() for bound in bounds]
    sizes = [total for total in totals if total is not None]
    assert len(sizes) == count
    assert sum(sizes) == size
    assert set(sizes) <= {size // count, size // count + 1}


@pytest.mark.parametrize(("start", "stop", "step"), [(5, 3, 1), (0, 1, -1), (10, 0, 3)])
def test_an_empty_int_range_splits_into_empty_partitions(start: int, stop: int, step: int) -> None:
    """An empty int_range splits into N empty partitions: nothing to walk, totals 0."""
    check_partitions(lambda cursor: int_range(start, stop, step, cursor=cursor), 3)
