"""The operator's view: what status costs on a big store, and what metrics and watch cost
the loop, as ratios against baselines measured in the same run.

    python bench/bench_operator.py           # 10,000 jobs + 1,000 partitions; 1,000,000 items
    python bench/bench_operator.py --quick   # 1,000 jobs + 100 partitions; 200,000 items

1. ``status`` on a store of N job records plus one job of P partitions (every partition
   marked running, some held by a live process, the rest not: the probe's worst case), on
   SQLite and, when it is up, PostgreSQL: the seconds of the JSON view (records + live
   holds) and of the table, and the number of SQL statements each view sends (counted
   with SQLAlchemy's ``before_cursor_execute`` event: it must not grow with N or P).
2. Per-item cost: ``Runner.run()`` on a no-op job (memory store), alone and while
   ``--metrics-port`` serves it and a scraper reads /metrics ten times a second, and on
   SQLite while another process runs ``status`` once a second, as ``--watch`` does.

Figures are printed, never asserted: exit 0 unless something breaks.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_core import NoOp, QuietReporter
from iterctl.metrics import serve_metrics
from iterctl.overview import store_overview
from iterctl.runner import Runner, RunSettings
from iterctl.runstats import RunStats
from iterctl.stopping import StopToken
from iterctl.stores import open_store
from iterctl.stores.base import JobRecord, Status, Store
from iterctl.stores.memory import MemoryStore
from iterctl.stores.sql import SqlStore, _row, jobs_table

DATABASE = os.environ.get("ITERCTL_TEST_DATABASE", "test")
POSTGRES = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DATABASE}"


def seconds_of(run: Callable[[], object]) -> float:
    started = time.perf_counter_ns()
    run()
    return (time.perf_counter_ns() - started) / 1e9


# -- 1. status on a big store -------------------------------------------------------------


def fill(store: SqlStore, prefix: str, jobs: int, partitions: int) -> list[Any]:
    """N plain jobs and one job of P partitions, all marked running, every (P/12)th of
    them held by this process."""
    records = [JobRecord(f"{prefix}-{n}", "bench:NoOp", {}, status=Status.SUCCEEDED,
                         processed=n, total=jobs) for n in range(jobs)]  # fmt: skip
    with store._engine.begin() as conn:
        conn.execute(insert(jobs_table), [_row(record) for record in records])
    parts = [JobRecord(f"{prefix}-big", "bench:NoOp", {}, partition=i, partitions=partitions,
                       status=Status.INTERRUPTED) for i in range(partitions)]  # fmt: skip
    store.create_partitions(parts)
    # Each hold is a session of its own (a pooled connection on SQLite): a dozen or so.
    step = max(2, partitions // 12)
    holds = [store.acquire(f"{prefix}-big", i) for i in range(0, partitions, step)]
    # The other half say running with nobody holding them: a killed pod's partitions.
    with store._engine.begin() as conn:
        conn.execute(jobs_table.update().where(jobs_table.c.job_id == f"{prefix}-big")
                     .values(status=Status.RUNNING.value))  # fmt: skip
    return holds


def status_costs(url: str, label: str, jobs: int, partitions: int) -> list[str]:
    prefix = f"bench-{os.getpid()}"
    store = open_store(url)
    assert isinstance(store, SqlStore)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(store._engine, "before_cursor_execute", count)
    lines = []
    big_id = f"{prefix}-big"
    holds: list[Any] = []
    try:
        holds = fill(store, prefix, jobs, partitions)
        views: list[tuple[str, Callable[[], object]]] = [
            ("status --json (all jobs)", lambda: store_overview(store)),
            (f"status JOB_ID ({partitions:,} partitions)", lambda: store_overview(store, big_id)),
        ]
        for view, run in views:
            run()  # warm: the first call opens the connection and pages
            statements.clear()
            took = min(seconds_of(run) for _ in range(3))
            sent = len(statements) // 3
            lines.append(f"{label}: {view}: {took * 1000:,.0f} ms, {sent} SQL statement(s)")
        jobs_view = store_overview(store)
        big = next(job for job in jobs_view if job["job_id"] == f"{prefix}-big")
        gone = sum(part["holder_gone"] for part in big["partitions"])
        lines.append(f"{label}: partitions shown holder gone: {gone:,} of {partitions:,}")
        from rich.console import Console

        from iterctl.report import print_status_table

        console = Console(file=io.StringIO(), width=100, force_terminal=True)
        took = seconds_of(lambda: print_status_table(jobs_view, console))
        lines.append(f"{label}: the table of {len(jobs_view):,} jobs, on a terminal: "
                     f"{took * 1000:,.0f} ms")  # fmt: skip
        piped = Console(file=io.StringIO(), width=200)
        took = seconds_of(lambda: print_status_table(jobs_view, piped))
        lines.append(f"{label}: the same table into a pipe: {took * 1000:,.0f} ms")
    finally:
        for hold in holds:
            store.release(hold)
        with store._engine.begin() as conn:
            conn.execute(jobs_table.delete().where(jobs_table.c.job_id.like(f"{prefix}-%")))
        store.close()
    return lines


def server_up(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


# -- 2. per-item cost of metrics and watch -------------------------------------------------


def timed_run(store: Store, items: int, tag: str, metrics: bool = False) -> float:
    job_id = f"loop-{os.getpid()}-{tag}-{time.monotonic_ns()}"
    store.create(JobRecord(job_id, "bench:NoOp", {}))
    hold = store.acquire(job_id)
    job = NoOp(job_id=job_id)
    job.items = items
    stats = RunStats(hold.record)
    stop_serving: Callable[[], None] | None = None
    scraping = threading.Event()
    if metrics:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        stop_serving = serve_metrics(port, stats)

        def scrape() -> None:
            while not scraping.wait(0.1):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()

        threading.Thread(target=scrape, daemon=True).start()
    runner = Runner(job, store, hold, token=StopToken(), reporter=QuietReporter(),
                    settings=RunSettings(), first_run=True, stats=stats)  # fmt: skip
    try:
        took = seconds_of(runner.run)
    finally:
        scraping.set()
        if stop_serving is not None:
            stop_serving()
        store.release(hold)
    return took


def loop_costs(folder: Path, items: int, repeat: int) -> list[str]:
    """The runs take turns (alone, then with the feature on), each keeping its best, so a
    burst of load elsewhere on the machine hits both alike."""
    memory = MemoryStore()
    url = f"sqlite:///{folder / 'watched.db'}"
    sqlite = open_store(url)
    watcher = subprocess.Popen(
        [sys.executable, "-c", (
            "import time\n"
            "from iterctl.stores import open_store\n"
            "from iterctl.overview import store_overview\n"
            f"store = open_store({url!r})\n"
            "while True:\n    store_overview(store); time.sleep(1.0)\n"
        )],
    )  # fmt: skip
    found: dict[str, list[float]] = {"plain": [], "served": [], "alone": [], "watched": []}
    try:
        time.sleep(1.0)  # let the watcher import and start reading
        for _ in range(repeat):
            found["plain"].append(timed_run(memory, items, "plain"))
            found["served"].append(timed_run(memory, items, "metrics", metrics=True))
            watcher.send_signal(signal.SIGSTOP)
            found["alone"].append(timed_run(sqlite, items, "alone"))
            watcher.send_signal(signal.SIGCONT)
            found["watched"].append(timed_run(sqlite, items, "watched"))
    finally:
        watcher.kill()
        watcher.wait()
        sqlite.close()
    best = {name: min(times) * 1e9 / items for name, times in found.items()}
    return [
        f"per item, memory store: {best['plain']:.1f} ns alone, {best['served']:.1f} ns with "
        f"/metrics served and scraped 10/s: {best['served'] / best['plain']:.2f}x",
        f"per item, SQLite store: {best['alone']:.1f} ns alone, {best['watched']:.1f} ns while "
        f"another process reads status once a second: {best['watched'] / best['alone']:.2f}x",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run")
    quick = parser.parse_args().quick
    jobs, partitions, items = (1_000, 100, 200_000) if quick else (10_000, 1_000, 1_000_000)
    with tempfile.TemporaryDirectory() as folder:
        lines = status_costs(f"sqlite:///{Path(folder) / 'big.db'}", "SQLite", jobs, partitions)
        if server_up(5432):
            lines += status_costs(POSTGRES, "PostgreSQL", jobs, partitions)
        else:
            lines.append("PostgreSQL: not running on 127.0.0.1:5432, skipped")
        lines += loop_costs(Path(folder), items, 3 if quick else 5)
    for line in lines:
        print(line, flush=True)


if __name__ == "__main__":
    main()
