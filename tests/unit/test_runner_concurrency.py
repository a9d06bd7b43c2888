"""The runner with --concurrency, in process: composition with builders, hooks, refusals.

The real-process, real-signal tests are in tests/cli/test_concurrency.py; these drive the
Runner directly with a memory store, stopping it through its token from inside items.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from iterctl import Job
from iterctl.budget import FailureBudget
from iterctl.cursor import Cursor
from iterctl.enumerators import batched, int_range, nested, throttled
from iterctl.runner import Outcome, Runner, RunResult, RunSettings
from iterctl.stopping import StopToken
from iterctl.stores import JobRecord
from iterctl.stores.memory import MemoryStore

RARELY: dict[str, Any] = {"checkpoint_interval": 3600.0, "progress_interval": 3600.0}


@dataclass
class QuietReporter:
    results: list[RunResult] = field(default_factory=list)

    def started(self, record: JobRecord, *, resumed: bool, total: int | None) -> None:
        pass

    def progress(self, processed: int, total: int | None, cursor: Cursor) -> None:
        pass

    def finished(self, result: RunResult) -> None:
        self.results.append(result)


class Walk(Job):
    """Items from ``pairs(cursor)``; each item is recorded with the thread that ran it.

    ``stop_after`` items into a run, the item asks its run to stop (as SIGTERM would)."""

    def __init__(self, pairs: Callable[[Cursor], Iterable[Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pairs = pairs
        self.done: list[Any] = []
        self.threads: set[str] = set()
        self.hook_threads: set[str] = set()
        self.stop_after: int | None = None
        self._lock = threading.Lock()

    def build_enumerator(self, cursor: Cursor) -> Iterable[Any]:
        self.hook_threads.add(threading.current_thread().name)
        return self.pairs(cursor)

    def each_iteration(self, item: Any) -> None:
        time.sleep(random.random() / 500)  # noqa: S311 - a random order of completion
        with self._lock:
            self.done.append(item)
            self.threads.add(threading.current_thread().name)
            if self.stop_after is not None and len(self.done) >= self.stop_after:
                self.stop_token.request("SIGTERM")

    def on_start(self) -> None:
        self.hook_threads.add(threading.current_thread().name)

    def on_resume(self) -> None:
        self.hook_threads.add(threading.current_thread().name)

    def on_complete(self) -> None:
        self.hook_threads.add(threading.current_thread().name)

    def on_shutdown(self) -> None:
        self.hook_threads.add(threading.current_thread().name)


class AsyncWalk(Walk):
    async def each_iteration(self, item: Any) -> None:  # type: ignore[override]  # async on purpose
        await asyncio.sleep(random.random() / 500)  # noqa: S311
        self.done.append(item)
        if self.stop_after is not None and len(self.done) >= self.stop_after:
            self.stop_token.request("SIGTERM")


def run_until_done(
    make_job: Callable[[StopToken], Walk], workers: int, stops: int = 4, **pacing: float
) -> tuple[list[Any], list[RunResult], Walk]:
    """Run the job id again and again, stopping each run a few items in, until it succeeds."""
    store = MemoryStore()
    store.create(JobRecord("walk", "tests:Walk", {}))
    done: list[Any] = []
    results: list[RunResult] = []
    for run in range(stops + 10):
        token = StopToken()
        job = make_job(token)
        job.stop_after = random.randint(1, 12) if run < stops else None  # noqa: S311
        hold = store.acquire("walk")
        reporter = QuietReporter()
        try:
            Runner(
                job, store, hold, token=token, reporter=reporter,
                settings=RunSettings(concurrency=workers, **{**RARELY, **pacing}),
                first_run=run == 0,
            ).run()  # fmt: skip
        finally:
            store.release(hold)
        done += job.done
        results += reporter.results
        if results[-1].outcome is not Outcome.STOPPED:
            return done, results, job
    raise AssertionError("the job never finished")


@pytest.mark.parametrize("workers", [1, 4, 16])
def test_batched_items_are_each_done_once_across_stops(workers: int) -> None:
    """A batch is one item: batches of 7 of 0..199, stopped 4 times, each number once."""

    def make(token: StopToken) -> Walk:
        return Walk(lambda c: batched(int_range(0, 200, cursor=c), 7), stop_token=token)

    done, results, _job = run_until_done(make, workers)
    assert results[-1].outcome is Outcome.SUCCEEDED
    assert sorted(n for batch in done for n in batch) == list(range(200))


def test_nested_items_with_list_cursors_are_each_done_once_across_stops() -> None:
    """Nested walks have list cursors: compared as JSON text, each inner item done once."""

    def make(token: StopToken) -> Walk:
        return Walk(
            lambda c: nested(
                lambda oc: int_range(0, 6, cursor=oc),
                lambda shop, ic: ((f"{shop}-{n}", n) for n in range(
                    0 if ic is None else ic + 1, shop * 3)),
                cursor=c,
            ),
            stop_token=token,
        )  # fmt: skip

    done, results, _job = run_until_done(make, 8)
    assert results[-1].outcome is Outcome.SUCCEEDED
    expected = [f"{shop}-{n}" for shop in range(6) for n in range(shop * 3)]
    assert Counter(done) == Counter(expected)


def test_async_items_and_an_async_enumerator_are_each_done_once_across_stops() -> None:
    """`async def each_iteration` on one event loop with an async iterable of pairs."""

    async def pairs(cursor: Cursor) -> Any:
        for n in range(0 if cursor is None else int(cursor) + 1, 300):
            yield n, str(n)  # text cursors: never compared as numbers

    def make(token: StopToken) -> Walk:
        return AsyncWalk(pairs, stop_token=token)

    for workers in (1, 32):
        done, results, _job = run_until_done(make, workers)
        assert results[-1].outcome is Outcome.SUCCEEDED
        assert sorted(done) == list(range(300))


def test_hooks_and_the_enumerator_run_on_the_main_thread_items_on_workers() -> None:
    """Hooks and build_enumerator stay on the calling thread; items run on the pool."""

    def make(token: StopToken) -> Walk:
        return Walk(lambda c: int_range(0, 50, cursor=c), stop_token=token)

    _done, _results, job = run_until_done(make, 4, stops=0)
    assert job.hook_threads == {threading.current_thread().name}
    assert job.threads
    assert all(name.startswith("iterctl-item") for name in job.threads)


@pytest.mark.parametrize("walk", [Walk, AsyncWalk])
def test_max_rate_holds_for_the_whole_process_whatever_n(walk: type[Walk]) -> None:
    """throttled(max_rate=200) with N = 16: pacing is on dispatch, so 61 items take at
    least 60 / 200 s (a lower bound: a busy machine can only make it slower)."""

    def make(token: StopToken) -> Walk:
        return walk(
            lambda c: throttled(int_range(0, 61, cursor=c), token, max_rate=200),
            stop_token=token,
        )

    started = time.monotonic()
    done, _results, _job = run_until_done(make, 16, stops=0)
    assert time.monotonic() - started >= 60 / 200 * 0.95
    assert sorted(done) == list(range(61))


def test_a_done_set_left_by_a_concurrent_run_is_honoured_at_concurrency_1() -> None:
    """A store holding watermark 3 and done set [5, 6] resumes at N = 1 without redoing
    5 and 6 (today's sequential loop does not know about done sets)."""
    store = MemoryStore()
    store.create(JobRecord("walk", "tests:Walk", {}, cursor_json="3", done_json="[5,6]"))
    job = Walk(lambda c: int_range(0, 10, cursor=c))
    hold = store.acquire("walk")
    result = Runner(
        job, store, hold, token=job.stop_token, reporter=QuietReporter(),
        settings=RunSettings(**RARELY), first_run=False,
    ).run()  # fmt: skip
    assert result.outcome is Outcome.SUCCEEDED
    assert sorted(job.done) == [4, 7, 8, 9]
    record = store.get("walk")
    assert record is not None
    assert (record.cursor_json, record.done_json) == ("9", None)


def test_an_async_enumerator_for_a_plain_each_iteration_is_refused() -> None:
    """An async iterable needs `async def each_iteration`: refused (exit 2) with the fix."""

    async def pairs(_cursor: Cursor) -> Any:
        yield 1, 1

    for workers in (1, 4):
        store = MemoryStore()
        store.create(JobRecord("walk", "tests:Walk", {}))
        job = Walk(pairs)
        hold = store.acquire("walk")
        result = Runner(
            job, store, hold, token=job.stop_token, reporter=QuietReporter(),
            settings=RunSettings(concurrency=workers, **RARELY), first_run=True,
        ).run()  # fmt: skip
        assert result.outcome is Outcome.REFUSED
        assert "async def each_iteration" in str(result.error)


def test_a_later_value_that_is_not_a_pair_is_refused_not_blamed_on_the_job() -> None:
    """With N > 1 as at N = 1: a bare value after good pairs is a refusal (exit 2)."""
    store = MemoryStore()
    store.create(JobRecord("walk", "tests:Walk", {}))
    job = Walk(lambda _c: iter([(1, 1), (2, 2), 3]))
    hold = store.acquire("walk")
    result = Runner(
        job, store, hold, token=job.stop_token, reporter=QuietReporter(),
        settings=RunSettings(concurrency=4, **RARELY), first_run=True,
    ).run()  # fmt: skip
    assert result.outcome is Outcome.REFUSED
    assert sorted(job.done) == [1, 2]
    assert result.cursor == 2


@pytest.mark.parametrize("walk", [Walk, AsyncWalk])
def test_limit_counts_dispatched_items_and_a_limit_at_the_last_item_is_the_end(
    walk: type[Walk],
) -> None:
    """--limit 10 with N = 4 over 25 items: 10, then 10 (both stops, resumable), then a
    limit of 5 that ends exactly at the last item: succeeded."""
    store = MemoryStore()
    store.create(JobRecord("walk", "tests:Walk", {}))
    done: list[int] = []
    outcomes = []
    for run, limit in enumerate((10, 10, 5)):
        job = walk(lambda c: int_range(0, 25, cursor=c))
        hold = store.acquire("walk")
        reporter = QuietReporter()
        try:
            Runner(
                job, store, hold, token=job.stop_token, reporter=reporter,
                settings=RunSettings(concurrency=4, limit=limit, **RARELY), first_run=run == 0,
            ).run()  # fmt: skip
        finally:
            store.release(hold)
        assert len(job.done) == limit
        done += job.done
        outcomes.append((reporter.results[-1].outcome, reporter.results[-1].reason))
    assert outcomes[:2] == [(Outcome.STOPPED, "--limit 10 reached")] * 2
    assert outcomes[2][0] is Outcome.SUCCEEDED
    assert sorted(done) == list(range(25))


class Failing(Walk):
    """Walk whose items in ``bad`` always raise; those in ``flaky`` raise TimeoutError on
    their first try only (retried: ``retry_on``)."""

    retry_on = (TimeoutError,)
    max_attempts = 3
    retry_backoff = 0.001

    def __init__(self, *args: Any, bad: set[int], flaky: set[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bad, self.flaky = bad, flaky
        self.tries: Counter[int] = Counter()

    def each_iteration(self, item: Any) -> None:
        with self._lock:
            self.tries[item] += 1
            tries = self.tries[item]
        if item in self.bad:
            raise ValueError(f"item {item} is bad")
        if item in self.flaky and tries == 1:
            raise TimeoutError(f"item {item} timed out")
        super().each_iteration(item)


@pytest.mark.parametrize("workers", [1, 8])
def test_retries_and_the_failure_budget_with_items_in_flight(workers: int) -> None:
    """N = 8: flaky items are retried on their own thread; bad items within --max-failures
    are recorded once each with the cursor before them, count as done for the watermark,
    and the run succeeds with every other item done once."""
    store = MemoryStore()
    store.create(JobRecord("walk", "tests:Walk", {}))
    bad, flaky = {5, 17, 40}, {3, 4, 30, 31, 32}
    job = Failing(lambda c: int_range(0, 60, cursor=c), bad=bad, flaky=flaky)
    hold = store.acquire("walk")
    result = Runner(
        job, store, hold, token=job.stop_token, reporter=QuietReporter(),
        settings=RunSettings(concurrency=workers, max_failures=FailureBudget(3), **RARELY),
        first_run=True,
    ).run()  # fmt: skip
    store.release(hold)

    assert result.outcome is Outcome.SUCCEEDED, result.error
    assert sorted(job.done) == sorted(set(range(60)) - bad)
    assert all(job.tries[n] == 2 for n in flaky)
    records = store.failures("walk")
    assert sorted((r.cursor_json, r.cursor_before_json) for r in records) == [
        ("17", "16"), ("40", "39"), ("5", "4"),
    ]  # fmt: skip
    record = store.get("walk")
    assert record is not None
    assert (record.cursor_json, record.done_json, record.processed) == ("59", None, 60)
    assert record.failed_items == 3


def test_one_failure_beyond_the_budget_fails_the_run_and_keeps_the_recorded_ones() -> None:
    """N = 8, budget 1, two bad items: the first is recorded and passed over, the second
    ends the run (exit 1); the store keeps the record, and the failing item out of the
    watermark and the done set."""
    store = MemoryStore()
    store.create(JobRecord("walk", "tests:Walk", {}))
    job = Failing(lambda c: int_range(0, 60, cursor=c), bad={10, 30}, flaky=set())
    hold = store.acquire("walk")
    result = Runner(
        job, store, hold, token=job.stop_token, reporter=QuietReporter(),
        settings=RunSettings(concurrency=8, max_failures=FailureBudget(1), **RARELY),
        first_run=True,
    ).run()  # fmt: skip
    store.release(hold)

    assert result.outcome is Outcome.FAILED
    assert "item 30 is bad" in str(result.error)
    assert [r.cursor_json for r in store.failures("walk")] == ["10"]
    record = store.get("walk")
    assert record is not None
    saved = set(range(int(record.cursor_json or "-1") + 1))
    saved |= set(json.loads(record.done_json or "[]"))
    assert 30 not in saved
    assert saved - {10} == set(job.done)
