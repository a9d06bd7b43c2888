"""The JSON file store: every record in one JSON document, replaced atomically.

Writers take an ``flock`` on a sibling ``.lock`` file for the read-modify-write (waiting
at most the store wait, see :data:`iterctl.stopping.STORE_WAIT_SECONDS`), write the whole
document to one hidden temporary file, fsync it, check that every byte is there, and only
then rename it over the store: a reader, a crash or a full disk only ever sees a whole
document. A store file without its owner's write bit is read-only: read, never written.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from iterctl.errors import (
    JobCancelledError,
    JobHeldError,
    LostHoldError,
    StoreUnusableError,
    UsageError,
    store_os_error,
)
from iterctl.stores.base import (
    RESUMABLE,
    Checkpoint,
    FailureRecord,
    FailureRecords,
    Hold,
    JobRecord,
    Records,
    RunEnd,
    RunOutcome,
    RunRecord,
    Runs,
    Status,
    acquired,
    apply_failures,
    checked_record,
    checkpointed,
    delete_refused,
    ended_run,
    hold_name,
    new_run,
    newest_first,
    progressed_run,
    started_runs,
    utc_now,
)
from iterctl.stores.file_hold import FileHolds, FileLock, holder_name

SCHEMA_VERSION = 1

Document = dict[str, Any]


class JsonFileStore:
    """A :class:`~iterctl.stores.base.Store` in one JSON file; fine for one machine."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)
        self.display_name = str(self._path)
        if not self._path.parent.is_dir():
            raise StoreUnusableError(
                f"cannot open the store {self.display_name}: the folder "
                f"{str(self._path.parent)!r} does not exist — create it or choose another --store"
            )
        self._holds = FileHolds(self._path)
        self._write_lock = FileLock(self._path.with_name(self._path.name + ".lock"))
        self._temp = self._path.with_name(f".{self._path.name}.tmp")
        self._read()  # refuse an unreadable file now, before any work is done

    # -- the document -----------------------------------------------------------------

    def _read(self) -> Document:
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return {"iterctl_schema": SCHEMA_VERSION, "jobs": {}}
        except IsADirectoryError:
            raise StoreUnusableError(
                f"cannot read the store {self.display_name}: Is a directory — "
                "--store must name a file, not a folder"
            ) from None
        except OSError as error:
            raise store_os_error(
                error, f"read the store {self.display_name}", _fix(error)
            ) from None
        try:
            document = json.loads(raw)
            if not isinstance(document, dict) or not isinstance(document.get("jobs"), dict):
                raise ValueError("not an iterctl store")
            schema = document.get("iterctl_schema", 0)
            if type(schema) is not int:
                raise ValueError(f"its iterctl_schema is {schema!r}, not a number")
        except (ValueError, RecursionError) as error:
            raise StoreUnusableError(
                f"cannot read the store {self.display_name}: it is not an iterctl JSON store "
                f"({error}) — point --store at another file"
            ) from None
        if schema > SCHEMA_VERSION:
            raise StoreUnusableError(
                f"the store {self.display_name} was written by a newer iterctl — upgrade iterctl"
            )
        return document

    @contextmanager
    def _update(self) -> Iterator[Document]:
        """Read, let the caller change, then atomically replace the document."""
        self._refuse_read_only()
        try:
            self._write_lock.take(f"the write lock of the store {self.display_name}")
        except OSError as error:
            raise store_os_error(
                error, f"write the store {self.display_name}", _fix(error)
            ) from None
        try:
            document = self._read()
            yield document
            self._write(document)
        finally:
            self._write_lock.drop()

    def _refuse_read_only(self) -> None:
        try:
            mode = self._path.stat().st_mode
        except FileNotFoundError:
            return
        if not mode & stat.S_IWUSR:
            raise StoreUnusableError(
                f"the store {self.display_name} is read-only (mode {mode & 0o777:04o}): this "
                "command would change it — make it writable (chmod u+w), or only read it "
                "(`iterctl status`)"
            )

    def _write(self, document: Document) -> None:
        data = json.dumps(document, indent=1, sort_keys=True).encode()
        try:
            self._write_complete_copy(data)
            os.replace(self._temp, self._path)
            # Make the rename itself durable.
            dir_fd = os.open(self._path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as error:
            _remove(self._temp)
            raise store_os_error(
                error, f"write the store {self.display_name} (it is unchanged)", _fix(error)
            ) from None

    def _write_complete_copy(self, data: bytes) -> None:
        """Write ``data`` to the temporary file and prove that all of it got there."""
        _remove(self._temp)  # a copy left by a killed writer, or a planted link
        fd = os.open(self._temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)  # may write less than asked: a full disk
                if written <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[written:]
            os.fsync(fd)
            if os.fstat(fd).st_size != len(data) or os.pread(fd, len(data) + 1, 0) != data:
                raise OSError(errno.EIO, "the copy written does not read back whole")
        finally:
            os.close(fd)

    # -- the Store interface ----------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        raw = self._read()["jobs"].get(job_id)
        return None if raw is None else _record(raw, self.display_name)

    def list(self) -> Records:
        records = [_record(raw, self.display_name) for raw in self._read()["jobs"].values()]
        return sorted(records, key=lambda r: (r.created_at, r.job_id, r.partition))

    def partitions(self, job_id: str) -> Records:
        return [record for record in self.list() if record.job_id == job_id]

    def create(self, record: JobRecord) -> tuple[JobRecord, bool]:
        stored, created = self.create_partitions([record])
        return stored[0], created

    def create_partitions(self, records: Records) -> tuple[Records, bool]:
        with self._update() as document:
            jobs = document["jobs"]
            if records[0].job_id in jobs:
                return self._partitions_in(document, records[0].job_id), False
            for record in records:
                _put(document, record)
        return records, True

    def claim_all_complete(self, job_id: str) -> bool:
        with self._update() as document:
            parts = self._partitions_in(document, job_id)
            first = document["jobs"][job_id]
            if first.get("all_complete") or any(p.status is not Status.SUCCEEDED for p in parts):
                return False
            first["all_complete"] = True
        return True

    def _partitions_in(self, document: Document, job_id: str) -> Records:
        records = (_record(raw, self.display_name) for raw in document["jobs"].values())
        parts = [record for record in records if record.job_id == job_id]
        return sorted(parts, key=lambda record: record.partition)

    def acquire(self, job_id: str, partition: int = 0) -> Hold:
        name = hold_name(job_id, partition)
        self._holds.take(name)
        try:
            with self._update() as document:
                raw = document["jobs"].get(name)
                if raw is None:
                    raise UsageError(f"unknown job id {name!r} in {self.display_name}")
                before = _record(raw, self.display_name)
                if before.status not in RESUMABLE:
                    # Held all the same (retry-failed on a succeeded job): say by whom.
                    _put(document, replace(before, holder=holder_name()))
                    return Hold(job_id, before.fence, before, partition)
                after = acquired(before)
                _put(document, after)
                runs = document.setdefault("runs", {})
                started = started_runs(_runs_in(document, name), new_run(before, after.fence))
                runs[name] = [_raw_run(run) for run in started]
        except BaseException:
            self._holds.drop(name)
            raise
        return Hold(job_id, after.fence, before, partition)

    def checkpoint(self, hold: Hold, checkpoint: Checkpoint) -> None:
        name = hold_name(hold.job_id, hold.partition)
        with self._update() as document:
            current = _record(document["jobs"][name], self.display_name)
            if current.fence != hold.fence:
                raise LostHoldError(
                    f"job {hold.job_id} was taken over by another process; "
                    "this one stopped without saving"
                )
            cancelled = current.status is Status.CANCELLED
            updated = checkpointed(current, checkpoint)
            if checkpoint.failures or checkpoint.resolved:
                # In the same document write as the cursor: both or neither reach the disk.
                kept = apply_failures(_failures_in(document, name), checkpoint)
                document.setdefault("failures", {})[name] = {
                    key: _failure_raw(record) for key, record in kept.items()
                }
                updated = replace(updated, failed_items=len(kept))
            _put(document, updated)
            _update_run(document, hold, lambda run: progressed_run(run, hold, checkpoint))
        if cancelled:
            raise JobCancelledError(f"job {hold.job_id} was cancelled")

    def failures(self, job_id: str, limit: int | None = None) -> FailureRecords:
        document = self._read()
        found = [
            replace(failure, partition=record.partition)
            for record in self._partitions_in(document, job_id)
            for failure in _failures_in(document, record.hold_name).values()
        ]
        return newest_first(found, limit)

    def check_hold(self, hold: Hold) -> None:
        pass  # a hold here lives as long as this process: it cannot be lost

    def release(self, hold: Hold) -> None:
        self._holds.drop(hold_name(hold.job_id, hold.partition))

    def cancel(self, job_id: str) -> JobRecord:
        with self._update() as document:
            parts = self._partitions_in(document, job_id)
            if not parts:
                raise UsageError(f"unknown job id {job_id!r} in {self.display_name}")
            for record in parts:
                if record.status in RESUMABLE:
                    cancelled = replace(record, status=Status.CANCELLED, updated_at=utc_now())
                    _put(document, cancelled)
            return _record(document["jobs"][job_id], self.display_name)

    def end_run(self, hold: Hold, end: RunEnd) -> None:
        with self._update() as document:
            _update_run(document, hold, lambda run: ended_run(run, end, hold.record.processed))

    def runs(self, job_id: str, limit: int | None = None) -> Runs:
        document = self._read()
        runs = [
            run
            for name in document.get("runs", {})
            for run in _runs_in(document, name)
            if run.job_id == job_id
        ]
        runs.sort(key=lambda r: (r.started_at, r.partition), reverse=True)
        return runs[:limit]

    def live_holds(self, names: Collection[str]) -> set[str]:
        return self._holds.held(names)

    def delete(self, job_id: str) -> int:
        records = self.partitions(job_id)
        names: Sequence[str] = [record.hold_name for record in records]
        taken: set[str] = set()
        try:
            for record in records:
                try:
                    self._holds.take(record.hold_name)
                except JobHeldError:
                    raise delete_refused(record.hold_name, record.holder) from None
                taken.add(record.hold_name)
            with self._update() as document:
                for name in names:
                    document["jobs"].pop(name, None)
                    # Runs, and failure records (--max-failures), are kept by hold name.
                    for kept in ("runs", "failures"):
                        document.get(kept, {}).pop(name, None)
            for name in names:
                self._holds.remove(name)
        finally:
            for name in taken:
                self._holds.drop(name)
        return len(names)

    def close(self) -> None:
        self._holds.drop_all()


def _runs_in(document: Document, name: str) -> list[RunRecord]:
    return [_run(raw) for raw in document.get("runs", {}).get(name, [])]


def _update_run(document: Document, hold: Hold, change: Callable[[RunRecord], RunRecord]) -> None:
    name = hold_name(hold.job_id, hold.partition)
    runs = _runs_in(document, name)
    if runs:
        changed = [change(run) if run.fence == hold.fence else run for run in runs]
        document["runs"][name] = [_raw_run(run) for run in changed]


def _raw_run(run: RunRecord) -> dict[str, Any]:
    raw = asdict(run)
    raw["outcome"] = run.outcome.value
    return raw


def _run(raw: dict[str, Any]) -> RunRecord:
    return RunRecord(**{**raw, "outcome": RunOutcome(raw["outcome"])})


def _put(document: Document, record: JobRecord) -> None:
    """Store ``record``, keeping keys it has no field for (``all_complete`` on partition 0)."""
    jobs = document["jobs"]
    jobs[record.hold_name] = {**jobs.get(record.hold_name, {}), **_raw(record)}


def _raw(record: JobRecord) -> dict[str, Any]:
    raw = asdict(record)
    raw["status"] = record.status.value
    return raw


_FIELDS = frozenset(JobRecord.__dataclass_fields__)


def _record(raw: Any, store_name: str = "") -> JobRecord:
    known = raw
    if isinstance(raw, dict):
        known = {key: value for key, value in raw.items() if key in _FIELDS}
    return checked_record(known, store_name)


def _remove(path: Path) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


def _fix(error: OSError) -> str:
    """What a person can do about an error opening the store's file."""
    if error.errno == errno.EISDIR:
        return "--store must name a file, not a folder"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "make the file and its folder writable by this user, or choose another --store"
    return "check the path given to --store"


def _failures_in(document: Document, name: str) -> dict[str, FailureRecord]:
    """The failure records of one hold name, by cursor JSON (``failures`` is optional:
    documents written before failure records existed have none)."""
    raw = document.get("failures", {}).get(name, {})
    return {key: FailureRecord(**value) for key, value in raw.items()}


def _failure_raw(record: FailureRecord) -> dict[str, Any]:
    raw = asdict(record)
    del raw["partition"]  # the hold name says it
    return raw
