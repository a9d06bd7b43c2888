"""Run history, the read-only hold probe and delete, on every store.

Invariants:
- ``live_holds`` names exactly the holds a live store object has, and never takes one:
  a probe between two acquisitions changes nothing for either.
- Each acquisition of a resumable record starts one run row in the same write; a row
  left open by a process that died is marked lost at the next acquisition; at most
  ``RUNS_KEPT`` rows are kept per partition, the newest.
- ``delete`` refuses (and removes nothing) while any partition is held, and otherwise
  leaves no row of the job id behind.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from iterctl.errors import JobHeldError
from iterctl.stores import Store
from iterctl.stores.base import (
    RUNS_KEPT,
    Checkpoint,
    Hold,
    JobRecord,
    RunEnd,
    RunOutcome,
    Status,
    as_seen,
)
from tests.stores.conftest import StoreUnderTest, location_of, new_record


def test_live_holds_names_held_ids_only_and_takes_nothing(stores: StoreUnderTest) -> None:
    """A probe from another store object sees the hold, and does not stop a later
    acquisition once the hold is released."""
    runner, prober = stores.open(), stores.open()
    held, free = new_record(), new_record()
    runner.create(held)
    runner.create(free)
    hold = runner.acquire(held.job_id)
    names = [held.job_id, free.job_id, "never-created"]
    assert prober.live_holds(names) == {held.job_id}
    assert prober.live_holds([]) == set()
    runner.release(hold)
    assert prober.live_holds(names) == set()
    _acquire_soon(prober, held.job_id)  # the probe left nothing behind that would refuse this
    assert runner.live_holds(names) == {held.job_id}


def test_a_run_row_per_acquisition_with_its_end(stores: StoreUnderTest) -> None:
    """Acquire starts a run (running, cursor at start); checkpoints move its items;
    end_run records outcome, exit code, reason and items done in that run."""
    store = stores.open()
    record = new_record()
    store.create(record)
    hold = store.acquire(record.job_id)
    (run,) = store.runs(record.job_id)
    assert (run.fence, run.outcome, run.ended_at, run.items) == (1, RunOutcome.RUNNING, None, 0)
    store.checkpoint(hold, Checkpoint("4", 5, Status.RUNNING, elapsed=2.5, rate=2.0))
    (run,) = store.runs(record.job_id)
    assert (run.items, run.cursor_end_json) == (5, "4")
    store.checkpoint(hold, Checkpoint("6", 7, Status.INTERRUPTED))
    store.end_run(hold, RunEnd(RunOutcome.STOPPED, 75, "SIGTERM", 7, "6"))
    store.release(hold)
    second = store.acquire(record.job_id)
    store.end_run(second, RunEnd(RunOutcome.SUCCEEDED, 0, None, 10, "9"))
    newest, oldest = store.runs(record.job_id)
    assert (oldest.outcome, oldest.exit_code, oldest.reason, oldest.items) == (
        RunOutcome.STOPPED, 75, "SIGTERM", 7,
    )  # fmt: skip
    assert oldest.ended_at is not None
    assert oldest.cursor_start_json is None
    assert (newest.fence, newest.outcome, newest.items, newest.cursor_start_json) == (
        2, RunOutcome.SUCCEEDED, 3, "6",
    )  # fmt: skip
    saved = store.get(record.job_id)
    assert saved is not None
    assert (saved.elapsed, saved.rate) == (2.5, 2.0)
    assert len(store.runs(record.job_id, limit=1)) == 1


def test_a_run_left_open_is_lost_seen_at_once_and_marked_at_the_next_start(
    stores: StoreUnderTest,
) -> None:
    """A holder that dies without a word leaves its run open: views show it lost as soon
    as its hold is gone, and the next acquisition writes it so."""
    dead, reader = stores.open(), stores.open()
    record = new_record()
    dead.create(record)
    hold = dead.acquire(record.job_id)
    dead.checkpoint(hold, Checkpoint("2", 3, Status.RUNNING))
    (open_run,) = reader.runs(record.job_id)
    assert as_seen(open_run, reader.live_holds([record.job_id])).outcome is RunOutcome.RUNNING
    dead.release(hold)  # as the kernel or the server does for a killed process
    assert as_seen(open_run, reader.live_holds([record.job_id])).outcome is RunOutcome.LOST
    _acquire_soon(reader, record.job_id)
    newest, lost = reader.runs(record.job_id)
    assert (lost.outcome, lost.items, lost.ended_at) == (RunOutcome.LOST, 3, None)
    assert newest.outcome is RunOutcome.RUNNING


@pytest.mark.parametrize("runs", [500])
def test_a_crash_loop_keeps_only_the_newest_runs(stores: StoreUnderTest, runs: int) -> None:
    """500 runs that die at once (acquire, release, no word): the store keeps RUNS_KEPT
    rows, the newest, all lost but the last; the record still counts every one."""
    if stores.kind in ("postgres", "mysql", "json"):
        # A new server session or an fsync'd file per acquisition (~70 ms on MariaDB):
        # past the bound is enough to prove it; 500 here would cost a minute of suite.
        runs = RUNS_KEPT + 10
    store = stores.open()
    record = new_record()
    store.create(record)
    for _ in range(runs):
        store.release(_acquire_soon(store, record.job_id))
    kept = store.runs(record.job_id)
    assert len(kept) == RUNS_KEPT
    assert [run.fence for run in kept] == list(range(runs, runs - RUNS_KEPT, -1))
    assert {run.outcome for run in kept[1:]} == {RunOutcome.LOST}
    saved = store.get(record.job_id)
    assert saved is not None
    assert saved.times_interrupted == runs - 1


def _acquire_soon(store: Store, job_id: str) -> Hold:
    """Acquire, waiting out a server that has not yet ended the session just released
    (the server frees a closed session's locks a moment after the socket closes)."""
    deadline = time.monotonic() + 5
    while True:
        try:
            return store.acquire(job_id)
        except JobHeldError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def test_delete_is_refused_while_held_and_then_removes_every_row(stores: StoreUnderTest) -> None:
    """While a partition is held, delete raises and removes nothing; afterwards the job's
    records and runs are gone and the id can be created anew."""
    runner, operator = stores.open(), stores.open()
    job_id = new_record().job_id
    parts = [JobRecord(job_id, "tests.jobs:Count", {}, partition=i, partitions=3) for i in range(3)]
    runner.create_partitions(parts)
    other = new_record()
    runner.create(other)
    hold = runner.acquire(job_id, 1)
    with pytest.raises(JobHeldError, match=r"running"):
        operator.delete(job_id)
    assert len(operator.partitions(job_id)) == 3
    runner.end_run(hold, RunEnd(RunOutcome.STOPPED, 75, "SIGTERM", 0, None))
    runner.release(hold)
    deadline = time.monotonic() + 5
    while True:  # a server frees a released session's locks a moment later
        try:
            assert operator.delete(job_id) == 3
            break
        except JobHeldError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)
    assert operator.partitions(job_id) == []
    assert operator.runs(job_id) == []
    assert operator.get(other.job_id) is not None  # nothing else touched
    _stored, created = operator.create(JobRecord(job_id, "tests.jobs:Count", {}))
    assert created
    _acquire_soon(operator, job_id)  # the hold works after its lock file went


@pytest.mark.parametrize(
    "kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
             pytest.param("mysql", marks=pytest.mark.mysql)],
)  # fmt: skip
def test_a_status_view_asks_the_database_a_fixed_number_of_times(kind: str, tmp_path: Path) -> None:
    """Records, then live holds: as many statements for 40 running partitions as for 4
    (the probe is one query of pg_locks or IS_USED_LOCK, or file locks on SQLite)."""
    from sqlalchemy import event

    from iterctl.overview import store_overview
    from iterctl.stores.sql import SqlStore

    store = StoreUnderTest(kind, location_of(kind, tmp_path))
    try:
        opened = store.open()
        assert isinstance(opened, SqlStore)
        sent: list[str] = []

        def count(*args: object) -> None:
            sent.append(str(args[2]))

        event.listen(opened._engine, "before_cursor_execute", count)
        counts = []
        for size in (4, 40):
            job_id = new_record().job_id
            parts = [JobRecord(job_id, "tests.jobs:Count", {}, partition=i, partitions=size)
                     for i in range(size)]  # fmt: skip
            opened.create_partitions(parts)
            # Four partitions held (a hold is a session of its own); the others say
            # running with nobody holding them.
            held = set(range(0, size, size // 4))
            holds = [opened.acquire(job_id, i) for i in sorted(held)]
            sent.clear()
            (view,) = store_overview(opened, job_id)
            counts.append(len(sent))
            assert [p["status"] for p in view["partitions"]] == [
                "running" if i in held else "interrupted" for i in range(size)
            ]
            for hold in holds:
                opened.release(hold)
        assert counts[0] == counts[1] <= 2
    finally:
        store.close_all()
