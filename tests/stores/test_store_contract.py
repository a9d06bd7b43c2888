"""One suite for every store: what the runner and the CLI rely on, whatever ``--store`` is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from iterctl.errors import (
    JobCancelledError,
    JobHeldError,
    LostHoldError,
    StoreUnavailableError,
    StoreUnusableError,
    UsageError,
)
from iterctl.stores import Checkpoint, Status, Store, open_store
from iterctl.stores.base import FailureRecord
from tests.stores.conftest import (
    StoreUnderTest,
    drop_hold_behind_its_back,
    new_job_id,
    new_record,
)

THIS_PROCESS = f"pid {os.getpid()}"

CONTRACT_FIELDS = {
    "job_id",
    "job",
    "status",
    "params",
    "cursor",
    "processed",
    "total",
    "times_interrupted",
    "error",
    "created_at",
    "updated_at",
}


def created(store: Store) -> str:
    """Create a fresh record in ``store`` and return its job id."""
    record, was_new = store.create(new_record())
    assert was_new
    return record.job_id


def running_checkpoint(cursor_json: str, processed: int) -> Checkpoint:
    return Checkpoint(cursor_json, processed, Status.RUNNING)


# -- records -------------------------------------------------------------------------


def test_create_then_get_and_list_return_the_record(stores: StoreUnderTest) -> None:
    """A created record comes back from get() and appears in list(), oldest first."""
    store = stores.open()
    first, second = new_record(), new_record()
    assert store.create(first) == (first, True)
    store.create(second)

    got = store.get(first.job_id)
    assert got is not None
    assert (got.job, got.params, got.status, got.processed) == (
        "tests.jobs:Count",
        {"limit": "10"},
        Status.RUNNING,
        0,
    )
    assert (got.cursor_json, got.total, got.times_interrupted, got.fence) == (None, None, 0, 0)
    listed = [r.job_id for r in store.list() if r.job_id in (first.job_id, second.job_id)]
    assert listed == [first.job_id, second.job_id]
    assert store.get(new_job_id()) is None


def test_create_of_an_existing_id_returns_the_existing_record_unchanged(
    stores: StoreUnderTest,
) -> None:
    """create() of a taken job id returns (the stored record, False) and changes nothing."""
    store = stores.open()
    original = new_record(job="tests.jobs:First")
    store.create(original)
    before = store.get(original.job_id)

    existing, was_new = store.create(new_record(original.job_id, job="tests.jobs:Second"))

    assert was_new is False
    assert existing.job == "tests.jobs:First"
    assert store.get(original.job_id) == before


def test_to_json_has_exactly_the_contract_fields_with_utc_iso_times(
    stores: StoreUnderTest,
) -> None:
    """status --json objects carry CONTRACT §2's fields plus holder, times in ISO 8601 UTC."""
    store = stores.open()
    job_id = created(store)
    hold = store.acquire(job_id)
    store.checkpoint(hold, Checkpoint('{"id":7}', 3, Status.INTERRUPTED, total=9))
    record = store.get(job_id)
    assert record is not None

    document = record.to_json()

    extra = {"holder", "failed_items", "concurrency", "elapsed_seconds"}
    assert set(document) == CONTRACT_FIELDS | extra
    assert document["cursor"] == {"id": 7}
    assert (document["processed"], document["total"], document["status"]) == (3, 9, "interrupted")
    for name in ("created_at", "updated_at"):
        moment = datetime.fromisoformat(document[name])
        assert moment.utcoffset() == timedelta(0), f"{name} is not UTC: {document[name]}"


# -- holds -------------------------------------------------------------------------


def test_acquire_marks_running_bumps_the_fence_and_names_the_holder(
    stores: StoreUnderTest,
) -> None:
    """acquire() returns a hold with the next fence and records this process as holder."""
    store = stores.open()
    job_id = created(store)

    hold = store.acquire(job_id)

    record = store.get(job_id)
    assert record is not None
    assert hold.fence == 1
    assert hold.record.fence == 0
    assert (record.status, record.fence) == (Status.RUNNING, 1)
    assert record.holder is not None
    assert THIS_PROCESS in record.holder


def test_a_second_store_cannot_acquire_a_held_job_and_is_told_who_holds_it(
    stores: StoreUnderTest,
) -> None:
    """While one store object holds a job id, another gets JobHeldError naming host and pid."""
    first = stores.open()
    job_id = created(first)
    first.acquire(job_id)

    with pytest.raises(JobHeldError, match=THIS_PROCESS) as refused:
        stores.open().acquire(job_id)

    assert "host " in str(refused.value)
    assert job_id in str(refused.value)


def test_release_lets_another_store_acquire(stores: StoreUnderTest) -> None:
    """After release() the job id can be acquired again, with a newer fence."""
    first = stores.open()
    job_id = created(first)
    hold = first.acquire(job_id)
    first.checkpoint(hold, Checkpoint("1", 1, Status.INTERRUPTED))
    first.release(hold)

    again = stores.open().acquire(job_id)

    assert again.fence == 2


def test_a_record_left_running_by_a_dead_holder_counts_one_interruption(
    stores: StoreUnderTest,
) -> None:
    """Acquiring a record still 'running' after a run began counts one interruption."""
    first = stores.open()
    job_id = created(first)
    first.acquire(job_id)
    drop_hold_behind_its_back(first, job_id)  # the holder died without a word

    hold = stores.open().acquire(job_id)

    assert hold.record.status is Status.RUNNING
    record = first.get(job_id)
    assert record is not None
    assert record.times_interrupted == 1


def test_acquiring_a_fresh_record_counts_no_interruption(stores: StoreUnderTest) -> None:
    """A record never run before (fence 0) is 'running' too, but not interrupted."""
    store = stores.open()
    job_id = created(store)

    store.acquire(job_id)

    record = store.get(job_id)
    assert record is not None
    assert record.times_interrupted == 0


# -- checkpoints ---------------------------------------------------------------------


def test_checkpoint_saves_cursor_count_status_and_total_together(
    stores: StoreUnderTest,
) -> None:
    """A checkpoint writes cursor, processed, status, total and error in one step."""
    store = stores.open()
    job_id = created(store)
    hold = store.acquire(job_id)

    store.checkpoint(hold, Checkpoint('[1,"a"]', 5, Status.RUNNING, total=50))
    record = store.get(job_id)
    assert record is not None
    assert (record.cursor_json, record.processed, record.status, record.total) == (
        '[1,"a"]',
        5,
        Status.RUNNING,
        50,
    )

    store.checkpoint(hold, Checkpoint("9", 9, Status.FAILED, error="ValueError: boom"))
    record = store.get(job_id)
    assert record is not None
    assert (record.cursor_json, record.processed, record.status) == ("9", 9, Status.FAILED)
    assert (record.total, record.error) == (50, "ValueError: boom")  # total kept when None


def test_an_interrupted_checkpoint_counts_one_interruption(stores: StoreUnderTest) -> None:
    """Each INTERRUPTED checkpoint adds one to times_interrupted; RUNNING ones do not."""
    store = stores.open()
    job_id = created(store)
    hold = store.acquire(job_id)
    store.checkpoint(hold, running_checkpoint("1", 1))

    store.checkpoint(hold, Checkpoint("2", 2, Status.INTERRUPTED))

    record = store.get(job_id)
    assert record is not None
    assert (record.status, record.times_interrupted) == (Status.INTERRUPTED, 1)


def test_a_checkpoint_after_the_hold_was_taken_over_is_refused_and_changes_nothing(
    stores: StoreUnderTest,
) -> None:
    """Fencing: once another store took the job id, the old holder's checkpoint raises
    LostHoldError and leaves the record as the new holder has it."""
    first = stores.open()
    job_id = created(first)
    stale = first.acquire(job_id)
    first.checkpoint(stale, running_checkpoint("1", 1))
    drop_hold_behind_its_back(first, job_id)
    second = stores.open()
    fresh = second.acquire(job_id)
    second.checkpoint(fresh, running_checkpoint("4", 4))
    before = second.get(job_id)

    with pytest.raises(LostHoldError):
        first.checkpoint(stale, Checkpoint("2", 2, Status.INTERRUPTED))

    assert second.get(job_id) == before


# -- cancel --------------------------------------------------------------------------


def test_cancel_marks_the_job_cancelled_and_the_next_checkpoint_saves_then_raises(
    stores: StoreUnderTest,
) -> None:
    """After cancel, the holder's next checkpoint saves cursor and count, raises
    JobCancelledError, and the status stays cancelled."""
    store = stores.open()
    job_id = created(store)
    hold = store.acquire(job_id)

    cancelled = stores.open().cancel(job_id)
    assert cancelled.status is Status.CANCELLED

    with pytest.raises(JobCancelledError):
        store.checkpoint(hold, Checkpoint("3", 3, Status.INTERRUPTED))

    record = store.get(job_id)
    assert record is not None
    assert (record.status, record.cursor_json, record.processed) == (Status.CANCELLED, "3", 3)


def test_cancel_of_an_unknown_job_id_is_a_usage_error(stores: StoreUnderTest) -> None:
    """cancel() of an id the store has never seen raises UsageError naming it."""
    job_id = new_job_id()

    with pytest.raises(UsageError, match=job_id):
        stores.open().cancel(job_id)


def test_cancel_of_a_succeeded_job_changes_nothing(stores: StoreUnderTest) -> None:
    """A job that already succeeded stays succeeded when cancelled."""
    store = stores.open()
    job_id = created(store)
    hold = store.acquire(job_id)
    store.checkpoint(hold, Checkpoint("10", 10, Status.SUCCEEDED))
    store.release(hold)
    before = store.get(job_id)

    after = store.cancel(job_id)

    assert after.status is Status.SUCCEEDED
    assert store.get(job_id) == before


# -- the hold dies with its process --------------------------------------------------

_HOLDER = """
import sys, time
from iterctl.stores import open_store
store = open_store(sys.argv[1])
store.acquire(sys.argv[2])
print("held", flush=True)
time.sleep(120)
"""


def test_a_hold_is_freed_when_its_process_is_killed(process_stores: StoreUnderTest) -> None:
    """A SIGKILLed holder frees the job id without a timeout: at once for file locks,
    within seconds for a server that must notice the closed socket."""
    store = process_stores.open()
    job_id = created(store)
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, process_stores.location, job_id],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(JobHeldError, match=f"pid {child.pid}"):
            store.acquire(job_id)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()

    server = process_stores.kind in ("postgres", "mysql")
    deadline = time.monotonic() + (5 if server else 0)
    while True:
        try:
            store.acquire(job_id)
            break
        except JobHeldError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
    record = store.get(job_id)
    assert record is not None
    assert record.times_interrupted == 1
    assert record.holder is not None
    assert THIS_PROCESS in record.holder


# -- stores that cannot be opened ----------------------------------------------------


def test_a_sqlite_store_in_a_missing_folder_is_unusable(tmp_path: Path) -> None:
    """A SQLite path whose folder does not exist is StoreUnusableError (a person must
    create it: exit 2, not 69), and no folder is created."""
    missing = tmp_path / "nowhere"

    with pytest.raises(StoreUnusableError, match="does not exist"):
        open_store(f"sqlite:///{missing / 'iterctl.db'}")

    assert not missing.exists()


def test_a_file_that_is_not_a_database_is_unusable_and_left_unchanged(
    tmp_path: Path,
) -> None:
    """Pointing --store at a file that is not SQLite is refused (exit 2) without touching
    it, and the message says what the file is rather than blaming a server."""
    path = tmp_path / "notes.db"
    content = b"these are my notes, not a database\n" * 200
    path.write_bytes(content)

    with pytest.raises(StoreUnusableError, match="not an SQLite database") as refused:
        open_store(f"sqlite:///{path}")

    assert "server" not in str(refused.value)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


@pytest.mark.parametrize("content", ["{not json", "[]", '{"jobs": 3}'])
def test_a_corrupt_json_store_is_unusable(tmp_path: Path, content: str) -> None:
    """A .json store that is not an iterctl document is StoreUnusableError (exit 2)."""
    path = tmp_path / "iterctl.json"
    path.write_text(content)

    with pytest.raises(StoreUnusableError, match="not an iterctl JSON store"):
        open_store(str(path))

    assert path.read_text() == content


def test_an_unreachable_server_is_unavailable_and_the_password_is_not_shown() -> None:
    """A server nobody listens for is StoreUnavailableError; the message hides the password."""
    with pytest.raises(StoreUnavailableError) as refused:
        open_store("postgresql+psycopg://u:sekrit@127.0.0.1:1/x")

    assert "sekrit" not in str(refused.value)
    assert "127.0.0.1:1" in str(refused.value)


def test_an_unknown_kind_of_store_is_a_usage_error() -> None:
    """A URL scheme SQLAlchemy has no dialect for is a usage error that lists the kinds."""
    with pytest.raises(UsageError, match="unknown kind of store"):
        open_store("nosuchdb://somewhere/x")


@pytest.mark.parametrize("kind", ["sqlite", "json"])
def test_store_files_are_readable_by_their_owner_only(tmp_path: Path, kind: str) -> None:
    """Every file a SQLite or JSON store creates is mode 0600, its holds folder 0700."""
    location = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else str(tmp_path / "s.json")
    old_umask = os.umask(0o022)  # the usual umask, which would leave files world-readable
    try:
        store = open_store(location)
        job_id = created(store)
        hold = store.acquire(job_id)
        store.checkpoint(hold, running_checkpoint("1", 1))
    finally:
        os.umask(old_umask)

    modes = {
        str(path.relative_to(tmp_path)): path.stat().st_mode & 0o777 for path in tmp_path.rglob("*")
    }
    expected = {name: (0o700 if (tmp_path / name).is_dir() else 0o600) for name in modes}
    store.close()
    assert modes == expected


def test_a_record_round_trips_through_every_field(stores: StoreUnderTest) -> None:
    """Every field given at creation comes back as it was (partition fields included)."""
    store = stores.open()
    record = replace(
        new_record(),
        params={"a": "1", "b": "x=y"},
        cursor_json='{"k":[1,2]}',
        processed=4,
        total=8,
        error=None,
    )

    store.create(record)

    assert store.get(record.job_id) == record


def test_a_checkpoint_round_trips_the_done_set_and_the_concurrency(
    stores: StoreUnderTest,
) -> None:
    """--concurrency: the watermark, the done set (exact JSON text, large and unicode
    included) and a changed concurrency come back from every store; the next checkpoint
    without a done set clears it, and one without a concurrency keeps it."""
    store = stores.open()
    job_id = created(store)
    hold = store.acquire(job_id)
    done = "[" + ",".join(f'{{"id":{n},"k":"clé-{n}"}}' for n in range(2, 2000, 3)) + "]"

    store.checkpoint(hold, Checkpoint('{"id":1}', 700, Status.RUNNING, done_json=done,
                                      concurrency=32))  # fmt: skip
    record = store.get(job_id)
    assert record is not None
    assert (record.cursor_json, record.done_json, record.concurrency) == ('{"id":1}', done, 32)
    store.release(hold)
    store.close()

    reopened = stores.open()  # what a resume in another process reads
    hold = reopened.acquire(job_id)
    assert (hold.record.done_json, hold.record.concurrency) == (done, 32)
    reopened.checkpoint(hold, Checkpoint('{"id":2000}', 2000, Status.SUCCEEDED))
    record = reopened.get(job_id)
    assert record is not None
    assert (record.done_json, record.concurrency) == (None, 32)


# -- failure records (--max-failures) ------------------------------------------------


def failure(cursor: int, attempts: int = 1, at: str | None = None) -> FailureRecord:
    """A failure record of the item whose cursor is ``cursor``."""
    record = FailureRecord(
        cursor_json=str(cursor),
        cursor_before_json=None if cursor == 0 else str(cursor - 1),
        item=f"<item {cursor}>",
        error_type="ValueError",
        message=f"item {cursor} is bad",
        traceback='Traceback (most recent call last):\n  File "job.py"\nValueError\n',
        attempts=attempts,
    )
    return record if at is None else replace(record, failed_at=at)


def test_failures_are_written_with_the_checkpoint_and_counted(stores: StoreUnderTest) -> None:
    """A checkpoint's failure records come back from failures() with every field, and the
    record's failed_items counts them, in the same write as the cursor."""
    store = stores.open()
    job_id = created(store)
    hold = store.acquire(job_id)
    first, second = failure(2, at="2026-01-01T00:00:01+00:00"), failure(5, attempts=3)

    store.checkpoint(hold, Checkpoint("3", 4, Status.RUNNING, failures=(first,)))
    store.checkpoint(hold, Checkpoint("6", 7, Status.RUNNING, failures=(second,)))

    assert stores.open().failures(job_id) == [second, first]  # newest first
    record = store.get(job_id)
    assert record is not None
    assert (record.cursor_json, record.failed_items) == ("6", 2)
    assert record.to_json()["failed_items"] == 2


def test_a_checkpoint_without_failures_keeps_the_records_and_count(
    stores: StoreUnderTest,
) -> None:
    """Checkpoints that carry no records leave earlier records and failed_items alone."""
    store = stores.open()
    job_id = created(store)
    hold = store.acquire(job_id)
    store.checkpoint(hold, Checkpoint("3", 4, Status.RUNNING, failures=(failure(1),)))

    store.checkpoint(hold, Checkpoint("9", 10, Status.SUCCEEDED))

    assert [f.cursor_json for f in store.failures(job_id)] == ["1"]
    record = store.get(job_id)
    assert record is not None
    assert record.failed_items == 1


def test_failures_limit_and_order_are_newest_first(stores: StoreUnderTest) -> None:
    """failures(job_id, limit) gives the newest `limit` records; other jobs' are not mixed in."""
    store = stores.open()
    job_id, other = created(store), created(store)
    hold, other_hold = store.acquire(job_id), store.acquire(other)
    records = tuple(failure(n, at=f"2026-01-01T00:00:0{n}+00:00") for n in range(5))
    store.checkpoint(hold, Checkpoint("9", 10, Status.RUNNING, failures=records))
    store.checkpoint(other_hold, Checkpoint("9", 10, Status.RUNNING, failures=(failure(7),)))

    assert [f.cursor_json for f in store.failures(job_id, limit=2)] == ["4", "3"]
    assert [f.cursor_json for f in store.failures(job_id)] == ["4", "3", "2", "1", "0"]
    assert [f.cursor_json for f in store.failures(other)] == ["7"]
    assert store.failures(new_job_id()) == []


def test_resolved_drops_a_record_and_a_rewrite_replaces_it(stores: StoreUnderTest) -> None:
    """What retry-failed writes: a resolved cursor's record goes, a record written again
    for the same cursor replaces the old one (attempts raised), never a second one."""
    store = stores.open()
    job_id = created(store)
    hold = store.acquire(job_id)
    store.checkpoint(hold, Checkpoint("9", 10, Status.SUCCEEDED, failures=(failure(2), failure(5))))

    again = failure(5, attempts=4)
    store.checkpoint(
        hold, Checkpoint("9", 10, Status.SUCCEEDED, failures=(again,), resolved=("2",))
    )

    assert store.failures(job_id) == [again]
    record = store.get(job_id)
    assert record is not None
    assert (record.failed_items, record.status, record.cursor_json) == (1, Status.SUCCEEDED, "9")


def test_a_refused_checkpoint_writes_no_failure_record(stores: StoreUnderTest) -> None:
    """A checkpoint refused for a lost hold writes neither its cursor nor its records."""
    first = stores.open()
    job_id = created(first)
    stale = first.acquire(job_id)
    drop_hold_behind_its_back(first, job_id)
    second = stores.open()
    second.acquire(job_id)

    with pytest.raises(LostHoldError):
        first.checkpoint(stale, Checkpoint("5", 6, Status.RUNNING, failures=(failure(3),)))

    assert second.failures(job_id) == []
    record = second.get(job_id)
    assert record is not None
    assert record.failed_items == 0


def test_a_cancelled_jobs_checkpoint_still_saves_its_failure_records(
    stores: StoreUnderTest,
) -> None:
    """After cancel, the checkpoint that saves the cursor saves the records it passes too."""
    store = stores.open()
    job_id = created(store)
    hold = store.acquire(job_id)
    stores.open().cancel(job_id)

    with pytest.raises(JobCancelledError):
        store.checkpoint(hold, Checkpoint("5", 6, Status.INTERRUPTED, failures=(failure(3),)))

    assert [f.cursor_json for f in store.failures(job_id)] == ["3"]
    record = store.get(job_id)
    assert record is not None
    assert (record.status, record.failed_items, record.cursor_json) == (
        Status.CANCELLED, 1, "5",
    )  # fmt: skip


def test_failure_records_are_per_partition(stores: StoreUnderTest) -> None:
    """Each partition keeps its own records and count; failures() lists them all."""
    store = stores.open()
    job_id = new_job_id()
    parts = [replace(new_record(job_id), partition=i, partitions=2) for i in range(2)]
    store.create_partitions(parts)
    holds = [store.acquire(job_id, i) for i in range(2)]
    store.checkpoint(holds[0], Checkpoint("4", 5, Status.RUNNING, failures=(failure(1),)))
    store.checkpoint(
        holds[1], Checkpoint("9", 5, Status.RUNNING, failures=(failure(1), failure(7)))
    )

    found = sorted((f.partition, f.cursor_json) for f in store.failures(job_id))
    assert found == [(0, "1"), (1, "1"), (1, "7")]
    assert [r.failed_items for r in store.partitions(job_id)] == [1, 2]


def test_a_long_cursor_and_a_long_message_are_kept_whole(stores: StoreUnderTest) -> None:
    """The record is keyed by a digest: a cursor far longer than any key still fits."""
    store = stores.open()
    job_id = created(store)
    hold = store.acquire(job_id)
    long_cursor = '"' + "k" * 5000 + '"'
    record = replace(failure(1), cursor_json=long_cursor, message="m" * 70_000)

    store.checkpoint(hold, Checkpoint(long_cursor, 2, Status.RUNNING, failures=(record,)))

    assert store.failures(job_id) == [record]


def test_a_succeeded_job_can_be_held_and_the_holder_is_named(stores: StoreUnderTest) -> None:
    """retry-failed holds a succeeded job id: acquire leaves its status and fence, names
    this process as holder, and a second store is refused naming it."""
    store = stores.open()
    job_id = created(store)
    hold = store.acquire(job_id)
    store.checkpoint(hold, Checkpoint("9", 10, Status.SUCCEEDED))
    store.release(hold)

    again = store.acquire(job_id)

    record = store.get(job_id)
    assert record is not None
    assert (again.fence, record.fence, record.status) == (1, 1, Status.SUCCEEDED)
    assert record.holder is not None
    assert THIS_PROCESS in record.holder
    with pytest.raises(JobHeldError, match=THIS_PROCESS):
        stores.open().acquire(job_id)


def test_a_checkpoint_records_the_source_identity_once_and_later_ones_keep_it(
    stores: StoreUnderTest,
) -> None:
    """The enumerator's source identity, given with one checkpoint, comes back from every
    store (another process included); checkpoints without one keep it."""
    store = stores.open()
    job_id = created(store)
    hold = store.acquire(job_id)
    identity = '{"head_blake2b":"00ff","head_bytes":65536}'
    store.checkpoint(hold, Checkpoint("1", 2, Status.RUNNING, source_json=identity))
    store.checkpoint(hold, Checkpoint("3", 4, Status.INTERRUPTED))
    store.release(hold)
    store.close()

    record = stores.open().get(job_id)
    assert record is not None
    assert (record.cursor_json, record.source_json) == ("3", identity)
