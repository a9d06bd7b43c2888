"""The checkpoint store interface: one record per job id, a hold, fenced checkpoints.

Every store (SQL through SQLAlchemy, a JSON file, memory for tests) implements
:class:`Store` and passes the same contract suite in ``tests/stores``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from iterctl.cursor import MAX_CURSOR_CHARS, decode_cursor
from iterctl.errors import InvalidCursorError, JobHeldError, StoreUnusableError, UsageError
from iterctl.stores.file_hold import holder_name

# -- limits, the same on every store ----------------------------------------------------

#: The longest params a job id may have, as JSON text.
MAX_PARAMS_CHARS = 1_048_576
#: The longest error text a store keeps; a longer one is cut, never lost: the record must
#: still say `failed`.
MAX_ERROR_CHARS = 65_536


class Status(StrEnum):
    """A job id's status, as ``status --json`` shows it (CONTRACT §2)."""

    RUNNING = "running"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    SUCCEEDED = "succeeded"
    CANCELLED = "cancelled"


#: Statuses from which a run may carry on.
RESUMABLE = frozenset({Status.RUNNING, Status.INTERRUPTED, Status.FAILED})

#: Job ids become file names and lock names: keep them to a safe, Kubernetes-friendly set.
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_job_id(job_id: str) -> str:
    """Refuse a job id that could not be a file name or a Kubernetes name.

    Job ids are compared exactly, case included, on every store: ``CaseTest`` and
    ``casetest`` are two jobs.
    """
    if not _JOB_ID.fullmatch(job_id):
        raise UsageError(
            f"invalid job id {job_id!r} — use 1 to 128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return job_id


def first_line(text: str | None) -> str | None:
    """The first non-empty line of ``text`` (an error, for a table cell)."""
    if text is None:
        return None
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def utc_now() -> str:
    """Now as ISO 8601 in UTC, the form every timestamp in a record takes."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass
class JobRecord:
    """Everything a store knows about one job id."""

    job_id: str
    job: str
    params: dict[str, str]
    status: Status = Status.RUNNING
    #: The cursor as JSON text (None before the first checkpoint).
    cursor_json: str | None = None
    processed: int = 0
    total: int | None = None
    times_interrupted: int = 0
    error: str | None = None
    created_at: str = field(default_factory=utc_now)
    updated_at: str = field(default_factory=utc_now)
    #: Who holds the job id now or held it last ("host pid N"), for "held by" messages.
    holder: str | None = None
    #: Incremented at every acquisition: a checkpoint carrying an older fence is refused.
    fence: int = 0
    #: Which part of a partitioned job this record is (0 of 1 for a plain job).
    partition: int = 0
    partitions: int = 1
    #: This partition's bounds from the stored plan, as JSON text (None for a plain job).
    bounds_json: str | None = None
    #: With --concurrency: the cursors of items done past ``cursor_json`` (the watermark),
    #: as a JSON list; None when there are none.
    done_json: str | None = None
    #: Items in progress at once (--concurrency), kept with the job id.
    concurrency: int = 1
    #: Other run options kept with the job id, as a JSON object (None: none).
    options_json: str | None = None
    #: Items recorded as failed and passed over (--max-failures).
    failed_items: int = 0
    #: Seconds of running time across every run, as of the last checkpoint.
    elapsed: float = 0.0
    #: Items per second over the last stretch of the latest run, None before one.
    rate: float | None = None
    #: The identity of the enumerator's source (a file's size and mtime, say) as JSON text,
    #: recorded at the first run and checked on resume.
    source_json: str | None = None

    def __post_init__(self) -> None:
        size = sum(len(key) + len(value) for key, value in self.params.items())
        if size > MAX_PARAMS_CHARS:
            raise UsageError(
                f"the params of job {self.job_id} are {size:,} characters long; a store "
                f"keeps at most {MAX_PARAMS_CHARS:,} — pass a path or a key instead of the data"
            )

    @property
    def hold_name(self) -> str:
        """The job id, or ``ID@I`` for partition I of a partitioned job."""
        return hold_name(self.job_id, self.partition)

    def to_json(self) -> dict[str, Any]:
        """The ``status --json`` object (CONTRACT §2)."""
        return {
            "job_id": self.job_id,
            "job": self.job,
            "status": self.status.value,
            "params": self.params,
            "cursor": decode_cursor(self.cursor_json),
            "processed": self.processed,
            "total": self.total,
            "times_interrupted": self.times_interrupted,
            "error": self.error,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "holder": self.holder,
            "failed_items": self.failed_items,
            "concurrency": self.concurrency,
            "elapsed_seconds": self.elapsed,
        }


#: Records of one job id or of a whole store (a name that a method called `list` can't shadow).
Records = list[JobRecord]


def acquired(before: JobRecord) -> JobRecord:
    """``before`` as a new hold leaves it: running, fenced anew, held by this process.

    A record still marked running after a run began was left by a process that died:
    that counts as an interruption. (Stores that keep records as values share this; the
    SQL store says the same in one UPDATE.)
    """
    crashed = before.status is Status.RUNNING and before.fence > 0
    return replace(
        before,
        fence=before.fence + 1,
        status=Status.RUNNING,
        holder=holder_name(),
        times_interrupted=before.times_interrupted + crashed,
        updated_at=utc_now(),
    )


def checkpointed(current: JobRecord, checkpoint: Checkpoint) -> JobRecord:
    """``current`` with ``checkpoint`` applied; a cancelled record keeps its status."""
    updated = replace(
        current,
        cursor_json=checkpoint.cursor_json,
        processed=checkpoint.processed,
        total=current.total if checkpoint.total is None else checkpoint.total,
        elapsed=_kept(checkpoint.elapsed, current.elapsed),
        rate=_kept(checkpoint.rate, current.rate),
        source_json=_kept(checkpoint.source_json, current.source_json),
        failed_items=_kept(checkpoint.failed_items, current.failed_items),
        done_json=checkpoint.done_json,
        concurrency=_kept(checkpoint.concurrency, current.concurrency),
        updated_at=utc_now(),
    )
    if current.status is Status.CANCELLED:
        return updated
    return replace(
        updated,
        status=checkpoint.status,
        error=checkpoint.error,
        times_interrupted=current.times_interrupted + (checkpoint.status is Status.INTERRUPTED),
    )


_T = TypeVar("_T")


def _kept(new: _T | None, old: _T) -> _T:
    return old if new is None else new


def hold_name(job_id: str, partition: int) -> str:
    """What a hold locks: the job id, or ``ID@I`` for partition I ('@' is not in ids)."""
    return job_id if partition == 0 else f"{job_id}@{partition}"


@dataclass(frozen=True)
class Hold:
    """Proof that this process runs a job id (or one partition of it); checkpoints show it."""

    job_id: str
    fence: int
    #: The record as it was when the hold was taken (status before this run, cursor, ...).
    record: JobRecord
    partition: int = 0


@dataclass(frozen=True)
class FailureRecord:
    """One item recorded as failed and passed over (``--max-failures``).

    It is written by the checkpoint that passes the item, in the same transaction (or
    document write) as the cursor: a SIGKILL can neither lose it nor record it twice.
    A store keeps at most one record per cursor of a partition; writing a record for a
    cursor that has one replaces it (``retry-failed`` raising the attempts).
    """

    #: The failed item's cursor, as JSON text.
    cursor_json: str
    #: The cursor of the item enumerated just before it (None: it was the first): a
    #: rebuilt ``build_enumerator(cursor_before)`` yields the failed item first.
    cursor_before_json: str | None
    #: A short, bounded repr of the item, for people.
    item: str
    error_type: str
    message: str
    #: The last frames of the traceback, trimmed.
    traceback: str
    #: How many times the item was tried, across every run that tried it.
    attempts: int
    failed_at: str = field(default_factory=utc_now)
    #: Which partition the item belongs to (0 for a plain job); stores fill it in on read.
    partition: int = 0

    @property
    def cursor_key(self) -> str:
        """A fixed-length digest of the cursor: what a store keys the record by."""
        return cursor_key(self.cursor_json)

    def to_json(self) -> dict[str, Any]:
        """The object ``iterctl failures --json`` prints for this record."""
        return {
            "cursor": decode_cursor(self.cursor_json),
            "cursor_before": decode_cursor(self.cursor_before_json),
            "item": self.item,
            "error_type": self.error_type,
            "message": self.message,
            "traceback": self.traceback,
            "attempts": self.attempts,
            "failed_at": self.failed_at,
            "partition": self.partition,
        }


def cursor_key(cursor_json: str) -> str:
    """The digest a failure record is keyed by (64 hex digits: any cursor fits a key)."""
    return hashlib.sha256(cursor_json.encode()).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint writes, atomically: within the limits every store keeps."""

    cursor_json: str | None
    processed: int
    status: Status
    total: int | None = None
    error: str | None = None
    #: The cursors done past ``cursor_json`` (see JobRecord.done_json).
    done_json: str | None = None
    #: The job's count of recorded failures after this checkpoint; None keeps the stored one.
    failed_items: int | None = None
    #: Running time across every run, and the recent rate (see JobRecord); None keeps them.
    elapsed: float | None = None
    rate: float | None = None
    #: Failure records to write with this checkpoint (each replaces any record of its
    #: cursor). When this or ``resolved`` is non-empty, the store sets ``failed_items``
    #: to the number of records the partition then has, in the same write.
    failures: tuple[FailureRecord, ...] = ()
    #: Cursors (JSON text) whose records this checkpoint drops: retried with success.
    resolved: tuple[str, ...] = ()
    #: --concurrency given to this run, when it differs from the job's; None keeps it.
    concurrency: int | None = None
    #: The enumerator's source identity, to record (JobRecord.source_json); None keeps it.
    source_json: str | None = None

    def __post_init__(self) -> None:
        if self.cursor_json is not None and len(self.cursor_json) > MAX_CURSOR_CHARS:
            raise InvalidCursorError(
                f"a cursor of {len(self.cursor_json):,} characters of JSON is too long to "
                f"save (at most {MAX_CURSOR_CHARS:,}) — yield a small cursor, e.g. an id"
            )
        if self.error is not None and len(self.error) > MAX_ERROR_CHARS:
            object.__setattr__(self, "error", truncated_error(self.error))


#: Failure records, newest first (a name that the Store's `list` method can't shadow).
FailureRecords = list[FailureRecord]


def apply_failures(
    kept: dict[str, FailureRecord], checkpoint: Checkpoint
) -> dict[str, FailureRecord]:
    """A partition's records (by cursor JSON) after ``checkpoint``: for value stores."""
    updated = {key: record for key, record in kept.items() if key not in checkpoint.resolved}
    for record in checkpoint.failures:
        updated[record.cursor_json] = record
    return updated


def newest_first(records: list[FailureRecord], limit: int | None) -> list[FailureRecord]:
    """Records sorted as ``Store.failures`` returns them, cut to ``limit`` (None: all)."""
    ordered = sorted(records, key=lambda r: (r.failed_at, r.partition, r.cursor_json))[::-1]
    return ordered if limit is None else ordered[:limit]


class CoupledWrites(Protocol):
    """The open transaction of a run whose job writes commit with its checkpoints.

    Only SQL stores offer it (:meth:`SqlStore.couple`); the next ``Store.checkpoint`` under
    the same hold commits the job's writes with the cursor.
    """

    #: The SQLAlchemy Connection inside the open transaction (``Job.transaction``).
    connection: Any

    def begin(self) -> None:
        """Open the transaction that the next checkpoint commits."""
        ...

    def wrap(self, each: Callable[[Any], object]) -> Callable[[Any], None]:
        """``each`` run in a savepoint: an item that raises takes only its own writes back."""
        ...

    def check_open(self) -> None:
        """Raise a UsageError if the job's code ended the transaction itself."""
        ...

    def rollback(self) -> None:
        """Drop the writes made since the last checkpoint."""
        ...


def truncated_error(text: str) -> str:
    """``text`` cut to :data:`MAX_ERROR_CHARS`, saying that it was cut and from how long."""
    note = f" … (cut: {len(text):,} characters in all)"
    return text[: MAX_ERROR_CHARS - len(note)] + note


# -- reading records back ---------------------------------------------------------------


def checked_record(values: Mapping[str, Any], store_name: str) -> JobRecord:
    """A record read from a store, refused in one line if it is not as iterctl wrote it.

    A store someone edited by hand (a field of the wrong type, an unknown status, a cursor
    that is not JSON) is a store a person must repair: :class:`StoreUnusableError`, exit 2.
    """
    problem = _record_problem(values)
    if problem is None:
        try:
            return JobRecord(**{**values, "status": Status(values["status"])})
        except (TypeError, ValueError) as error:
            problem = str(error)
    job_id = values.get("job_id") if isinstance(values, Mapping) else None
    raise StoreUnusableError(
        f"the store {store_name} has a damaged record (job id {job_id!r}): {problem} — "
        "it is not as iterctl wrote it; restore the store from a copy, or point --store "
        "elsewhere"
    )


_TEXT, _OPTIONAL_TEXT, _COUNT, _OPTIONAL_COUNT, _JSON = "text", "text?", "n", "n?", "json?"
_FIELD_KINDS = {
    "job_id": _TEXT,
    "job": _TEXT,
    "status": _TEXT,
    "cursor_json": _JSON,
    "processed": _COUNT,
    "total": _OPTIONAL_COUNT,
    "times_interrupted": _COUNT,
    "error": _OPTIONAL_TEXT,
    "created_at": _TEXT,
    "updated_at": _TEXT,
    "holder": _OPTIONAL_TEXT,
    "fence": _COUNT,
    "partition": _COUNT,
    "partitions": _COUNT,
    "bounds_json": _JSON,
}
_NUMBER, _OPTIONAL_NUMBER = "f", "f?"
#: Fields added after the first stores were written: checked when a record has them.
_LATER_FIELD_KINDS = {
    "done_json": _JSON,
    "concurrency": _COUNT,
    "options_json": _JSON,
    "failed_items": _COUNT,
    "elapsed": _NUMBER,
    "rate": _OPTIONAL_NUMBER,
    "source_json": _JSON,
}


def _record_problem(values: Mapping[str, Any]) -> str | None:
    if not isinstance(values, Mapping):
        return f"the record is {type(values).__name__}, not an object"
    missing = sorted(set(_FIELD_KINDS) - values.keys())
    if missing:
        return f"it has no {', '.join(missing)}"
    kinds = {**_FIELD_KINDS, **{k: v for k, v in _LATER_FIELD_KINDS.items() if k in values}}
    for name, kind in kinds.items():
        problem = _field_problem(values[name], kind)
        if problem:
            return f"{name} {problem}"
    params = values.get("params")
    if not isinstance(params, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in params.items()
    ):
        return "params is not an object of text values"
    if values["status"] not in Status.__members__.values():
        return f"status {values['status']!r} is none of {', '.join(Status)}"
    if values["partitions"] < 1 or values["partition"] >= values["partitions"]:
        return f"partition {values['partition']} of {values['partitions']} does not exist"
    for stamp in ("created_at", "updated_at"):
        try:
            datetime.fromisoformat(values[stamp])
        except ValueError:
            return f"{stamp} {values[stamp]!r} is not an ISO 8601 time"
    return None


def _field_problem(value: Any, kind: str) -> str | None:
    if value is None and kind.endswith("?"):
        return None
    if kind.startswith("text") and not isinstance(value, str):
        return f"is {type(value).__name__}, not text"
    if kind.startswith("n") and (type(value) is not int or value < 0):
        return f"is {value!r}, not a count"
    if kind.startswith("f") and (type(value) not in (int, float) or value < 0):
        return f"is {value!r}, not a number of 0 or more"
    if kind == _JSON:
        if not isinstance(value, str):
            return f"is {type(value).__name__}, not JSON text"
        try:
            json.loads(value)
        except (ValueError, RecursionError):
            return f"{_short(value)} is not JSON"
    return None


def _short(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


#: Runs kept per job id and partition: each acquisition adds one, and the oldest beyond
#: this are dropped in the same write, so a pod in a crash loop cannot fill the store
#: (``times_interrupted`` still counts every interruption).
RUNS_KEPT = 50


class RunOutcome(StrEnum):
    """How one process's run ended, as ``history`` shows it."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUSED = "refused"
    CANCELLED = "cancelled"
    STOPPED = "stopped"
    UNAVAILABLE = "unavailable"
    #: The process ended without a word (SIGKILL, power loss, a lost node).
    LOST = "lost"


@dataclass(frozen=True)
class RunRecord:
    """One process's run of a job id (or of one partition): a row of ``history``."""

    job_id: str
    partition: int
    #: The hold's fence: one acquisition, one run.
    fence: int
    host: str
    pid: int
    pod: str | None
    started_at: str
    ended_at: str | None = None
    outcome: RunOutcome = RunOutcome.RUNNING
    exit_code: int | None = None
    reason: str | None = None
    #: Items whose completion this run saved (as of its last checkpoint, for a lost run).
    items: int = 0
    cursor_start_json: str | None = None
    cursor_end_json: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``history --json`` object."""
        return {
            "job_id": self.job_id,
            "partition": self.partition,
            "run": self.fence,
            "host": self.host,
            "pid": self.pid,
            "pod": self.pod,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "outcome": self.outcome.value,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "items": self.items,
            "cursor_start": decode_cursor(self.cursor_start_json),
            "cursor_end": decode_cursor(self.cursor_end_json),
        }


#: Runs, as a method called `list` cannot shadow the name.
Runs = list[RunRecord]


@dataclass(frozen=True)
class RunEnd:
    """What a process says about its run as it ends (see :meth:`Store.end_run`)."""

    outcome: RunOutcome
    exit_code: int
    reason: str | None
    #: The job's saved count and cursor at the end.
    processed: int
    cursor_json: str | None


def new_run(before: JobRecord, fence: int) -> RunRecord:
    """The run row an acquisition of ``before`` under ``fence`` starts."""
    return RunRecord(
        job_id=before.job_id,
        partition=before.partition,
        fence=fence,
        host=socket.gethostname(),
        pid=os.getpid(),
        # In a Kubernetes pod HOSTNAME is the pod's name.
        pod=os.environ.get("HOSTNAME"),
        started_at=utc_now(),
        cursor_start_json=before.cursor_json,
        cursor_end_json=before.cursor_json,
    )


def started_runs(runs: list[RunRecord], run: RunRecord) -> list[RunRecord]:
    """A partition's runs (oldest first) once ``run`` has started: those left open by a
    process that died are marked lost, and only the newest :data:`RUNS_KEPT` are kept.

    For stores that keep runs as values; the SQL store says the same in statements."""
    closed = [replace(r, outcome=RunOutcome.LOST) if r.ended_at is None else r for r in runs]
    return [*closed, run][-RUNS_KEPT:]


def ended_run(run: RunRecord, end: RunEnd, start_processed: int) -> RunRecord:
    """``run`` with ``end`` applied. A checkpoint may have saved more than the process
    knows it saved (one that saved, then said "cancelled"): the run keeps the larger."""
    ended = replace(
        run, ended_at=utc_now(), outcome=end.outcome, exit_code=end.exit_code, reason=end.reason
    )
    items = max(0, end.processed - start_processed)
    if items < run.items:
        return ended
    return replace(ended, items=items, cursor_end_json=end.cursor_json)


def progressed_run(run: RunRecord, hold: Hold, checkpoint: Checkpoint) -> RunRecord:
    """``run`` as of one of its checkpoints: what a lost run is remembered by."""
    items = max(0, checkpoint.processed - hold.record.processed)
    return replace(run, items=items, cursor_end_json=checkpoint.cursor_json)


def delete_refused(name: str, holder: str | None) -> JobHeldError:
    """The refusal of ``delete`` while ``name`` is held (exit 75)."""
    job_id = name.partition("@")[0]
    return JobHeldError(
        f"job {name} is running ({holder or 'another process'}) — stop it first (SIGTERM "
        f"its process, or `iterctl cancel {job_id}`), then delete; nothing was deleted"
    )


def as_seen(run: RunRecord, live: Collection[str]) -> RunRecord:
    """An open run whose process no longer holds its job id is a lost one (read-only)."""
    open_run = run.ended_at is None and run.outcome is RunOutcome.RUNNING
    if open_run and hold_name(run.job_id, run.partition) not in live:
        return replace(run, outcome=RunOutcome.LOST)
    return run


class Store(Protocol):
    """A place that keeps job records. Implementations must make each call atomic."""

    #: How to name the store in messages; never contains a password.
    display_name: str

    def get(self, job_id: str) -> JobRecord | None:
        """The record of ``job_id``, or None if there is none."""
        ...

    def list(self) -> Records:
        """Every record, oldest first."""
        ...

    def create(self, record: JobRecord) -> tuple[JobRecord, bool]:
        """Insert ``record`` unless its job id exists; return the stored one and whether new."""
        ...

    def create_partitions(self, records: Records) -> tuple[Records, bool]:
        """Insert every partition of a job at once, or none if the job id exists.

        Returns the stored partitions (the existing ones when another process won the
        race to create the job) and whether these were inserted.
        """
        ...

    def partitions(self, job_id: str) -> Records:
        """Every record of ``job_id``, by partition; empty if there is none."""
        ...

    def claim_all_complete(self, job_id: str) -> bool:
        """True exactly once per job id: for the caller that finds every partition succeeded
        and is the first to ask. Decided atomically in the store."""
        ...

    def acquire(self, job_id: str, partition: int = 0) -> Hold:
        """Take the job id (or one partition) for this process, bump its fence, mark it running.

        Raises :class:`~iterctl.errors.JobHeldError` naming the holder when another live
        process has it. The hold ends with :meth:`release` or with the process.
        """
        ...

    def checkpoint(self, hold: Hold, checkpoint: Checkpoint) -> None:
        """Save progress under ``hold``.

        Raises :class:`~iterctl.errors.LostHoldError` if another process has taken the
        job id since (nothing is written, failure records included), and
        :class:`~iterctl.errors.JobCancelledError` (after saving the cursor, count and
        failure records) if the job was cancelled.
        """
        ...

    def check_hold(self, hold: Hold) -> None:
        """Raise :class:`~iterctl.errors.LostHoldError` if ``hold`` is no longer this
        process's (its database session dropped). Cheap: the runner calls it every second."""
        ...

    def release(self, hold: Hold) -> None:
        """Give the job id back."""
        ...

    def failures(self, job_id: str, limit: int | None = None) -> FailureRecords:
        """The failure records of ``job_id`` (every partition), newest first, at most
        ``limit`` of them (None: all)."""
        ...

    def cancel(self, job_id: str) -> JobRecord:
        """Mark the job (every partition) cancelled; running processes notice at their next
        checkpoint. Returns the record of partition 0."""
        ...

    def live_holds(self, names: Collection[str]) -> set[str]:
        """Which of ``names`` (hold names, see :func:`hold_name`) a live process holds now.

        Read-only: it never takes a hold from a live holder, and asks the store once."""
        ...

    def runs(self, job_id: str, limit: int | None = None) -> Runs:
        """The runs of ``job_id`` (every partition), newest first, at most ``limit``."""
        ...

    def end_run(self, hold: Hold, end: RunEnd) -> None:
        """Record how the run under ``hold`` ended."""
        ...

    def delete(self, job_id: str) -> int:
        """Remove the job id and everything kept for it; return how many records went.

        Raises :class:`~iterctl.errors.JobHeldError` (and removes nothing) while a
        process holds any partition of it."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...
