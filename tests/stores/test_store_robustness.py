"""The store contract under abuse (issue 8), the same for every store: a full disk, a
writer that never lets go, records not as iterctl wrote them, read-only files, and the
limits and job id rules every store shares."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, delete, text, update

import iterctl.stopping
import iterctl.stores.sql
from iterctl.cursor import MAX_CURSOR_CHARS
from iterctl.errors import (
    InvalidCursorError,
    IterctlError,
    StoreUnavailableError,
    StoreUnusableError,
    UsageError,
)
from iterctl.stores import Checkpoint, Status, Store, open_store
from iterctl.stores.base import MAX_ERROR_CHARS, MAX_PARAMS_CHARS
from iterctl.stores.sql import jobs_table
from tests.stores.conftest import StoreUnderTest, new_job_id, new_record


def created(store: Store) -> str:
    record, was_new = store.create(new_record())
    assert was_new
    return record.job_id


# -- 1. a full disk ------------------------------------------------------------------------

_FILL_THE_DISK = textwrap.dedent(
    """
    import resource, sys
    from iterctl.errors import IterctlError
    from iterctl.stores import Checkpoint, Status, open_store
    from tests.stores.conftest import new_record

    store = open_store(sys.argv[1])
    record, _ = store.create(new_record(sys.argv[2]))
    hold = store.acquire(record.job_id)
    store.checkpoint(hold, Checkpoint('"small"', 1, Status.RUNNING))
    # From here on no file may grow by more than a few bytes: a full disk.
    biggest = max(p.stat().st_size for p in __import__("pathlib").Path(sys.argv[3]).iterdir())
    resource.setrlimit(resource.RLIMIT_FSIZE, (biggest + 512, resource.RLIM_INFINITY))
    try:
        store.checkpoint(hold, Checkpoint('"' + "x" * 500_000 + '"', 2, Status.RUNNING))
    except IterctlError as error:
        print(type(error).__name__, int(error.exit_code), error)
    else:
        print("saved")
    """
)


def test_a_full_disk_never_leaves_a_store_unreadable(process_stores: StoreUnderTest) -> None:
    """A checkpoint that meets a full disk either saves whole or fails with exit 69,
    saying nothing was changed; either way the store reads back, the old record intact."""
    job_id = new_job_id()
    folder = Path(process_stores.location.removeprefix("sqlite:///")).parent
    folder = folder if process_stores.kind in ("sqlite", "json") else Path.cwd()
    child = subprocess.run(
        [sys.executable, "-c", _FILL_THE_DISK, process_stores.location, job_id, str(folder)],
        capture_output=True, text=True, timeout=60, check=False,
        cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert child.returncode == 0, child.stderr
    outcome = child.stdout.strip()

    record = process_stores.open().get(job_id)
    assert record is not None
    if process_stores.kind in ("sqlite", "json"):  # the disk that filled is theirs
        assert outcome.startswith("StoreUnavailableError 69"), outcome
        assert "nothing was changed" in outcome
        assert (record.cursor_json, record.processed) == ('"small"', 1)
    else:
        assert outcome == "saved"
        assert record.processed == 2
    if process_stores.kind in ("sqlite", "json"):
        assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no copy left


# -- 4. a writer that never lets go --------------------------------------------------------


@pytest.fixture
def short_store_wait(monkeypatch: pytest.MonkeyPatch) -> float:
    """Every store wait bounded at a fraction of a second, so the tests can wait it out."""
    monkeypatch.setattr(iterctl.stopping, "STORE_WAIT_SECONDS", 0.4)
    monkeypatch.setattr(iterctl.stores.sql, "STORE_WAIT_SECONDS", 0.4)
    return 0.4


def _block_writers(stores: StoreUnderTest, job_id: str) -> object:
    """Another process's lock on what a write of ``job_id`` needs, held until released."""
    if stores.kind == "json":
        path = Path(stores.location)
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"host frozen pid 4242")
        return fd
    if stores.kind == "sqlite":
        db = sqlite3.connect(stores.location.removeprefix("sqlite:///"), isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        return db
    engine = create_engine(stores.location)
    conn = engine.connect()
    conn.execute(
        text("SELECT fence FROM iterctl_jobs WHERE job_id = :id FOR UPDATE"), {"id": job_id}
    )
    return conn


def _unblock(blocker: object) -> None:
    if isinstance(blocker, int):
        os.close(blocker)
    elif isinstance(blocker, sqlite3.Connection):
        blocker.close()
    else:
        assert isinstance(blocker, Connection)
        blocker.rollback()
        blocker.close()


def test_a_write_blocked_by_a_stuck_writer_gives_up_within_the_store_wait(
    process_stores: StoreUnderTest, short_store_wait: float
) -> None:
    """A write that waits on another process's lock ends within the store wait with one
    of iterctl's errors (never a hang): exit 69, or 75 where the session gave up."""
    store = process_stores.open()
    job_id = created(store)
    hold = store.acquire(job_id)
    blocker = _block_writers(process_stores, job_id)
    finished = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            store.checkpoint(hold, Checkpoint("1", 1, Status.RUNNING))
        except BaseException as error:  # noqa: BLE001 - inspected below
            errors.append(error)
        finished.set()

    threading.Thread(target=write, daemon=True).start()
    try:
        assert finished.wait(short_store_wait + 10), "the write is still waiting"
    finally:
        _unblock(blocker)
    assert len(errors) == 1, errors
    assert isinstance(errors[0], IterctlError), errors
    if process_stores.kind == "json":
        assert "held by host frozen pid 4242" in str(errors[0])
    if process_stores.kind in ("json", "sqlite"):
        assert isinstance(errors[0], StoreUnavailableError)


# -- 16. records not as iterctl wrote them ---------------------------------------------------


def _tamper(stores: StoreUnderTest, job_id: str, field: str, value: object) -> None:
    """Change one field of ``job_id``'s record behind the store's back."""
    if stores.kind == "json":
        path = Path(stores.location)
        document = json.loads(path.read_text())
        document["jobs"][job_id][field] = value
        path.write_text(json.dumps(document))
        return
    column = {"cursor_json": "cursor", "bounds_json": "bounds", "partition": "partition_index"}
    engine = create_engine(stores.location)
    with engine.begin() as conn:
        conn.execute(
            update(jobs_table)
            .where(jobs_table.c.job_id == job_id)
            .values({column.get(field, field): value})
        )
    engine.dispose()


def _remove_record(stores: StoreUnderTest, job_id: str) -> None:
    """Take a damaged record out of a shared server database, for the tests after."""
    if stores.kind in ("postgres", "mysql"):
        engine = create_engine(stores.location)
        with engine.begin() as conn:
            conn.execute(delete(jobs_table).where(jobs_table.c.job_id == job_id))
        engine.dispose()


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("status", "bogus", "status 'bogus' is none of"),
        ("cursor_json", "{nope", "is not JSON"),
        ("bounds_json", "garbage", "is not JSON"),
        ("created_at", "yesterday", "is not an ISO 8601 time"),
    ],
)
def test_a_damaged_record_is_refused_in_one_line_naming_the_job(
    process_stores: StoreUnderTest, field: str, value: object, fragment: str
) -> None:
    """A record edited by hand is StoreUnusableError (exit 2) from get() and list(),
    naming the job id and what is wrong, on every store."""
    store = process_stores.open()
    job_id = created(store)
    _tamper(process_stores, job_id, field, value)
    reader = process_stores.open()
    try:
        for read in (reader.get, reader.partitions):
            with pytest.raises(StoreUnusableError, match="damaged record") as refused:
                read(job_id)
            assert job_id in str(refused.value)
            assert fragment in str(refused.value)
    finally:
        _remove_record(process_stores, job_id)


# -- 18. reading commands read -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "json"])
def test_a_read_only_store_file_is_read_and_never_replaced(tmp_path: Path, kind: str) -> None:
    """A store file without its owner's write bit: reading works; a write is refused
    (exit 2) and the file keeps its bytes and its mode."""
    location = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else str(tmp_path / "s.json")
    writer = open_store(location)
    job_id = created(writer)
    writer.close()
    path = tmp_path / ("s.db" if kind == "sqlite" else "s.json")
    path.chmod(0o400)
    before = path.read_bytes()

    reader = open_store(location, create=False, read_only=True)
    assert [r.job_id for r in reader.list()] == [job_id]
    reader.close()
    if kind == "json":
        with pytest.raises(StoreUnusableError, match="read-only"):
            open_store(location).create(new_record())
    assert path.read_bytes() == before
    assert path.stat().st_mode & 0o777 == 0o400


# -- 15. the same limits and id rules everywhere -----------------------------------------------


def test_a_large_cursor_params_and_error_fit_every_store(stores: StoreUnderTest) -> None:
    """100 KB of cursor, params and error text (over MariaDB's 64 KB TEXT) round-trip."""
    store = stores.open()
    big = "p" * 100_000
    record, _ = store.create(replace(new_record(), params={"data": big}))
    hold = store.acquire(record.job_id)
    cursor = json.dumps("c" * 100_000)
    store.checkpoint(hold, Checkpoint(cursor, 1, Status.FAILED, error="e" * 100_000))
    got = stores.open().get(record.job_id)
    assert got is not None
    assert got.params == {"data": big}
    assert got.cursor_json == cursor
    assert got.status is Status.FAILED
    assert got.error is not None
    assert len(got.error) == MAX_ERROR_CHARS
    assert got.error.endswith("(cut: 100,000 characters in all)")


def test_limits_are_refused_before_any_store_is_touched() -> None:
    """Over the documented maximum, a cursor or params are refused in one place, with the
    same message whatever the store; an error text is cut, never refused."""
    with pytest.raises(InvalidCursorError, match="at most 1,048,576"):
        Checkpoint("x" * (MAX_CURSOR_CHARS + 1), 1, Status.RUNNING)
    with pytest.raises(UsageError, match="a store keeps at most"):
        replace(new_record(), params={"data": "p" * (MAX_PARAMS_CHARS + 1)})
    cut = Checkpoint(None, 0, Status.FAILED, error="e" * (MAX_ERROR_CHARS * 2))
    assert cut.error is not None
    assert len(cut.error) == MAX_ERROR_CHARS


def test_job_ids_differ_by_case_on_every_store(stores: StoreUnderTest) -> None:
    """`CaseTest` and `casetest` are two job ids: neither finds nor shadows the other."""
    store = stores.open()
    suffix = new_job_id()[2:10]
    upper, lower = f"CaseTest-{suffix}", f"casetest-{suffix}"
    store.create(replace(new_record(upper), params={"which": "upper"}))
    assert store.get(lower) is None
    _stored, created_lower = store.create(replace(new_record(lower), params={"which": "lower"}))
    assert created_lower
    got_upper, got_lower = store.get(upper), store.get(lower)
    assert got_upper is not None
    assert got_lower is not None
    assert (got_upper.params, got_lower.params) == ({"which": "upper"}, {"which": "lower"})
    assert [r.job_id for r in store.partitions(upper)] == [upper]
