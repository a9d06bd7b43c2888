"""The SQLite engine the examples share: WAL, so a commit per item is cheap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


def sqlite_engine(path: str | Path) -> Engine:
    """An engine on the SQLite file ``path``, in WAL mode with NORMAL sync.

    Jobs commit once per item; with the default rollback journal each commit is an fsync
    (about a millisecond), with WAL and NORMAL sync it is a few microseconds.
    """
    engine = create_engine(f"sqlite:///{Path(path)}")

    @event.listens_for(engine, "connect")
    def _wal(connection: Any, _record: Any) -> None:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")

    return engine


def is_sqlite_file(store_location: str, path: str | Path) -> bool:
    """True when the store ``store_location`` (a ``--store`` URL) is the SQLite file ``path``."""
    if not store_location.startswith("sqlite:"):
        return False
    database = make_url(store_location).database
    return database is not None and Path(database).resolve() == Path(path).resolve()
