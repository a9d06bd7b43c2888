"""One job split into partitions (--partitions N), each a resumable process of its own."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

from tests.cli.conftest import Workdir


def _items(logs: Path) -> list[int]:
    return [
        int(line.split()[1])
        for path in sorted(logs.glob("part-*.log"))
        for line in path.read_text().splitlines()
    ]


def _partitioned(workdir: Workdir, job_id: str, count: int, *extra: str) -> list[str]:
    logs = workdir.path / "logs"
    logs.mkdir(exist_ok=True)
    return ["run", "testjobs:Partitioned", "--job-id", job_id, "--param", f"logs={logs}",
            "--param", f"count={count}", *extra]  # fmt: skip


def test_partitions_together_do_every_item_once_and_the_whole_job_succeeds_last(
    workdir: Workdir,
) -> None:
    """Four partitions run one by one: the job is succeeded only after the fourth, every
    item is done once, and on_all_complete runs once, in the last partition."""
    command = _partitioned(workdir, "split", 103, "--partitions", "4")
    for index in range(4):
        if index:
            assert workdir.status("split")["status"] != "succeeded"
        result = workdir.run(*command, "--partition", str(index))
        assert result.returncode == 0, result.stderr
        assert f"partition {index}/4" in result.stderr

    logs = workdir.path / "logs"
    assert sorted(_items(logs)) == list(range(103))
    assert (logs / "all-complete").read_text().splitlines() == [
        "by partition Partition(index=3, count=4, bounds=[77, 103])"
    ]
    whole = workdir.status("split")
    assert (whole["status"], whole["processed"], whole["total"]) == ("succeeded", 103, 103)
    parts = whole["partitions"]
    assert [part["partition"] for part in parts] == [0, 1, 2, 3]
    assert [part["bounds"] for part in parts] == [[0, 25], [25, 51], [51, 77], [77, 103]]
    assert all(part["status"] == "succeeded" for part in parts)


def test_the_partition_comes_from_job_completion_index(workdir: Workdir) -> None:
    """In a Kubernetes Indexed Job the pod's index arrives as JOB_COMPLETION_INDEX."""
    command = _partitioned(workdir, "indexed", 20, "--partitions", "2")
    result = workdir.run(*command, env={"JOB_COMPLETION_INDEX": "1"})
    assert result.returncode == 0, result.stderr
    parts = workdir.status("indexed")["partitions"]
    assert [part["status"] for part in parts] == ["interrupted", "succeeded"]
    assert sorted(_items(workdir.path / "logs")) == list(range(10, 20))


def test_a_partition_stops_on_sigterm_and_resumes_on_its_own(workdir: Workdir) -> None:
    """SIGTERM stops one partition (75); `resume ID --partition I` carries it on."""
    command = _partitioned(workdir, "p", 400, "--partitions", "2", "--param", "delay=0.005")
    process = workdir.start(*command, "--partition", "0")
    part0 = workdir.path / "logs" / "part-0.log"
    workdir.wait_for(lambda _: part0.exists() and len(part0.read_text().splitlines()) >= 10)
    process.send_signal(signal.SIGTERM)
    stopped = workdir.finish(process)
    assert stopped.returncode == 75
    assert "iterctl resume p --partition 0" in stopped.stderr

    assert workdir.run("resume", "p", "--partition", "0").returncode == 0
    assert workdir.run("resume", "p", "--partition", "1").returncode == 0
    assert sorted(_items(workdir.path / "logs")) == list(range(400))
    assert workdir.status("p")["status"] == "succeeded"


def test_another_partition_count_for_an_existing_job_is_refused(workdir: Workdir) -> None:
    """The plan is fixed when the job id is created: another N exits 2 and says why."""
    command = _partitioned(workdir, "fixed", 10)
    assert workdir.run(*command, "--partitions", "2", "--partition", "0").returncode == 0
    other = workdir.run(*command, "--partitions", "3", "--partition", "0")
    assert other.returncode == 2
    assert "planned as 2 partition(s), not 3" in other.stderr
    plain = workdir.run(*command)
    assert plain.returncode == 2
    assert "Traceback" not in other.stderr + plain.stderr


def test_bad_partition_options_exit_2(workdir: Workdir) -> None:
    """A partition index out of range, or none for a partitioned run, is a usage error."""
    command = _partitioned(workdir, "bad", 10, "--partitions", "2")
    missing = workdir.run(*command)
    assert missing.returncode == 2
    assert "--partition I" in missing.stderr
    beyond = workdir.run(*command, "--partition", "2")
    assert beyond.returncode == 2
    assert "partitions 0 to 1" in beyond.stderr
    resume = workdir.run("resume", "bad")
    assert resume.returncode == 2


def test_a_job_that_cannot_split_says_so(workdir: Workdir) -> None:
    """A custom generator enumerator without partition_plan: exit 2 with the way out."""
    result = workdir.run("run", "testjobs:Numbers", "--param", f"log={workdir.log}",
                         "--partitions", "2", "--partition", "0")  # fmt: skip
    assert result.returncode == 2
    assert "cannot be split into partitions" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_custom_enumerator_splits_itself_with_partition_plan(workdir: Workdir) -> None:
    """partition_plan(count) + self.partition.bounds: the union is every item once."""
    command = ["run", "testjobs:SplitsItself", "--job-id", "custom", "--param",
               f"log={workdir.log}", "--param", "count=30", "--partitions", "3"]  # fmt: skip
    for index in range(3):
        assert workdir.run(*command, "--partition", str(index)).returncode == 0
    assert sorted(workdir.items()) == list(range(30))


def test_cancel_stops_every_partition(workdir: Workdir) -> None:
    """`iterctl cancel ID` cancels all partitions: each later run exits 3."""
    command = _partitioned(workdir, "gone", 10, "--partitions", "2")
    assert workdir.run(*command, "--partition", "0").returncode == 0
    assert workdir.run("cancel", "gone").returncode == 0
    assert workdir.run(*command, "--partition", "1").returncode == 3
    parts = workdir.status("gone")["partitions"]
    # A finished partition stays succeeded; the rest are cancelled, and so is the job.
    assert [part["status"] for part in parts] == ["succeeded", "cancelled"]
    assert workdir.status("gone")["status"] == "cancelled"


def test_on_all_complete_left_undone_by_a_crash_runs_at_the_next_start(
    workdir: Workdir,
) -> None:
    """A process killed after saving the last partition's success but before claiming
    on_all_complete: the next run of any partition claims it and runs it, once."""
    command = _partitioned(workdir, "late", 10, "--partitions", "2")
    for index in range(2):
        assert workdir.run(*command, "--partition", str(index)).returncode == 0
    logs = workdir.path / "logs"
    assert len((logs / "all-complete").read_text().splitlines()) == 1
    # Forget the claim, as if the last process had died before making it.
    with sqlite3.connect(workdir.path / "iterctl.db") as db:
        db.execute("UPDATE iterctl_jobs SET all_complete = 0 WHERE job_id = 'late'")
    (logs / "all-complete").unlink()

    again = workdir.run(*command, "--partition", "0")
    assert again.returncode == 0
    assert "already succeeded" in again.stderr
    assert len((logs / "all-complete").read_text().splitlines()) == 1
    assert workdir.run(*command, "--partition", "1").returncode == 0
    assert len((logs / "all-complete").read_text().splitlines()) == 1
