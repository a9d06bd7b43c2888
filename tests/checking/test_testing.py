"""``iterctl.testing``: runs, stops, failures and resumes in-process through the real
launcher and runner; and its assertions report a skipped or a doubled item."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from iterctl import Job, UsageError
from iterctl.cursor import Cursor
from iterctl.enumerators import int_range
from iterctl.stores.memory import MemoryStore
from iterctl.testing import InjectedFailure, assert_exactly_once, assert_resumes, run_job
from tests.checking import brokenjobs


class Counter(Job):
    """Items 0..count-1 with typed params; hooks logged in ``calls``."""

    class Params(BaseModel):
        count: int = 10

    calls: ClassVar[list[str]] = []

    def build_enumerator(self, cursor: Cursor) -> Any:
        return int_range(0, self.params.count, cursor=cursor)

    def each_iteration(self, item: int) -> None:
        pass

    def on_start(self) -> None:
        self.calls.append("on_start")

    def on_resume(self) -> None:
        self.calls.append("on_resume")


def test_run_to_the_end_gives_the_items_the_cursor_and_exit_0() -> None:
    run = run_job(Counter, params={"count": 5})
    assert (run.exit_code, run.items, run.cursor, run.processed) == (0, [0, 1, 2, 3, 4], 4, 5)
    assert run.status == "succeeded"
    assert run.record.job == f"{__name__}:Counter"


def test_stop_after_k_is_a_sigterm_stop_and_resume_carries_on_at_k() -> None:
    Counter.calls.clear()
    first = run_job(Counter, params={"count": 10}, stop_after=3)
    assert (first.exit_code, first.items, first.cursor) == (75, [0, 1, 2], 2)
    assert (first.status, first.result.reason) == ("interrupted", "SIGTERM")
    rest = first.resume()
    assert (rest.exit_code, rest.items, rest.processed) == (0, list(range(3, 10)), 10)
    assert Counter.calls == ["on_start", "on_resume"]


def test_fail_at_k_fails_item_k_and_resume_retries_it() -> None:
    failed = run_job(Counter, params={"count": 6}, fail_at=2)
    assert (failed.exit_code, failed.items, failed.cursor) == (1, [0, 1], 1)
    assert isinstance(failed.error, InjectedFailure)
    assert failed.status == "failed"
    again = failed.resume()
    assert (again.exit_code, again.items, again.processed) == (0, [2, 3, 4, 5], 6)


def test_limit_is_the_cli_limit() -> None:
    first = run_job(Counter, params={"count": 6}, limit=4)
    assert (first.exit_code, first.items, first.result.reason) == (75, [0, 1, 2, 3],
                                                                   "--limit 4 reached")  # fmt: skip
    assert first.resume(limit=2).exit_code == 0  # exactly the last two: the end


def test_a_store_given_keeps_the_job_and_the_same_run_resumes() -> None:
    store = MemoryStore()
    run_job(Counter, params={"count": 4}, store=store, job_id="kept", stop_after=1)
    again = run_job(Counter, params={"count": 4}, store=store, job_id="kept")
    assert (again.exit_code, again.items) == (0, [1, 2, 3])
    # Other params for the same id: refused, as the CLI refuses them with exit 2.
    with pytest.raises(UsageError, match="param count: stored 4, given 5"):
        run_job(Counter, params={"count": 5}, store=store, job_id="kept")


def test_bad_params_raise_the_usage_error_the_cli_exits_2_with() -> None:
    with pytest.raises(UsageError, match="param 'count'"):
        run_job(Counter, params={"count": "many"})


def test_assert_resumes_passes_a_good_job_and_reports_a_skipped_item() -> None:
    report = assert_resumes(Counter, params={"count": 200}, samples=10)
    assert report.passed
    with pytest.raises(AssertionError, match=r"it skips item #1 right after the cursor"):
        assert_resumes(brokenjobs.SkipsOne)


def test_assert_resumes_reports_a_doubled_item() -> None:
    with pytest.raises(AssertionError) as raised:
        assert_resumes(brokenjobs.OffByOne, params={"count": 20})
    message = str(raised.value)
    assert "FAIL  resume" in message
    assert "that item would be done twice" in message
    assert brokenjobs.RAN == []


def test_assert_exactly_once_passes_and_names_skipped_and_doubled_items() -> None:
    brokenjobs.RAN.clear()
    assert assert_exactly_once(brokenjobs.Correct, params={"count": 9}, stop_after=4).items == [
        4, 5, 6, 7, 8
    ]  # fmt: skip
    with pytest.raises(AssertionError, match=r"resumed: skipped 4$"):
        assert_exactly_once(brokenjobs.SkipsOne, params={"count": 9}, stop_after=4)
    with pytest.raises(AssertionError, match=r"resumed: done twice .* 3$"):
        assert_exactly_once(brokenjobs.OffByOne, params={"count": 9}, stop_after=4)


class Cards(Job):
    """Items are dicts; a custom key tells them apart."""

    def build_enumerator(self, cursor: Cursor) -> Iterator[tuple[dict[str, int], int]]:
        start = 0 if cursor is None else cursor + 1
        return (({"card": n}, n) for n in range(start, 5))

    def each_iteration(self, item: dict[str, int]) -> None:
        pass


def test_assert_exactly_once_with_a_key() -> None:
    rest = assert_exactly_once(Cards, stop_after=2, key=lambda card: card["card"])
    assert rest.items == [{"card": 2}, {"card": 3}, {"card": 4}]
