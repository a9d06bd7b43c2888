"""Where items run with --concurrency: worker threads, or tasks on one asyncio event loop.

A dispatcher only runs items and hands their outcomes back to the one thread that owns the
watermark window (the runner's): ``submit(ticket, item)`` starts one, ``settled()`` returns
``(ticket, item, error)`` for each that ended since the last call (``error`` None when it
returned): ``take()`` at once, ``wait()`` after waiting for one (or for a short while, so
the owner can look at its stop token). Nothing here touches the store, the window or the
stop token: the runner decides when to checkpoint and when to stop, so no lock guards the
store.
"""

from __future__ import annotations

import asyncio
import queue
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

#: One item's outcome: its window ticket, the item, and what it raised (None: done).
Settled = tuple[int, Any, BaseException | None]

#: How long a blocked owner waits for an outcome before it looks at the stop token again.
WAKE_SECONDS = 0.1


class ThreadDispatch:
    """``each(item)`` on up to ``workers`` threads of a ThreadPoolExecutor."""

    def __init__(self, each: Callable[[Any], object], workers: int) -> None:
        self.workers = workers
        self.in_flight = 0
        self._each = each
        self._results: queue.SimpleQueue[Settled] = queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="iterctl-item")

    def submit(self, ticket: int, item: Any) -> None:
        self.in_flight += 1
        self._pool.submit(self._work, ticket, item)

    def _work(self, ticket: int, item: Any) -> None:
        try:
            self._each(item)
        except BaseException as error:  # noqa: BLE001 - handed to the owner, which decides
            self._results.put((ticket, item, error))
        else:
            self._results.put((ticket, item, None))

    def wait(self) -> list[Settled]:
        """Outcomes that arrived, after waiting up to WAKE_SECONDS for the first."""
        try:
            first = self._results.get(timeout=WAKE_SECONDS)
        except queue.Empty:
            return []
        self.in_flight -= 1
        return [first, *self.take()]

    def take(self) -> list[Settled]:
        """Outcomes that arrived, without waiting."""
        results = self._results
        found = []
        while not results.empty():
            found.append(results.get_nowait())
        self.in_flight -= len(found)
        return found

    @property
    def has_settled(self) -> bool:
        return not self._results.empty()

    def close(self) -> None:
        """Every item has settled: end the worker threads."""
        self._pool.shutdown(wait=True)

    def abandon(self) -> None:
        """Leave the items in flight running (a thread cannot be killed) and start no more."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class AsyncDispatch:
    """``await each(item)`` as tasks on the running event loop; call it from that loop."""

    def __init__(self, each: Callable[[Any], Awaitable[object]], workers: int) -> None:
        self.workers = workers
        self.in_flight = 0
        self._each = each
        self._results: deque[Settled] = deque()
        self._tasks: set[asyncio.Task[None]] = set()  # strong references while they run
        self._waiter: asyncio.Future[None] | None = None
        self._loop = asyncio.get_running_loop()

    def submit(self, ticket: int, item: Any) -> None:
        self.in_flight += 1
        task = self._loop.create_task(self._work(ticket, item))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _work(self, ticket: int, item: Any) -> None:
        try:
            await self._each(item)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # noqa: BLE001 - handed to the owner, which decides
            self._settle((ticket, item, error))
        else:
            self._settle((ticket, item, None))

    def _settle(self, outcome: Settled) -> None:
        self._results.append(outcome)
        self.wake()

    def wake(self) -> None:
        """Let a waiting owner look again (an outcome arrived, or the token needs it)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def has_settled(self) -> bool:
        return bool(self._results)

    async def wait(self) -> list[Settled]:
        """Outcomes that arrived, after waiting for one (or for a wake-up)."""
        if not self._results:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.take()

    def take(self) -> list[Settled]:
        """Outcomes that arrived, without waiting."""
        found = list(self._results)
        self._results.clear()
        self.in_flight -= len(found)
        return found

    def abandon(self) -> None:
        """Cancel the items in flight (a second SIGINT): they are not done."""
        for task in list(self._tasks):
            task.cancel()
