"""cursor.py: a cursor is a JSON value, checked before it is trusted and stored losslessly."""

from __future__ import annotations

import math
from collections import OrderedDict
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iterctl.cursor import check_cursor, decode_cursor, encode_cursor
from iterctl.errors import InvalidCursorError, UsageError

JOB = "jobs.backfill:Backfill"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


def same_json(left: Any, right: Any) -> bool:
    """Equal and of the same JSON types all the way down (1, 1.0 and True are not the same)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same_json, left, right))
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same_json(left[k], right[k]) for k in left)
    if isinstance(left, float):
        return left == right and math.copysign(1, left) == math.copysign(1, right)
    return bool(left == right)


@given(json_values)
def test_every_json_value_is_a_valid_cursor_that_round_trips(value: Any) -> None:
    """Any JSON value passes check_cursor and comes back from encode/decode unchanged."""
    check_cursor(value, JOB)

    assert same_json(decode_cursor(encode_cursor(value, JOB)), value)


def test_no_progress_decodes_to_none() -> None:
    """A record with no cursor yet (NULL in the store) decodes to None."""
    assert decode_cursor(None) is None


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ((1, 2), "tuple"),
        ({1, 2}, "set"),
        (b"abc", "bytes"),
        (datetime(2024, 1, 1, tzinfo=UTC), "datetime"),
        (date(2024, 1, 1), "date"),
        (OrderedDict(a=1), "OrderedDict"),
        ({1: "a"}, "int"),
        ({("a", 1): "a"}, "tuple"),
        (object(), "object"),
    ],
)
def test_a_non_json_cursor_is_refused_naming_the_job_and_the_type(
    value: object, type_name: str
) -> None:
    """Tuples, sets, bytes, datetimes, dict subclasses and non-str keys are refused with a
    usage error that names the job and the offending type."""
    with pytest.raises(InvalidCursorError) as refused:
        check_cursor(value, JOB)

    assert JOB in str(refused.value)
    assert f"type {type_name}" in str(refused.value)
    assert isinstance(refused.value, UsageError)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused(value: float) -> None:
    """Floats JSON cannot write (NaN, ±infinity) are refused, naming the value and the job."""
    with pytest.raises(InvalidCursorError, match="JSON cannot represent") as refused:
        encode_cursor(value, JOB)

    assert JOB in str(refused.value)
    assert repr(value) in str(refused.value)


@given(json_values, st.sampled_from([(1,), {1}, b"x", math.nan]))
def test_a_non_json_value_nested_anywhere_is_refused(outer: Any, bad: object) -> None:
    """A bad value inside lists and dicts is found wherever it sits, and its place is shown."""
    value = [outer, {"deep": [bad]}]

    with pytest.raises(InvalidCursorError, match=r"the cursor\[1\]\['deep'\]\[0\]"):
        check_cursor(value, JOB)
