"""Per-item retries (CONTRACT §1): ``retry_on``, ``max_attempts``, backoff with jitter and a cap.

A job names the exceptions it deems transient; an item that raises one is tried again, up to
``max_attempts`` tries in all, after a wait drawn uniformly from ``[0, min(cap, base * 2**n))``
("full jitter": retries of many pods do not fall into step). The wait is on the stop token,
so a SIGTERM during a backoff stops the run at once: :class:`~iterctl.stopping.StopNow` is
raised carrying the stop's reason, the item is not done, and the run exits 75.

Only a job that sets ``retry_on`` (and ``max_attempts`` > 1) gets a wrapper: any other job's
``each_iteration`` is called as it is, at no cost (see :func:`retrying_each`).

The number of tries an item had is put on the exception that ends them (:func:`attempts_of`),
not on the wrapper, so wrappers may be shared by threads and asyncio tasks.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Protocol

from iterctl.errors import UsageError
from iterctl.stopping import StopNow, StopToken

#: Seconds before the second try, doubled for each one after it, and the most any wait is.
DEFAULT_BACKOFF_BASE = 0.5
DEFAULT_BACKOFF_CAP = 30.0

_ATTEMPTS = "_iterctl_attempts"


class RetryListener(Protocol):
    """Who hears about each retry (the reporter): one log line per retry."""

    def retrying(
        self, item: Any, attempt: int, max_attempts: int, error: BaseException, delay: float
    ) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Which errors are retried, how many tries an item gets, and how long to wait."""

    retry_on: tuple[type[Exception], ...] = ()
    max_attempts: int = 1
    backoff_base: float = DEFAULT_BACKOFF_BASE
    backoff_cap: float = DEFAULT_BACKOFF_CAP

    @property
    def retries(self) -> bool:
        """True when some error would be tried again."""
        return bool(self.retry_on) and self.max_attempts > 1

    def delay(self, attempt: int, rng: Callable[[float, float], float] = random.uniform) -> float:
        """The wait after try number ``attempt`` (1 for the first) failed."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        return rng(0.0, ceiling)

    def gives_up(self, error: BaseException, attempt: int) -> bool:
        """True when ``error`` on try ``attempt`` ends the item's tries."""
        return attempt >= self.max_attempts or not isinstance(error, self.retry_on)


def policy_of(job: object) -> RetryPolicy:
    """The job's retry policy from its (class or instance) attributes; refuses nonsense."""
    name = type(job).__name__
    retry_on = getattr(job, "retry_on", ())
    if isinstance(retry_on, type):
        retry_on = (retry_on,)
    if not isinstance(retry_on, tuple) or not all(
        isinstance(kind, type) and issubclass(kind, Exception) for kind in retry_on
    ):
        raise UsageError(
            f"{name}.retry_on must be a tuple of Exception subclasses, not {retry_on!r} — "
            "e.g. retry_on = (TimeoutError, ConnectionError)"
        )
    max_attempts = getattr(job, "max_attempts", 1)
    if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1:
        raise UsageError(
            f"{name}.max_attempts must be a whole number of at least 1, not {max_attempts!r}"
        )
    base = getattr(job, "retry_backoff", DEFAULT_BACKOFF_BASE)
    cap = getattr(job, "retry_backoff_cap", DEFAULT_BACKOFF_CAP)
    for label, value in (("retry_backoff", base), ("retry_backoff_cap", cap)):
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise UsageError(f"{name}.{label} must be a number of seconds ≥ 0, not {value!r}")
    return RetryPolicy(retry_on, max_attempts, float(base), float(cap))


def attempts_of(error: BaseException) -> int:
    """How many tries the item that raised ``error`` had (1 when it was not retried)."""
    attempts: int = getattr(error, _ATTEMPTS, 1)
    return attempts


def _gave_up(error: BaseException, attempt: int) -> None:
    # An exception type without a __dict__ cannot carry the count: it reads as one try.
    with suppress(AttributeError):
        setattr(error, _ATTEMPTS, attempt)
    if attempt > 1:
        error.add_note(f"iterctl: gave up on the item after {attempt} attempts")


def retrying_each(
    each: Callable[[Any], Any], policy: RetryPolicy, token: StopToken, listener: RetryListener
) -> Callable[[Any], Any]:
    """``each`` itself when the policy retries nothing, else a wrapper that retries it.

    An ``async def`` ``each`` gets an async wrapper (backoff by ``asyncio.sleep``).
    """
    if not policy.retries:
        return each
    if inspect.iscoroutinefunction(each):
        return _async_retrying(each, policy, token, listener)
    return _sync_retrying(each, policy, token, listener)


def _sync_retrying(
    each: Callable[[Any], Any], policy: RetryPolicy, token: StopToken, listener: RetryListener
) -> Callable[[Any], Any]:
    def each_with_retries(item: Any) -> Any:
        attempt = 1
        while True:
            try:
                return each(item)
            except Exception as error:
                if policy.gives_up(error, attempt):
                    _gave_up(error, attempt)
                    raise
                delay = policy.delay(attempt)
                listener.retrying(item, attempt, policy.max_attempts, error, delay)
            if token.wait(delay):
                raise StopNow(token.reason)  # the item is not done: the run stops, exit 75
            attempt += 1

    return each_with_retries


def _async_retrying(
    each: Callable[[Any], Awaitable[Any]],
    policy: RetryPolicy,
    token: StopToken,
    listener: RetryListener,
) -> Callable[[Any], Awaitable[Any]]:
    async def each_with_retries(item: Any) -> Any:
        attempt = 1
        while True:
            try:
                return await each(item)
            except Exception as error:
                if policy.gives_up(error, attempt):
                    _gave_up(error, attempt)
                    raise
                delay = policy.delay(attempt)
                listener.retrying(item, attempt, policy.max_attempts, error, delay)
            if await wait_async(token, delay):
                raise StopNow(token.reason)
            attempt += 1

    return each_with_retries


async def wait_async(token: StopToken, seconds: float) -> bool:
    """:meth:`StopToken.wait` for the event loop: sleep up to ``seconds``, waking early on a
    stop (polled, as a signal handler cannot safely set an asyncio event); True if stopped."""
    deadline = time.monotonic() + seconds
    while token.reason is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        await asyncio.sleep(min(remaining, 0.05))
    return token.reason is not None
