"""Runner._item_failed and the budget, with the memory store: what is recorded, when."""

from __future__ import annotations

import json
from typing import Any

from iterctl.budget import FailureBudget
from iterctl.runner import Outcome, RunSettings
from iterctl.stores import Status
from tests.unit.test_runner import RARELY, Numbers, RecordingStore, run_job

EVERY_ITEM = RunSettings(checkpoint_interval=0)


class Bad(Numbers):
    """Numbers whose items in ``bad`` raise ValueError."""

    size = 10
    bad: frozenset[int] = frozenset({2, 5, 6})

    def each_iteration(self, item: Any) -> None:
        if item in self.bad:
            raise ValueError(f"item {item} is bad")
        super().each_iteration(item)


def budget(text: str, settings: RunSettings = RARELY) -> RunSettings:
    return RunSettings(
        checkpoint_interval=settings.checkpoint_interval,
        progress_interval=settings.progress_interval,
        max_failures=FailureBudget.parse(text),
    )


def test_within_budget_the_run_succeeds_passing_over_each_failure_with_a_record() -> None:
    """Three bad items and a budget of 3: succeeded, good items done, three records with
    cursor, the cursor before, item, error and one attempt; failed_items 3."""
    job = Bad()

    run = run_job(job, settings=budget("3"))

    assert run.result.outcome is Outcome.SUCCEEDED
    assert (run.result.processed, run.result.failed_items) == (10, 3)
    assert job.done == [0, 1, 3, 4, 7, 8, 9]
    records = run.store.failures("unit-job")
    assert [json.loads(r.cursor_json) for r in records] == [6, 5, 2]
    assert [r.cursor_before_json for r in records] == ["5", "4", "1"]
    last = records[-1]
    assert (last.item, last.error_type, last.message, last.attempts) == (
        "2", "ValueError", "item 2 is bad", 1,
    )  # fmt: skip
    assert "raise ValueError" in last.traceback
    assert (run.record.status, run.record.failed_items) == (Status.SUCCEEDED, 3)


def test_one_failure_more_than_the_budget_fails_the_run_keeping_the_others() -> None:
    """Budget 2: the third bad item ends the run as today (failed, cursor before it);
    the two failures before it are recorded, the third is not (resume retries it)."""
    job = Bad()

    run = run_job(job, settings=budget("2"))

    assert run.result.outcome is Outcome.FAILED
    assert (run.record.status, run.record.cursor_json, run.record.failed_items) == (
        Status.FAILED, "5", 2,
    )  # fmt: skip
    assert [r.cursor_json for r in run.store.failures("unit-job")] == ["5", "2"]
    assert run.record.error == "ValueError: item 6 is bad"
    assert job.calls[-2:] == ["on_error ValueError", "on_shutdown"]


def test_the_default_budget_fails_at_the_first_error_and_records_nothing() -> None:
    """--max-failures 0 (the default): today's behaviour, no record."""
    run = run_job(Bad(), settings=RARELY)

    assert run.result.outcome is Outcome.FAILED
    assert (run.record.cursor_json, run.record.failed_items) == ("1", 0)
    assert run.store.failures("unit-job") == []


def test_a_failure_is_written_by_the_checkpoint_that_passes_it_and_no_other() -> None:
    """Every-item checkpoints: each record appears in exactly one checkpoint, the first
    whose cursor is at or past it."""
    run = run_job(Bad(), settings=budget("3", EVERY_ITEM))

    carried = [
        (int(c.cursor_json or "-1"), int(f.cursor_json))
        for c in run.store.checkpoints
        for f in c.failures
    ]
    assert carried == [(2, 2), (5, 5), (6, 6)]


def test_a_resume_with_a_larger_budget_counts_the_failures_already_recorded() -> None:
    """The budget is compared with the job id's stored failures: 2 recorded, budget 3
    allows one more, so the run passes item 6 and succeeds."""
    store = RecordingStore()
    run_job(Bad(), store=store, settings=budget("2"))

    again = run_job(Bad(), store=store, settings=budget("3"), first_run=False)

    assert again.result.outcome is Outcome.SUCCEEDED
    assert [r.cursor_json for r in store.failures("unit-job")] == ["6", "5", "2"]
    assert again.record.failed_items == 3


def test_a_percentage_budget_is_of_the_total() -> None:
    """30% of 10 items allows 3 failures; 20% allows 2."""

    class Counted(Bad):
        def count(self) -> int:
            return self.size

    assert run_job(Counted(), settings=budget("30%")).result.outcome is Outcome.SUCCEEDED
    assert run_job(Counted(), settings=budget("20%")).result.outcome is Outcome.FAILED


def test_a_percentage_budget_without_a_total_is_refused() -> None:
    """No total, so a percentage means nothing: refused (exit 2), before any item."""
    job = Bad()

    run = run_job(job, settings=budget("10%"))

    assert run.result.outcome is Outcome.REFUSED
    assert "define count()" in str(run.result.error)
    assert job.done == []


def test_retries_happen_in_the_run_and_a_transient_item_is_not_recorded() -> None:
    """A job with retry_on: a flake on the first try is retried and the item done."""

    class Flake(Exception):
        pass

    class Flaky(Numbers):
        retry_on = (Flake,)
        max_attempts = 2
        retry_backoff = 0.0

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.tries: dict[int, int] = {}

        def each_iteration(self, item: Any) -> None:
            self.tries[item] = self.tries.get(item, 0) + 1
            if item == 3 and self.tries[item] == 1:
                raise Flake("once")
            super().each_iteration(item)

    job = Flaky()
    run = run_job(job, settings=budget("1"))

    assert run.result.outcome is Outcome.SUCCEEDED
    assert job.done == [0, 1, 2, 3, 4]
    assert job.tries[3] == 2
    assert run.store.failures("unit-job") == []
