"""An in-memory store for tests and benchmarks: the same contract, nothing on disk."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import replace

from iterctl.errors import JobCancelledError, JobHeldError, LostHoldError, UsageError
from iterctl.stores.base import (
    RESUMABLE,
    Checkpoint,
    FailureRecord,
    FailureRecords,
    Hold,
    JobRecord,
    Records,
    RunEnd,
    RunRecord,
    Runs,
    Status,
    acquired,
    apply_failures,
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
from iterctl.stores.file_hold import holder_name

_RunChange = Callable[[RunRecord], RunRecord]


class MemoryStore:
    """A :class:`~iterctl.stores.base.Store` in a dict; holds are per store object."""

    display_name = "memory"

    def __init__(self) -> None:
        self._records: dict[str, JobRecord] = {}
        self._held: set[str] = set()
        self._all_complete: set[str] = set()
        #: Runs per hold name, oldest first.
        self._runs: dict[str, list[RunRecord]] = {}
        #: Failure records per hold name, by cursor JSON.
        self._failures: dict[str, dict[str, FailureRecord]] = {}
        self._lock = threading.Lock()

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._records.get(job_id)

    def list(self) -> Records:
        with self._lock:
            return sorted(
                self._records.values(), key=lambda r: (r.created_at, r.job_id, r.partition)
            )

    def partitions(self, job_id: str) -> Records:
        return [record for record in self.list() if record.job_id == job_id]

    def create(self, record: JobRecord) -> tuple[JobRecord, bool]:
        stored, created = self.create_partitions([record])
        return stored[0], created

    def create_partitions(self, records: Records) -> tuple[Records, bool]:
        with self._lock:
            if records[0].job_id in self._records:
                job_id = records[0].job_id
                existing = [r for r in self._records.values() if r.job_id == job_id]
                return sorted(existing, key=lambda r: r.partition), False
            for record in records:
                self._records[record.hold_name] = record
            return records, True

    def claim_all_complete(self, job_id: str) -> bool:
        with self._lock:
            parts = [r for r in self._records.values() if r.job_id == job_id]
            if job_id in self._all_complete or any(r.status is not Status.SUCCEEDED for r in parts):
                return False
            self._all_complete.add(job_id)
            return True

    def acquire(self, job_id: str, partition: int = 0) -> Hold:
        name = hold_name(job_id, partition)
        with self._lock:
            before = self._records.get(name)
            if before is None:
                raise UsageError(f"unknown job id {name!r} in memory")
            if name in self._held:
                raise JobHeldError(f"job {name} is already running ({before.holder})")
            self._held.add(name)
            if before.status not in RESUMABLE:
                self._records[name] = replace(before, holder=holder_name())
                return Hold(job_id, before.fence, before, partition)
            self._records[name] = acquired(before)
            run = new_run(before, before.fence + 1)
            self._runs[name] = started_runs(self._runs.get(name, []), run)
            return Hold(job_id, before.fence + 1, before, partition)

    def checkpoint(self, hold: Hold, checkpoint: Checkpoint) -> None:
        name = hold_name(hold.job_id, hold.partition)
        with self._lock:
            current = self._records[name]
            if current.fence != hold.fence:
                raise LostHoldError(f"job {name} was taken over by another process")
            cancelled = current.status is Status.CANCELLED
            updated = checkpointed(current, checkpoint)
            if checkpoint.failures or checkpoint.resolved:
                kept = apply_failures(self._failures.get(name, {}), checkpoint)
                self._failures[name] = kept
                updated = replace(updated, failed_items=len(kept))
            self._records[name] = updated
            self._update_run(hold, lambda run: progressed_run(run, hold, checkpoint))
        if cancelled:
            raise JobCancelledError(f"job {name} was cancelled")

    def failures(self, job_id: str, limit: int | None = None) -> FailureRecords:
        with self._lock:
            found = [
                replace(failure, partition=record.partition)
                for name, record in self._records.items()
                if record.job_id == job_id
                for failure in self._failures.get(name, {}).values()
            ]
        return newest_first(found, limit)

    def check_hold(self, hold: Hold) -> None:
        pass  # a hold here lives as long as this process: it cannot be lost

    def _update_run(self, hold: Hold, change: _RunChange) -> None:
        runs = self._runs.get(hold_name(hold.job_id, hold.partition), [])
        for index, run in enumerate(runs):
            if run.fence == hold.fence:
                runs[index] = change(run)

    def end_run(self, hold: Hold, end: RunEnd) -> None:
        with self._lock:
            self._update_run(hold, lambda run: ended_run(run, end, hold.record.processed))

    def runs(self, job_id: str, limit: int | None = None) -> Runs:
        with self._lock:
            runs = [r for rs in self._runs.values() for r in rs if r.job_id == job_id]
        runs.sort(key=lambda r: (r.started_at, r.partition), reverse=True)
        return runs[:limit]

    def live_holds(self, names: Collection[str]) -> set[str]:
        with self._lock:
            return self._held.intersection(names)

    def delete(self, job_id: str) -> int:
        with self._lock:
            names = [name for name, r in self._records.items() if r.job_id == job_id]
            busy = sorted(self._held.intersection(names))
            if busy:
                raise delete_refused(busy[0], self._records[busy[0]].holder)
            for name in names:
                del self._records[name]
                self._runs.pop(name, None)
                self._failures.pop(name, None)
            self._all_complete.discard(job_id)
            return len(names)

    def release(self, hold: Hold) -> None:
        with self._lock:
            self._held.discard(hold_name(hold.job_id, hold.partition))

    def cancel(self, job_id: str) -> JobRecord:
        with self._lock:
            parts = [r for r in self._records.values() if r.job_id == job_id]
            if not parts:
                raise UsageError(f"unknown job id {job_id!r} in memory")
            for record in parts:
                if record.status in RESUMABLE:
                    self._records[record.hold_name] = replace(
                        record, status=Status.CANCELLED, updated_at=utc_now()
                    )
            return self._records[job_id]

    def close(self) -> None:
        with self._lock:
            self._held.clear()
