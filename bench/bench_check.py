"""What ``iterctl check`` and ``--limit`` cost, as ratios against same-run baselines.

    python bench/bench_check.py           # 10,000 items, K = 50; 1,000,000 items per loop
    python bench/bench_check.py --quick   # the same check sizes, 200,000 items per loop

1. ``check_job`` over 10,000 in-memory items (a generator job) with K = 50 samples,
   against one plain read of the same 10,000 pairs. Resumes read what follows their
   cursor, so the check reads about 2 + K/2 walks' worth of pairs: the figure says what
   that costs. Best of several repeats.
2. ``check_job`` over a 10,000-row SQLite table walked by ``records`` (batch 100), limit
   10,000, K = 50, against one full walk of it; also the statements sent: only the two
   fresh walks start from the table's beginning, every other one is a keyset range scan.
3. The runner's per-item cost with ``--limit`` (islice over the pairs) against without.

Figures are printed, never asserted: exit 0 unless something breaks.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Index,
    Integer,
    MetaData,
    Table,
    create_engine,
    event,
    insert,
    select,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_core import NoOp, QuietReporter
from iterctl.checking import check_job
from iterctl.cursor import Cursor
from iterctl.enumerators import records
from iterctl.job import Job
from iterctl.runner import Runner, RunSettings
from iterctl.stopping import StopToken
from iterctl.stores.base import JobRecord
from iterctl.stores.memory import MemoryStore

Row = tuple[str, str, str, str, str]  # measure, ours, baseline, ratio, target
ITEMS, SAMPLES = 10_000, 50


def best(
    ours: Callable[[], object], base: Callable[[], object], repeat: int
) -> tuple[float, float]:
    """The best time of each, taking turns: load elsewhere on the machine hits both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for run, found in zip((ours, base), times, strict=True):
            started = time.perf_counter_ns()
            run()
            found.append((time.perf_counter_ns() - started) / 1e9)
    return min(times[0]), min(times[1])


class Numbers(Job):
    """10,000 items from a generator, cursor = the item."""

    def build_enumerator(self, cursor: Cursor) -> Iterator[tuple[int, int]]:
        start = 0 if cursor is None else cursor + 1
        return ((n, n) for n in range(start, ITEMS))

    def each_iteration(self, item: Any) -> None:
        raise AssertionError("check never runs items")


def in_memory(repeat: int) -> list[Row]:
    def checked() -> None:
        report = check_job(Numbers, {}, limit=ITEMS, samples=SAMPLES)
        assert report.passed, report.lines()

    ours, base = best(checked, lambda: list(Numbers().build_enumerator(None)), repeat)
    return [(f"check, {ITEMS:,} in-memory items, K={SAMPLES} vs one read", f"{ours * 1e3:.0f} ms",
             f"{base * 1e3:.1f} ms", f"{ours / base:.0f}x", "well under a few s")]  # fmt: skip


def sqlite_table(folder: Path) -> tuple[Engine, Table]:
    engine = create_engine(f"sqlite:///{folder / 'check.db'}")
    table = Table(
        "rows",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("grp", Integer, nullable=False),
        Index("ix_rows_grp_id", "grp", "id"),
    )
    table.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(insert(table), [{"id": n, "grp": n % 97} for n in range(ITEMS)])
    return engine, table


def sql(folder: Path, repeat: int) -> tuple[list[Row], str]:
    engine, table = sqlite_table(folder)

    class Walk(Job):
        def build_enumerator(self, cursor: Cursor) -> Any:
            return records(engine, select(table), columns=[table.c.grp], batch_size=100,
                           cursor=cursor)  # fmt: skip

    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: sent.append(args[2]))

    def checked() -> None:
        sent.clear()
        report = check_job(Walk, {}, limit=ITEMS, samples=SAMPLES)
        assert report.passed, report.lines()

    def walked() -> None:
        list(Walk().build_enumerator(None))

    ours, base = best(checked, walked, repeat)
    checked()  # once more, alone, to count its statements
    statements = len(sent)
    from_start = sum("(rows.grp, rows.id) >" not in " ".join(s.split()) for s in sent)
    engine.dispose()
    row = (f"check, {ITEMS:,}-row SQLite keyset walk, K={SAMPLES} vs one walk",
           f"{ours * 1e3:.0f} ms", f"{base * 1e3:.0f} ms", f"{ours / base:.1f}x",
           f"~{2 + SAMPLES // 2} walks")  # fmt: skip
    note = (f"SQL check: {statements:,} statements, {from_start} of them from the table's "
            f"start (the two fresh walks), the rest keyset range scans from a cursor")  # fmt: skip
    return [row], note


def runner_seconds(items: int, limit: int | None) -> float:
    store = MemoryStore()
    job_id = f"limit-{limit}"
    store.create(JobRecord(job_id, "bench_core:NoOp", {}))
    hold = store.acquire(job_id)
    job = NoOp(job_id=job_id)
    job.items = items
    runner = Runner(job, store, hold, token=StopToken(), reporter=QuietReporter(),
                    settings=RunSettings(limit=limit), first_run=True)  # fmt: skip
    started = time.perf_counter_ns()
    result = runner.run()
    elapsed = (time.perf_counter_ns() - started) / 1e9
    assert result.processed == items, result
    return elapsed


def limit_cost(items: int, repeat: int) -> list[Row]:
    found: dict[str, list[float]] = {"none": [], "limit": []}
    for _ in range(repeat):  # taking turns, best of each
        found["none"].append(runner_seconds(items, None))
        found["limit"].append(runner_seconds(items, items + 1))
    plain, limited = min(found["none"]), min(found["limit"])
    return [("per item: runner with --limit vs without", f"{limited / items * 1e9:.1f} ns",
             f"{plain / items * 1e9:.1f} ns", f"{limited / plain:.2f}x", "~1.00x")]  # fmt: skip


def print_rows(rows: list[Row]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for name, *figures, target in rows:
        cells = [f"{cell:>{width}}" for cell, width in zip(figures, widths[1:4], strict=True)]
        print(f"{name:{widths[0]}}  {'  '.join(cells)}  {target}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and loop items")
    quick = parser.parse_args().quick
    repeat = 3 if quick else 7
    loop_items = 200_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="iterctl-bench-check-") as name:
        rows = in_memory(repeat)
        sql_rows, note = sql(Path(name), 2 if quick else 3)
        rows += sql_rows
    rows += limit_cost(loop_items, repeat)
    print_rows([("measure", "ours", "baseline", "ratio", "target"), *rows])
    print(note)
    print(f"check reads ~{2 + SAMPLES / 2:.0f} walks' worth of pairs (reference, determinism, "
          f"and K resumes of the suffix after their cursor); best of {repeat} repeats")


if __name__ == "__main__":
    main()
