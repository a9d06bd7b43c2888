"""runner.py with the memory store: when the cursor moves, how runs end, which hooks run."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from iterctl import Job
from iterctl.cursor import Cursor
from iterctl.errors import InvalidCursorError
from iterctl.runner import Outcome, Runner, RunResult, RunSettings
from iterctl.stores import Checkpoint, Hold, JobRecord, Status
from iterctl.stores.memory import MemoryStore

JOB_ID = "unit-job"
JOB_NAME = "tests.unit:Numbers"
EVERY_ITEM = RunSettings(checkpoint_interval=0)
#: Long enough that no timed checkpoint happens during a unit test.
RARELY = RunSettings(checkpoint_interval=3600, progress_interval=3600)


class RecordingStore(MemoryStore):
    """A memory store that remembers every checkpoint written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.checkpoints: list[Checkpoint] = []

    def checkpoint(self, hold: Hold, checkpoint: Checkpoint) -> None:
        self.checkpoints.append(checkpoint)
        super().checkpoint(hold, checkpoint)


@dataclass
class FakeReporter:
    """A reporter that keeps what it was told."""

    started_with: list[tuple[bool, int | None]] = field(default_factory=list)
    results: list[RunResult] = field(default_factory=list)

    def started(self, record: JobRecord, *, resumed: bool, total: int | None) -> None:
        self.started_with.append((resumed, total))

    def progress(self, processed: int, total: int | None, cursor: Cursor) -> None:
        pass

    def finished(self, result: RunResult) -> None:
        self.results.append(result)


class Numbers(Job):
    """Items 0..size-1, each its own cursor; records items and hook calls."""

    size = 5

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.done: list[int] = []
        self.calls: list[str] = []

    def build_enumerator(self, cursor: Cursor) -> Iterable[tuple[Any, Cursor]]:
        start = 0 if cursor is None else cursor + 1
        return ((n, n) for n in range(start, self.size))

    def each_iteration(self, item: Any) -> None:
        self.done.append(item)

    def on_start(self) -> None:
        self.calls.append("on_start")

    def on_resume(self) -> None:
        self.calls.append("on_resume")

    def on_shutdown(self) -> None:
        self.calls.append("on_shutdown")

    def on_complete(self) -> None:
        self.calls.append("on_complete")

    def on_error(self, error: BaseException) -> None:
        self.calls.append(f"on_error {type(error).__name__}")


@dataclass
class Run:
    """One run of a job against a store, and what came of it."""

    store: RecordingStore
    result: RunResult
    reporter: FakeReporter

    @property
    def record(self) -> JobRecord:
        record = self.store.get(JOB_ID)
        assert record is not None
        return record


def run_job(
    job: Job,
    *,
    store: RecordingStore | None = None,
    settings: RunSettings = RARELY,
    first_run: bool = True,
) -> Run:
    """Create the job id if needed, hold it, run the job once, release it."""
    store = store if store is not None else RecordingStore()
    store.create(JobRecord(job_id=JOB_ID, job=JOB_NAME, params={}))
    hold = store.acquire(JOB_ID)
    reporter = FakeReporter()
    runner = Runner(
        job,
        store,
        hold,
        token=job.stop_token,
        reporter=reporter,
        settings=settings,
        first_run=first_run,
    )
    result = runner.run()
    store.release(hold)
    assert reporter.results == [result]
    return Run(store, result, reporter)


def test_a_complete_run_saves_the_last_cursor_and_succeeds() -> None:
    """Every item is processed once; the record ends succeeded with the last cursor."""
    job = Numbers()

    run = run_job(job)

    assert job.done == [0, 1, 2, 3, 4]
    assert (run.result.outcome, run.result.processed, run.result.cursor) == (
        Outcome.SUCCEEDED,
        5,
        4,
    )
    assert (run.record.status, run.record.cursor_json, run.record.processed) == (
        Status.SUCCEEDED,
        "4",
        5,
    )


def test_the_cursor_advances_only_after_each_iteration_returns() -> None:
    """While item N is processed, the store still holds item N-1's cursor."""
    store = RecordingStore()
    seen: list[str | None] = []

    class Watching(Numbers):
        def each_iteration(self, item: Any) -> None:
            record = store.get(JOB_ID)
            assert record is not None
            seen.append(record.cursor_json)

    run_job(Watching(), store=store, settings=EVERY_ITEM)

    assert seen == [None, "0", "1", "2", "3"]


def test_checkpoint_interval_zero_writes_after_every_item() -> None:
    """With --checkpoint-interval 0 there is one checkpoint per item, then the final one."""
    run = run_job(Numbers(), settings=EVERY_ITEM)

    written = [(c.cursor_json, c.processed, c.status) for c in run.store.checkpoints]
    assert written == [(str(n), n + 1, Status.RUNNING) for n in range(5)] + [
        ("4", 5, Status.SUCCEEDED)
    ]


def test_a_job_exception_fails_the_run_keeping_the_last_completed_cursor() -> None:
    """An exception in each_iteration at item 3 ends the run FAILED with cursor 2 saved,
    status failed and the error text stored; item 3 is retried by a resume."""

    class Failing(Numbers):
        def each_iteration(self, item: Any) -> None:
            if item == 3:
                raise ValueError("bad row 3")
            super().each_iteration(item)

    job = Failing()

    run = run_job(job)

    assert run.result.outcome is Outcome.FAILED
    assert isinstance(run.result.error, ValueError)
    assert (run.result.cursor, run.result.processed) == (2, 3)
    assert (run.record.status, run.record.cursor_json, run.record.processed) == (
        Status.FAILED,
        "2",
        3,
    )
    assert run.record.error == "ValueError: bad row 3"
    assert job.calls == ["on_start", "on_error ValueError", "on_shutdown"]

    resumed = Numbers()
    run_job(resumed, store=run.store, first_run=False)
    assert resumed.done == [3, 4]


@pytest.mark.parametrize("k", [0, 2, 4])
def test_a_stop_requested_during_item_k_stops_after_item_k(k: int) -> None:
    """token.request('SIGTERM') inside item k finishes item k, saves cursor k and stops."""

    class Stopping(Numbers):
        def each_iteration(self, item: Any) -> None:
            super().each_iteration(item)
            if item == k:
                self.stop_token.request("SIGTERM")

    job = Stopping()

    run = run_job(job)

    assert job.done == list(range(k + 1))
    expected = (Outcome.STOPPED, "SIGTERM", k, k + 1)
    assert (run.result.outcome, run.result.reason, run.result.cursor, run.result.processed) == (
        expected
    )
    assert (run.record.status, run.record.cursor_json, run.record.times_interrupted) == (
        Status.INTERRUPTED,
        str(k),
        1,
    )
    assert job.calls == ["on_start", "on_shutdown"]


def test_a_stop_requested_before_the_run_processes_nothing() -> None:
    """A signal caught before the loop (during start-up) stops before the first item."""
    job = Numbers()
    job.stop_token.request("SIGTERM")

    run = run_job(job)

    assert job.done == []
    assert (run.result.outcome, run.record.status, run.record.to_json()["cursor"]) == (
        Outcome.STOPPED,
        Status.INTERRUPTED,
        None,
    )


def test_max_runtime_stops_a_run_with_reason_max_runtime() -> None:
    """--max-runtime stops an endless job after its current item, resumably."""

    class Endless(Numbers):
        def build_enumerator(self, cursor: Cursor) -> Iterator[tuple[Any, Cursor]]:
            start = 0 if cursor is None else cursor + 1
            return ((n, n) for n in itertools.count(start))

        def each_iteration(self, item: Any) -> None:
            super().each_iteration(item)
            time.sleep(0.001)

    job = Endless()

    run = run_job(job, settings=RunSettings(max_runtime=0.05))

    assert (run.result.outcome, run.result.reason) == (Outcome.STOPPED, "max-runtime")
    assert run.record.cursor_json == str(job.done[-1])
    assert run.record.processed == len(job.done)


def test_hooks_of_a_first_run_that_completes_are_called_once_each() -> None:
    """A first run calls on_start, then on_complete, then on_shutdown, once each."""
    job = Numbers()

    run_job(job)

    assert job.calls == ["on_start", "on_complete", "on_shutdown"]


def test_a_resumed_run_calls_on_resume_not_on_start() -> None:
    """A later run of the same job id calls on_resume instead of on_start."""
    store = RecordingStore()

    class StopAtOne(Numbers):
        def each_iteration(self, item: Any) -> None:
            super().each_iteration(item)
            if item == 1:
                self.stop_token.request("SIGTERM")

    run_job(StopAtOne(), store=store)
    job = Numbers()

    run = run_job(job, store=store, first_run=False)

    assert job.done == [2, 3, 4]
    assert job.calls == ["on_resume", "on_complete", "on_shutdown"]
    assert run.reporter.started_with == [(True, None)]
    assert run.record.processed == 5


def test_a_non_json_first_cursor_is_refused_before_any_item() -> None:
    """A tuple cursor is refused (REFUSED, a message naming job and type) before item one."""

    class TupleCursor(Numbers):
        def build_enumerator(self, cursor: Cursor) -> Iterable[tuple[Any, Cursor]]:
            return ((n, (n, "x")) for n in range(3))

    job = TupleCursor()

    run = run_job(job)

    assert run.result.outcome is Outcome.REFUSED
    assert isinstance(run.result.error, InvalidCursorError)
    assert JOB_NAME in str(run.result.error)
    assert "tuple" in str(run.result.error)
    assert job.done == []
    assert (run.record.status, run.record.to_json()["cursor"], run.record.processed) == (
        Status.FAILED,
        None,
        0,
    )


def test_values_that_are_not_pairs_are_refused_showing_the_right_form() -> None:
    """An enumerator of bare items (not (item, cursor) pairs) is refused with an example."""

    class BareItems(Numbers):
        def build_enumerator(self, cursor: Cursor) -> Any:
            return iter(range(3))

    job = BareItems()

    run = run_job(job)

    assert run.result.outcome is Outcome.REFUSED
    assert "must return (item, cursor) pairs, but it yielded 0" in str(run.result.error)
    assert "yield pairs like this: return ((row, row.id) for row in rows)" in str(run.result.error)
    assert job.done == []


def test_a_later_value_that_is_not_a_pair_is_refused_keeping_progress() -> None:
    """A bad value after good pairs is REFUSED; the items before it stay saved."""

    class LaterBare(Numbers):
        def build_enumerator(self, cursor: Cursor) -> Any:
            return iter([(0, 0), (1, 1), 2])

    job = LaterBare()

    run = run_job(job)

    assert run.result.outcome is Outcome.REFUSED
    assert "a later value was not one" in str(run.result.error)
    assert (run.record.cursor_json, run.record.processed) == ("1", 2)


def test_the_total_comes_from_the_jobs_count() -> None:
    """job.count() becomes the record's total and the reporter's."""

    class Counted(Numbers):
        def count(self) -> int | None:
            return 5

    run = run_job(Counted())

    assert run.record.total == 5
    assert run.reporter.started_with == [(False, 5)]


def test_the_total_comes_from_the_enumerators_total_method() -> None:
    """Without count(), an enumerator's total() gives the total."""

    class Sized:
        def __iter__(self) -> Iterator[tuple[int, int]]:
            return ((n, n) for n in range(3))

        def total(self) -> int:
            return 3

    class WithSizedEnumerator(Numbers):
        def build_enumerator(self, cursor: Cursor) -> Any:
            return Sized()

    run = run_job(WithSizedEnumerator())

    assert run.record.total == 3
    assert run.reporter.started_with == [(False, 3)]


def test_a_resumed_run_keeps_the_total_counted_on_the_first_run() -> None:
    """An enumerator that counts only what is left (a filtered query) must not shrink the
    job's total on resume: the first run's count stands."""

    class Remaining:
        def __init__(self, cursor: Cursor) -> None:
            self.start = 0 if cursor is None else cursor + 1

        def __iter__(self) -> Iterator[tuple[int, int]]:
            return ((n, n) for n in range(self.start, 5))

        def total(self) -> int:
            return 5 - self.start

    class CountsWhatIsLeft(Numbers):
        def build_enumerator(self, cursor: Cursor) -> Any:
            return Remaining(cursor)

        def each_iteration(self, item: Any) -> None:
            super().each_iteration(item)
            if item == 1 and not self.resumed:
                self.stop_token.request("SIGTERM")

        resumed = False

    store = RecordingStore()
    run_job(CountsWhatIsLeft(), store=store)
    later = CountsWhatIsLeft()
    later.resumed = True

    run = run_job(later, store=store, first_run=False)

    assert run.reporter.started_with == [(True, 5)]
    assert (run.record.processed, run.record.total) == (5, 5)


def test_without_count_or_total_the_total_stays_unknown() -> None:
    """A plain generator and no count() leave the total None."""
    run = run_job(Numbers())

    assert run.record.total is None
    assert run.reporter.started_with == [(False, None)]


def test_a_cancel_during_the_run_stops_it_cancelled_after_saving_the_item() -> None:
    """A cancel seen at the next checkpoint ends the run CANCELLED with that item saved."""
    store = RecordingStore()

    class CancelledAtTwo(Numbers):
        def each_iteration(self, item: Any) -> None:
            super().each_iteration(item)
            if item == 2:
                store.cancel(JOB_ID)

    job = CancelledAtTwo()

    run = run_job(job, store=store, settings=EVERY_ITEM)

    assert job.done == [0, 1, 2]
    assert run.result.outcome is Outcome.CANCELLED
    assert (run.record.status, run.record.cursor_json, run.record.processed) == (
        Status.CANCELLED,
        "2",
        3,
    )
    assert job.calls == ["on_start", "on_shutdown"]


def test_limit_stops_after_n_items_without_the_end_hooks_nor_the_pair_read_past_it() -> None:
    """--limit 3 of 5: three items done, a resumable stop (on_shutdown, no on_complete),
    and the one pair read past the limit to tell it from the end is not processed."""
    job = Numbers()
    run = run_job(job, settings=RunSettings(checkpoint_interval=3600, limit=3))
    assert job.done == [0, 1, 2]
    assert (run.result.outcome, run.result.reason) == (Outcome.STOPPED, "--limit 3 reached")
    assert (run.record.status, run.record.processed) == (Status.INTERRUPTED, 3)
    assert job.calls == ["on_start", "on_shutdown"]


def test_a_limit_that_ends_at_the_last_item_is_the_end() -> None:
    job = Numbers()
    run = run_job(job, settings=RunSettings(limit=5))
    assert job.done == [0, 1, 2, 3, 4]
    assert run.result.outcome is Outcome.SUCCEEDED
    assert job.calls == ["on_start", "on_complete", "on_shutdown"]


# -- on_checkpoint -----------------------------------------------------------------------


class Flushing(Numbers):
    """Buffers items and flushes them in on_checkpoint, noting what the store held then."""

    def __init__(self, store: RecordingStore, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store = store
        self.buffer: list[int] = []
        self.flushed: list[tuple[list[int], int]] = []

    def each_iteration(self, item: Any) -> None:
        self.buffer.append(item)

    def on_checkpoint(self) -> None:
        record = self.store.get(JOB_ID)
        assert record is not None
        self.flushed.append((self.buffer, record.processed))
        self.buffer = []


def test_on_checkpoint_runs_right_before_every_checkpoint_is_saved() -> None:
    """With --checkpoint-interval 0: one call per item plus the final one, each while the
    store still holds the previous checkpoint."""
    store = RecordingStore()
    job = Flushing(store)

    run_job(job, store=store, settings=EVERY_ITEM)

    assert job.flushed == [([n], n) for n in range(5)] + [([], 5)]
    assert len(store.checkpoints) == 6


def test_on_checkpoint_also_runs_before_the_checkpoint_of_a_failed_item() -> None:
    """An item that raises: on_checkpoint flushes the items before it, then the failure is
    saved with their cursor."""
    store = RecordingStore()

    class FailingAt3(Flushing):
        def each_iteration(self, item: Any) -> None:
            if item == 3:
                raise ValueError("bad row 3")
            super().each_iteration(item)

    job = FailingAt3(store)

    run = run_job(job, store=store)

    assert job.flushed == [([0, 1, 2], 0)]
    assert (run.record.status, run.record.cursor_json) == (Status.FAILED, "2")


def test_an_on_checkpoint_that_raises_saves_the_failure_at_the_previous_cursor() -> None:
    """If the flush raises, what it should have saved is not saved: the job is marked
    failed at the cursor the store had, on_error runs, and a resume redoes those items."""
    store = RecordingStore()

    class BrokenFlush(Numbers):
        def on_checkpoint(self) -> None:
            if len(self.done) == 3:
                raise OSError("disk full")

    job = BrokenFlush()
    job.size = 10
    settings = RunSettings(checkpoint_interval=0)

    run = run_job(job, store=store, settings=settings)

    assert run.result.outcome is Outcome.FAILED
    assert isinstance(run.result.error, OSError)
    assert (run.record.status, run.record.cursor_json, run.record.processed) == (
        Status.FAILED,
        "1",
        2,
    )
    assert run.record.error == "OSError: disk full"
    assert job.calls == ["on_start", "on_error OSError", "on_shutdown"]
