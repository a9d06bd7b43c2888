"""Partitioned jobs on PostgreSQL: scale-out throughput, and the store's load at scale.

    python bench/bench_partitions.py           # 3,000 items per partition; 10 s of load
    python bench/bench_partitions.py --quick   # 500 items; 4 s of load: a smoke run

(a) Scale-out. An I/O-bound job (each item sleeps 1 ms) run as 1, 2, 4 and 8 partitions,
each a real ``iterctl run --partitions N --partition I`` process, all at once, against
the local PostgreSQL. Start-up (importing iterctl, SQLAlchemy, the driver: about 0.6 s
of CPU each) is kept out of the figure: each partition waits at a barrier once it holds
its partition, and the clock starts when all are there. Throughput is the job's items
over the time from that moment to its last item; the ratio compares it with N times the
1-partition throughput measured in the same run (target: at least 0.9).

(b) Store load. 1,000 partitions of one job, each checkpointing once a second, simulated
by a few processes of threads calling ``store.checkpoint`` on the local PostgreSQL (the
holds are built from the records, not acquired: 1,000 advisory-lock sessions would pass
PostgreSQL's default max_connections of 100). Reported: the write rate sustained, the
latency of one checkpoint (median, p99), and how late the last one ran; then the same
processes flat out, for the store's ceiling on this machine.

Figures are printed, never asserted: exit 0 unless something breaks. The job ids are new
on every run; their rows stay in the store.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from iterctl import IterctlError, Job  # noqa: E402
from iterctl.cursor import Cursor  # noqa: E402
from iterctl.enumerators.ranges import IntRange, int_range  # noqa: E402
from iterctl.stores import open_store  # noqa: E402
from iterctl.stores.base import Checkpoint, Hold, JobRecord, Status  # noqa: E402

STORE = os.environ.get("ITERCTL_BENCH_STORE", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class SleepyItems(Job):
    """Items 0 .. total-1 of 1 ms each, split by iterctl; waits at a barrier before the
    first item and writes ``<end time> <items>`` to ``{out}/done-I`` at the end."""

    _done = 0

    def build_enumerator(self, cursor: Cursor) -> IntRange:
        return int_range(0, int(self.params["total"]), cursor=cursor)

    def on_start(self) -> None:
        # Called once this process holds its partition, before its first item (and not
        # while the first process plans the split, which also builds the enumerator).
        out = Path(self.params["out"])
        index = 0 if self.partition is None else self.partition.index
        (out / f"ready-{index}").touch()
        while not (out / "go").exists() and not self.stop_token.requested:
            time.sleep(0.001)

    def each_iteration(self, item: int) -> None:
        time.sleep(0.001)
        self._done += 1

    def on_complete(self) -> None:
        index = 0 if self.partition is None else self.partition.index
        out = Path(self.params["out"])
        (out / f"done-{index}").write_text(f"{time.time()} {self._done}\n")


# -- (a) scale-out ---------------------------------------------------------------------


def scale_out(partitions: int, items: int, folder: Path) -> float:
    """Items per second of one job in ``partitions`` concurrent processes, after start-up."""
    out = folder / f"n{partitions}"
    out.mkdir()
    job_id = f"bench-scale-{secrets.token_hex(4)}"
    command = [sys.executable, "-m", "iterctl", "run", "bench_partitions:SleepyItems",
               "--job-id", job_id, "--store", STORE, "--partitions", str(partitions),
               "--checkpoint-interval", "1",
               "--param", f"total={items * partitions}", "--param", f"out={out}"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("ITERCTL_")}
    processes = [
        subprocess.Popen(
            [*command, "--partition", str(index)],
            cwd=HERE,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for index in range(partitions)
    ]
    try:
        while len(list(out.glob("ready-*"))) < partitions:
            if any(p.poll() is not None for p in processes):
                break
            time.sleep(0.001)
        started = time.time()
        (out / "go").touch()
        for process in processes:
            _, stderr = process.communicate(timeout=600)
            if process.returncode != 0:
                raise SystemExit(f"iterctl exited {process.returncode}: {stderr.decode()[-500:]}")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    ends, done = [], 0
    for index in range(partitions):
        end, count = (out / f"done-{index}").read_text().split()
        ends.append(float(end))
        done += int(count)
    return done / (max(ends) - started)


# -- (b) store load --------------------------------------------------------------------


def create_job(partitions: int) -> str:
    """A job of ``partitions`` records, each marked running under fence 1."""
    job_id = f"bench-load-{secrets.token_hex(4)}"
    store = open_store(STORE)
    try:
        records = [
            JobRecord(job_id, "bench:Load", {}, partition=i, partitions=partitions, fence=1)
            for i in range(partitions)
        ]
        store.create_partitions(records)
    finally:
        store.close()
    return job_id


def checkpoint_worker(
    job_id: str, mine: list[int], partitions: int, threads: int, seconds: float, start: float,
    interval: float, results: Any,
) -> None:  # fmt: skip
    """One process: ``threads`` threads share ``mine``; each partition checkpoints every
    ``interval`` seconds (0: as fast as possible) from ``start`` on, for ``seconds``."""
    store = open_store(STORE)
    latencies: list[float] = []
    lateness = [0.0]
    lock = threading.Lock()

    def run(slice_: list[int]) -> None:
        local: list[float] = []
        worst = 0.0
        record = JobRecord(job_id, "bench:Load", {}, partitions=partitions)
        holds = [Hold(job_id, 1, record, partition) for partition in slice_]
        for processed, due in enumerate(_schedule(slice_, partitions, start, seconds, interval), 1):
            partition_hold = holds[due[1]]
            if interval:
                wait = due[0] - time.time()
                if wait > 0:
                    time.sleep(wait)
                worst = max(worst, -wait)
            elif time.time() > start + seconds:
                break
            began = time.perf_counter()
            store.checkpoint(partition_hold, Checkpoint(str(processed), processed, Status.RUNNING))
            local.append(time.perf_counter() - began)
        with lock:
            latencies.extend(local)
            lateness[0] = max(lateness[0], worst)

    slices = [mine[i::threads] for i in range(threads)]
    workers = [threading.Thread(target=run, args=(s,)) for s in slices if s]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    store.close()
    results.put((latencies, lateness[0]))


def _schedule(
    slice_: list[int], partitions: int, start: float, seconds: float, interval: float
) -> Iterator[tuple[float, int]]:
    """(due time, position in slice) of each checkpoint, in time order; partitions are
    spread evenly over the interval, as pods started at random moments would be."""
    if not interval:
        while True:
            yield from ((start, position) for position in range(len(slice_)))
    rounds = int(seconds / interval)
    for n in range(rounds):
        for position, partition in enumerate(slice_):
            yield start + (n + partition / partitions) * interval, position


def store_load(
    partitions: int, seconds: float, interval: float, processes: int, threads: int
) -> tuple[float, list[float], float]:
    """Checkpoints per second, each one's latency, and the worst lateness."""
    job_id = create_job(partitions)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start = time.time() + 1.0  # every process connected before the first is due
    workers = [
        context.Process(
            target=checkpoint_worker,
            args=(
                job_id,
                list(range(partitions))[i::processes],
                partitions,
                threads,
                seconds,
                start,
                interval,
                results,
            ),
        )
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    latencies: list[float] = []
    late = 0.0
    for _ in workers:
        found, lateness = results.get(timeout=seconds + 120)
        latencies.extend(found)
        late = max(late, lateness)
    for worker in workers:
        worker.join()
    elapsed = max(time.time() - start, seconds) if interval else seconds
    return len(latencies) / elapsed, latencies, late


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    options = parser.parse_args()
    items = 500 if options.quick else 3000
    seconds = 4.0 if options.quick else 10.0
    cores = os.cpu_count()
    try:
        open_store(STORE).close()
    except IterctlError as error:
        print(f"skipped: the store {STORE} cannot be used ({error})")
        return
    print(f"store: {STORE}; {cores} CPU cores; Python {sys.version.split()[0]}")

    print(f"\n(a) scale-out: {items} items of 1 ms per partition, partitions run at once")
    with tempfile.TemporaryDirectory() as folder:
        one = 0.0
        for partitions in (1, 2, 4, 8):
            rate = scale_out(partitions, items, Path(folder))
            one = one or rate
            print(f"  {partitions} partition(s): {rate:8.0f} items/s   "
                  f"ratio to {partitions} x 1 partition: {rate / (partitions * one):.3f}"
                  "   (target >= 0.9)")  # fmt: skip

    print(f"\n(b) store load: 1,000 partitions checkpointing every 1 s for {seconds:.0f} s")
    rate, latencies, late = store_load(1000, seconds, 1.0, processes=4, threads=16)
    quantiles = statistics.quantiles(latencies, n=100)
    print(f"  sustained: {rate:7.0f} checkpoints/s (1,000 asked)   latency median "
          f"{_ms(statistics.median(latencies))}, p99 {_ms(quantiles[98])}; "
          f"latest start {_ms(late)} behind schedule")  # fmt: skip
    ceiling, flat, _ = store_load(1000, seconds / 2, 0.0, processes=4, threads=16)
    quantiles = statistics.quantiles(flat, n=100)
    print(f"  flat out:  {ceiling:7.0f} checkpoints/s (64 writers)   latency median "
          f"{_ms(statistics.median(flat))}, p99 {_ms(quantiles[98])}")  # fmt: skip


if __name__ == "__main__":
    main()
