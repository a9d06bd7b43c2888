"""Every store the contract suite runs against, opened as many times as a test needs.

Each ``open()`` of a file or database store is a new store object with its own
connections and holds: within one test process it stands for a second process. The
memory store keeps its records in one object, so ``open()`` hands back that object.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from iterctl.stores import Store, open_store
from iterctl.stores.base import JobRecord, hold_name
from iterctl.stores.json_file import JsonFileStore
from iterctl.stores.memory import MemoryStore
from iterctl.stores.sql import SqlStore
from tests.servers import server_url

KINDS = [
    "memory",
    "sqlite",
    "json",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]

#: The stores whose hold lives outside the test process (a file lock, a server session).
PROCESS_KINDS = [kind for kind in KINDS if kind != "memory"]


def new_job_id() -> str:
    """A job id no other test uses: the database tables are shared between tests."""
    return f"t-{uuid.uuid4().hex}"


def new_record(job_id: str | None = None, job: str = "tests.jobs:Count") -> JobRecord:
    """A fresh record as ``run`` creates it."""
    return JobRecord(job_id=job_id or new_job_id(), job=job, params={"limit": "10"})


@dataclass
class StoreUnderTest:
    """One store location and every store object a test opened on it."""

    kind: str
    location: str
    opened: list[Store] = field(default_factory=list)

    def open(self) -> Store:
        """A store object on the location (the same object for the memory store)."""
        if self.kind == "memory":
            if not self.opened:
                self.opened.append(MemoryStore())
            return self.opened[0]
        store = open_store(self.location)
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self.opened:
            store.close()


def location_of(kind: str, folder: Path) -> str:
    """Where a store of ``kind`` lives for one test."""
    if kind == "sqlite":
        return f"sqlite:///{folder / 'iterctl.db'}"
    if kind == "json":
        return str(folder / "iterctl.json")
    if kind in ("postgres", "mysql"):
        return server_url(kind)
    return "memory://"


def drop_hold_behind_its_back(store: Store, job_id: str, partition: int = 0) -> None:
    """Lose ``store``'s hold without telling it, as when its lock connection dies."""
    name = hold_name(job_id, partition)
    if isinstance(store, SqlStore) and store._file_holds is not None:
        store._drop_lock(name)  # the flock and the session beside it go together
    elif isinstance(store, SqlStore) and name in store._hold_connections:
        # The lock's session dies, as when the network drops it: the server frees the lock.
        store._hold_connections.pop(name).invalidate()
    elif isinstance(store, SqlStore):
        store._drop_lock(name)
    elif isinstance(store, JsonFileStore):
        store._holds.drop(name)
    elif isinstance(store, MemoryStore):
        store._held.discard(name)
    else:
        raise TypeError(f"no way to drop the hold of {type(store).__name__}")


@pytest.fixture(params=KINDS)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreUnderTest]:
    """The store kind of this test run, on a fresh file or the shared server database."""
    under_test = StoreUnderTest(request.param, location_of(request.param, tmp_path))
    yield under_test
    under_test.close_all()


@pytest.fixture(params=PROCESS_KINDS)
def process_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreUnderTest]:
    """The store kinds another process can open: every one but memory."""
    under_test = StoreUnderTest(request.param, location_of(request.param, tmp_path))
    yield under_test
    under_test.close_all()
