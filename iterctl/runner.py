"""The loop: drive a job's enumerator, checkpoint on a timer, stop when asked.

The runner imports neither typer, rich nor :mod:`signal`. It takes a store hold, a stop
token and a reporter, and returns a :class:`RunResult` that the CLI maps to an exit code.

The per-item path is kept to what a plain ``for`` loop does plus one attribute read
(``token.pending``): time is watched by the ticker thread, not by reading the clock here.
An item that raises goes to :meth:`Runner._item_failed`, which decides from the
``--max-failures`` budget whether the run passes over it (its record written with the next
checkpoint) or fails; retries happen inside ``each`` (see :mod:`iterctl.retrying`), which
is the job's own method unless the job declares ``retry_on``.

With ``--concurrency N`` (or an ``async def each_iteration``) items run on worker threads or
as asyncio tasks (:mod:`iterctl.dispatch`) and finish out of order; this thread still reads
the enumerator, owns the watermark window (:mod:`iterctl.window`), settles every outcome in
one place (:meth:`Runner._settle`) and alone decides when to checkpoint and stop.
"""

from __future__ import annotations

import asyncio
import inspect
import shlex
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from enum import Enum
from itertools import chain, islice
from typing import Any, Protocol, runtime_checkable

from iterctl.budget import FailureBudget
from iterctl.cursor import Cursor, check_cursor, decode_cursor, encode_cursor
from iterctl.dispatch import WAKE_SECONDS, AsyncDispatch, Settled, ThreadDispatch
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
from iterctl.stopping import StopNow, StopToken, StopWaiting, Ticker
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
from iterctl.window import Window

#: Default seconds between checkpoints: a SIGKILL redoes at most this much work, and at
#: this pace even an fsync'd SQLite write costs far under 1% of the run.
DEFAULT_CHECKPOINT_INTERVAL = 5.0
DEFAULT_PROGRESS_INTERVAL = 10.0
#: With --concurrency N, up to this many times N items may sit between the watermark and
#: the newest item dispatched; then dispatch waits for the oldest (back-pressure).
WINDOW_PER_WORKER = 4
#: The default budget: the first item that fails ends the run (exit 1).
NO_FAILURES = FailureBudget()
#: How often a run makes sure it still holds its job id (a database session can drop):
#: a process that lost it notices within about this long, and stops (exit 75).
HOLD_CHECK_INTERVAL = 1.0
#: The stop reason of --max-runtime; it waits for the run's first item (see Runner.run).
MAX_RUNTIME = "max-runtime"


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
    #: Items in progress at once (--concurrency); None keeps the job id's recorded value.
    #: Coupled writes need 1 (launch refuses more).
    concurrency: int | None = None


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
    #: Items still running on threads that a second SIGINT left behind (done again later).
    abandoned: int = 0
    #: Exceptions raised by hooks (on_error, on_shutdown, on_all_complete) as the run
    #: ended: reported with their tracebacks; the outcome stays what the store says.
    hook_errors: tuple[tuple[str, BaseException], ...] = ()

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
        #: The open transaction the job writes through, when it asked for coupled writes.
        self._coupled = coupled
        self._job = job
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
        self._saved_done_json = hold.record.done_json
        self._total: int | None = hold.record.total
        #: Counts and times for checkpoints, the rate and --metrics-port; never per item.
        self.stats = stats if stats is not None else RunStats(hold.record)
        # Failures: those the store has for this job id (partition), those recorded since
        # and waiting for the next checkpoint, and how many the budget allows in all.
        self._failed = self._saved_failed = hold.record.failed_items
        self._pending_failures: list[FailureRecord] = []
        self._allowed = 0
        self._listener = listener_of(reporter)
        #: --concurrency: a new value is kept with the job id from the next checkpoint on.
        self.concurrency = settings.concurrency or record.concurrency or 1
        self._concurrency_change = (
            self.concurrency if self.concurrency != record.concurrency else None
        )
        each = job.each_iteration
        # unwrap: an `async def` under a functools.wraps decorator is async too.
        self._async = inspect.iscoroutinefunction(each) or inspect.iscoroutinefunction(
            inspect.unwrap(each)
        )
        #: The watermark window of a concurrent run; None in the sequential loop.
        self._window: Window | None = None
        self._processed = self._saved_processed
        self._error: Exception | None = None  # the first item that raised (concurrent)
        self._dispatch: ThreadDispatch | AsyncDispatch | None = None
        #: --limit: items this run may still dispatch (None: no limit), and whether the
        #: limit, not the end of the walk, ended dispatching.
        self._left = settings.limit
        self._limit_hit = False
        self._hook_errors: list[tuple[str, BaseException]] = []
        #: The enumerator's source identity, until a checkpoint has recorded it.
        self._new_source_json: str | None = None

    # -- the run ----------------------------------------------------------------------

    def run(self) -> RunResult:  # noqa: PLR0912 - the loop stays inline (per-item cost)
        """Process items until done or told to stop; always leave the store consistent."""
        # A done set left by a concurrent run must be honoured even at --concurrency 1.
        if self.concurrency > 1 or self._async or self._saved_done_json is not None:
            return self._run_concurrent()
        processed = self._saved_processed
        cursor = decode_cursor(self._saved_cursor_json)
        ticker = self._ticker()
        token = self._token
        try:
            with ticker:
                token.interruptible = True  # the job's code runs from here on
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
                # Every run completes at least one item: a --max-runtime shorter than the
                # start-up must not make every restart stop with nothing done.
                stop = token.requested and token.reason != MAX_RUNTIME
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
                            token.interruptible = False
                            return self._complete(cursor, processed)
                        token.interruptible = False
                        return self._stop(cursor, processed, f"--limit {limit} reached")
            token.interruptible = False
            return self._stop(cursor, processed, self._token.reason or "stop")
        except StopNow as stopped:
            token.interruptible = False
            # A stop during a retry's backoff carries its reason; a second SIGINT none.
            return self._stop(cursor, processed, str(stopped) or "second SIGINT")
        except StopWaiting as stopped:
            token.interruptible = False
            return self._finish(
                Outcome.STOPPED, cursor, processed, f"{stopped.reason} while waiting for the store"
            )
        except BaseException as error:  # noqa: BLE001 - whatever the job raises is its failure
            token.interruptible = False
            return self._ended_by(error, cursor, processed)

    def _ticker(self) -> Ticker:
        """The thread that raises the token's flags on time, for either loop."""
        return Ticker(
            self._token,
            checkpoint_interval=self._settings.checkpoint_interval,
            progress_interval=self._settings.progress_interval,
            max_runtime=self._settings.max_runtime,
            hold_check_interval=HOLD_CHECK_INTERVAL,
        )

    def _ended_by(self, error: BaseException, cursor: Cursor, processed: int) -> RunResult:
        """Map an exception that ended the loop to its outcome.

        Anything the job's code raises, ``SystemExit``, ``KeyboardInterrupt`` and other
        BaseExceptions included, is the job's failure (exit 1): it cannot pick the exit
        code Kubernetes acts on, nor leave the job marked running.
        """
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
        enumerator = self._open(cursor)
        if hasattr(enumerator, "__aiter__") and not hasattr(enumerator, "__iter__"):
            self._begin_pairs_refused()
        return self._checked(iter(enumerator))

    def _open(self, cursor: Cursor) -> Any:
        """Run the start hook, build the enumerator, count it and say the run started."""
        job = self._job
        if self._first_run:
            job.on_start()
        else:
            job.on_resume()
        enumerator = job.build_enumerator(cursor)
        if not (hasattr(enumerator, "__iter__") or hasattr(enumerator, "__aiter__")):
            raise UsageError(
                f"{self._name}.build_enumerator returned {type(enumerator).__name__}, not an "
                f"iterable of (item, cursor) pairs — {_HOW_TO_PAIR}"
            )
        partition = job.partition
        if partition is not None and not job.splits_itself():
            enumerator = enumerator.within(partition.bounds)  # type: ignore[attr-defined]
        self._check_source(enumerator)
        # A partition's total is its enumerator's; job.count() is the whole job's.
        total = _checked_total(job.count, f"{self._name}.count()") if partition is None else None
        if total is None and self._total is None:
            # Counted once, on the first run: a count made on resume may see only what is
            # left (a query filtered on the column being backfilled, say).
            total_of = getattr(enumerator, "total", None)
            if callable(total_of):
                total = _checked_total(total_of, f"{self._name}'s enumerator total()")
        total = self._total if total is None else total
        if total is not None:
            self._total = total
        self.stats.total = self._total  # for the metrics from the start, not the first checkpoint
        self._allowed = self._settings.max_failures.allowed(total, self._name)
        record = self._hold.record
        if record.concurrency != self.concurrency:  # a new --concurrency: say the one in force
            record = replace(record, concurrency=self.concurrency)
        self._reporter.started(record, resumed=not self._first_run, total=total)
        return enumerator

    def _check_source(self, enumerator: Any) -> None:
        """Refuse to resume into another source than the job started on (a file replaced
        while the job was stopped); on a first run, note the source for the checkpoint."""
        identity_of = getattr(enumerator, "source_identity", None)
        if not callable(identity_of):
            return
        recorded = decode_cursor(self._hold.record.source_json)
        identity = identity_of(recorded)
        if recorded is None and identity is not None:
            self._new_source_json = encode_cursor(identity, self._name)

    def _checked(self, iterator: Iterator[Any]) -> Iterator[tuple[Any, Cursor]]:
        """The pairs of ``iterator``, its first one checked to be an (item, JSON cursor) pair."""
        first: Any = next(iterator, _END)
        if first is _END:
            return iter(())
        self._check_pair(first)
        # chain() is C code: it adds a few nanoseconds per item, a generator would add 30.
        return chain(((first[0], first[1]),), iterator)

    async def _checked_async(self, iterable: Any) -> AsyncIterator[tuple[Any, Cursor]]:
        """The pairs of an async iterable, its first one checked as :meth:`_checked` does."""
        pairs = aiter(iterable)
        first: Any = await anext(pairs, _END)
        if first is _END:
            return
        self._check_pair(first)
        yield first[0], first[1]
        async for pair in pairs:
            yield pair

    def _check_pair(self, first: Any) -> None:
        if not isinstance(first, tuple | list) or len(first) != 2:
            raise InvalidCursorError(_NOT_A_PAIR.format(job=self._name, value=first))
        check_cursor(first[1], self._name)

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
        if token.hold_check_due:
            token.hold_check_due = False
            with token.shielded():
                self._store.check_hold(self._hold)  # LostHoldError once a session dropped
        return token.reason is not None

    # -- with --concurrency: items in flight at once ------------------------------------

    def _run_concurrent(self) -> RunResult:
        """Read in order, run up to N items at once, settle outcomes here, stop exactly."""
        window = Window(
            WINDOW_PER_WORKER * self.concurrency,
            watermark=decode_cursor(self._saved_cursor_json),
            done_json=self._saved_done_json,
            name=self._name,
        )
        self._window = window
        ticker = self._ticker()
        token = self._token
        try:
            with ticker:
                token.interruptible = True  # the job's code runs (and is waited for) here
                try:
                    enumerator = self._open(window.watermark)
                    if self._async:
                        asyncio.run(self._async_loop(enumerator))
                    else:
                        self._thread_loop(enumerator)
                finally:
                    token.interruptible = False
            if self._error is not None:  # an item raised: the others have finished
                return self._ended_by(self._error, window.watermark, self._processed)
            if self._token.requested:
                return self._stop(window.watermark, self._processed, self._token.reason or "stop")
            if self._limit_hit:
                reason = f"--limit {self._settings.limit} reached"
                return self._stop(window.watermark, self._processed, reason)
            return self._complete(window.watermark, self._processed)
        except StopNow:
            return self._stopped_now()
        except JobCancelledError:  # the items in flight have finished: save them, then stop
            return self._stop(window.watermark, self._processed, "cancelled")
        except StopWaiting as stopped:
            reason = f"{stopped.reason} while waiting for the store"
            return self._finish(Outcome.STOPPED, window.watermark, self._processed, reason)
        except BaseException as error:  # noqa: BLE001 - whatever the job raises is its failure
            return self._ended_by(error, window.watermark, self._processed)

    def _thread_loop(self, enumerator: Any) -> None:
        if hasattr(enumerator, "__aiter__") and not hasattr(enumerator, "__iter__"):
            self._begin_pairs_refused()
        dispatch = ThreadDispatch(self._each(), self.concurrency)
        self._dispatch = dispatch
        self.stats.in_flight_source = lambda: dispatch.in_flight  # read when scraped
        try:
            pairs = self._checked(iter(enumerator))
            for item, cursor in pairs:
                if self._admit(item, cursor, dispatch):
                    break
            if self._left == 0:  # an exhausted limit is not the end: is anything next?
                self._limit_hit = any(not self._skipped(cursor) for _item, cursor in pairs)
        except Exception:
            self._drain(dispatch)
            dispatch.close()
            raise
        self._drain(dispatch)
        dispatch.close()

    def _admit(self, item: Any, cursor: Cursor, dispatch: ThreadDispatch) -> bool:
        """Dispatch one item once there is room; True when dispatching must end."""
        window = self._window
        assert window is not None
        if window.restoring and window.skip(cursor):
            return False  # done by an earlier run
        while dispatch.in_flight >= self.concurrency or window.full:
            self._settle(dispatch.wait())
            if self._halting():
                return True
        dispatch.submit(window.add(cursor), item)
        if dispatch.has_settled:
            self._settle(dispatch.take())
        return self._halting() or self._limit_reached()

    def _skipped(self, cursor: Cursor) -> bool:
        window = self._window
        assert window is not None
        return window.restoring and window.skip(cursor)

    def _limit_reached(self) -> bool:
        """Count one dispatch against --limit; True when it was the last one allowed."""
        if self._left is None:
            return False
        self._left -= 1
        return self._left == 0

    def _drain(self, dispatch: ThreadDispatch) -> None:
        """Wait for every item in flight, checkpointing on time meanwhile (never raises)."""
        tending = True
        while dispatch.in_flight:
            self._settle(dispatch.wait())
            if tending and self._token.pending:
                tending = self._tend_quietly()

    async def _async_loop(self, enumerator: Any) -> None:
        each: Any = self._each()  # an async def (checked at __init__), retrying if asked
        dispatch = AsyncDispatch(each, self.concurrency)
        self._dispatch = dispatch
        self.stats.in_flight_source = lambda: dispatch.in_flight  # read when scraped
        nudge = asyncio.create_task(self._nudge(dispatch))
        try:
            try:
                if hasattr(enumerator, "__aiter__"):
                    pairs = self._checked_async(enumerator)
                    async for item, cursor in pairs:
                        if await self._admit_async(item, cursor, dispatch):
                            break
                    if self._left == 0:  # an exhausted limit is not the end: anything next?
                        self._limit_hit = False
                        async for _item, cursor in pairs:
                            if not self._skipped(cursor):
                                self._limit_hit = True
                                break
                else:
                    sync_pairs = self._checked(iter(enumerator))
                    for item, cursor in sync_pairs:
                        if await self._admit_async(item, cursor, dispatch):
                            break
                    if self._left == 0:
                        self._limit_hit = any(not self._skipped(c) for _i, c in sync_pairs)
            except Exception:  # not CancelledError/StopNow: those abandon what is in flight
                await self._drain_async(dispatch)
                raise
            await self._drain_async(dispatch)
        finally:
            nudge.cancel()

    async def _admit_async(self, item: Any, cursor: Cursor, dispatch: AsyncDispatch) -> bool:
        """:meth:`_admit` on the event loop."""
        window = self._window
        assert window is not None
        if window.restoring and window.skip(cursor):
            return False
        while dispatch.in_flight >= self.concurrency or window.full:
            self._settle(await dispatch.wait())
            if self._halting():
                return True
        dispatch.submit(window.add(cursor), item)
        if dispatch.has_settled:
            self._settle(dispatch.take())
        return self._halting() or self._limit_reached()

    async def _drain_async(self, dispatch: AsyncDispatch) -> None:
        tending = True
        while dispatch.in_flight:
            self._settle(await dispatch.wait())
            if tending and self._token.pending:
                tending = self._tend_quietly()

    async def _nudge(self, dispatch: AsyncDispatch) -> None:
        """Wake a waiting loop when the token needs it (signals cannot wake the selector)."""
        while True:
            await asyncio.sleep(WAKE_SECONDS)
            if self._token.pending:
                dispatch.wake()

    def _settle(self, outcomes: list[Settled]) -> None:
        """Every item's outcome is handled here, and only here, on the window's thread."""
        window = self._window
        assert window is not None
        for ticket, item, error in outcomes:
            if error is None:
                window.complete(ticket)
                self._processed += 1
            else:
                self._item_raised(ticket, item, error)
        if self._every_item and outcomes:
            self._token.checkpoint_due = True
            self._token.pending = True

    def _item_raised(self, ticket: int, item: Any, error: BaseException) -> None:
        """An item raised (after its retries): the one place a failure is decided, on the
        window's thread. Within the --max-failures budget its record is pending and it
        counts as done for the watermark; otherwise dispatch stops and it stays out of the
        done set, so that resume retries it."""
        window = self._window
        assert window is not None
        if isinstance(error, StopNow):
            if str(error):  # a stop came during a retry's backoff: not done, stopping
                return
            raise error  # a second SIGINT landed inside an async item
        if isinstance(error, Exception) and self._item_failed(
            item,
            window.cursor_of(ticket),
            error,
            attempts_of(error),
            before=window.cursor_before(ticket),
        ):
            window.complete(ticket)  # a recorded failure counts as done
            self._processed += 1
            return
        if self._error is None:
            self._error = error if isinstance(error, Exception) else RuntimeError(repr(error))

    def _halting(self) -> bool:
        """True when dispatch must end: a stop was asked for, or an item raised."""
        return (self._token.pending and self._tend()) or self._error is not None

    def _tend(self) -> bool:
        """:meth:`_attend` for a concurrent run: the watermark is the progress."""
        token, window = self._token, self._window
        assert window is not None
        token.pending = False  # clear first: the ticker sets its flags before `pending`
        if token.checkpoint_due:
            token.checkpoint_due = False
            self._checkpoint(window.watermark, self._processed, Status.RUNNING)
        if token.progress_due:
            token.progress_due = False
            self.stats.processed = self._processed
            self._reporter.progress(self._processed, self._total, window.watermark)
        if token.hold_check_due:
            token.hold_check_due = False
            with token.shielded():
                self._store.check_hold(self._hold)  # LostHoldError once a session dropped
        return token.reason is not None

    def _tend_quietly(self) -> bool:
        """:meth:`_tend` while draining; False once the store refused (the end says why)."""
        try:
            self._tend()
        except IterctlError:
            return False
        return True

    def _stopped_now(self) -> RunResult:
        """A second SIGINT: save only what completed, leave the items in flight, say so."""
        window = self._window
        assert window is not None
        dispatch = self._dispatch
        if dispatch is not None:
            for outcome in dispatch.take():
                if outcome[2] is None:
                    self._settle([outcome])
            dispatch.abandon()
        abandoned = len(window.in_flight())
        reason = "second SIGINT"
        if abandoned:
            reason += f"; {abandoned} item(s) in flight abandoned, done again on resume"
        result = self._stop(window.watermark, self._processed, reason)
        return replace(result, abandoned=abandoned)

    def _begin_pairs_refused(self) -> None:
        raise InvalidCursorError(
            f"{self._name}.build_enumerator returned an async iterable, but "
            "each_iteration is not async — make it `async def each_iteration`, "
            "or return a plain iterable"
        )

    # -- endings ----------------------------------------------------------------------

    def _complete(self, cursor: Cursor, processed: int) -> RunResult:
        # A cursor no store can keep is refused before any hook runs and before "done".
        encode_cursor(cursor, self._name)
        self._job.on_complete()
        self._checkpoint(cursor, processed, Status.SUCCEEDED)
        # Whoever completes the last partition runs on_all_complete: the store decides.
        try:
            claimed = self._store.claim_all_complete(self._hold.job_id)
        except StopWaiting:
            claimed = False  # stopped while connecting: the next start of any part claims it
        if claimed:
            self._call_hook(self._job.on_all_complete)
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
        except StopWaiting as stopped:
            reason = f"{reason}, then {stopped.reason} while waiting for the store"
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
        except (JobCancelledError, LostHoldError, StoreUnavailableError, StopWaiting):
            pass  # the failure is still reported; the store keeps what it had
        self._job._transaction = None
        if outcome is Outcome.FAILED:
            self._call_hook(self._job.on_error, error)
        return self._finish(outcome, cursor, processed, error=error)

    def _fail_at_saved(self, message: str) -> None:
        """The newest cursor cannot be stored, or what it claims was not flushed: mark the
        job failed at the cursor the store has, dropping the coupled writes made since (and
        the failures recorded past it: those items will be tried again)."""
        self._pending_failures.clear()
        if self._coupled is not None:
            self._coupled.rollback()
        self._write(
            self._saved_cursor_json,
            self._saved_processed,
            Status.FAILED,
            message,
            self._saved_done_json,
        )

    def _call_hook(self, hook: Callable[..., object], *args: object) -> None:
        """Run a hook of the ending run; what it raises is reported, not allowed to change
        the outcome or skip what follows (the store already says how the run ended)."""
        try:
            hook(*args)
        except BaseException as hook_error:  # noqa: BLE001 - the hook is the job's code
            self._hook_errors.append((getattr(hook, "__name__", "a hook"), hook_error))

    def _finish(
        self,
        outcome: Outcome,
        cursor: Cursor,
        processed: int,
        reason: str | None = None,
        error: BaseException | None = None,
    ) -> RunResult:
        self.stats.in_flight_source = None
        self.stats.in_flight = 0
        self._job._transaction = None  # the last checkpoint is behind us
        if outcome is not Outcome.SUCCEEDED:
            # What the store holds is the truth a resume starts from: report that.
            cursor = decode_cursor(self._saved_cursor_json)
            processed = self._saved_processed
        self._call_hook(self._job.on_shutdown)
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
            hook_errors=tuple(self._hook_errors),
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
        done_json = None if self._window is None else self._window.done_json()
        try:
            self._job.on_checkpoint()
        except Exception as hook_error:
            raise _HookFailed(hook_error) from hook_error
        coupled = self._coupled
        if coupled is not None:
            coupled.check_open()
        self._write(cursor_json, processed, status, error, done_json)
        if coupled is not None and status is Status.RUNNING:
            coupled.begin()  # the next batch's writes go into the next transaction

    def _write(
        self,
        cursor_json: str | None,
        processed: int,
        status: Status,
        error: str | None,
        done_json: str | None = None,
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
            done_json=done_json,
            failures=failures,
            concurrency=self._concurrency_change,
            elapsed=stats.elapsed(now),
            rate=stats.sample(now, processed),
            source_json=self._new_source_json,
        )
        with self._token.shielded():  # a second SIGINT must not cut a store write
            try:
                self._store.checkpoint(self._hold, checkpoint)
            except JobCancelledError:
                # The store saved the progress, then said the job was cancelled.
                self._saved_cursor_json, self._saved_processed = cursor_json, processed
                self._saved_done_json = done_json
                raise
            stats.checkpointed(now, stats.now())
            stats.total = self._total
            self._new_source_json = None  # recorded: later checkpoints keep it
            self._saved_cursor_json = cursor_json
            self._saved_processed = processed
            self._saved_done_json = done_json
            if failures:
                del self._pending_failures[: len(failures)]
                self._saved_failed += len(failures)
            stats.failed_items = self._saved_failed


_END = object()


def _is_unpacking_error(error: BaseException) -> bool:
    """True when ``error`` came from unpacking a yielded value into ``item, cursor``.

    Such an error is raised by the runner's own code: the innermost frame of its traceback
    is in this module, unlike an error raised inside the job's code.
    """
    traceback = error.__traceback__
    if traceback is None or "unpack" not in str(error):
        return False
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    return traceback.tb_frame.f_code.co_filename == __file__


class _HookFailed(Exception):
    """``on_checkpoint`` raised ``error``: the checkpoint it preceded was not saved."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _checked_total(count: Callable[[], object], what: str) -> int | None:
    """The number of items a job or enumerator says it has: None, or an int of 0 or more."""
    total = count()
    if total is None or (type(total) is int and total >= 0):
        return total
    raise UsageError(
        f"{what} returned {total!r}: it must return how many items there are (an int, "
        "0 or more), or None when that is not known"
    )

