"""The enumerator builders: each returns ``(item, cursor)`` pairs starting after ``cursor``.

    from iterctl.enumerators import csv_rows, int_range, nested, records, throttled

    class Backfill(Job):
        def build_enumerator(self, cursor):
            return records(engine, select(users).where(users.c.score.is_(None)), cursor=cursor)

Every builder takes the cursor as ``cursor=`` and yields JSON cursors only; most also offer
``total()``. The SQL builders (``records``, ``record_batches``, ``batch_ranges``) live in
:mod:`iterctl.enumerators.sql` and are loaded on first use, so that a job or command that
needs no database never imports SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from iterctl.enumerators.base import Enumerator
from iterctl.enumerators.batching import batched
from iterctl.enumerators.files import (
    ChangedFileError,
    csv_batches,
    csv_rows,
    jsonl_batches,
    jsonl_rows,
)
from iterctl.enumerators.nesting import nested
from iterctl.enumerators.ranges import int_range, iterable, once, sequence
from iterctl.enumerators.throttling import throttled

if TYPE_CHECKING:
    from iterctl.enumerators.sql import KeyRange, batch_ranges, record_batches, records

_SQL = ("KeyRange", "batch_ranges", "record_batches", "records")

__all__ = [
    "ChangedFileError",
    "Enumerator",
    "KeyRange",
    "batch_ranges",
    "batched",
    "csv_batches",
    "csv_rows",
    "int_range",
    "iterable",
    "jsonl_batches",
    "jsonl_rows",
    "nested",
    "once",
    "record_batches",
    "records",
    "sequence",
    "throttled",
]


def __getattr__(name: str) -> Any:
    """Load the SQL builders, and so SQLAlchemy, only when a job asks for one."""
    if name in _SQL:
        from iterctl.enumerators import sql  # lazy on purpose: it imports SQLAlchemy

        return getattr(sql, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
