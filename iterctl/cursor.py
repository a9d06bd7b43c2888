"""What a cursor is: a JSON value, checked before it is trusted and stored losslessly."""

from __future__ import annotations

import json
import math
from typing import Any

from iterctl.errors import InvalidCursorError

#: A cursor is a JSON value. (Typed loosely: a recursive alias buys nothing at runtime.)
Cursor = Any

_SCALARS = (str, int, float, bool, type(None))

#: The longest cursor a store keeps, as JSON text; the same on every store.
MAX_CURSOR_CHARS = 1_048_576
#: How deep lists and dicts may nest in a cursor.
MAX_CURSOR_DEPTH = 100
#: The most digits an int in a cursor may have (Python's own str/int conversion limit).
MAX_INT_DIGITS = 4_300


def _find_non_json(value: object, path: str, depth: int = 0) -> str | None:
    """Describe the first part of ``value`` that is not a JSON value, or None if all are."""
    if depth > MAX_CURSOR_DEPTH:
        return f"the cursor nests lists and dicts more than {MAX_CURSOR_DEPTH} deep"
    if type(value) is int and value.bit_length() > MAX_INT_DIGITS * 10 // 3:  # 0.301 digit a bit
        return f"{path} is an int with more than {MAX_INT_DIGITS:,} digits"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{path} is {value!r}, which JSON cannot represent"
    if isinstance(value, _SCALARS):
        return None
    if type(value) is list:
        for index, element in enumerate(value):
            found = _find_non_json(element, f"{path}[{index}]", depth + 1)
            if found:
                return found
        return None
    if type(value) is dict:
        for key, element in value.items():
            if not isinstance(key, str):
                return f"{path} has a key of type {type(key).__name__}; JSON keys are str"
            found = _find_non_json(element, f"{path}[{key!r}]", depth + 1)
            if found:
                return found
        return None
    # Tuples are refused too: they would come back from the store as lists.
    return f"{path} is of type {type(value).__name__}"


def check_cursor(value: object, job_name: str) -> None:
    """Refuse a cursor that is not a JSON value, naming the job and the offending type."""
    problem = _find_non_json(value, "the cursor")
    if problem:
        raise InvalidCursorError(
            f"{job_name} yielded a cursor that is not a JSON value: {problem} — "
            "yield a cursor made of None, bool, int, float, str, list and dict "
            "(e.g. an id, or an ISO 8601 string for a datetime)"
        )


def encode_cursor(value: object, job_name: str) -> str:
    """The cursor as JSON text; refuses anything that would not come back unchanged, or
    that no store would keep (over :data:`MAX_CURSOR_CHARS`)."""
    check_cursor(value, job_name)
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except ValueError as error:  # an int too long for str(), say
        raise InvalidCursorError(
            f"{job_name} yielded a cursor that cannot be saved: {error} — yield a small cursor"
        ) from None
    if len(text) > MAX_CURSOR_CHARS:
        raise InvalidCursorError(
            f"{job_name} yielded a cursor of {len(text):,} characters of JSON; a store keeps "
            f"at most {MAX_CURSOR_CHARS:,} — yield a small cursor (an id, a position)"
        )
    return text


def decode_cursor(text: str | None) -> Cursor:
    """The cursor stored as JSON text (None when the job has made no progress)."""
    return None if text is None else json.loads(text)
