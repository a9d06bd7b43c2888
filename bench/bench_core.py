"""The core's costs, as ratios against baselines measured in the same run.

    python bench/bench_core.py           # 2,000,000 items per loop, 10 start-ups each
    python bench/bench_core.py --quick   # 200,000 items, 5 start-ups: a smoke run

1. Per-item cost: ``Runner.run()`` on a no-op job over an in-memory enumerator (store,
   hold and runner made beforehand, so start-up is excluded) against a plain ``for`` loop
   calling the same job's methods. Best of several repeats.
2. Checkpoint cost at the default interval: the median of many ``store.checkpoint`` calls
   under a hold (SQLite file and JSON file, both fsync'd), as a share of one default
   interval; and, directly, the extra run time of a run checkpointing every 0.05 s over the
   same run checkpointing never, divided by the extra checkpoints it made.
3. Start-up: wall time of real ``iterctl`` processes against
   ``python -c "import typer, rich, sqlalchemy"``. Median of several runs.

Figures are printed, never asserted: exit 0 unless something breaks.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from iterctl.cursor import Cursor
from iterctl.job import Job
from iterctl.runner import DEFAULT_CHECKPOINT_INTERVAL, Runner, RunResult, RunSettings
from iterctl.stopping import StopToken
from iterctl.stores import open_store
from iterctl.stores.base import Checkpoint, JobRecord, Status, Store
from iterctl.stores.memory import MemoryStore
from iterctl.stores.sql import SqlStore

Row = tuple[str, str, str, str, str]  # measure, ours, baseline, ratio, target

#: Environment variables that would make a child think it writes to a terminal.
_TTY_VARIABLES = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


class NoOp(Job):
    """``items`` items that do nothing, cursor = the item."""

    items = 0

    def build_enumerator(self, cursor: Cursor) -> Iterator[tuple[int, int]]:
        start = 0 if cursor is None else int(cursor) + 1
        return ((n, n) for n in range(start, self.items))

    def each_iteration(self, item: Any) -> None:
        pass


class QuietReporter:
    """A reporter that says nothing: only the loop is timed."""

    def started(self, record: JobRecord, *, resumed: bool, total: int | None) -> None:
        pass

    def progress(self, processed: int, total: int | None, cursor: Cursor) -> None:
        pass

    def finished(self, result: RunResult) -> None:
        pass


class CountingSqlStore(SqlStore):
    """The SQL store, counting the checkpoints written through it."""

    checkpoints = 0

    def checkpoint(self, hold: Any, checkpoint: Checkpoint) -> None:
        self.checkpoints += 1
        super().checkpoint(hold, checkpoint)


# -- timing ------------------------------------------------------------------------------


def seconds_of(run: Callable[[], object]) -> float:
    started = time.perf_counter_ns()
    run()
    return (time.perf_counter_ns() - started) / 1e9


def median(run: Callable[[], object], repeat: int) -> float:
    return statistics.median(seconds_of(run) for _ in range(repeat))


# -- 1. per-item cost --------------------------------------------------------------------


def plain_loop(items: int) -> None:
    """The baseline: the same job's methods, driven by a bare ``for`` loop."""
    job = NoOp()
    job.items = items
    for item, _cursor in job.build_enumerator(None):
        job.each_iteration(item)


class RunnerRuns:
    """Timed ``Runner.run()`` calls on one store; each call gets a fresh job id."""

    def __init__(self, store: Store, items: int) -> None:
        self.store = store
        self.items = items
        self._runs = 0

    def timed_run(self, settings: RunSettings) -> tuple[float, RunResult]:
        """Seconds spent in ``run()`` alone: the record, hold and job are made before."""
        self._runs += 1
        job_id = f"bench-{os.getpid()}-{self._runs}"
        self.store.create(JobRecord(job_id, "bench_core:NoOp", {}))
        hold = self.store.acquire(job_id)
        job = NoOp(job_id=job_id)
        job.items = self.items
        token = StopToken()
        runner = Runner(
            job,
            self.store,
            hold,
            token=token,
            reporter=QuietReporter(),
            settings=settings,
            first_run=True,
        )
        try:
            started = time.perf_counter_ns()
            result = runner.run()
            elapsed = (time.perf_counter_ns() - started) / 1e9
        finally:
            self.store.release(hold)
        if result.processed != self.items:
            raise RuntimeError(f"the runner processed {result.processed} of {self.items} items")
        return elapsed, result


def per_item(folder: Path, items: int, repeat: int) -> tuple[list[Row], float]:
    """Rows for the per-item cost; also the plain loop's seconds per item.

    The three loops take turns, so that a burst of load elsewhere on the machine hits
    them alike; each keeps its best time.
    """
    sqlite_store = open_store(f"sqlite:///{folder / 'per-item.db'}")
    memory_runs = RunnerRuns(MemoryStore(), items)
    sqlite_runs = RunnerRuns(sqlite_store, items)
    found: dict[str, list[float]] = {"plain": [], "memory": [], "sqlite": []}
    try:
        for _ in range(repeat):
            found["plain"].append(seconds_of(lambda: plain_loop(items)))
            found["memory"].append(memory_runs.timed_run(RunSettings())[0])
            found["sqlite"].append(sqlite_runs.timed_run(RunSettings())[0])
    finally:
        sqlite_store.close()
    plain, memory, sqlite = (min(found[name]) for name in ("plain", "memory", "sqlite"))
    base_ns = plain / items * 1e9
    rows = [
        (f"per item: runner, {kind} store vs plain loop", f"{ours / items * 1e9:.1f} ns",
         f"{base_ns:.1f} ns", f"{ours / plain:.2f}x", "<= 1.5x")
        for kind, ours in (("memory", memory), ("SQLite", sqlite))
    ]  # fmt: skip
    return rows, plain / items


# -- 2. checkpoint cost ------------------------------------------------------------------


def checkpoint_call(store: Store, calls: int) -> float:
    """Median seconds of one ``store.checkpoint`` under a hold."""
    job_id = f"ckpt-{os.getpid()}"
    store.create(JobRecord(job_id, "bench_core:NoOp", {}))
    hold = store.acquire(job_id)
    counter = iter(range(10**12))

    def one() -> None:
        n = next(counter)
        store.checkpoint(hold, Checkpoint(str(n), n, Status.RUNNING))

    try:
        one()  # the first write may create pages or the temporary file's directory entry
        return median(one, calls)
    finally:
        store.release(hold)


def share(cost: float) -> str:
    return f"{cost / DEFAULT_CHECKPOINT_INTERVAL * 100:.3f}%"


def checkpoints(folder: Path, calls: int, plain_per_item: float, run_seconds: float) -> list[Row]:
    interval = f"of {DEFAULT_CHECKPOINT_INTERVAL:g} s"
    rows: list[Row] = []
    for kind, location in (
        ("SQLite", f"sqlite:///{folder / 'checkpoint.db'}"),
        ("JSON", str(folder / "checkpoint.json")),
    ):
        store = open_store(location)
        try:
            cost = checkpoint_call(store, calls)
        finally:
            store.close()
        rows.append((f"checkpoint, {kind}: median call / interval", f"{cost * 1e3:.3f} ms",
                     interval, share(cost), "<= 1%"))  # fmt: skip

    # Directly: the same run checkpointing every 0.05 s and (almost) never.
    items = max(int(run_seconds / plain_per_item), 1000)
    store = CountingSqlStore(f"sqlite:///{folder / 'direct.db'}")
    try:
        runs = RunnerRuns(store, items)
        timings: dict[float, list[tuple[float, int]]] = {0.05: [], 1e9: []}
        for _ in range(3):
            for every, found in timings.items():  # taking turns, as in per_item
                store.checkpoints = 0
                seconds, _result = runs.timed_run(RunSettings(checkpoint_interval=every))
                found.append((seconds, store.checkpoints))
    finally:
        store.close()
    (often, many), (rarely, few) = min(timings[0.05]), min(timings[1e9])
    cost = max(often - rarely, 0.0) / max(many - few, 1)
    rows.append((f"checkpoint, SQLite, in a run ({many - few} extra): derived / interval",
                 f"{cost * 1e3:.3f} ms", interval, share(cost), "<= 1%"))  # fmt: skip
    return rows


# -- 3. start-up -------------------------------------------------------------------------

ONE_ITEM = """\
from iterctl import Job


class OneItem(Job):
    def build_enumerator(self, cursor):
        return [] if cursor is not None else [(1, 1)]

    def each_iteration(self, item):
        pass
"""

HELP_IMPORTS_SQLALCHEMY = textwrap.dedent("""\
    import sys
    sys.argv = ["iterctl", "--help"]
    from iterctl.entry import main
    try:
        main()
    except SystemExit:
        pass
    print("sqlalchemy" in sys.modules, file=sys.stderr)
""")


def child_env() -> dict[str, str]:
    """This environment without terminal overrides or iterctl settings."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in _TTY_VARIABLES and not key.startswith("ITERCTL_")
    }


def iterctl_command() -> list[str]:
    """The installed console script, next to this Python if possible."""
    beside = Path(sys.executable).with_name("iterctl")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("iterctl")
    return [found] if found else [sys.executable, "-m", "iterctl"]


def process_seconds(command: list[str], cwd: Path) -> float:
    started = time.perf_counter_ns()
    done = subprocess.run(command, cwd=cwd, env=child_env(), capture_output=True, check=False)
    elapsed = (time.perf_counter_ns() - started) / 1e9
    if done.returncode != 0:
        raise RuntimeError(f"{command} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return elapsed


def startup(folder: Path, repeat: int) -> tuple[list[Row], bool]:
    """Rows for the start-up; also whether ``iterctl --help`` imports SQLAlchemy."""
    (folder / "onejob.py").write_text(ONE_ITEM)
    iterctl = iterctl_command()
    db = f"sqlite:///{folder / 'startup.db'}"
    json_store = str(folder / "startup.json")
    runs = iter(range(10**6))

    def run_one() -> None:
        job_id = f"one-{next(runs)}"
        process_seconds([*iterctl, "run", "onejob:OneItem", "--store", db, "--job-id", job_id],
                        folder)  # fmt: skip

    imports = [sys.executable, "-c", "import typer, rich, sqlalchemy"]
    run_one()  # creates the store's file and warms the page cache
    process_seconds([*iterctl, "run", "onejob:OneItem", "--store", json_store], folder)
    commands: dict[str, Callable[[], float]] = {
        "imports": lambda: process_seconds(imports, folder),
        "iterctl run (SQLite store)": lambda: seconds_of(run_one),
        "iterctl --help": lambda: process_seconds([*iterctl, "--help"], folder),
        "iterctl status --json (JSON store)": lambda: process_seconds(
            [*iterctl, "status", "--json", "--store", json_store], folder
        ),
    }
    found: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeat):  # taking turns: load elsewhere hits every command alike
        for name, command in commands.items():
            found[name].append(command())
    figures = {name: statistics.median(times) for name, times in found.items()}
    baseline = figures.pop("imports")
    base = f"{baseline * 1e3:.0f} ms"
    rows = [
        (f"start-up: {name} vs imports", f"{seconds * 1e3:.0f} ms", base,
         f"{seconds / baseline:.2f}x", "<= 1.3x" if "run" in name else "-")
        for name, seconds in figures.items()
    ]  # fmt: skip
    check = subprocess.run(
        [sys.executable, "-c", HELP_IMPORTS_SQLALCHEMY],
        cwd=folder,
        env=child_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return rows, check.stderr.strip().splitlines()[-1] == "True"


# -- output ------------------------------------------------------------------------------


def print_rows(rows: list[Row]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        name, *figures, target = row
        cells = [f"{cell:>{width}}" for cell, width in zip(figures, widths[1:4], strict=True)]
        print(f"{name:{widths[0]}}  {'  '.join(cells)}  {target}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run")
    quick = parser.parse_args().quick
    items = 200_000 if quick else 2_000_000
    repeat = 3 if quick else 7
    starts = 5 if quick else 10
    print(f"items per loop: {items:,}; best of {repeat}; start-ups: median of {starts}; "
          f"default checkpoint interval {DEFAULT_CHECKPOINT_INTERVAL:g} s")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="iterctl-bench-") as name:
        folder = Path(name)
        rows, plain_per_item = per_item(folder, items, repeat)
        rows += checkpoints(folder, 50 if quick else 200, plain_per_item, 0.5 if quick else 1.5)
        start_rows, help_imports_sqlalchemy = startup(folder, starts)
        rows += start_rows
    print_rows([("measure", "ours", "baseline", "ratio", "target"), *rows])
    print(f"`iterctl --help` imports sqlalchemy: {'yes' if help_imports_sqlalchemy else 'no'}")
    print("checkpoint 'in a run': (run time at --checkpoint-interval 0.05 - run time with no "
          "timed checkpoint) / extra checkpoints, best of 3 each; the share is that cost over "
          "one default interval.")  # fmt: skip


if __name__ == "__main__":
    main()
