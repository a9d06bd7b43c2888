"""What retries and failure records cost, as ratios against baselines measured in the same run.

    python bench/bench_failures.py           # 1,000,000 items per loop
    python bench/bench_failures.py --quick   # 100,000 items: a smoke run

1. Per item when nothing fails: ``Runner.run()`` on a no-op job (memory store) with no
   ``retry_on``, and the same job with ``retry_on`` set (the retry wrapper in the loop),
   each against a plain ``for`` loop. Best of several, taking turns.
2. Per failed item: every item raises and is recorded and passed over (``--max-failures``
   large, default checkpoint interval, memory store), against the same run where every
   item succeeds: the extra cost of one recorded failure (traceback text, record).
3. A checkpoint that carries failure records: the median ``store.checkpoint`` on a SQLite
   file with 0, 1 and 100 records in it.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_core import NoOp, QuietReporter, Row, median, plain_loop, seconds_of
from iterctl.budget import FailureBudget
from iterctl.failed import failure_record
from iterctl.runner import Runner, RunSettings
from iterctl.stopping import StopToken
from iterctl.stores import open_store
from iterctl.stores.base import Checkpoint, JobRecord, Status, Store
from iterctl.stores.memory import MemoryStore


class Flake(Exception):
    pass


class NoOpWithRetries(NoOp):
    """The no-op job, declaring a transient error: the retry wrapper is in the loop."""

    retry_on = (Flake,)
    max_attempts = 3


class AlwaysFails(NoOp):
    """Every item raises: each is recorded and passed over."""

    def each_iteration(self, item: Any) -> None:
        raise ValueError(f"item {item} is bad")


def timed_run(job_class: type[NoOp], items: int, settings: RunSettings) -> float:
    store = MemoryStore()
    job_id = f"bench-{job_class.__name__}"
    store.create(JobRecord(job_id, "bench_failures:Job", {}))
    hold = store.acquire(job_id)
    job = job_class(job_id=job_id)
    job.items = items
    runner = Runner(
        job, store, hold, token=StopToken(), reporter=QuietReporter(), settings=settings,
        first_run=True,
    )  # fmt: skip
    started = time.perf_counter_ns()
    result = runner.run()
    elapsed = (time.perf_counter_ns() - started) / 1e9
    if result.processed != items:
        raise RuntimeError(f"processed {result.processed} of {items}: {result.error}")
    return elapsed


def per_item(items: int, repeat: int) -> list[Row]:
    found: dict[str, list[float]] = {"plain": [], "runner": [], "retries": []}
    for _ in range(repeat):
        found["plain"].append(seconds_of(lambda: plain_loop(items)))
        found["runner"].append(timed_run(NoOp, items, RunSettings()))
        found["retries"].append(timed_run(NoOpWithRetries, items, RunSettings()))
    plain, runner, retries = (min(found[k]) for k in ("plain", "runner", "retries"))
    base = f"{plain / items * 1e9:.1f} ns"
    return [
        ("per item: runner, no retry_on vs plain loop", f"{runner / items * 1e9:.1f} ns", base,
         f"{runner / plain:.2f}x", "<= 1.5x"),
        ("per item: runner, retry_on set, nothing fails", f"{retries / items * 1e9:.1f} ns", base,
         f"{retries / plain:.2f}x", "—"),
    ]  # fmt: skip


def per_failure(items: int, repeat: int) -> list[Row]:
    failing = RunSettings(max_failures=FailureBudget(items))
    good = min(timed_run(NoOp, items, RunSettings()) for _ in range(repeat))
    bad = min(timed_run(AlwaysFails, items, failing) for _ in range(repeat))
    return [
        ("per failed item: recorded and passed over vs a good item",
         f"{bad / items * 1e6:.1f} µs", f"{good / items * 1e6:.3f} µs",
         f"{bad / good:.0f}x", "—"),
    ]  # fmt: skip


def checkpoint_with(store: Store, records: int, calls: int) -> float:
    job_id = f"ckpt-{records}-{os.getpid()}"
    store.create(JobRecord(job_id, "bench_failures:Job", {}))
    hold = store.acquire(job_id)
    counter = iter(range(10**12))
    error = ValueError("bad")

    def one() -> None:
        n = next(counter)
        failures = tuple(
            failure_record(i, n * 1000 + i, None, error, 1, "Bench") for i in range(records)
        )
        store.checkpoint(hold, Checkpoint(str(n), n, Status.RUNNING, failures=failures))

    try:
        one()
        return median(one, calls)
    finally:
        store.release(hold)


def checkpoints(folder: Path, calls: int) -> list[Row]:
    store = open_store(f"sqlite:///{folder / 'failures.db'}")
    try:
        costs = {n: checkpoint_with(store, n, calls) for n in (0, 1, 100)}
    finally:
        store.close()
    base = f"{costs[0] * 1e3:.3f} ms"
    return [
        (f"checkpoint, SQLite, with {n} failure record(s) vs none", f"{costs[n] * 1e3:.3f} ms",
         base, f"{costs[n] / costs[0]:.2f}x", "—")
        for n in (1, 100)
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run")
    quick = parser.parse_args().quick
    items, repeat, calls = (100_000, 3, 30) if quick else (1_000_000, 5, 100)
    rows = per_item(items, repeat)
    rows += per_failure(items // 20, repeat)
    with tempfile.TemporaryDirectory() as folder:
        rows += checkpoints(Path(folder), calls)
    header: Row = ("measure", "ours", "baseline", "ratio", "target")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
