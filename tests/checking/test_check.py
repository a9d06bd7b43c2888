"""``check_job`` in-process: a job that resumes right passes; each broken enumerator in
``brokenjobs`` fails with its divergence and cause named; each_iteration never runs."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iterctl.checking import CheckReport, Status, check_job
from iterctl.cursor import Cursor
from iterctl.enumerators import batched, int_range, nested, sequence
from tests.checking import brokenjobs


@pytest.fixture(autouse=True)
def _nothing_ran() -> Iterable[None]:
    """Every test here also checks that no each_iteration ran."""
    brokenjobs.RAN.clear()
    yield
    assert brokenjobs.RAN == [], "check ran each_iteration"


def verdict(report: CheckReport, name: str) -> tuple[Status, str]:
    """The status and full text (summary and details) of one check's verdict."""
    (found,) = [v for v in report.verdicts if v.check == name]
    return found.status, "\n".join(found.lines())


def test_a_job_that_resumes_right_passes_every_check() -> None:
    """The correct counter: every check ok but partitions, skipped without --partitions."""
    report = check_job(brokenjobs.Correct, {"count": "300"})
    assert report.passed
    assert report.exit_code == 0
    statuses = {v.check: v.status for v in report.verdicts}
    assert statuses == {"cursors": Status.OK, "unique": Status.OK, "resume": Status.OK,
                        "determinism": Status.OK, "count": Status.OK,
                        "partitions": Status.SKIP}  # fmt: skip
    assert "from 50 cursors of 300 items (the whole walk)" in verdict(report, "resume")[1]


def test_off_by_one_is_named_as_the_item_at_the_cursor_done_again() -> None:
    report = check_job(brokenjobs.OffByOne, {"count": "100"})
    status, text = verdict(report, "resume")
    assert report.exit_code == 1
    assert status is Status.FAIL
    assert "from cursor 0 (item #0), at item #1" in text
    assert "expected next: 1 (cursor 1), 2 (cursor 2), 3 (cursor 3)" in text
    assert "came instead:  0 (cursor 0), 1 (cursor 1), 2 (cursor 2)" in text
    assert "AT the cursor again (off by one)" in text


def test_a_skipped_item_after_the_cursor_is_named() -> None:
    status, text = verdict(check_job(brokenjobs.SkipsOne, {}), "resume")
    assert status is Status.FAIL
    assert "it skips item #1 right after the cursor (off by one?): never done" in text


def test_non_unique_cursor_fails_unique_and_resume_with_the_shared_cursor_named() -> None:
    report = check_job(brokenjobs.NonUniqueCursor, {})
    status, text = verdict(report, "unique")
    assert status is Status.FAIL
    assert "items #0 and #1 both have cursor 0" in text
    status, text = verdict(report, "resume")
    assert status is Status.FAIL
    assert "it skips 3 items (#1 to #3)" in text
    assert "hint: cursor 0 is shared by items #0, #1, #2, #3" in text


def test_stale_nested_cursor_is_traced_to_the_outer_level_moving_on() -> None:
    """The divergence is not at the cursor but where the shop changes: the check names
    that item, and the hint says an inner level kept the saved cursor."""
    status, text = verdict(check_job(brokenjobs.StaleNestedCursor, {}), "resume")
    assert status is Status.FAIL
    assert "from cursor [0, 0] (item #0), at item #5" in text
    assert "expected next: 'shop1-product0' (cursor [1, 0])" in text
    assert "came instead:  'shop1-product1' (cursor [1, 1])" in text
    assert "outer level moved on (cursor[0] 0 -> 1)" in text


def test_lossy_datetime_cursor_is_traced_to_the_missing_utc_offset() -> None:
    status, text = verdict(check_job(brokenjobs.LossyDatetimeCursor, {}), "resume")
    assert status is Status.FAIL
    assert "it skips 6 items (#1 to #6)" in text
    assert "datetime without a UTC offset ('2026-03-01T08:00:00')" in text


def test_a_walk_whose_order_changes_fails_determinism() -> None:
    status, text = verdict(check_job(brokenjobs.Shuffled, {}), "determinism")
    assert status is Status.FAIL
    assert "two fresh walks differ at item #" in text
    assert "order by a unique key" in text


def test_a_wrong_count_is_named_with_both_numbers() -> None:
    status, text = verdict(check_job(brokenjobs.CountsWrong, {"count": "40"}), "count")
    assert status is Status.FAIL
    assert "count() says 41 but the whole walk has 40 items" in text


def test_a_count_shorter_than_a_longer_walk_fails_even_when_not_all_read() -> None:
    report = check_job(brokenjobs.CountsWrong, {"count": "400"}, limit=100)
    assert verdict(report, "count")[0] is Status.SKIP  # 401 > 100: cannot tell
    report = check_job(ShortCount, {}, limit=100)
    status, text = verdict(report, "count")
    assert status is Status.FAIL
    assert "more than the 100 items read" in text


class ShortCount(brokenjobs.Correct):
    def build_enumerator(self, cursor: Cursor) -> Any:
        return int_range(0, 1000, cursor=cursor)

    def count(self) -> int:
        return 50


def test_overlapping_partitions_name_the_item_in_two() -> None:
    report = check_job(brokenjobs.OverlappingPartitions, {"count": "90"}, partitions=3)
    status, text = verdict(report, "partitions")
    assert status is Status.FAIL
    assert "item #30 (cursor 30) is in partitions 0 and 1: it would be done twice" in text


def test_a_gap_between_partitions_is_named() -> None:
    report = check_job(GappedPartitions, {"count": "90"}, partitions=3)
    status, text = verdict(report, "partitions")
    assert status is Status.FAIL
    assert "item #29 (cursor 29) is in no partition: it would never be done" in text


class GappedPartitions(brokenjobs.OverlappingPartitions):
    def partition_plan(self, count: int) -> list[Cursor]:
        size = self.size()
        return [[size * i // count, size * (i + 1) // count - 1] for i in range(count)]


def test_builders_that_split_cover_the_walk_and_resume_within_bounds() -> None:
    """int_range and sequence split by value: the check proves cover and in-bound resume."""
    for job in (RangeJob, SequenceJob):
        report = check_job(job, {}, partitions=4)
        status, text = verdict(report, "partitions")
        assert status is Status.OK, "\n".join(report.lines())
        assert "4 partitions (sizes 25, 25, 25, 25) cover the 100 items once each" in text


class RangeJob(brokenjobs.Marking):
    def build_enumerator(self, cursor: Cursor) -> Any:
        return int_range(0, 100, cursor=cursor)


class SequenceJob(brokenjobs.Marking):
    def build_enumerator(self, cursor: Cursor) -> Any:
        return sequence([f"item{n}" for n in range(100)], cursor=cursor)


def test_a_job_that_cannot_split_fails_partitions_with_the_reason() -> None:
    status, text = verdict(check_job(brokenjobs.Correct, {}, partitions=2), "partitions")
    assert status is Status.FAIL
    assert "cannot be split into partitions" in text


def test_iterctl_nested_and_batched_builders_pass() -> None:
    report = check_job(NestedJob, {})
    assert report.passed, "\n".join(report.lines())
    assert "from every cursor of 9 items" in verdict(report, "resume")[1]
    report = check_job(NestedJob, {"batch": "3"})
    assert report.passed, "\n".join(report.lines())
    assert "from every cursor of 3 items" in verdict(report, "resume")[1]


class NestedJob(brokenjobs.Marking):
    """Groups with empty ones at both levels, batched by 3: the builders' resume is exact."""

    TREE: ClassVar[Any] = [[[1, 2], [], [3]], [], [[4], [5, 6, 7]], [[]], [[8, 9]]]

    def build_enumerator(self, cursor: Cursor) -> Any:
        walk = nested(
            lambda c: sequence(self.TREE, cursor=c),
            lambda middle, c: sequence(middle, cursor=c),
            lambda leaves, c: sequence(leaves, cursor=c),
            cursor=None if cursor is None else cursor,
        )
        return walk if self.params.get("batch") is None else batched(walk, 3)


def test_non_json_cursor_fails_cursors_and_skips_what_depends_on_it() -> None:
    report = check_job(brokenjobs.TupleCursor, {})
    status, text = verdict(report, "cursors")
    assert status is Status.FAIL
    assert "item #0: TupleCursor yielded a cursor that is not a JSON value" in text
    assert verdict(report, "resume")[0] is Status.SKIP


def test_an_enumerator_that_raises_on_resume_is_reported_not_raised() -> None:
    status, text = verdict(check_job(brokenjobs.RaisesOnResume, {}), "resume")
    assert status is Status.FAIL
    assert "build_enumerator(0) raised KeyError: 0" in text


def test_an_enumerator_that_raises_at_once_gives_one_read_verdict() -> None:
    report = check_job(Exploding, {})
    assert [v.check for v in report.verdicts] == ["read"]
    assert "build_enumerator(None) raised RuntimeError: no database" in report.lines()[0]
    assert report.exit_code == 1


class Exploding(brokenjobs.Marking):
    def build_enumerator(self, cursor: Cursor) -> Any:
        raise RuntimeError("no database")


def test_a_walk_longer_than_the_limit_checks_its_prefix() -> None:
    """Beyond --limit nothing is read: resumes are compared on the prefix only."""
    report = check_job(RangeJob, {}, limit=30, samples=5)
    assert report.passed
    assert "from 5 cursors of the first 30 items" in verdict(report, "resume")[1]


def test_an_empty_walk_passes_and_must_stay_empty() -> None:
    report = check_job(brokenjobs.Correct, {"count": "0"})
    assert report.passed
    assert verdict(report, "resume")[0] is Status.SKIP


def test_samples_are_the_first_the_last_and_a_spread() -> None:
    """A bug only at the very last cursor (resume yields it again) is still found."""
    report = check_job(RepeatsLast, {}, samples=3)
    status, text = verdict(report, "resume")
    assert status is Status.FAIL
    assert "from cursor 99 (item #99), at item #100" in text


class RepeatsLast(brokenjobs.Correct):
    def build_enumerator(self, cursor: Cursor) -> Any:
        if cursor == self.size() - 1:
            return [(cursor, cursor)]
        return super().build_enumerator(cursor)


@settings(max_examples=30, deadline=None)
@given(
    size=st.integers(min_value=2, max_value=60),
    data=st.data(),
)
def test_a_skip_at_any_cursor_is_found_when_every_cursor_is_sampled(
    size: int, data: st.DataObject
) -> None:
    """Property: resuming from one bad cursor (anywhere) that skips the next item always
    fails the check, and the divergence names that very cursor."""
    bad = data.draw(st.integers(min_value=0, max_value=size - 2))
    job = type("SkipsAt", (SkipsAt,), {"bad": bad, "size_": size})
    report = check_job(job, {}, samples=size)
    status, text = verdict(report, "resume")
    assert status is Status.FAIL
    assert f"from cursor {bad} (item #{bad}), at item #{bad + 1}" in text
    skipped = "ends early: item" if bad + 2 == size else "it skips item"
    assert f"{skipped} #{bad + 1}" in text


class SkipsAt(brokenjobs.Marking):
    bad = 0
    size_ = 10

    def build_enumerator(self, cursor: Cursor) -> Any:
        start = 0 if cursor is None else cursor + (2 if cursor == self.bad else 1)
        return ((n, n) for n in range(start, self.size_))


def test_items_that_do_not_compare_are_compared_by_cursor_only() -> None:
    """Objects with identity equality (as ORM entities) differ across walks; the cursor
    decides. Items whose == raises are treated the same."""
    assert check_job(Opaque, {}).passed


class Box:
    def __init__(self, n: int) -> None:
        self.n = n


class Opaque(brokenjobs.Marking):
    def build_enumerator(self, cursor: Cursor) -> Any:
        start = 0 if cursor is None else json.loads(json.dumps(cursor)) + 1
        return ((Box(n), n) for n in range(start, 20))


def test_same_cursor_other_item_is_named() -> None:
    status, text = verdict(check_job(ItemsDrift, {}), "resume")
    assert status is Status.FAIL
    assert "same cursor, another item" in text


class ItemsDrift(brokenjobs.Marking):
    def build_enumerator(self, cursor: Cursor) -> Any:
        shift = 0 if cursor is None else 1000
        start = 0 if cursor is None else cursor + 1
        return ((n + shift, n) for n in range(start, 20))


trees = st.lists(st.lists(st.lists(st.integers(0, 9), max_size=3), max_size=3), max_size=4)


@settings(max_examples=25, deadline=None)
@given(tree=trees)
def test_iterctl_nested_passes_on_any_tree(tree: list[list[list[int]]]) -> None:
    """Property: the nested builder, over any tree with empty levels anywhere, resumes
    exactly from every cursor, so check passes (and it samples every cursor)."""
    job = type("AnyTree", (NestedJob,), {"TREE": tree})
    report = check_job(job, {})
    assert report.passed, "\n".join(report.lines())
