"""--concurrency N with the real process and real signals (CONTRACT §2, §4).

Each test checks the store after every stop against the job's own log: the watermark plus
the done set must describe exactly the items that the log says finished.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from typing import Any

import pytest

from iterctl.stores import open_store
from iterctl.stores.base import JobRecord
from iterctl.window import Window
from tests.cli.conftest import Workdir

SEED = int.from_bytes(os.urandom(4), "big")


@pytest.fixture
def rng() -> random.Random:
    """Random stop points; the seed is in every assertion message, to replay a failure."""
    return random.Random(SEED)  # noqa: S311 - signal timing, not cryptography


def _command(workdir: Workdir, job: str, job_id: str, *extra: str) -> list[str]:
    return [
        "run", f"testjobs:{job}", "--job-id", job_id, "--param", f"log={workdir.log}", *extra,
    ]  # fmt: skip


def _record(workdir: Workdir, job_id: str) -> JobRecord:
    store = open_store(f"sqlite:///{workdir.path / 'iterctl.db'}", create=False)
    try:
        record = store.get(job_id)
    finally:
        store.close()
    assert record is not None
    return record


def _saved_items(record: JobRecord, to_item: Any = int) -> set[int]:
    """Items the store counts as done: up to the watermark, plus the done set."""
    watermark = None if record.cursor_json is None else to_item(json.loads(record.cursor_json))
    done = {to_item(cursor) for cursor in json.loads(record.done_json or "[]")}
    return set(range(watermark + 1 if watermark is not None else 0)) | done


def _from_key(cursor: str) -> int:
    return int(cursor[1:])  # AsyncConcurrent's cursors: "k0042"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("job", "workers", "count", "max_delay", "to_item"),
    [
        ("Concurrent", 8, 1500, "0.01", int),
        ("Concurrent", 32, 3000, "0.01", int),
        ("AsyncConcurrent", 64, 4000, "0.04", _from_key),
    ],
    ids=["threads-8", "threads-32", "async-64"],
)
def test_random_sigterms_every_item_exactly_once_and_every_stop_exits_75(
    workdir: Workdir,
    rng: random.Random,
    job: str,
    workers: int,
    count: int,
    max_delay: str,
    to_item: Any,
) -> None:
    """SIGTERM at random moments: each stop drains the items in flight within the slowest
    item plus one second, exits 75, and saves exactly the items that finished; the same
    command then goes on; in the end every item ran exactly once."""
    command = _command(
        workdir, job, f"terms-{workers}", "--concurrency", str(workers),
        "--param", f"count={count}", "--param", f"max_delay={max_delay}",
    )  # fmt: skip
    for stop in range(5):
        process = workdir.start(*command)
        workdir.wait_items(rng.randint(1, count // 12), process)
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        finished = workdir.finish(process)
        # Slowest item + 1 s, and 1 s more for this shared machine.
        assert time.monotonic() - signalled < float(max_delay) + 2, f"seed {SEED}"
        assert finished.returncode == 75, f"stop {stop}, seed {SEED}: {finished.stderr}"
        record = _record(workdir, f"terms-{workers}")
        logged = workdir.items()
        assert _saved_items(record, to_item) == set(logged), f"stop {stop}, seed {SEED}"
        assert record.processed == len(logged), f"seed {SEED}"
        assert record.concurrency == workers
    final = workdir.run(*command)

    assert final.returncode == 0, final.stderr
    assert sorted(workdir.items()) == list(range(count)), f"seed {SEED}"
    status = workdir.status(f"terms-{workers}")
    assert (status["processed"], status["times_interrupted"]) == (count, 5)
    assert status["concurrency"] == workers


@pytest.mark.slow
@pytest.mark.parametrize("job", ["Concurrent", "AsyncConcurrent"])
def test_random_sigkills_skip_nothing_and_redo_at_most_what_was_in_flight(
    workdir: Workdir, rng: random.Random, job: str
) -> None:
    """SIGKILL at random moments with --checkpoint-interval 0, on threads and on asyncio
    tasks: the store never runs ahead of the log, resume skips nothing, and each kill
    redoes at most the items in flight plus those finished since the last checkpoint
    (here: at most 2 x N)."""
    workers, count = 8, 1200
    command = _command(
        workdir, job, "kills", "--concurrency", str(workers), "--checkpoint-interval",
        "0", "--param", f"count={count}", "--param", "max_delay=0.01",
    )  # fmt: skip
    redone = 0
    for _ in range(5):
        process = workdir.start(*command)
        workdir.wait_items(rng.randint(1, 150), process)
        process.send_signal(signal.SIGKILL)
        process.communicate()
        saved = _saved_items(_record(workdir, "kills"), _from_key if job != "Concurrent" else int)
        logged = set(workdir.items())
        assert saved <= logged, f"the store counts an item that never finished (seed {SEED})"
        unsaved = logged - saved
        assert len(unsaved) <= 2 * workers, f"seed {SEED}: {sorted(unsaved)}"
        redone += len(unsaved)
    assert workdir.run(*command).returncode == 0

    counts = Counter(workdir.items())
    assert sorted(counts) == list(range(count)), f"skipped items (seed {SEED})"
    assert sum(counts.values()) - count <= redone


@pytest.mark.slow
def test_errors_at_random_items_resume_retries_the_failed_item_and_redoes_none(
    workdir: Workdir, rng: random.Random
) -> None:
    """Items that raise (once each) with N = 8: each run exits 1, the failed item is not in
    the saved done set, resume retries it and redoes none of the items that finished."""
    count = 600
    failing = sorted(rng.sample(range(count), 4))
    command = _command(
        workdir, "Concurrent", "errors", "--concurrency", "8", "--param", f"count={count}",
        "--param", "max_delay=0.01", "--param", f"fail_at={','.join(map(str, failing))}",
    )  # fmt: skip
    done_sets = 0
    raised: set[int] = set()
    for _ in range(len(failing)):
        before = set(workdir.items())
        finished = workdir.run(*command)
        if finished.returncode == 0:
            break
        assert finished.returncode == 1, finished.stderr
        # Items in flight when the first one raised may raise too: all of them are retried.
        now = {n for n in failing if workdir.log.with_name(f"items.log.failed-{n}").exists()}
        assert now > raised, f"seed {SEED}"
        record = _record(workdir, "errors")
        logged = workdir.items()
        assert not (now - raised) & _saved_items(record), f"seed {SEED}"
        assert _saved_items(record) == set(logged), f"seed {SEED}"
        assert len(logged) == len(set(logged)), f"an item ran twice (seed {SEED})"
        assert before <= set(logged)
        done_sets += record.done_json is not None
        raised = now
    else:
        finished = workdir.run(*command)
    assert done_sets > 0, "no run saved items done past the failed one: nothing was tested"
    assert raised == set(failing)
    assert finished.returncode == 0, finished.stderr
    assert sorted(workdir.items()) == list(range(count)), f"seed {SEED}"


def test_one_blocked_item_holds_dispatch_at_the_window_bound(workdir: Workdir) -> None:
    """Back-pressure: while item 20 blocks, the others fly until the window is full, then
    dispatch waits; the saved done set never exceeds the window; SIGTERM waits for the
    blocked item, then exits 75 with everything saved."""
    workers = 4
    capacity = Window(4 * workers).capacity  # runner.WINDOW_PER_WORKER x N
    process = workdir.start(*_command(
        workdir, "Concurrent", "blocked", "--concurrency", str(workers),
        "--checkpoint-interval", "0.1", "--param", "count=2000", "--param", "max_delay=0.002",
        "--param", "block=20", "--param", "block_seconds=3",
    ))  # fmt: skip
    workdir.wait_for(lambda lines: "blocking 20" in lines, process)
    # Everything the window lets past item 20 finishes quickly; then nothing more can start.
    workdir.wait_for(lambda lines: len(lines) >= 20 + capacity - 1, process)
    time.sleep(0.5)  # give a broken bound the time to show itself
    during = _record(workdir, "blocked")
    assert during.done_json is not None
    assert len(json.loads(during.done_json)) <= capacity - 1
    assert len(workdir.items()) <= 20 + capacity - 1
    process.send_signal(signal.SIGTERM)
    finished = workdir.finish(process)

    assert finished.returncode == 75, finished.stderr
    record = _record(workdir, "blocked")
    assert _saved_items(record) == set(workdir.items())
    assert 20 in workdir.items()


def test_a_second_sigint_stops_at_once_and_keeps_only_completed_items(
    workdir: Workdir,
) -> None:
    """Two Ctrl-Cs while an item blocks: exit 75 at once, say what is abandoned, save the
    items that finished (not the blocked one); the resume does the blocked item once."""
    command = _command(
        workdir, "Concurrent", "impatient", "--concurrency", "4", "--param", "count=300",
        "--param", "max_delay=0.002", "--param", "block=10", "--param", "block_seconds=30",
    )  # fmt: skip
    process = workdir.start(*command)
    workdir.wait_for(lambda lines: "blocking 10" in lines and len(lines) > 20, process)
    process.send_signal(signal.SIGINT)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    signalled = time.monotonic()
    finished = workdir.finish(process)

    assert time.monotonic() - signalled < 2, "a second SIGINT must not wait for the item"
    assert finished.returncode == 75, finished.stderr
    assert "abandoned" in finished.stderr
    assert "300 items, 4 at once" in finished.stderr
    assert "SIGINT received — stopping after the items in flight" in finished.stderr
    record = _record(workdir, "impatient")
    assert 10 not in _saved_items(record)
    assert _saved_items(record) == set(workdir.items())
    resumed = workdir.run("resume", "impatient", env={"ITERCTL_CONCURRENCY": "2"}, timeout=90)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(workdir.items()) == list(range(300))
    assert workdir.status("impatient")["concurrency"] == 2  # from ITERCTL_CONCURRENCY


def test_the_concurrency_is_kept_with_the_job_id_and_a_new_one_replaces_it(
    workdir: Workdir,
) -> None:
    """A restart without --concurrency keeps the recorded N; a resume with another N uses
    it from then on (the saved done set does not depend on N)."""
    command = _command(
        workdir, "Concurrent", "kept", "--concurrency", "6", "--param", "count=400",
        "--param", "max_delay=0.01",
    )  # fmt: skip
    process = workdir.start(*command)
    workdir.wait_items(50, process)
    process.send_signal(signal.SIGTERM)
    assert workdir.finish(process).returncode == 75
    assert workdir.status("kept")["concurrency"] == 6

    process = workdir.start("resume", "kept")
    workdir.wait_items(50, process)
    process.send_signal(signal.SIGTERM)
    assert workdir.finish(process).returncode == 75
    assert workdir.status("kept")["concurrency"] == 6

    assert workdir.run("resume", "kept", "--concurrency", "3").returncode == 0
    assert workdir.status("kept")["concurrency"] == 3
    assert sorted(workdir.items()) == list(range(400))


def test_partitions_each_run_n_at_once_exactly_once(workdir: Workdir) -> None:
    """--partitions 2 --concurrency 4: each partition stops and resumes exactly."""
    logs = workdir.path / "logs"
    logs.mkdir()
    for partition in (0, 1):
        command = [
            "run", "testjobs:Partitioned", "--job-id", "parts", "--partitions", "2",
            "--partition", str(partition), "--concurrency", "4",
            "--param", "count=400", "--param", f"logs={logs}", "--param", "delay=0.005",
        ]  # fmt: skip
        process = workdir.start(*command)
        log = logs / f"part-{partition}.log"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
            not log.exists() or len(log.read_text().splitlines()) < 30
        ):
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        assert workdir.finish(process).returncode == 75
        assert workdir.run(*command).returncode == 0
    items = [
        int(line.split()[1])
        for partition in (0, 1)
        for line in (logs / f"part-{partition}.log").read_text().splitlines()
    ]
    assert sorted(items) == list(range(400))
    assert workdir.status("parts")["concurrency"] == 4


@pytest.mark.parametrize("how", ["cancel", "max-runtime"])
def test_cancel_and_max_runtime_let_the_items_in_flight_finish_and_save_them(
    workdir: Workdir, how: str
) -> None:
    """`cancel` (exit 3) and --max-runtime (exit 75) stop dispatching like SIGTERM: the
    items in flight finish and the store holds exactly the items the log shows."""
    extra = ["--max-runtime", "1"] if how == "max-runtime" else ["--checkpoint-interval", "0.1"]
    process = workdir.start(*_command(
        workdir, "Concurrent", how, "--concurrency", "8", "--param", "count=100000",
        "--param", "max_delay=0.02", *extra,
    ))  # fmt: skip
    workdir.wait_items(100, process)
    if how == "cancel":
        assert workdir.run("cancel", how).returncode == 0
    finished = workdir.finish(process)

    assert finished.returncode == (3 if how == "cancel" else 75), finished.stderr
    record = _record(workdir, how)
    logged = workdir.items()
    assert _saved_items(record) == set(logged)
    assert record.processed == len(logged)


@pytest.mark.parametrize("job", ["Concurrent", "AsyncConcurrent"])
def test_failures_within_the_budget_are_passed_over_then_retry_failed_does_them_once(
    workdir: Workdir, job: str
) -> None:
    """--max-failures with N = 8: each failing item is recorded once and passed over, the
    run succeeds with every other item done once; `retry-failed` (awaiting an async job's
    items) runs only the failed ones, which now succeed."""
    failing = [7, 120, 121, 250]
    result = workdir.run(*_command(
        workdir, job, "budget", "--concurrency", "8", "--max-failures", "10",
        "--param", "count=300", "--param", "max_delay=0.01",
        "--param", f"fail_at={','.join(map(str, failing))}",
    ))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(workdir.items()) == sorted(set(range(300)) - set(failing))
    listed = workdir.run("failures", "budget", "--json")
    assert listed.returncode == 0, listed.stderr
    cursors = sorted(record["cursor"] for record in json.loads(listed.stdout))
    to_item = int if job == "Concurrent" else _from_key
    assert sorted(map(to_item, cursors)) == failing
    status = workdir.status("budget")
    assert (status["processed"], status["failed_items"]) == (300, 4)

    retried = workdir.run("retry-failed", "budget")
    assert retried.returncode == 0, retried.stderr
    assert sorted(workdir.items()) == list(range(300))
    assert json.loads(workdir.run("failures", "budget", "--json").stdout) == []
