"""Throttling: pauses with backoff while a predicate holds, caps the rate, and stops at
once when a stop is requested, whatever it was waiting for. Time is faked: no sleeps."""

from __future__ import annotations

from unittest import mock

import pytest

from iterctl import Job
from iterctl.enumerators import int_range, throttled
from iterctl.errors import UsageError
from iterctl.stopping import StopToken


class FakeTime(StopToken):
    """A stop token whose waits advance a fake clock instead of sleeping."""

    def __init__(self, stop_after_waits: int | None = None) -> None:
        super().__init__()
        self.now = 1000.0
        self.waits: list[float] = []
        self._stop_after = stop_after_waits

    def monotonic(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        if self._stop_after is not None and len(self.waits) >= self._stop_after:
            self.request("SIGTERM")
        return self.requested


def run(token: FakeTime, pairs: object) -> list[int]:
    with mock.patch("iterctl.enumerators.throttling.time.monotonic", token.monotonic):
        return [item for item, _ in pairs]  # type: ignore[attr-defined]


def test_pauses_with_doubling_backoff_while_the_predicate_holds() -> None:
    """While ``pause_while()`` is true the wait doubles up to ``max_backoff``; then every
    item passes, unchanged, cursors included."""
    token = FakeTime()
    answers = iter([True, True, True, True, False] + [False] * 10)
    pairs = throttled(int_range(0, 5), token, pause_while=lambda: next(answers),
                      backoff=0.5, max_backoff=1.5)  # fmt: skip
    assert run(token, pairs) == [0, 1, 2, 3, 4]
    assert token.waits == [0.5, 1.0, 1.5, 1.5]


def test_checks_the_predicate_every_n_items() -> None:
    """With ``check_every=3`` the predicate is asked before items 0, 3, 6, ..."""
    token = FakeTime()
    asked: list[int] = []

    def never() -> bool:
        asked.append(1)
        return False

    pairs = throttled(int_range(0, 7), token, pause_while=never, check_every=3)
    assert run(token, pairs) == list(range(7))
    assert len(asked) == 3


def test_a_stop_during_a_pause_ends_the_enumeration_at_once() -> None:
    """A stop requested while paused ends iteration before the next item: the job's
    stop is not delayed by the throttle."""
    token = FakeTime(stop_after_waits=2)
    pairs = throttled(int_range(0, 100), token, pause_while=lambda: True, backoff=30)
    assert run(token, pairs) == []
    assert token.waits == [30, 60]


def test_max_rate_spaces_items_and_stops_at_once() -> None:
    """``max_rate`` spaces items 1/rate apart (the first at once); a stop during the
    wait ends the enumeration there."""
    token = FakeTime()
    assert run(token, throttled(int_range(0, 5), token, max_rate=4)) == [0, 1, 2, 3, 4]
    assert token.waits == pytest.approx([0.25] * 4)
    stopping = FakeTime(stop_after_waits=2)
    assert run(stopping, throttled(int_range(0, 5), stopping, max_rate=4)) == [0, 1]


def test_takes_a_job_for_its_token_and_passes_the_total_through() -> None:
    """The job itself may be given; total() is the inner enumerator's."""
    job = Job()
    pairs = throttled(int_range(0, 3), job, max_rate=1000)
    assert pairs.total() == 3
    job.stop_token.request("SIGTERM")
    assert list(pairs) == []


@pytest.mark.parametrize(
    "options", [{"max_rate": 0}, {"backoff": 0}, {"backoff": 2, "max_backoff": 1},
                {"check_every": 0}],
)
def test_bad_throttle_settings_are_refused(options: dict[str, float]) -> None:
    """A rate of 0, a zero backoff, a max below the backoff, or check_every 0 are refused."""
    with pytest.raises(UsageError):
        throttled(int_range(0, 1), StopToken(), **options)  # type: ignore[arg-type]


def test_a_throttled_walk_splits_as_its_inner_enumerator_does() -> None:
    """split/within pass through to the inner enumerator, keeping the throttle."""
    token = FakeTime()
    whole = throttled(int_range(0, 10), token, max_rate=10)
    part = whole.within(whole.split(2)[1])
    assert run(token, part) == [5, 6, 7, 8, 9]
    assert token.waits == pytest.approx([0.1] * 4)
