"""Enumerator speed and memory, as ratios against baselines measured in the same run.

    python bench/bench_enumerators.py           # 1,000,000 rows; 10,000,000-line files
    python bench/bench_enumerators.py --quick   # a tenth / a hundredth: a smoke run

Baselines: a plain ``csv.reader`` loop, a hand-written SQLAlchemy Core keyset loop (one
precompiled statement, batch 1,000), raw ``sqlite3`` streaming, and a plain
``json.loads`` loop. Times are the best of a few runs (wall clock). Peak memory is each
run's maximum RSS, measured in a fresh subprocess. Files go to a temporary folder that is
removed at the end. Figures are printed, never asserted: exit 0 unless something breaks.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, Table, bindparam, create_engine, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from iterctl.enumerators import csv_rows, jsonl_rows, records  # noqa: E402

Row = tuple[str, float, float, str]  # name, ours, baseline, target


def timings(run: Callable[[], object], repeat: int) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls of ``run()``."""
    found = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        found.append(time.perf_counter() - started)
    return found


def best(run: Callable[[], object], repeat: int = 3) -> float:
    """The shortest of a few timings: the one least disturbed by other processes."""
    return min(timings(run, repeat))


def latency(first_item: Callable[[], object], repeat: int = 25) -> float:
    """Median time to build an enumerator and get its first item."""
    return statistics.median(timings(first_item, repeat))


# -- data ------------------------------------------------------------------------------


def make_table(path: Path, rows: int) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                   "n INTEGER NOT NULL)")  # fmt: skip
        db.executemany("INSERT INTO items VALUES (?, ?, ?)",
                       ((i, f"name {i}", i * 7) for i in range(1, rows + 1)))  # fmt: skip


def make_csv(path: Path, lines: int, quoted: bool) -> None:
    name = '"name, {}"' if quoted else "name {}"
    template = "{}," + name + ",{}\n"
    with path.open("w") as f:
        f.write("id,name,n\n")
        for start in range(0, lines, 100_000):
            f.write("".join(template.format(i, i, i * 7)
                            for i in range(start, min(start + 100_000, lines))))  # fmt: skip


def make_jsonl(path: Path, lines: int) -> None:
    with path.open("w") as f:
        for start in range(0, lines, 100_000):
            f.write("".join(f'{{"id": {i}, "name": "name {i}", "n": {i * 7}}}\n'
                            for i in range(start, min(start + 100_000, lines))))  # fmt: skip


def line_start_near(path: Path, fraction: float) -> int:
    """A byte offset at the start of a line, ``fraction`` of the way into the file."""
    with path.open("rb") as f:
        f.seek(int(path.stat().st_size * fraction))
        f.readline()
        return f.tell()


# -- loops -----------------------------------------------------------------------------


def core_keyset(engine: Engine, table: Table) -> None:
    """What a careful user writes by hand: one statement, a bound id, 1,000 at a time."""
    page = select(table).where(table.c.id > bindparam("last")).order_by(table.c.id).limit(1000)
    last = 0
    while True:
        with engine.connect() as connection:
            rows = connection.execute(page, {"last": last}).fetchall()
        for _row in rows:
            pass
        if len(rows) < 1000:
            return
        last = rows[-1][0]


def raw_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as db:
        for _row in db.execute("SELECT id, name, n FROM items ORDER BY id"):
            pass


def ours_records(engine: Engine, table: Table) -> None:
    for _row, _cursor in records(engine, select(table), batch_size=1000):
        pass


def plain_csv(path: Path) -> None:
    with path.open(newline="") as f:
        for _row in csv.reader(f):
            pass


def ours_csv(path: Path) -> None:
    for _row, _cursor in csv_rows(path, header=False):
        pass


def plain_jsonl(path: Path) -> None:
    with path.open("rb") as f:
        for line in f:
            json.loads(line)


def ours_jsonl(path: Path) -> None:
    for _value, _cursor in jsonl_rows(path):
        pass


# -- memory, in a child process ----------------------------------------------------------


def child(kind: str, path: str) -> None:
    """Run one walk and print this process's peak RSS in kB."""
    if kind == "sql":
        engine = create_engine(f"sqlite:///{path}")
        ours_records(engine, Table("items", MetaData(), autoload_with=engine))
    elif kind == "csv":
        ours_csv(Path(path))
    else:
        ours_jsonl(Path(path))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def peak_kb(kind: str, path: Path) -> int:
    found = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return int(found.stdout.split()[-1])


# -- the run ---------------------------------------------------------------------------


def speed(folder: Path, rows: int) -> list[Row]:
    db = folder / "items.db"
    make_table(db, rows)
    engine = create_engine(f"sqlite:///{db}")
    table = Table("items", MetaData(), autoload_with=engine)
    plain, quoted, values = folder / "plain.csv", folder / "quoted.csv", folder / "v.jsonl"
    make_csv(plain, rows, quoted=False)
    make_csv(quoted, rows, quoted=True)
    make_jsonl(values, rows)
    ours = best(lambda: ours_records(engine, table))
    results = [
        ("SQL records vs hand-written Core keyset", ours,
         best(lambda: core_keyset(engine, table)), "<= 1.25"),
        ("SQL records vs raw sqlite3 streaming", ours, best(lambda: raw_sqlite(db)), "<= 2"),
        ("CSV rows vs csv.reader (no quotes)", best(lambda: ours_csv(plain)),
         best(lambda: plain_csv(plain)), "<= 1.3"),
        ("CSV rows vs csv.reader (quoted commas)", best(lambda: ours_csv(quoted)),
         best(lambda: plain_csv(quoted)), "<= 1.3"),
        ("JSON Lines rows vs json.loads loop", best(lambda: ours_jsonl(values)),
         best(lambda: plain_jsonl(values)), "-"),
    ]  # fmt: skip

    def first(pairs: Any) -> None:
        next(iter(pairs))

    at_90 = [int(rows * 0.9)]
    results.append((
        "SQL resume latency: at 90% vs at 0",
        latency(lambda: first(records(engine, select(table), batch_size=1000, cursor=at_90))),
        latency(lambda: first(records(engine, select(table), batch_size=1000))),
        "<= 2",
    ))  # fmt: skip
    engine.dispose()
    return results


def resume_files(folder: Path, lines: int) -> list[Row]:
    big_csv, big_jsonl = folder / "big.csv", folder / "big.jsonl"
    make_csv(big_csv, lines, quoted=False)
    make_jsonl(big_jsonl, lines)
    csv_at, jsonl_at = line_start_near(big_csv, 0.9), line_start_near(big_jsonl, 0.9)
    results = [
        ("CSV resume latency: at 90% vs at 0",
         latency(lambda: next(iter(csv_rows(big_csv, cursor=csv_at)))),
         latency(lambda: next(iter(csv_rows(big_csv)))), "<= 2"),
        ("JSON Lines resume latency: at 90% vs at 0",
         latency(lambda: next(iter(jsonl_rows(big_jsonl, cursor=jsonl_at)))),
         latency(lambda: next(iter(jsonl_rows(big_jsonl)))), "<= 2"),
    ]  # fmt: skip
    big_csv.unlink()
    big_jsonl.unlink()
    return results


def memory(folder: Path, rows: int) -> list[tuple[str, int, int]]:
    found = []
    small = max(rows // 100, 1000)
    for kind, suffix in (("sql", "db"), ("csv", "csv"), ("jsonl", "jsonl")):
        paths = {}
        for size in (small, rows):
            path = folder / f"mem-{size}.{suffix}"
            if kind == "sql":
                make_table(path, size)
            elif kind == "csv":
                make_csv(path, size, quoted=True)
            else:
                make_jsonl(path, size)
            paths[size] = path
        found.append((kind, peak_kb(kind, paths[small]), peak_kb(kind, paths[rows])))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(*options.child)
        return
    rows = 100_000 if options.quick else 1_000_000
    lines = 100_000 if options.quick else 10_000_000
    with tempfile.TemporaryDirectory(prefix="iterctl-bench-") as name:
        folder = Path(name)
        timed = speed(folder, rows) + resume_files(folder, lines)
        peaks = memory(folder, rows)
    print(f"rows: {rows:,}; lines for resume latency: {lines:,}")
    print(f"{'measure':46} {'ours':>11} {'baseline':>11} {'ratio':>6}  target")
    for label, ours, base, target in timed:
        unit, scale = ("ms", 1e3) if "latency" in label else ("s", 1.0)
        print(f"{label:46} {ours * scale:9.3f}{unit:>2} {base * scale:9.3f}{unit:>2} "
              f"{ours / base:6.2f}  {target}")  # fmt: skip
    if not options.quick:
        per_row = [r for r in timed if r[0].startswith("SQL records")]
        print(
            f"SQL records: {per_row[0][1] / rows * 1e6:.2f} µs/row; hand-written Core "
            f"{per_row[0][2] / rows * 1e6:.2f}; raw sqlite3 {per_row[1][2] / rows * 1e6:.2f}"
        )
    small = max(rows // 100, 1000)
    for kind, low, high in peaks:
        print(
            f"peak RSS, {kind:5}: {small:,} rows {low / 1024:6.1f} MB, {rows:,} rows "
            f"{high / 1024:6.1f} MB, difference {(high - low) / 1024:5.1f} MB (target <= 20)"
        )


if __name__ == "__main__":
    main()
