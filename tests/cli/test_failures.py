"""When items fail (CONTRACT §1 retries, §2 --max-failures, §4): real processes, real
signals, every store a process can open.

The job is testjobs:Flaky: "try N" is logged before each try of item N, "item N" once it is
done; `bad` items always raise ValueError, `transient` ones raise Transient (retried) on
their first tries, `stubborn` ones raise Transient on every try.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iterctl.stores import open_store
from tests.cli.conftest import Finished, Workdir
from tests.servers import server_url

KINDS = [
    "sqlite",
    "json",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    """``--store`` and its value for this test's kind of store."""
    kind = request.param
    if kind == "sqlite":
        yield ["--store", f"sqlite:///{tmp_path / 'jobs.db'}"]
    elif kind == "json":
        yield ["--store", str(tmp_path / "jobs.json")]
    else:
        yield ["--store", server_url(kind)]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Flaky:
    """A Flaky job id in a workdir: its command, its data files and what it left."""

    def __init__(self, workdir: Workdir, store: list[str], **params: Any) -> None:
        self.workdir, self.store = workdir, store
        self.job_id = new_id("flaky")
        self.bad = workdir.path / "bad.txt"
        self.gone = workdir.path / "gone.txt"
        self.stubborn = workdir.path / "stubborn.txt"
        self.params = {"log": str(workdir.log), "bad": str(self.bad), "gone": str(self.gone),
                       "stubborn": str(self.stubborn)}  # fmt: skip
        self.params.update({key: str(value) for key, value in params.items()})

    def command(self, *extra: str) -> list[str]:
        pairs = [arg for key, value in self.params.items() for arg in ("--param", f"{key}={value}")]
        return ["run", "testjobs:Flaky", "--job-id", self.job_id, *pairs, *self.store, *extra]

    def run(self, *extra: str) -> Finished:
        return self.workdir.run(*self.command(*extra))

    def set_bad(self, items: set[int]) -> None:
        self.bad.write_text(" ".join(map(str, sorted(items))))

    def done(self) -> Counter[int]:
        return Counter(int(line.split()[1]) for line in self.workdir.lines() if line[:5] == "item ")

    def tries(self) -> Counter[int]:
        return Counter(int(line.split()[1]) for line in self.workdir.lines() if line[:4] == "try ")

    def failures(self) -> list[dict[str, Any]]:
        """What `iterctl failures ID --json` prints (the real command)."""
        listed = self.workdir.run("failures", self.job_id, "--json", "--limit", "0", *self.store)
        assert listed.returncode == 0, listed.stderr
        records: list[dict[str, Any]] = json.loads(listed.stdout)
        return records

    def stored(self) -> tuple[int | None, list[int]]:
        """The saved cursor and the failed items' cursors, read from the store in this
        process (a quicker look than two more `iterctl` processes, for the soak test)."""
        location = self.store[1] if self.store else str(self.workdir.path / "iterctl.db")
        store = open_store(location, create=False)
        try:
            record = store.get(self.job_id)
            assert record is not None
            cursor = None if record.cursor_json is None else int(record.cursor_json)
            return cursor, [int(f.cursor_json) for f in store.failures(self.job_id)]
        finally:
            store.close()

    def failed_cursors(self) -> list[int]:
        return [record["cursor"] for record in self.failures()]

    def status(self) -> dict[str, Any]:
        return self.workdir.status(self.job_id, *self.store)


def last_line(finished: Finished) -> str:
    return finished.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_random_failures_within_budget_succeed_with_each_permanent_one_recorded_once(
    workdir: Workdir, store: list[str]
) -> None:
    """Random permanent and transient failures, a budget above the permanent ones: exit 0;
    every good item done exactly once; each permanent failure recorded once (a stubborn
    transient one after its 3 attempts); transient ones retried, not recorded."""
    rng = random.Random()  # noqa: S311 - test data, not secrets
    seed = rng.randrange(10**6)
    rng.seed(seed)
    items = list(range(60))
    bad = set(rng.sample(items, 5))
    transient = set(rng.sample(sorted(set(items) - bad), 5))
    stubborn = rng.choice(sorted(set(items) - bad - transient))
    job = Flaky(workdir, store, count=60, flakes=2, transient=",".join(map(str, sorted(transient))))
    job.set_bad(bad)
    job.stubborn.write_text(str(stubborn))

    finished = job.run("--max-failures", "8")

    assert finished.returncode == 0, f"seed {seed}: {finished.stderr}"
    permanent = bad | {stubborn}
    assert job.done() == Counter(set(items) - permanent), f"seed {seed}"
    records = job.failures()
    assert sorted(r["cursor"] for r in records) == sorted(permanent), f"seed {seed}"
    attempts = {r["cursor"]: r["attempts"] for r in records}
    assert attempts == {n: 3 if n == stubborn else 1 for n in permanent}
    by_cursor = {r["cursor"]: r for r in records}
    assert by_cursor[stubborn]["error_type"].endswith("Transient")
    assert all(by_cursor[n]["message"] == f"item {n} is bad" for n in bad)
    assert all(job.tries()[n] == 3 for n in transient)  # two flakes, then done
    status = job.status()
    assert (status["status"], status["processed"], status["failed_items"]) == (
        "succeeded", 60, 6,
    )  # fmt: skip
    end = last_line(finished)
    assert "6 of them failed and were passed over" in end
    assert f"iterctl failures {job.job_id}" in end
    assert "Traceback" not in finished.stderr


def test_budget_exceeded_fails_then_a_resume_with_a_larger_budget_carries_on(
    workdir: Workdir, store: list[str]
) -> None:
    """Three bad items, budget 2: exit 1, status failed, the two failures so far recorded,
    the cursor before the third. A resume with --max-failures 3 passes it and succeeds."""
    job = Flaky(workdir, store, count=20)
    job.set_bad({3, 7, 12})

    failed = job.run("--max-failures", "2")

    assert failed.returncode == 1, failed.stderr
    status = job.status()
    assert (status["status"], status["cursor"], status["failed_items"]) == ("failed", 11, 2)
    assert status["error"] == "ValueError: item 12 is bad"
    assert sorted(job.failed_cursors()) == [3, 7]
    assert "--max-failures allows 2: this one ends the run" in failed.stderr

    resumed = workdir.run("resume", job.job_id, *store, "--max-failures", "3")

    assert resumed.returncode == 0, resumed.stderr
    assert job.failed_cursors() == [12, 7, 3]  # newest first
    assert job.done() == Counter(set(range(20)) - {3, 7, 12})
    assert job.status()["failed_items"] == 3


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_doubles_no_failure_record(
    workdir: Workdir, store: list[str]
) -> None:
    """A failing run killed at random moments: after each kill, every item up to the
    saved cursor is done or recorded (nothing skipped without a record) and no record is
    doubled; at the end the records are exactly the bad items."""
    rng = random.Random()  # noqa: S311 - test data, not secrets
    count = 160
    bad = set(rng.sample(range(count), 25))
    job = Flaky(workdir, store, count=count, delay=0.002)
    job.set_bad(bad)
    command = job.command("--max-failures", "1000", "--checkpoint-interval", "0.02")
    for _ in range(3):
        process = workdir.start(*command)
        target = sum(job.tries().values()) + rng.randrange(5, 30)

        def reached(_lines: list[str], target: int = target) -> bool:
            return sum(job.tries().values()) >= target

        workdir.wait_for(reached, process)
        process.send_signal(signal.SIGKILL)
        process.communicate()
        saved, cursors = job.stored()
        assert len(cursors) == len(set(cursors)), "a failure was recorded twice"
        assert set(cursors) <= bad
        passed = set(range(saved + 1)) if saved is not None else set()
        assert passed <= set(job.done()) | set(cursors), "an item was skipped without a record"
        assert passed & bad <= set(cursors), "a failure was lost"

    assert workdir.run(*command).returncode == 0
    assert sorted(job.failed_cursors()) == sorted(bad)
    assert set(job.done()) == set(range(count)) - bad
    status = job.status()
    assert (status["processed"], status["failed_items"]) == (count, len(bad))


def test_sigterm_during_a_backoff_exits_75_at_once_and_the_item_is_redone(
    workdir: Workdir, store: list[str]
) -> None:
    """Item 4 flakes once and waits a long backoff: SIGTERM stops the wait, exit 75 within
    a second, cursor before item 4; the resume tries item 4 again and it passes."""
    job = Flaky(workdir, store, count=10, transient=4, flakes=1, backoff=30)
    process = workdir.start(*job.command())
    workdir.wait_for(lambda lines: "try 4" in lines, process)
    time.sleep(0.1)  # not a sync point: lets the wait begin, so the test is of the wait
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    stopped = workdir.finish(process)

    assert stopped.returncode == 75, stopped.stderr
    assert time.monotonic() - signalled < 1.0 + 0.5  # + slack for two busy cores
    assert "failed on attempt 1 of 3" in stopped.stderr
    assert "stopped job" in stopped.stderr
    assert "SIGTERM" in stopped.stderr
    status = job.status()
    assert (status["status"], status["cursor"], status["failed_items"]) == ("interrupted", 3, 0)

    resumed = workdir.run("resume", job.job_id, *store)

    assert resumed.returncode == 0, resumed.stderr
    assert job.done() == Counter(range(10))
    assert job.tries()[4] == 2
    assert job.failures() == []


def test_retry_failed_reports_still_failing_then_drains_after_the_fix_with_a_gone_item(
    workdir: Workdir, store: list[str]
) -> None:
    """retry-failed before the fix: exit 1, records kept with attempts raised. After the
    data is fixed (two items repaired, one removed): exit 0, the repaired items done once,
    the removed one reported as gone, no record left."""
    job = Flaky(workdir, store, count=20)
    job.set_bad({3, 8, 15})
    assert job.run("--max-failures", "5").returncode == 0

    unfixed = workdir.run("retry-failed", job.job_id, *store)

    assert unfixed.returncode == 1, unfixed.stderr
    assert {r["cursor"]: r["attempts"] for r in job.failures()} == {3: 2, 8: 2, 15: 2}
    assert "0 succeeded, 3 still fail, 0 gone" in last_line(unfixed)

    job.set_bad(set())
    job.gone.write_text("15")
    fixed = workdir.run("retry-failed", job.job_id, *store)

    assert fixed.returncode == 0, fixed.stderr
    assert "failed item at cursor 15 is gone" in fixed.stderr
    assert "2 succeeded, 0 still fail, 1 gone; 0 failed items left" in last_line(fixed)
    assert job.failures() == []
    assert job.done() == Counter(set(range(20)) - {15})
    status = job.status()
    assert (status["status"], status["failed_items"], status["processed"]) == (
        "succeeded", 0, 20,
    )  # fmt: skip
    assert "Traceback" not in fixed.stderr


def test_failures_are_per_partition_and_summed_in_the_job_status(workdir: Workdir) -> None:
    """Two partitions, each with bad items: each keeps its own records and count; status
    sums them; `failures` lists both, and its table names the partition."""
    job = Flaky(workdir, [], count=20)
    job.set_bad({2, 5, 13})
    for index in (0, 1):
        ran = job.run("--partitions", "2", "--partition", str(index), "--max-failures", "2")
        assert ran.returncode == 0, ran.stderr

    status = job.status()
    assert status["failed_items"] == 3
    assert [part["failed_items"] for part in status["partitions"]] == [2, 1]
    assert sorted((r["partition"], r["cursor"]) for r in job.failures()) == [
        (0, 2), (0, 5), (1, 13),
    ]  # fmt: skip
    table = workdir.run("failures", job.job_id)
    assert table.returncode == 0, table.stderr
    assert "partition" in table.stdout
    assert "ValueError: item 13 is bad" in table.stdout


def test_the_failures_table_lists_newest_first_and_says_when_it_is_cut(
    workdir: Workdir,
) -> None:
    """`iterctl failures ID` for people: one row per record, newest first; --limit cuts
    it and says how many there are."""
    job = Flaky(workdir, [], count=10)
    job.set_bad({1, 4, 6})
    assert job.run("--max-failures", "3").returncode == 0

    table = workdir.run("failures", job.job_id, "--limit", "2")

    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if "ValueError" in line]
    assert ["item 6" in rows[0], "item 4" in rows[1], len(rows)] == [True, True, 2]
    assert "newest 2 of 3" in table.stdout


@pytest.mark.parametrize("budget", ["-1", "abc", "200%"])
def test_a_bad_budget_is_refused_with_one_line_and_exit_2(workdir: Workdir, budget: str) -> None:
    """--max-failures (or ITERCTL_MAX_FAILURES) that is not a count or a percentage up to
    100%: exit 2, one line, no traceback, no job created."""
    job = Flaky(workdir, [], count=5)
    for finished in (
        job.run("--max-failures", budget),
        workdir.run(*job.command(), env={"ITERCTL_MAX_FAILURES": budget}),
    ):
        assert finished.returncode == 2, finished.stderr
        assert finished.stderr.count("\n") == 1, finished.stderr
        assert finished.stderr.startswith("iterctl: --max-failures")
    assert not workdir.log.exists()


def test_failures_and_retry_failed_of_an_unknown_job_id_are_usage_errors(
    workdir: Workdir,
) -> None:
    """Both commands say the job id is unknown, in one line, exit 2."""
    Flaky(workdir, [], count=3).run()  # a store exists, without that id
    for command in ("failures", "retry-failed"):
        finished = workdir.run(command, "nosuchjob")
        assert finished.returncode == 2, finished.stderr
        assert "unknown job id 'nosuchjob'" in finished.stderr
        assert finished.stderr.count("\n") == 1


_HOLDER = """
import sys, time
from iterctl.stores import open_store
store = open_store(sys.argv[1])
store.acquire(sys.argv[2])
print("held", flush=True)
time.sleep(60)
"""


def test_retry_failed_takes_the_hold_and_stops_at_once_in_a_backoff(
    workdir: Workdir, store: list[str]
) -> None:
    """retry-failed is refused (exit 75, naming the holder) while another process holds the
    job id; a SIGTERM during an item's backoff stops it at once with exit 75, the record
    kept as it was; run again, it carries on."""
    job = Flaky(workdir, store, count=8)
    job.set_bad({4})
    assert job.run("--max-failures", "1").returncode == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, store[1], job.job_id], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        held = workdir.run("retry-failed", job.job_id, *store)
    finally:
        holder.kill()
        holder.communicate()
    assert held.returncode == 75, held.stderr
    assert f"pid {holder.pid}" in held.stderr

    job.set_bad(set())
    job.stubborn.write_text("4")  # item 4 now flakes, and waits 30 s before each retry
    process = workdir.start("retry-failed", job.job_id, *store, env={"FLAKY_BACKOFF": "30"})
    tries = job.tries()[4]
    workdir.wait_for(lambda _lines: job.tries()[4] > tries, process)
    time.sleep(0.1)  # not a sync point: lets the wait begin, so the test is of the wait
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    stopped = workdir.finish(process)

    assert stopped.returncode == 75, stopped.stderr
    assert time.monotonic() - signalled < 1.0 + 0.5  # + slack for two busy cores
    assert "stopped retrying" in last_line(stopped)
    assert [(r["cursor"], r["attempts"]) for r in job.failures()] == [(4, 1)]
    job.stubborn.write_text("")
    again = workdir.run("retry-failed", job.job_id, *store)
    assert again.returncode == 0, again.stderr
    assert job.failures() == []
    assert job.done()[4] == 1


def test_a_nonsense_retry_policy_is_refused_before_anything_is_written(
    workdir: Workdir,
) -> None:
    """retry_on that is not exception types: exit 2 with one line naming the job, before a
    record is created (so a later, fixed run is the job's first: on_start runs then)."""
    result = workdir.run(
        "run", "testjobs:BadRetries", "--job-id", "bad-policy", "--param", f"log={workdir.log}"
    )

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "BadRetries" in result.stderr
    assert workdir.run("status", "bad-policy").returncode == 2  # no such job id
