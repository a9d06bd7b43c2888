"""Checkpoint stores, chosen by ``--store`` (CONTRACT §2).

Like rq's serializers: one interface (:class:`~iterctl.stores.base.Store`) and one
function, :func:`open_store`, that turns what the user typed into a store. The SQL store
is imported only when asked for, so commands that need no database never load SQLAlchemy.
"""

from __future__ import annotations

from iterctl.stores.base import Checkpoint, Hold, JobRecord, Status, Store

DEFAULT_STORE = "sqlite:///iterctl.db"

__all__ = ["DEFAULT_STORE", "Checkpoint", "Hold", "JobRecord", "Status", "Store", "open_store"]


#: File names (not URLs) that mean a SQLite file, as ``sqlite:///`` + the path would.
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def open_store(location: str | None, *, create: bool = True, read_only: bool = False) -> Store:
    """The store at ``location``: a SQLAlchemy URL, or a file path ending in ``.json``
    (the JSON store) or in ``.db``, ``.sqlite``, ``.sqlite3`` (a SQLite file).

    With ``create=False`` (commands that only read or update existing jobs) a missing
    SQLite file is not created: :class:`~iterctl.errors.NoStoreError` is raised instead.
    With ``read_only=True`` (commands that only read) nothing is created or written, so a
    read-only file or folder can be read.
    """
    location = location or DEFAULT_STORE
    if "://" not in location and location.endswith(SQLITE_SUFFIXES):
        location = "sqlite:///" + location
    if location.endswith(".json") and "://" not in location:
        from iterctl.stores.json_file import JsonFileStore

        return JsonFileStore(location)
    if location == "memory://":
        from iterctl.stores.memory import MemoryStore

        return MemoryStore()
    from iterctl.stores.sql import SqlStore

    return SqlStore(location, create=create, read_only=read_only)
