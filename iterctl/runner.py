"""The loop: drive a job's enumerator, checkpoint on a timer, stop when asked.

The runner imports neither typer, rich nor :mod:`signal`. It takes a store hold, a stop
token and a reporter, and returns a :class:`RunResult` that the CLI maps to an exit code.

The per-item path is kept to what a plain ``for`` loop does plus one attribute read
(``token.pending``): time is watched by the ticker thread, not by reading the clock here.
An item that raises goes to :meth:`Runner._item_failed`, which decides from the
``--max-failures`` budget whether the run passes over it (its record written with the next
checkpoint) or fails; retries happen inside ``each`` (see :mod:`iterctl.retrying`), which
is the job's own method unless the job declares ``retry_on``.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from itertools import chain, islice
from typing import Any, Protocol, runtime_checkable

from iterctl.budget import FailureBudget
from iterctl.cursor import Cursor, check_cursor, decode_cursor, encode_cursor
from iterctl.errors import (
    ExitCode,
    InvalidCursorError,
    IterctlError,
    JobCancelledError,
    LostHoldError,
    StoreUnavailableError,
    UsageError,
)
from iterctl.failed import failure_record
from iterctl.job import Job
from iterctl.retrying import attempts_of, policy_of, retrying_each
from iterctl.runstats import RunStats
from iterctl.stopping import StopNow, StopToken, Ticker
from iterctl.stores import DEFAULT_STORE
from iterctl.stores.base import (
    Checkpoint,
    CoupledWrites,
    FailureRecord,
    Hold,
    JobRecord,
    Status,
    Store,
)

#: Default seconds between checkpoints: a SIGKILL redoes at most this much work, and at
#: this pace even an fsync'd SQLite write costs far under 1% of the run.
DEFAULT_CHECKPOINT_INTERVAL = 5.0
DEFAULT_PROGRESS_INTERVAL = 10.0
#: The default budget: the first item that fails ends the run (exit 1).
NO_FAILURES = FailureBudget()


class Outcome(Enum):
    """How a run ended; each maps to one exit code of CONTRACT §3."""

    SUCCEEDED = ExitCode.SUCCEEDED
    FAILED = ExitCode.JOB_FAILED
    REFUSED = ExitCode.USAGE
    CANCELLED = ExitCode.CANCELLED
    STORE_UNAVAILABLE = ExitCode.STORE_UNAVAILABLE
    STOPPED = ExitCode.RESUMABLE


@dataclass(frozen=True)
class RunSettings:
    """How a run paces itself (the CLI's --checkpoint-interval and friends)."""

    checkpoint_interval: float = DEFAULT_CHECKPOINT_INTERVAL
    progress_interval: float = DEFAULT_PROGRESS_INTERVAL
    max_runtime: float | None = None
    #: Serve Prometheus metrics on this port while the run lasts (--metrics-port).
    metrics_port: int | None = None
    #: At most this many items in this run (``--limit``), then a resumable stop.
    limit: int | None = None
    #: --max-failures: how many items may fail and be passed over (default: none).
    max_failures: FailureBudget = NO_FAILURES
    #: Items in progress at once (--concurrency, issue 10); coupled writes need 1.
    concurrency: int = 1


@dataclass(frozen=True)
class RunResult:
    """What the run did; the CLI prints it and exits with ``outcome.value``."""

    job_id: str
    outcome: Outcome
    processed: int
    cursor: Cursor
    #: Why a stopped run stopped ("SIGTERM", "max-runtime", ...).
    reason: str | None = None
    #: The exception behind FAILED (the job's own code) or REFUSED/unavailable (iterctl's).
    error: BaseException | None = None
    #: "I/N" when the run was partition I of N.
    partition: str | None = None
    #: The command that carries this job on from where it stopped.
    resume_command: str = ""
    #: Seconds since the last saved checkpoint as the run ended (None: none saved).
    checkpoint_age: float | None = None
    #: Items of this job id (partition) recorded as failed and passed over, in all runs.
    failed_items: int = 0
    #: The command that lists them.
    failures_command: str = ""

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode(self.outcome.value)


class Reporter(Protocol):
    """Where the run tells people what it does (a bar on a terminal, log lines elsewhere)."""

    def started(self, record: JobRecord, *, resumed: bool, total: int | None) -> None: ...

    def progress(self, processed: int, total: int | None, cursor: Cursor) -> None: ...

    def finished(self, result: RunResult) -> None: ...


@runtime_checkable
class FailureListener(Protocol):
    """What a reporter may also hear: each retry of an item, each item passed over.
    (Optional: a reporter without these methods is told nothing of them.)"""

    def retrying(
        self, item: Any, attempt: int, max_attempts: int, error: BaseException, delay: float
    ) -> None: ...

    def passed_over(self, record: FailureRecord, failed: int, allowed: int) -> None: ...


def listener_of(reporter: object) -> FailureListener:
    """``reporter`` itself if it hears retries and failures, else one that hears nothing."""
    return reporter if isinstance(reporter, FailureListener) else _Deaf()


class _Deaf:
    def retrying(
        self, item: Any, attempt: int, max_attempts: int, error: BaseException, delay: float
    ) -> None:
        pass

    def passed_over(self, record: FailureRecord, failed: int, allowed: int) -> None:
        pass


_HOW_TO_PAIR = "yield pairs like this: return ((row, row.id) for row in rows)"
_NOT_A_PAIR = (
    "{job}.build_enumerator must return (item, cursor) pairs, but it yielded {value!r} — "
    + _HOW_TO_PAIR
)
_NOT_A_PAIR_LATER = (
    "{job}.build_enumerator must return (item, cursor) pairs, but a later value was not "
    "one ({error}) — " + _HOW_TO_PAIR
)


class Runner:
    """One run of one job under one hold. Use :meth:`run` once."""

    def __init__(
        self,
        job: Job,
        store: Store,
        hold: Hold,
        *,
        token: StopToken,
        reporter: Reporter,
        settings: RunSettings,
        first_run: bool,
        stats: RunStats | None = None,
        coupled: CoupledWrites | None = None,
    ) -> None:
        self._job = job
        #: The open transaction the job writes through, when it asked for coupled writes.
        self._coupled = coupled
        self._store = store
        self._hold = hold
        self._token = token
        self._reporter = reporter
        self._settings = settings
        self._first_run = first_run
        self._name = hold.record.job
        record = hold.record
        self._partition_label = (
            f"{record.partition}/{record.partitions}" if record.partitions > 1 else None
        )
        self._every_item = settings.checkpoint_interval <= 0
        # What the store holds now: a failed checkpoint falls back to it.
        self._saved_cursor_json = hold.record.cursor_json
        self._saved_processed = hold.record.processed
        self._total: int | None = hold.record.total
        #: Counts and times for checkpoints, the rate and --metrics-port; never per item.
        self.stats = stats if stats is not None else RunStats(hold.record)
        # Failures: those the store has for this job id (partition), those recorded since
        # and waiting for the next checkpoint, and how many the budget allows in all.
        self._failed = self._saved_failed = hold.record.failed_items
        self._pending_failures: list[FailureRecord] = []
        self._allowed = 0
        self._listener = listener_of(reporter)

    # -- the run ----------------------------------------------------------------------

    def run(self) -> RunResult:
        """Process items until done or told to stop; always leave the store consistent."""
        processed = self._saved_processed
        cursor = decode_cursor(self._saved_cursor_json)
        ticker = Ticker(
            self._token,
            checkpoint_interval=self._settings.checkpoint_interval,
            progress_interval=self._settings.progress_interval,
            max_runtime=self._settings.max_runtime,
        )
        try:
            with ticker:
                source = self._begin(cursor)
                limit = self._settings.limit
                # islice is C code: a limit adds nothing per item that Python can see.
                iterator = source if limit is None else islice(source, limit)
                # The loop body lives here, not in a helper, so the per-item cost stays a
                # handful of bytecodes: call, two stores, one attribute test. (The `try`
                # costs nothing until an item raises.)
                each = self._each()
                if self._coupled is not None:
                    self._coupled.begin()
                    self._job._transaction = self._coupled.connection
                token = self._token
                if self._every_item:
                    token.pending = True  # stays raised: _attend checkpoints after each item
                stop = self._token.requested
                self.stats.in_flight = 1
                for item, next_cursor in iterator if not stop else ():
                    try:
                        each(item)
                    except Exception as error:
                        attempts = attempts_of(error)
                        if not self._item_failed(item, next_cursor, error, attempts, before=cursor):
                            raise
                    cursor = next_cursor
                    processed += 1
                    if token.pending and self._attend(cursor, processed):
                        break
                else:
                    if not token.requested:
                        # An exhausted limit is not the end: the end is when nothing is next.
                        if limit is None or next(source, _END) is _END:
                            return self._complete(cursor, processed)
                        return self._stop(cursor, processed, f"--limit {limit} reached")
            return self._stop(cursor, processed, self._token.reason or "stop")
        except StopNow as stopped:
            # A stop during a retry's backoff carries its reason; a second SIGINT none.
            return self._stop(cursor, processed, str(stopped) or "second SIGINT")
        except Exception as error:  # noqa: BLE001 - sorted out just below
            return self._ended_by(error, cursor, processed)

    def _ended_by(self, error: Exception, cursor: Cursor, processed: int) -> RunResult:
        """Map an exception that ended the loop to its outcome."""
        if isinstance(error, _HookFailed):
            # on_checkpoint raised: what it should have flushed is not saved, so neither
            # is the cursor that would claim it.
            return self._fail(Outcome.FAILED, cursor, processed, error.error, keep_saved=True)
        if isinstance(error, JobCancelledError):
            return self._finish(Outcome.CANCELLED, cursor, processed)
        if isinstance(error, LostHoldError):
            return self._finish(Outcome.STOPPED, cursor, processed, error.reason, error)
        if isinstance(error, StoreUnavailableError):
            return self._finish(Outcome.STORE_UNAVAILABLE, cursor, processed, error=error)
        if isinstance(error, IterctlError):
            # A refusal raised by iterctl code the job called (a builder, a cursor check).
            return self._fail(Outcome.REFUSED, cursor, processed, error)
        if isinstance(error, TypeError | ValueError) and _is_unpacking_error(error):
            refusal = InvalidCursorError(_NOT_A_PAIR_LATER.format(job=self._name, error=error))
            return self._fail(Outcome.REFUSED, cursor, processed, refusal)
        # Anything else came from the job's own code.
        return self._fail(Outcome.FAILED, cursor, processed, error)

    def _begin(self, cursor: Cursor) -> Iterator[tuple[Any, Cursor]]:
        """Run the start hook, build the enumerator and check its first pair."""
        job = self._job
        if self._first_run:
            job.on_start()
        else:
            job.on_resume()
        enumerator = job.build_enumerator(cursor)
        partition = job.partition
        if partition is not None and not job.splits_itself():
            enumerator = enumerator.within(partition.bounds)  # type: ignore[attr-defined]
        # A partition's total is its enumerator's; job.count() is the whole job's.
        total = job.count() if partition is None else None
        if total is None and self._total is None:
            # Counted once, on the first run: a count made on resume may see only what is
            # left (a query filtered on the column being backfilled, say).
            total_of = getattr(enumerator, "total", None)
            total = total_of() if callable(total_of) else None
        total = self._total if total is None else total
        if total is not None:
            self._total = total
        self._allowed = self._settings.max_failures.allowed(total, self._name)
        self._reporter.started(self._hold.record, resumed=not self._first_run, total=total)
        iterator = iter(enumerator)
        first = next(iterator, _END)
        if first is _END:
            return iter(())
        if not isinstance(first, tuple | list) or len(first) != 2:
            raise InvalidCursorError(_NOT_A_PAIR.format(job=self._name, value=first))
        check_cursor(first[1], self._name)
        # chain() is C code: it adds a few nanoseconds per item, a generator would add 30.
        return chain(((first[0], first[1]),), iterator)

    def _each(self) -> Any:
        """The job's ``each_iteration``, wrapped only for what the job asks for: a savepoint
        per item for coupled writes (innermost, so that a failed attempt's writes are rolled
        back before the next), then retries."""
        each: Callable[[Any], object] = self._job.each_iteration
        if self._coupled is not None:
            each = self._coupled.wrap(each)
        return retrying_each(each, policy_of(self._job), self._token, self._listener)

    def _item_failed(
        self, item: Any, cursor: Cursor, error: Exception, attempts: int, *, before: Cursor
    ) -> bool:
        """The seam every loop calls when an item raised after its tries.

        ``cursor`` is the failed item's, ``before`` the cursor of the item enumerated just
        before it (the pair ``retry-failed`` rebuilds the enumerator from). Within the
        ``--max-failures`` budget the failure is recorded as pending (the next checkpoint
        writes it with the cursor that passes it) and True is returned: pass over the item
        as if done. Otherwise nothing is recorded and False is returned: the run fails as
        it always has (status failed, exit 1, cursor before the item, every failure so far
        kept). Call it from the loop's thread only (the owner of the pending records).
        """
        if self._failed >= self._allowed:
            if self._allowed:
                error.add_note(
                    f"iterctl: {self._failed:,} items had failed already, and --max-failures "
                    f"allows {self._allowed:,}: this one ends the run"
                )
            return False
        record = failure_record(item, cursor, before, error, attempts, self._name)
        self._failed += 1
        self._pending_failures.append(record)
        self._listener.passed_over(record, self._failed, self._allowed)
        return True

    def _attend(self, cursor: Cursor, processed: int) -> bool:
        """Handle whatever raised the token's flag; True when the loop must stop."""
        token = self._token
        if not self._every_item:
            token.pending = False  # clear first: the ticker sets its flags before `pending`
        if token.checkpoint_due or self._every_item:
            token.checkpoint_due = False
            self._checkpoint(cursor, processed, Status.RUNNING)
        if token.progress_due:
            token.progress_due = False
            self.stats.processed = processed
            self._reporter.progress(processed, self._total, cursor)
        return token.reason is not None

    # -- endings ----------------------------------------------------------------------

    def _complete(self, cursor: Cursor, processed: int) -> RunResult:
        self._job.on_complete()
        self._checkpoint(cursor, processed, Status.SUCCEEDED)
        # Whoever completes the last partition runs on_all_complete: the store decides.
        if self._store.claim_all_complete(self._hold.job_id):
            self._job.on_all_complete()
        return self._finish(Outcome.SUCCEEDED, cursor, processed)

    def _stop(self, cursor: Cursor, processed: int, reason: str) -> RunResult:
        try:
            self._checkpoint(cursor, processed, Status.INTERRUPTED)
        except JobCancelledError:
            return self._finish(Outcome.CANCELLED, cursor, processed)
        except StoreUnavailableError as error:
            return self._finish(Outcome.STORE_UNAVAILABLE, cursor, processed, error=error)
        except LostHoldError as error:
            return self._finish(Outcome.STOPPED, cursor, processed, error.reason, error)
        return self._finish(Outcome.STOPPED, cursor, processed, reason)

    def _fail(
        self,
        outcome: Outcome,
        cursor: Cursor,
        processed: int,
        error: BaseException,
        *,
        keep_saved: bool = False,
    ) -> RunResult:
        """Save the last completed item's cursor with status failed, then run on_error."""
        message = f"{type(error).__name__}: {error}" if outcome is Outcome.FAILED else str(error)
        try:
            if keep_saved:
                self._fail_at_saved(message)
            else:
                try:
                    self._checkpoint(cursor, processed, Status.FAILED, error=message)
                except (UsageError, _HookFailed):
                    # A cursor that cannot be stored, a flush that failed, a transaction
                    # the job ended itself: keep the cursor the store has.
                    self._fail_at_saved(message)
        except (JobCancelledError, LostHoldError, StoreUnavailableError):
            pass  # the failure is still reported; the store keeps what it had
        self._job._transaction = None
        if outcome is Outcome.FAILED:
            self._job.on_error(error)
        return self._finish(outcome, cursor, processed, error=error)

    def _fail_at_saved(self, message: str) -> None:
        """The newest cursor cannot be stored, or what it claims was not flushed: mark the
        job failed at the cursor the store has, dropping the coupled writes made since (and
        the failures recorded past it: those items will be tried again)."""
        self._pending_failures.clear()
        if self._coupled is not None:
            self._coupled.rollback()
        self._write(self._saved_cursor_json, self._saved_processed, Status.FAILED, message)

    def _finish(
        self,
        outcome: Outcome,
        cursor: Cursor,
        processed: int,
        reason: str | None = None,
        error: BaseException | None = None,
    ) -> RunResult:
        self.stats.in_flight = 0
        self._job._transaction = None  # the last checkpoint is behind us
        if outcome is not Outcome.SUCCEEDED:
            # What the store holds is the truth a resume starts from: report that.
            cursor = decode_cursor(self._saved_cursor_json)
            processed = self._saved_processed
        try:
            self._job.on_shutdown()
        except Exception as hook_error:  # noqa: BLE001 - the hook is the job's code
            # A hook that raises is a bug in the job: say so, unless something already did.
            if error is None:
                outcome, error = Outcome.FAILED, hook_error
        result = RunResult(
            self._hold.job_id,
            outcome,
            processed,
            cursor,
            reason,
            error,
            self._partition_label,
            self._resume_command(),
            self.stats.checkpoint_age(),
            self._saved_failed,
            self._command("failures", partition=False),
        )
        self._reporter.finished(result)
        return result

    def _resume_command(self) -> str:
        command = self._command("resume", partition=True)
        if self._settings.max_failures != NO_FAILURES:
            command += f" --max-failures {self._settings.max_failures}"
        return command

    def _command(self, verb: str, *, partition: bool) -> str:
        command = f"iterctl {verb} {self._hold.job_id}"
        if partition and self._hold.record.partitions > 1:
            command += f" --partition {self._hold.partition}"
        store = self._store.display_name
        if store != DEFAULT_STORE:
            command += f" --store {shlex.quote(store)}"
        return command

    # -- the store --------------------------------------------------------------------

    def _checkpoint(
        self, cursor: Cursor, processed: int, status: Status, error: str | None = None
    ) -> None:
        cursor_json = encode_cursor(cursor, self._name)
        try:
            self._job.on_checkpoint()
        except Exception as hook_error:
            raise _HookFailed(hook_error) from hook_error
        coupled = self._coupled
        if coupled is not None:
            coupled.check_open()
        self._write(cursor_json, processed, status, error)
        if coupled is not None and status is Status.RUNNING:
            coupled.begin()  # the next batch's writes go into the next transaction

    def _write(
        self, cursor_json: str | None, processed: int, status: Status, error: str | None
    ) -> None:
        failures = tuple(self._pending_failures)
        stats = self.stats
        now = stats.now()  # at checkpoint time only: never per item
        checkpoint = Checkpoint(
            cursor_json,
            processed,
            status,
            total=self._total,
            error=error,
            failures=failures,
            elapsed=stats.elapsed(now),
            rate=stats.sample(now, processed),
        )
        self._store.checkpoint(self._hold, checkpoint)
        stats.checkpointed(now, stats.now())
        stats.total = self._total
        self._saved_cursor_json = cursor_json
        self._saved_processed = processed
        if failures:
            del self._pending_failures[: len(failures)]
            self._saved_failed += len(failures)
        stats.failed_items = self._saved_failed


_END = object()


class _HookFailed(Exception):
    """``on_checkpoint`` raised ``error``: the checkpoint it preceded was not saved."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _is_unpacking_error(error: BaseException) -> bool:
    """True when ``error`` came from unpacking a yielded value into ``item, cursor``.

    Such an error is raised by the runner's own frame: its traceback has no deeper frame,
    unlike an error raised inside the job's code.
    """
    traceback = error.__traceback__
    return traceback is not None and traceback.tb_next is None and "unpack" in str(error)
