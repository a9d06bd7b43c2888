"""--concurrency against what a user would write by hand, in the same run.

    python bench/bench_concurrency.py           # 20,000 items per loop, best of 3
    python bench/bench_concurrency.py --quick   # 4,000 items, best of 2: a smoke run

1. Threads: ``Runner.run()`` with ``concurrency=32`` on a job whose item is
   ``time.sleep(0.002)``, on a SQLite store at the default checkpoint interval (store,
   record, hold and job made before the clock starts: start-up excluded), against
   ``ThreadPoolExecutor(32).map`` over the same items. Items per second, ratio ours / theirs.
2. Async: the same with ``async def each_iteration`` awaiting ``asyncio.sleep(0.002)``
   and ``concurrency=256``, against ``asyncio.gather`` of one coroutine per item under an
   ``asyncio.Semaphore(256)``.
3. N = 1: a no-op job through ``Runner.run()`` (the sequential loop) against a plain ``for``
   loop, as bench_core.py measures it: the concurrency code must not cost it anything.
4. Checkpoint cost at N = 32: the median ``store.checkpoint`` call on SQLite carrying a
   full window's done set (127 cursors), as a share of the default interval.

The loops take turns so that load elsewhere on the machine hits them alike; each keeps its
best time. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_core import QuietReporter
from iterctl.cursor import Cursor, encode_cursor
from iterctl.job import Job
from iterctl.runner import (
    DEFAULT_CHECKPOINT_INTERVAL,
    WINDOW_PER_WORKER,
    Runner,
    RunSettings,
)
from iterctl.stopping import StopToken
from iterctl.stores import open_store
from iterctl.stores.base import Checkpoint, JobRecord, Status, Store
from iterctl.stores.memory import MemoryStore
from iterctl.window import Window

Row = tuple[str, str, str, str, str]
SLEEP = 0.002


class Sleeps(Job):
    """``items`` items, each a 2 ms sleep (an API call that waits)."""

    items = 0

    def build_enumerator(self, cursor: Cursor) -> Iterator[tuple[int, int]]:
        start = 0 if cursor is None else int(cursor) + 1
        return ((n, n) for n in range(start, self.items))

    def each_iteration(self, item: Any) -> None:
        time.sleep(SLEEP)


class AsyncSleeps(Sleeps):
    async def each_iteration(self, item: Any) -> None:  # type: ignore[override]  # async job
        await asyncio.sleep(SLEEP)


class NoOp(Sleeps):
    def each_iteration(self, item: Any) -> None:
        pass


def runner_seconds(store: Store, job: Sleeps, concurrency: int) -> float:
    """Seconds in ``Runner.run()`` alone; everything else is made before the clock starts."""
    job_id = f"bench-{os.getpid()}-{time.perf_counter_ns()}"
    store.create(JobRecord(job_id, "bench:Sleeps", {}))
    hold = store.acquire(job_id)
    token = StopToken()
    job.stop_token = token
    runner = Runner(
        job, store, hold, token=token, reporter=QuietReporter(),
        settings=RunSettings(concurrency=concurrency), first_run=True,
    )  # fmt: skip
    try:
        started = time.perf_counter_ns()
        result = runner.run()
        seconds = (time.perf_counter_ns() - started) / 1e9
    finally:
        store.release(hold)
    if result.processed != job.items:
        raise RuntimeError(f"the runner processed {result.processed} of {job.items} items")
    return seconds


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter_ns()
    run()
    return (time.perf_counter_ns() - started) / 1e9


def thread_pool_map(items: int, workers: int) -> None:
    """The baseline a user writes: ThreadPoolExecutor(N).map over the items."""
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(lambda _n: time.sleep(SLEEP), range(items)):
            pass


def semaphore_gather(items: int, workers: int) -> None:
    """The async baseline: one coroutine per item, at most N at once under a Semaphore."""

    async def main() -> None:
        semaphore = asyncio.Semaphore(workers)

        async def one(_n: int) -> None:
            async with semaphore:
                await asyncio.sleep(SLEEP)

        await asyncio.gather(*(one(n) for n in range(items)))

    asyncio.run(main())


def throughput(
    name: str, ours: Callable[[], float], theirs: Callable[[], float], items: int, repeat: int
) -> Row:
    found: dict[str, list[float]] = {"ours": [], "theirs": []}
    for _ in range(repeat):  # taking turns
        found["ours"].append(ours())
        found["theirs"].append(theirs())
    mine, base = min(found["ours"]), min(found["theirs"])
    return (name, f"{items / mine:,.0f}/s", f"{items / base:,.0f}/s", f"{base / mine:.2f}x",
            ">= 0.9x")  # fmt: skip


def per_item_n1(items: int, repeat: int) -> Row:
    store = MemoryStore()

    def plain() -> None:
        job = NoOp()
        job.items = items
        for item, _cursor in job.build_enumerator(None):
            job.each_iteration(item)

    def ours() -> float:
        job = NoOp()
        job.items = items
        return runner_seconds(store, job, 1)

    found: dict[str, list[float]] = {"ours": [], "plain": []}
    for _ in range(repeat):
        found["plain"].append(timed(plain))
        found["ours"].append(ours())
    mine, base = min(found["ours"]), min(found["plain"])
    return ("per item, N = 1 no-op: runner vs plain loop", f"{mine / items * 1e9:.1f} ns",
            f"{base / items * 1e9:.1f} ns", f"{mine / base:.2f}x", "<= 1.5x")  # fmt: skip


def checkpoint_share(folder: Path, calls: int) -> Row:
    """A checkpoint as N = 32 writes it when the window is full: 127 done cursors."""
    store = open_store(f"sqlite:///{folder / 'checkpoint.db'}")
    window = Window(WINDOW_PER_WORKER * 32)
    tickets = [window.add({"id": n}) for n in range(window.capacity)]
    for ticket in tickets[1:]:
        window.complete(ticket)
    done = window.done_json()
    job_id = f"ckpt-{os.getpid()}"
    store.create(JobRecord(job_id, "bench:Sleeps", {}))
    hold = store.acquire(job_id)
    counter = iter(range(10**9))

    def one() -> None:
        n = next(counter)
        store.checkpoint(
            hold,
            Checkpoint(encode_cursor({"id": n}, "bench"), n, Status.RUNNING, done_json=done),
        )

    try:
        one()
        cost = statistics.median(timed(one) for _ in range(calls))
    finally:
        store.release(hold)
        store.close()
    assert done is not None
    share = cost / DEFAULT_CHECKPOINT_INTERVAL * 100
    return (f"checkpoint, N = 32, SQLite, {done.count(',') + 1} done cursors / interval",
            f"{cost * 1e3:.3f} ms", f"{DEFAULT_CHECKPOINT_INTERVAL:g} s", f"{share:.3f}%",
            "<= 1%")  # fmt: skip


def print_rows(rows: list[Row]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for name, *figures, target in rows:
        cells = [f"{cell:>{width}}" for cell, width in zip(figures, widths[1:4], strict=True)]
        print(f"{name:{widths[0]}}  {'  '.join(cells)}  {target}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run")
    quick = parser.parse_args().quick
    items, repeat = (4_000, 2) if quick else (20_000, 3)
    version = sys.version.split()[0]
    print(f"items: {items:,} of {SLEEP * 1e3:g} ms; best of {repeat}; Python {version}")
    with tempfile.TemporaryDirectory(prefix="iterctl-bench-") as name:
        folder = Path(name)
        sqlite = open_store(f"sqlite:///{folder / 'runs.db'}")
        try:

            def threads() -> float:
                job = Sleeps()
                job.items = items
                return runner_seconds(sqlite, job, 32)

            def tasks() -> float:
                job = AsyncSleeps()
                job.items = items
                return runner_seconds(sqlite, job, 256)

            rows = [
                throughput("threads: --concurrency 32 vs ThreadPoolExecutor(32).map", threads,
                           lambda: timed(lambda: thread_pool_map(items, 32)), items, repeat),
                throughput("async: --concurrency 256 vs Semaphore(256) + gather", tasks,
                           lambda: timed(lambda: semaphore_gather(items, 256)), items, repeat),
            ]  # fmt: skip
        finally:
            sqlite.close()
        rows.append(per_item_n1(200_000 if quick else 2_000_000, repeat + 2))
        rows.append(checkpoint_share(folder, 50 if quick else 200))
    print_rows([("measure", "ours", "baseline", "ratio", "target"), *rows])


if __name__ == "__main__":
    main()
