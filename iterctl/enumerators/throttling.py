"""Throttling: pause between items while a predicate says so, or cap the rate.

    def build_enumerator(self, cursor):
        return throttled(
            records(engine, select(users), cursor=cursor),
            self.stop_token,
            pause_while=lambda: replica_lag_seconds() > 5,   # checked between items
            max_rate=200,                                     # items per second at most
        )

A pause waits on the job's stop token, so a throttled job that gets SIGTERM stops at once:
the enumerator yields nothing more and the cursor stays at the last item done.

With ``--concurrency N`` the runner reads the enumerator on one thread and dispatches each
item as it is read, so the pacing applies to dispatch: ``max_rate`` holds for the whole
process, whatever N. An async job iterates it with ``async for``: then the waits are
``asyncio.sleep`` and the items in flight go on meanwhile.
"""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from iterctl.cursor import Cursor
from iterctl.enumerators.base import Enumerator
from iterctl.enumerators.batching import inner_source_identity, inner_split, inner_within
from iterctl.errors import UsageError
from iterctl.retrying import wait_async
from iterctl.stopping import StopToken


class Throttled(Enumerator[Any]):
    """The pairs of an enumerator, paced by a predicate with backoff and/or a maximum rate."""

    def __init__(
        self,
        pairs: Iterable[tuple[Any, Cursor]],
        stop: StopToken,
        *,
        pause_while: Callable[[], bool] | None,
        backoff: float,
        max_backoff: float,
        check_every: int,
        max_rate: float | None,
    ) -> None:
        if max_rate is not None and max_rate <= 0:
            raise UsageError(f"max_rate {max_rate} is not positive — give items per second > 0")
        if backoff <= 0 or max_backoff < backoff or check_every < 1:
            raise UsageError(
                "throttled needs backoff > 0, max_backoff >= backoff and check_every >= 1"
            )
        self._pairs = pairs
        self._stop = stop
        self._pause_while = pause_while
        self._backoff, self._max_backoff = backoff, max_backoff
        self._check_every = check_every
        self._interval = 0.0 if max_rate is None else 1.0 / max_rate

    def __iter__(self) -> Iterator[tuple[Any, Cursor]]:
        stop, interval = self._stop, self._interval
        check_every, countdown = self._check_every, 0
        next_at = time.monotonic()
        for pair in self._pairs:
            if self._pause_while is not None:
                countdown -= 1
                if countdown <= 0:
                    countdown = check_every
                    if self._pause() or stop.requested:
                        return
            if interval:
                wait = next_at - time.monotonic()
                if wait > 0 and stop.wait(wait):
                    return
                next_at = max(next_at, time.monotonic() - interval) + interval
            if stop.requested:
                return
            yield pair

    async def __aiter__(self) -> AsyncIterator[tuple[Any, Cursor]]:
        """:meth:`__iter__` for an async job: it waits on the event loop, not the thread."""
        stop, interval = self._stop, self._interval
        check_every, countdown = self._check_every, 0
        next_at = time.monotonic()
        for pair in self._pairs:
            if self._pause_while is not None:
                countdown -= 1
                if countdown <= 0:
                    countdown = check_every
                    if await self._pause_async() or stop.requested:
                        return
            if interval:
                wait = next_at - time.monotonic()
                if wait > 0 and await wait_async(stop, wait):
                    return
                next_at = max(next_at, time.monotonic() - interval) + interval
            if stop.requested:
                return
            yield pair

    async def _pause_async(self) -> bool:
        delay = self._backoff
        assert self._pause_while is not None
        while self._pause_while():
            if await wait_async(self._stop, delay):
                return True
            delay = min(delay * 2, self._max_backoff)
        return False

    def _pause(self) -> bool:
        """Wait, backing off, while the predicate holds; True if a stop came meanwhile."""
        delay = self._backoff
        assert self._pause_while is not None
        while self._pause_while():
            if self._stop.wait(delay):
                return True
            delay = min(delay * 2, self._max_backoff)
        return False

    def total(self) -> int | None:
        total: Any = getattr(self._pairs, "total", None)
        return total() if callable(total) else None

    def source_identity(self, recorded: Cursor) -> Cursor:
        return inner_source_identity(self._pairs, recorded)

    def split(self, count: int) -> list[Cursor]:
        """The inner enumerator's partitions; each partition is throttled on its own."""
        return inner_split(self._pairs, count, self)

    def within(self, bounds: Cursor) -> Throttled:
        part = copy.copy(self)
        part._pairs = inner_within(self._pairs, bounds, self)
        return part


def throttled(
    pairs: Iterable[tuple[Any, Cursor]],
    stop: StopToken | Any,
    *,
    pause_while: Callable[[], bool] | None = None,
    backoff: float = 1.0,
    max_backoff: float = 60.0,
    check_every: int = 1,
    max_rate: float | None = None,
) -> Throttled:
    """Pace ``pairs``: pause while ``pause_while()`` is true, and/or at most ``max_rate``/s.

    ``stop`` is the job's stop token (or the job itself). The predicate is asked before an
    item every ``check_every`` items; while it holds, the wait starts at ``backoff`` seconds
    and doubles up to ``max_backoff``.
    """
    token = stop if isinstance(stop, StopToken) else stop.stop_token
    return Throttled(
        pairs,
        token,
        pause_while=pause_while,
        backoff=backoff,
        max_backoff=max_backoff,
        check_every=check_every,
        max_rate=max_rate,
    )
