"""An in-memory store for tests and benchmarks: the same contract, nothing on disk."""

from __future__ import annotations

import threading
from dataclasses import replace

from iterctl.errors import JobCancelledError, JobHeldError, LostHoldError, UsageError
from iterctl.stores.base import RESUMABLE, Checkpoint, Hold, JobRecord, Status, utc_now
from iterctl.stores.file_hold import holder_name


class MemoryStore:
    """A :class:`~iterctl.stores.base.Store` in a dict; holds are per store object."""

    display_name = "memory"

    def __init__(self) -> None:
        self._records: dict[str, JobRecord] = {}
        self._held: set[str] = set()
        self._lock = threading.Lock()

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._records.get(job_id)

    def list(self) -> list[JobRecord]:
        with self._lock:
            return sorted(self._records.values(), key=lambda r: (r.created_at, r.job_id))

    def create(self, record: JobRecord) -> tuple[JobRecord, bool]:
        with self._lock:
            existing = self._records.get(record.job_id)
            if existing is not None:
                return existing, False
            self._records[record.job_id] = record
            return record, True

    def acquire(self, job_id: str) -> Hold:
        with self._lock:
            before = self._records.get(job_id)
            if before is None:
                raise UsageError(f"unknown job id {job_id!r} in memory")
            if job_id in self._held:
                raise JobHeldError(f"job {job_id} is already running ({before.holder})")
            self._held.add(job_id)
            if before.status not in RESUMABLE:
                return Hold(job_id, before.fence, before)
            self._records[job_id] = replace(
                before,
                fence=before.fence + 1,
                status=Status.RUNNING,
                holder=holder_name(),
                times_interrupted=before.times_interrupted
                + (before.status is Status.RUNNING and before.fence > 0),
                updated_at=utc_now(),
            )
            return Hold(job_id, before.fence + 1, before)

    def checkpoint(self, hold: Hold, checkpoint: Checkpoint) -> None:
        with self._lock:
            current = self._records[hold.job_id]
            if current.fence != hold.fence:
                raise LostHoldError(f"job {hold.job_id} was taken over by another process")
            cancelled = current.status is Status.CANCELLED
            updated = replace(
                current,
                cursor_json=checkpoint.cursor_json,
                processed=checkpoint.processed,
                total=current.total if checkpoint.total is None else checkpoint.total,
                updated_at=utc_now(),
            )
            if not cancelled:
                updated = replace(
                    updated,
                    status=checkpoint.status,
                    error=checkpoint.error,
                    times_interrupted=current.times_interrupted
                    + (checkpoint.status is Status.INTERRUPTED),
                )
            self._records[hold.job_id] = updated
        if cancelled:
            raise JobCancelledError(f"job {hold.job_id} was cancelled")

    def release(self, hold: Hold) -> None:
        with self._lock:
            self._held.discard(hold.job_id)

    def cancel(self, job_id: str) -> JobRecord:
        with self._lock:
            record = self._records.get(job_id)
            if record is None:
                raise UsageError(f"unknown job id {job_id!r} in memory")
            if record.status in RESUMABLE:
                record = replace(record, status=Status.CANCELLED, updated_at=utc_now())
                self._records[job_id] = record
            return record

    def close(self) -> None:
        with self._lock:
            self._held.clear()
