"""``iterctl retry-failed``: run again only the items recorded as failed.

For each record (oldest first), the enumerator is rebuilt from the cursor of the item before
the failed one and its first pair is taken. If that pair's cursor is the failed item's, the
item is run (with the job's retries): a success drops the record, a failure replaces it with
the new error and the attempts raised. Any other first pair means the item is no longer
there (the data was fixed by removing it): the record is dropped and the item reported as
gone. Each outcome is written at once, with the job's cursor, count and status as they were,
so a SIGKILL loses at most the item in progress (its record stays as it was).

It runs under the job id's hold (one partition after another) and stops as ``resume`` does:
a SIGTERM ends it after the item in progress (during a backoff: at once), exit 75.
"""

from __future__ import annotations

import asyncio
import inspect
import shlex
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any, Protocol

from iterctl.cursor import Cursor, decode_cursor, encode_cursor
from iterctl.errors import InvalidCursorError, IterctlError, JobCancelledError
from iterctl.failed import failure_record
from iterctl.job import Job, Partition
from iterctl.launch import get_record, open_store_of
from iterctl.loading import load_job_class
from iterctl.params import build_params
from iterctl.retrying import attempts_of, policy_of, retrying_each
from iterctl.runner import Outcome, RunResult, listener_of
from iterctl.stopping import StopNow, StopToken, StopWaiting
from iterctl.stores import DEFAULT_STORE
from iterctl.stores.base import (
    Checkpoint,
    FailureRecord,
    Hold,
    JobRecord,
    RunEnd,
    RunOutcome,
    Status,
    Store,
)


class Notes(Protocol):
    """Where retry-failed says what it does: one line per item and one at the end."""

    def note(self, event: str, text: str, **fields: Any) -> None: ...


@dataclass
class Tally:
    """What one retry-failed run did."""

    succeeded: int = 0
    still_failing: int = 0
    gone: int = 0
    stop_reason: str | None = None


def retry_failed(
    *, job_id: str, store_location: str | None, token: StopToken, reporter: Notes
) -> RunResult:
    """Retry every recorded failure of ``job_id``, partition by partition."""
    store = open_store_of(job_id, store_location)
    try:
        get_record(store, job_id)  # an unknown job id is a usage error
        tally = Tally()
        for record in store.partitions(job_id):
            if record.failed_items and tally.stop_reason is None:
                _retry_partition(store, record, token, reporter, tally)
        return _summary(store, job_id, tally, reporter)
    finally:
        store.close()


def _retry_partition(
    store: Store, record: JobRecord, token: StopToken, reporter: Notes, tally: Tally
) -> None:
    if record.status is Status.CANCELLED:
        raise JobCancelledError(
            f"job {record.job_id} was cancelled and will not run again, its failed items "
            "included — start a new job id to run it anew"
        )
    job_class = load_job_class(record.job)
    partition = None
    if record.partitions > 1:
        bounds = decode_cursor(record.bounds_json)
        partition = Partition(record.partition, record.partitions, bounds)
    job = job_class(
        build_params(job_class, record.params),
        job_id=record.job_id,
        stop_token=token,
        partition=partition,
    )
    hold = store.acquire(record.job_id, record.partition)
    try:
        _Rerun(job, store, hold, token, reporter, tally).run()
        _end_run(store, hold, tally)
    finally:
        store.release(hold)


def _end_run(store: Store, hold: Hold, tally: Tally) -> None:
    """A retry-failed run is a run too: its history row says how it ended (a job that had
    ended is not taken anew, so it has no row to close)."""
    if hold.fence == hold.record.fence:
        return
    after = store.partitions(hold.job_id)[hold.partition]
    stopped = tally.stop_reason is not None
    end = RunEnd(
        RunOutcome.STOPPED if stopped else RunOutcome.SUCCEEDED,
        75 if stopped else 0,
        tally.stop_reason or "retry-failed",
        after.processed,
        after.cursor_json,
    )
    with suppress(IterctlError):  # else the row stays open and is shown lost
        store.end_run(hold, end)


class _Rerun:
    """One partition's records, retried under its hold."""

    def __init__(
        self,
        job: Job,
        store: Store,
        hold: Hold,
        token: StopToken,
        reporter: Notes,
        tally: Tally,
    ) -> None:
        self._job, self._store, self._hold, self._token = job, store, hold, token
        self._reporter, self._tally = reporter, tally
        self._name = hold.record.job
        before = hold.record.status
        # What each write leaves as the job's status: a succeeded or failed job stays so;
        # one that was resumable is running now and interrupted at the end.
        self._status = before if before in (Status.SUCCEEDED, Status.FAILED) else Status.RUNNING

    def run(self) -> None:
        policy = policy_of(self._job)
        each = retrying_each(
            self._job.each_iteration, policy, self._token, listener_of(self._reporter)
        )
        records = [f for f in self._store.failures(self._hold.job_id) if self._mine(f)]
        self._job.on_resume()
        try:
            for record in reversed(records):  # oldest first: the order they failed in
                if self._token.requested:
                    self._tally.stop_reason = self._token.reason
                    break
                self._retry(record, each)
        except StopNow as stopped:
            self._tally.stop_reason = str(stopped) or "second SIGINT"
        finally:
            try:
                if self._status is Status.RUNNING:
                    self._write(status=Status.INTERRUPTED)
            finally:
                self._job.on_shutdown()

    def _mine(self, record: FailureRecord) -> bool:
        return record.partition == self._hold.partition

    def _retry(self, record: FailureRecord, each: Any) -> None:
        before = decode_cursor(record.cursor_before_json)
        with self._token.interrupting():  # the job's code: a second SIGINT may stop it
            pair = self._first_pair(before)
        if pair is None or encode_cursor(pair[1], self._name) != record.cursor_json:
            self._write(resolved=(record.cursor_json,))
            self._tally.gone += 1
            found = "nothing" if pair is None else f"cursor {pair[1]!r}"
            self._say("gone", record, f"is gone: after cursor {before!r} the job yields {found}")
            return
        try:
            with self._token.interrupting():
                done = each(pair[0])
                if inspect.isawaitable(done):  # an async def each_iteration
                    asyncio.run(_awaited(done))
        except (StopNow, StopWaiting):
            raise
        except BaseException as error:  # noqa: BLE001 - the job's own code: kept in the record
            attempts = record.attempts + attempts_of(error)
            again = failure_record(pair[0], pair[1], before, error, attempts, self._name)
            self._write(failures=(replace(again, partition=record.partition),))
            self._tally.still_failing += 1
            self._say("still_failing", again, f"still fails ({again.error_type}: {error})")
            return
        self._write(resolved=(record.cursor_json,))
        self._tally.succeeded += 1
        self._say("retried", record, "succeeded; its record is dropped")

    def _first_pair(self, before: Cursor) -> tuple[Any, Cursor] | None:
        """The first (item, cursor) the job yields after ``before``, as a resume sees it."""
        enumerator: Any = self._job.build_enumerator(before)
        partition = self._job.partition
        if partition is not None and not self._job.splits_itself():
            enumerator = enumerator.within(partition.bounds)
        if not hasattr(enumerator, "__iter__") and hasattr(enumerator, "__aiter__"):
            first = asyncio.run(_first_of_async(enumerator))  # an async job's async iterable
        else:
            iterator = iter(enumerator)
            try:
                first = next(iterator, None)
            finally:
                close = getattr(iterator, "close", None)
                if callable(close):
                    close()
        if first is None:
            return None
        if not isinstance(first, tuple | list) or len(first) != 2:
            raise InvalidCursorError(
                f"{self._name}.build_enumerator must return (item, cursor) pairs, but it "
                f"yielded {first!r}"
            )
        return first[0], first[1]

    def _write(
        self,
        *,
        failures: tuple[FailureRecord, ...] = (),
        resolved: tuple[str, ...] = (),
        status: Status | None = None,
    ) -> None:
        """The outcome of one record, with the job's cursor and count as they were."""
        kept = self._hold.record
        self._store.checkpoint(
            self._hold,
            Checkpoint(
                kept.cursor_json,
                kept.processed,
                status or self._status,
                error=kept.error,
                failures=failures,
                resolved=resolved,
            ),
        )

    def _say(self, event: str, record: FailureRecord, what: str) -> None:
        cursor = decode_cursor(record.cursor_json)
        self._reporter.note(
            event,
            f"job {self._hold.job_id}: failed item at cursor {cursor!r} {what}",
            cursor=cursor,
            attempts=record.attempts,
        )


def _summary(store: Store, job_id: str, tally: Tally, reporter: Notes) -> RunResult:
    records = store.partitions(job_id)
    left = sum(record.failed_items for record in records)
    command = f"iterctl failures {job_id}" + _store_flag(store)
    done = (
        f"{tally.succeeded:,} succeeded, {tally.still_failing:,} still fail, "
        f"{tally.gone:,} gone; {left:,} failed items left"
    )
    if tally.stop_reason is not None:
        again = f"iterctl retry-failed {job_id}" + _store_flag(store)
        text = f"stopped retrying the failed items of job {job_id} ({tally.stop_reason}): "
        outcome, text = Outcome.STOPPED, f"{text}{done} — carry on with: {again}"
    elif left:
        outcome, text = Outcome.FAILED, f"job {job_id}: {done} — list them: {command}"
    else:
        outcome, text = Outcome.SUCCEEDED, f"job {job_id}: {done}"
    reporter.note(
        "retry_end",
        text,
        outcome=outcome.name.lower(),
        succeeded=tally.succeeded,
        still_failing=tally.still_failing,
        gone=tally.gone,
        failed_items=left,
    )
    first = records[0]
    return RunResult(
        job_id,
        outcome,
        sum(record.processed for record in records),
        decode_cursor(first.cursor_json) if first.partitions == 1 else None,
        reason=tally.stop_reason,
        failed_items=left,
        failures_command=command,
    )


def _store_flag(store: Store) -> str:
    name = store.display_name
    return "" if name == DEFAULT_STORE else f" --store {shlex.quote(name)}"


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


async def _first_of_async(iterable: Any) -> Any:
    """The first value of an async iterable (None if it has none), which is then closed."""
    iterator = aiter(iterable)
    try:
        return await anext(iterator, None)
    finally:
        close = getattr(iterator, "aclose", None)
        if callable(close):
            await close()
