"""retrying.py and budget.py: which errors are retried, how long the waits are, stops."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iterctl import Job
from iterctl.budget import FailureBudget
from iterctl.errors import UsageError
from iterctl.retrying import RetryPolicy, attempts_of, policy_of, retrying_each
from iterctl.stopping import StopNow, StopToken


class Flake(Exception):
    """The transient error of these tests."""


class Heard:
    """A listener that keeps every retry it is told of."""

    def __init__(self) -> None:
        self.retries: list[tuple[Any, int, int, str, float]] = []

    def retrying(
        self, item: Any, attempt: int, max_attempts: int, error: BaseException, delay: float
    ) -> None:
        self.retries.append((item, attempt, max_attempts, str(error), delay))


def flaky(failures: int, error: type[Exception] = Flake) -> tuple[list[Any], Any]:
    """A function that raises ``error`` on its first ``failures`` calls; and its calls."""
    calls: list[Any] = []

    def each(item: Any) -> str:
        calls.append(item)
        if len(calls) <= failures:
            raise error(f"try {len(calls)}")
        return "done"

    return calls, each


QUICK = RetryPolicy((Flake,), max_attempts=3, backoff_base=0.001, backoff_cap=0.001)


def test_a_job_without_retry_on_gets_its_own_method_back_unwrapped() -> None:
    """No retry_on (or one attempt): no wrapper at all, so no per-item cost."""

    class Plain(Job):
        def each_iteration(self, item: Any) -> None:
            pass

    job = Plain()
    each = job.each_iteration
    assert retrying_each(each, policy_of(job), StopToken(), Heard()) is each
    one_try = RetryPolicy((Flake,), max_attempts=1)
    assert retrying_each(each, one_try, StopToken(), Heard()) is each


def test_policy_of_reads_class_and_instance_attributes() -> None:
    """retry_on, max_attempts and the backoff come from the job; instances may override."""

    class Retrying(Job):
        retry_on = (Flake, TimeoutError)
        max_attempts = 4
        retry_backoff_cap = 2.0

    job = Retrying()
    job.retry_backoff = 0.25
    assert policy_of(job) == RetryPolicy((Flake, TimeoutError), 4, 0.25, 2.0)
    assert policy_of(Job()) == RetryPolicy()


@pytest.mark.parametrize(
    ("attribute", "value", "message"),
    [
        ("retry_on", (Flake, "oops"), "retry_on must be a tuple of Exception subclasses"),
        ("retry_on", (KeyboardInterrupt,), "retry_on must be a tuple of Exception subclasses"),
        ("max_attempts", 0, "max_attempts must be a whole number of at least 1"),
        ("max_attempts", 2.5, "max_attempts must be a whole number of at least 1"),
        ("retry_backoff", -1, "retry_backoff must be a number of seconds"),
    ],
)
def test_policy_of_refuses_nonsense_naming_the_job(
    attribute: str, value: Any, message: str
) -> None:
    """A bad retry setting is a usage error (exit 2) that names the job and the setting."""
    job = Job()
    setattr(job, attribute, value)
    with pytest.raises(UsageError, match=message) as refused:
        policy_of(job)
    assert "Job." in str(refused.value)


@given(
    attempt=st.integers(1, 60),
    base=st.floats(0, 100, allow_nan=False),
    cap=st.floats(0, 1000, allow_nan=False),
)
def test_every_wait_is_below_the_doubled_base_and_the_cap(
    attempt: int, base: float, cap: float
) -> None:
    """Full jitter: each wait lies in [0, min(cap, base * 2**(attempt-1))]."""
    policy = RetryPolicy((Flake,), 5, base, cap)
    delay = policy.delay(attempt)
    assert 0 <= delay <= min(cap, base * 2 ** (attempt - 1))
    assert policy.delay(attempt, rng=lambda _low, high: high) == min(cap, base * 2 ** (attempt - 1))


def test_a_transient_error_is_retried_until_it_passes_and_each_retry_is_heard() -> None:
    """Two Flakes then success, with 3 attempts: the item passes; two retries are heard."""
    calls, each = flaky(2)
    heard = Heard()

    assert retrying_each(each, QUICK, StopToken(), heard)("x") == "done"

    assert calls == ["x", "x", "x"]
    assert [(r[0], r[1], r[2], r[3]) for r in heard.retries] == [
        ("x", 1, 3, "try 1"),
        ("x", 2, 3, "try 2"),
    ]


def test_after_max_attempts_the_last_error_is_raised_with_its_attempts() -> None:
    """Still failing at the last attempt: that error is raised, carrying the count."""
    calls, each = flaky(10)

    with pytest.raises(Flake, match="try 3") as raised:
        retrying_each(each, QUICK, StopToken(), Heard())("x")

    assert len(calls) == 3
    assert attempts_of(raised.value) == 3
    assert "gave up on the item after 3 attempts" in "".join(raised.value.__notes__)


def test_an_error_not_in_retry_on_is_raised_at_once() -> None:
    """A ValueError is not transient: one try, raised as it is, attempts 1."""
    calls, each = flaky(1, ValueError)
    heard = Heard()

    with pytest.raises(ValueError, match="try 1") as raised:
        retrying_each(each, QUICK, StopToken(), heard)("x")

    assert (len(calls), heard.retries, attempts_of(raised.value)) == (1, [], 1)


def test_a_permanent_error_after_a_transient_one_counts_both_attempts() -> None:
    """Flake, then ValueError: two tries, the ValueError raised with attempts 2."""
    tries: list[int] = []

    def each(_item: Any) -> None:
        tries.append(1)
        raise Flake("flaky") if len(tries) == 1 else ValueError("bad")

    with pytest.raises(ValueError, match="bad") as raised:
        retrying_each(each, QUICK, StopToken(), Heard())(None)
    assert attempts_of(raised.value) == 2


class LongWaits(RetryPolicy):
    """A policy whose every wait is 30 s, whatever the jitter would draw."""

    def delay(self, attempt: int, rng: Any = None) -> float:
        return 30.0


def _stop_soon(token: StopToken, after: float) -> None:
    threading.Timer(after, token.request, args=("SIGTERM",)).start()


def test_a_stop_during_the_backoff_ends_the_wait_at_once_with_its_reason() -> None:
    """A 30 s backoff cut short by a stop: StopNow('SIGTERM') within a fraction of a
    second, and the item is not tried again."""
    calls, each = flaky(10)
    slow = LongWaits((Flake,), 3)
    token = StopToken()
    wrapped = retrying_each(each, slow, token, Heard())
    _stop_soon(token, 0.1)
    started = time.monotonic()

    with pytest.raises(StopNow, match="SIGTERM"):
        wrapped("x")

    assert time.monotonic() - started < 1.0
    assert calls == ["x"]


def test_the_async_wrapper_retries_and_stops_the_same_way() -> None:
    """An async def each_iteration gets an async wrapper: retried, then stopped in a backoff."""
    tries: list[int] = []

    async def each(_item: Any) -> str:
        tries.append(1)
        if len(tries) <= 2:
            raise Flake("flaky")
        return "done"

    wrapped = retrying_each(each, QUICK, StopToken(), Heard())
    assert asyncio.run(wrapped("x")) == "done"
    assert len(tries) == 3

    async def always(_item: Any) -> None:
        raise Flake("always")

    token = StopToken()
    slow = retrying_each(always, LongWaits((Flake,), 5), token, Heard())
    _stop_soon(token, 0.1)
    started = time.monotonic()
    with pytest.raises(StopNow, match="SIGTERM"):
        asyncio.run(slow("x"))
    assert time.monotonic() - started < 1.0


# -- the budget ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "total", "allowed"),
    [("0", None, 0), ("25", None, 25), ("10%", 200, 20), ("0.5%", 1000, 5), ("0.5%", 199, 0),
     ("100%", 7, 7), (" 3 ", None, 3)],
)  # fmt: skip
def test_a_budget_is_a_count_or_a_percentage_of_the_total(
    text: str, total: int | None, allowed: int
) -> None:
    """Counts are taken as they are; percentages of the total, rounded down."""
    assert FailureBudget.parse(text).allowed(total, "Job") == allowed


@pytest.mark.parametrize("text", ["-1", "abc", "200%", "1.5", "%", "", "5 %", "1e3"])
def test_a_budget_that_is_neither_is_refused(text: str) -> None:
    """Anything but a whole count or a percentage up to 100% is a usage error."""
    with pytest.raises(UsageError, match="is not a budget"):
        FailureBudget.parse(text)


def test_a_percentage_needs_a_known_total() -> None:
    """A percentage of an unknown total is refused, saying how to give one."""
    with pytest.raises(UsageError, match=r"define count\(\) on the job"):
        FailureBudget.parse("1%").allowed(None, "Backfill")
