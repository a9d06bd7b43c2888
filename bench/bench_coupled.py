"""Checkpoint-coupled writes and the durable checkpoint, as ratios to same-run baselines.

    python bench/bench_coupled.py                 # 200,000 orders; durable checkpoints
    python bench/bench_coupled.py --rows 1000000  # the issue's 1M orders (~2 min here)
    python bench/bench_coupled.py --quick         # 30,000 orders, fewer rounds: a smoke run

1. The backfill example (``jobs_examples/backfill.py``) on SQLite, in process through
   ``iterctl.launch.run_job`` (the path ``iterctl run`` takes), against two baselines, each
   on a fresh copy of the same orders file, taking turns, best of 3 (1 with ``--quick``):
   - **coupled**: ``--store`` is the orders' file, so the UPDATEs commit with each
     checkpoint (default interval, 5 s);
   - **keyset loop**: a hand-written SQLAlchemy loop, the same keyset query (500 rows a
     batch) and the same prepared UPDATE, committing every 5 s;
   - **per-item commit**: the example with its store in another file (the quickstart), an
     UPDATE committed per order in WAL mode with ``synchronous=NORMAL`` (no fsync per
     commit: durable against a crash of the process, not of the machine); and the keyset
     loop committing per order with ``synchronous=FULL`` (an fsync per commit, the
     durability of a checkpoint). Both timed for ``--per-item-seconds``: rates, not totals.
2. The durable checkpoint, ``--checkpoint-interval 0``: per item of a no-op job run by the
   Runner (each item one checkpoint, on the hold's session) against a raw driver loop doing
   one UPDATE of the same table plus a commit: ``sqlite3`` with the same
   ``journal_mode=WAL``/``synchronous=FULL``, and ``psycopg`` on PostgreSQL (if it is up).
   The two take turns in rounds; the figure is the median of the rounds' ratios, since
   fsync times on a shared disk swing by 10x from one second to the next.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import bindparam, select, tuple_

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench.bench_core and jobs_examples, from a clone

from bench.bench_core import NoOp, QuietReporter, RunnerRuns, print_rows  # noqa: E402
from iterctl.launch import run_job  # noqa: E402
from iterctl.runner import RunSettings  # noqa: E402
from iterctl.stopping import StopToken  # noqa: E402
from iterctl.stores import open_store  # noqa: E402
from iterctl.stores.base import JobRecord  # noqa: E402
from jobs_examples.backfill import SET_TAX, TAX_RATE_PERCENT, open_shop, orders  # noqa: E402
from jobs_examples.sqlite_file import sqlite_engine  # noqa: E402

Row = tuple[str, str, str, str, str]
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/{database}"


# -- 1. the backfill ---------------------------------------------------------------------


def fresh_copy(template: Path, folder: Path, name: str) -> Path:
    """A copy of the filled, untouched orders file (its WAL checkpointed into it)."""
    target = folder / name
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(template, target)
    return target


def run_backfill(db: Path, store: str, rows: int, max_runtime: float | None) -> tuple[float, int]:
    """Seconds and orders of one in-process ``iterctl run`` of the example."""
    started = time.perf_counter()
    result = run_job(
        job_path="jobs_examples.backfill:Backfill",
        job_id=f"bench-{os.getpid()}-{time.monotonic_ns()}",
        raw_params={"db": str(db), "rows": str(rows)},
        store_location=store,
        settings=RunSettings(max_runtime=max_runtime),
        token=StopToken(),
        reporter=QuietReporter(),
        announce_id=lambda _job_id: None,
    )
    if result.error is not None:
        raise RuntimeError(f"the backfill ended {result.outcome.name}: {result.error}")
    return time.perf_counter() - started, result.processed


def keyset_loop(
    db: Path, commit_every: float = 5.0, *, durable: bool = False, seconds: float | None = None
) -> tuple[float, int]:
    """The baseline: the same keyset walk and UPDATE by hand, a commit every 5 s.

    ``commit_every=0`` commits after every order; ``durable`` makes each commit fsync
    (``synchronous=FULL``, as iterctl's checkpoints do); ``seconds`` stops the walk early.
    """
    engine = sqlite_engine(db)
    deadline = time.monotonic() + (seconds if seconds is not None else 1e9)
    started = time.perf_counter()
    done = 0
    first = (
        select(orders.c.id, orders.c.amount_cents, orders.c.created_at)
        .where(orders.c.tax_cents.is_(None))
        .order_by(orders.c.created_at, orders.c.id)
        .limit(500)
    )
    key = tuple_(orders.c.created_at, orders.c.id)
    after = first.where(key > tuple_(bindparam("created_at", type_=orders.c.created_at.type),
                                     bindparam("id", type_=orders.c.id.type)))
    with engine.connect() as reader, engine.connect() as writer:
        if durable:
            writer.exec_driver_sql("PRAGMA synchronous=FULL")
        params: dict[str, object] | None = None
        next_commit = time.monotonic() + commit_every
        while True:
            query = first if params is None else after
            batch = reader.execute(query, params).all()
            reader.rollback()  # end the read snapshot, as the builder does per batch
            if not batch or time.monotonic() >= deadline:
                break
            for order in batch:
                writer.execute(SET_TAX, {
                    "order_id": order.id, "tax": order.amount_cents * TAX_RATE_PERCENT // 100,
                })  # fmt: skip
                done += 1
                if not commit_every or time.monotonic() >= next_commit:
                    writer.commit()
                    next_commit = time.monotonic() + commit_every
            params = {"created_at": batch[-1].created_at, "id": batch[-1].id}
        writer.commit()
    engine.dispose()
    return time.perf_counter() - started, done


def backfill_rows(folder: Path, rows: int, per_item_seconds: float, rounds: int) -> list[Row]:
    """The three variants take turns, each on a fresh copy of the orders; best of rounds."""
    template = folder / "template.db"
    open_shop(str(template), rows).dispose()
    with sqlite3.connect(template) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    variants: dict[str, Callable[[Path], tuple[float, int]]] = {
        "coupled": lambda db: run_backfill(db, f"sqlite:///{db}", rows, None),
        "loop": keyset_loop,
        "per-item": lambda db: run_backfill(
            db, f"sqlite:///{folder / 'other.db'}", rows, per_item_seconds
        ),
        "durable per-item": lambda db: keyset_loop(
            db, 0, durable=True, seconds=per_item_seconds
        ),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, variant in variants.items():
            seconds, done = variant(fresh_copy(template, folder, f"{name}.db"))
            rates[name].append(done / seconds)
    best = {name: max(found) for name, found in rates.items()}

    def rate(name: str) -> str:
        return f"{best[name]:,.0f}/s"

    return [
        (f"backfill {rows:,} orders, coupled vs keyset loop committing every 5 s",
         rate("coupled"), rate("loop"), f"{best['coupled'] / best['loop']:.2f}x", ">= 0.8x"),
        ("backfill, coupled vs the example committing per order (WAL, NORMAL)",
         rate("coupled"), rate("per-item"), f"{best['coupled'] / best['per-item']:.1f}x",
         ">= 10x"),
        ("backfill, coupled vs keyset loop committing per order, fsync'd (FULL)",
         rate("coupled"), rate("durable per-item"),
         f"{best['coupled'] / best['durable per-item']:.1f}x", ">= 10x"),
    ]  # fmt: skip


# -- 2. the durable checkpoint -----------------------------------------------------------


def raw_sqlite_loop(path: Path, job_id: str) -> Callable[[int], float]:
    """n raw ``sqlite3`` UPDATE+commit of a row of iterctl_jobs; returns seconds per one."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    sql = ("UPDATE iterctl_jobs SET cursor = ?, processed = ?, updated_at = ? "
           "WHERE job_id = ? AND partition_index = 0")  # fmt: skip

    def loop(n: int) -> float:
        started = time.perf_counter()
        for i in range(n):
            conn.execute(sql, (str(i), i, "2026-12-01T00:00:00", job_id))
            conn.commit()
        return (time.perf_counter() - started) / n

    return loop


def raw_psycopg_loop(url: str, job_id: str) -> Callable[[int], float]:
    """The same with psycopg on PostgreSQL (a transaction per UPDATE, then commit)."""
    import psycopg

    conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
    sql = ("UPDATE iterctl_jobs SET cursor = %s, processed = %s, updated_at = %s "
           "WHERE job_id = %s AND partition_index = 0")  # fmt: skip

    def loop(n: int) -> float:
        started = time.perf_counter()
        for i in range(n):
            conn.execute(sql, (str(i), i, "2026-12-01T00:00:00", job_id))
            conn.commit()
        return (time.perf_counter() - started) / n

    return loop


def runner_loop(location: str) -> tuple[Callable[[int], float], str]:
    """n items of a no-op job at --checkpoint-interval 0; returns seconds per item."""
    store = open_store(location)
    baseline_id = f"raw-{os.getpid()}-{time.monotonic_ns()}"
    store.create(JobRecord(baseline_id, "bench:Raw", {}))

    runs = RunnerRuns(store, 0)  # one object: each run gets a fresh job id

    def loop(n: int) -> float:
        runs.items = n
        seconds, _result = runs.timed_run(RunSettings(checkpoint_interval=0))
        return seconds / n

    return loop, baseline_id


def durable(kind: str, ours: Callable[[int], float], raw: Callable[[int], float],
            items: int, rounds: int) -> Row:  # fmt: skip
    ratios, our_times, raw_times = [], [], []
    ours(20)  # warm: the first checkpoint compiles its statement
    raw(20)
    for _ in range(rounds):
        mine, theirs = ours(items), raw(items)
        our_times.append(mine)
        raw_times.append(theirs)
        ratios.append(mine / theirs)
    return (f"checkpoint-interval 0, {kind}: per item vs raw UPDATE+commit",
            f"{statistics.median(our_times) * 1e3:.3f} ms",
            f"{statistics.median(raw_times) * 1e3:.3f} ms",
            f"{statistics.median(ratios):.2f}x", "<= 1.5x")  # fmt: skip


def durable_rows(folder: Path, items: int, rounds: int) -> list[Row]:
    NoOp.items = 0
    path = folder / "durable.db"
    ours, baseline_id = runner_loop(f"sqlite:///{path}")
    rows = [durable("SQLite WAL FULL", ours, raw_sqlite_loop(path, baseline_id), items, rounds)]
    database = os.environ.get("ITERCTL_TEST_DATABASE", "test")
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
    except OSError:
        print("PostgreSQL absent on 127.0.0.1:5432: its durable checkpoint is skipped")
        return rows
    url = POSTGRES.format(database=database)
    ours, baseline_id = runner_loop(url)
    rows.append(durable("PostgreSQL", ours, raw_psycopg_loop(url, baseline_id), items, rounds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run")
    parser.add_argument("--rows", type=int, default=None, help="orders (default 200,000)")
    parser.add_argument("--per-item-seconds", type=float, default=None,
                        help="how long the per-item-commit run goes (default 5 s)")  # fmt: skip
    args = parser.parse_args()
    rows = args.rows or (30_000 if args.quick else 200_000)
    per_item_seconds = args.per_item_seconds or (3.0 if args.quick else 5.0)
    items, rounds = (100, 5) if args.quick else (300, 9)
    backfills = 1 if args.quick else 3
    print(f"orders: {rows:,}, best of {backfills}; per-item-commit run: {per_item_seconds:g} s;"
          f" durable checkpoints: {rounds} rounds of {items} items each way")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="iterctl-bench-") as name:
        folder = Path(name)
        table = backfill_rows(folder, rows, per_item_seconds, backfills)
        table += durable_rows(folder, items, rounds)
    print_rows([("measure", "ours", "baseline", "ratio", "target"), *table])


if __name__ == "__main__":
    main()
