"""What is kept of an item that failed and was passed over: a bounded, readable record."""

from __future__ import annotations

import reprlib
import traceback

from iterctl.cursor import Cursor, encode_cursor
from iterctl.stores.base import FailureRecord

#: Bounds on what a record keeps, so one huge item or message cannot bloat the store.
ITEM_REPR_CHARS = 300
MESSAGE_CHARS = 2_000
TRACEBACK_FRAMES = 8
TRACEBACK_CHARS = 6_000

_item_repr = reprlib.Repr()
_item_repr.maxstring = ITEM_REPR_CHARS
_item_repr.maxother = ITEM_REPR_CHARS
_item_repr.maxlevel = 3


def _cut(text: str, limit: int, *, keep_end: bool = False) -> str:
    if len(text) <= limit:
        return text
    return "…" + text[-(limit - 1) :] if keep_end else text[: limit - 1] + "…"


def failure_record(
    item: object,
    cursor: Cursor,
    before: Cursor,
    error: BaseException,
    attempts: int,
    job_name: str,
) -> FailureRecord:
    """The record of ``item`` (at ``cursor``, enumerated after ``before``) that raised
    ``error`` on its last of ``attempts`` tries. The traceback keeps its innermost frames:
    that is where the job's code raised."""
    trace = "".join(traceback.format_exception(error, limit=-TRACEBACK_FRAMES))
    return FailureRecord(
        cursor_json=encode_cursor(cursor, job_name),
        cursor_before_json=None if before is None else encode_cursor(before, job_name),
        item=_cut(_item_repr.repr(item), ITEM_REPR_CHARS),
        error_type=_cut(f"{type(error).__module__}.{type(error).__qualname__}", 300)
        if type(error).__module__ != "builtins"
        else type(error).__qualname__,
        message=_cut(str(error), MESSAGE_CHARS),
        traceback=_cut(trace, TRACEBACK_CHARS, keep_end=True),
        attempts=attempts,
    )
