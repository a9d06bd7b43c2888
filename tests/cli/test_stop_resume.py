"""Stop and resume semantics (CONTRACT §4) with the real process and real signals."""

from __future__ import annotations

import signal
import time
from collections import Counter

from tests.cli.conftest import Workdir


def _numbers(workdir: Workdir, job_id: str, *extra: str) -> list[str]:
    return [
        "run", "testjobs:Numbers", "--job-id", job_id,
        "--param", f"log={workdir.log}", *extra,
    ]  # fmt: skip


def test_sigterm_mid_item_finishes_the_item_then_exits_75(workdir: Workdir) -> None:
    """SIGTERM during an item lets it finish, saves its cursor, and exits 75."""
    process = workdir.start(
        "run", "testjobs:SlowItems", "--job-id", "slow",
        "--param", f"log={workdir.log}", "--param", "delay=0.4",
    )  # fmt: skip
    workdir.wait_for(lambda lines: "start 2" in lines, process)
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    finished = workdir.finish(process)

    assert finished.returncode == 75, finished.stderr
    # CONTRACT §4: within one item's time (0.4 s) plus one second; +1 s for a busy machine.
    assert time.monotonic() - signalled < 0.4 + 1 + 1
    assert workdir.lines()[-2:] == ["start 2", "end 2"]
    status = workdir.status("slow")
    assert status["status"] == "interrupted"
    assert (status["cursor"], status["processed"], status["times_interrupted"]) == (2, 3, 1)
    assert "stopped job slow (SIGTERM)" in finished.stderr
    assert "iterctl resume slow" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_every_item_exactly_once_across_several_sigterms(workdir: Workdir) -> None:
    """Four SIGTERMs at random points, the same run command each time: each item once."""
    command = _numbers(workdir, "thrice", "--param", "count=300", "--param", "delay=0.003")
    for _ in range(4):
        process = workdir.start(*command)
        workdir.wait_items(20, process)
        process.send_signal(signal.SIGTERM)
        assert workdir.finish(process).returncode == 75
    final = workdir.run(*command)

    assert final.returncode == 0, final.stderr
    assert workdir.items() == list(range(300))
    status = workdir.status("thrice")
    assert status["status"] == "succeeded"
    assert (status["processed"], status["total"], status["times_interrupted"]) == (300, 300, 4)


def test_sigkill_skips_nothing_and_redoes_at_most_one_item_at_interval_0(
    workdir: Workdir,
) -> None:
    """After SIGKILLs, resume skips nothing; at --checkpoint-interval 0 it redoes ≤ 1 item."""
    command = _numbers(
        workdir, "killed", "--param", "count=200", "--param", "delay=0.002",
        "--checkpoint-interval", "0",
    )  # fmt: skip
    kills = 3
    for _ in range(kills):
        process = workdir.start(*command)
        workdir.wait_items(15, process)
        process.send_signal(signal.SIGKILL)
        process.communicate()
        saved = workdir.status("killed")
        # Every item the store counts as done is in the log: the store never runs ahead.
        assert saved["cursor"] is not None
        assert set(range(saved["cursor"] + 1)) <= set(workdir.items())
    assert workdir.run(*command).returncode == 0

    counts = Counter(workdir.items())
    assert sorted(counts) == list(range(200))
    redone = sum(count - 1 for count in counts.values())
    assert redone <= kills
    status = workdir.status("killed")
    assert (status["processed"], status["times_interrupted"]) == (200, kills)


def test_sigkill_redo_is_bounded_by_the_checkpoint_interval(workdir: Workdir) -> None:
    """With a timed checkpoint, the items redone after SIGKILL are only those after the
    last saved cursor, and the store was saved during the run, not just at its end."""
    command = _numbers(
        workdir, "timed", "--param", "count=100000", "--param", "delay=0.001",
        "--checkpoint-interval", "0.2",
    )  # fmt: skip
    process = workdir.start(*command)
    workdir.wait_items(300, process)  # ≥ 0.3 s of work: at least one checkpoint is due
    workdir.wait_for(lambda _: workdir.status("timed")["cursor"] is not None, process)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    done_before_kill = max(workdir.items())
    saved = workdir.status("timed")["cursor"]

    resumed = workdir.start(*command)
    workdir.wait_items(10, resumed)
    resumed.send_signal(signal.SIGTERM)
    assert workdir.finish(resumed).returncode == 75
    items = workdir.items()
    first_run = items[: items.index(done_before_kill) + 1]
    second_run = items[len(first_run) :]
    assert second_run[0] == saved + 1  # nothing skipped, nothing before the cursor redone
    assert first_run == list(range(done_before_kill + 1))


def test_second_sigint_stops_at_once_keeping_the_last_completed_cursor(
    workdir: Workdir,
) -> None:
    """Ctrl-C twice: the item in progress is abandoned and the cursor stays before it."""
    process = workdir.start(
        "run", "testjobs:SlowItems", "--job-id", "impatient",
        "--param", f"log={workdir.log}", "--param", "delay=4", "--param", "count=3",
    )  # fmt: skip
    workdir.wait_for(lambda lines: "start 0" in lines, process, timeout=10)
    # Let item 0 finish quickly by stopping after it, then interrupt item 1 for real.
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    # Two SIGINTs sent back to back can merge into one delivery, so keep pressing
    # Ctrl-C, as an impatient person does, until the process is gone.
    while process.poll() is None and time.monotonic() - started < 10:
        time.sleep(0.1)
        process.send_signal(signal.SIGINT)
    finished = workdir.finish(process)

    assert finished.returncode == 75, finished.stderr
    assert time.monotonic() - started < 3  # item 0 alone takes 4 s: it was cut short
    assert workdir.lines() == ["start 0"]
    status = workdir.status("impatient")
    assert (status["status"], status["cursor"], status["processed"]) == ("interrupted", None, 0)
    assert "second SIGINT" in finished.stderr


def test_one_sigint_acts_like_sigterm_and_gives_75_not_130(workdir: Workdir) -> None:
    """A single Ctrl-C finishes the item and exits 75 (Typer alone would give 130)."""
    process = workdir.start(*_numbers(workdir, "ctrl-c", "--param", "delay=0.01"))
    workdir.wait_items(3, process)
    process.send_signal(signal.SIGINT)
    finished = workdir.finish(process)
    assert finished.returncode == 75, finished.stderr
    assert workdir.status("ctrl-c")["processed"] == len(workdir.items())


def test_a_job_error_exits_1_and_resume_retries_the_failing_item(workdir: Workdir) -> None:
    """The job's exception: exit 1 with its traceback; resume starts at the failing item."""
    first = workdir.run(
        *_numbers(workdir, "flaky", "--param", "count=10", "--param", "fail_at=4",
                  "--param", "fail_once=1"),
    )  # fmt: skip
    assert first.returncode == 1
    assert "Traceback" in first.stderr
    assert "RuntimeError: item 4 is broken" in first.stderr
    status = workdir.status("flaky")
    assert (status["status"], status["cursor"], status["processed"]) == ("failed", 3, 4)
    assert status["error"] == "RuntimeError: item 4 is broken"

    again = workdir.run("resume", "flaky")
    assert again.returncode == 0, again.stderr
    assert workdir.items() == list(range(10))
    assert workdir.status("flaky")["error"] is None


def test_max_runtime_stops_with_75_and_the_run_resumes(workdir: Workdir) -> None:
    """--max-runtime is a resumable stop: exit 75, then the same command carries on."""
    command = _numbers(workdir, "capped", "--param", "count=400", "--param", "delay=0.005")
    stopped = workdir.run(*command, "--max-runtime", "0.5")
    assert stopped.returncode == 75, stopped.stderr
    assert "max-runtime" in stopped.stderr
    done = len(workdir.items())
    assert 0 < done < 400
    assert workdir.run(*command).returncode == 0
    assert workdir.items() == list(range(400))


def test_cancel_stops_a_running_job_with_exit_3_for_good(workdir: Workdir) -> None:
    """`iterctl cancel` makes the running process exit 3 at its next checkpoint; a rerun
    of the same command is refused with 3 too, so Kubernetes fails the Job."""
    command = _numbers(
        workdir, "doomed", "--param", "count=100000", "--param", "delay=0.002",
        "--checkpoint-interval", "0.1",
    )  # fmt: skip
    process = workdir.start(*command)
    workdir.wait_items(10, process)
    cancelled = workdir.run("cancel", "doomed")
    assert cancelled.returncode == 0, cancelled.stderr
    finished = workdir.finish(process)

    assert finished.returncode == 3, finished.stderr
    status = workdir.status("doomed")
    assert status["status"] == "cancelled"
    assert status["processed"] == status["cursor"] + 1  # progress saved, not lost
    rerun = workdir.run(*command)
    assert rerun.returncode == 3
    assert "cancelled" in rerun.stderr


def test_a_second_runner_gets_75_and_a_new_one_starts_at_once_after_sigkill(
    workdir: Workdir,
) -> None:
    """One process per job id: the second says who holds it and exits 75; SIGKILL of
    the holder frees the job id without waiting for any timeout."""
    command = _numbers(workdir, "solo", "--param", "count=100000", "--param", "delay=0.002")
    holder = workdir.start(*command)
    workdir.wait_items(5, holder)

    second = workdir.run(*command, timeout=10)
    assert second.returncode == 75
    assert f"pid {holder.pid}" in second.stderr
    assert "Traceback" not in second.stderr

    holder.send_signal(signal.SIGKILL)
    holder.communicate()
    started = time.monotonic()
    third = workdir.start(*command)
    workdir.wait_items(5, third, timeout=10)
    assert time.monotonic() - started < 10
    third.send_signal(signal.SIGTERM)
    assert workdir.finish(third).returncode == 75


def test_run_of_a_succeeded_job_id_does_nothing_and_exits_0(workdir: Workdir) -> None:
    """The fixed container command after success: no work, exit 0."""
    command = _numbers(workdir, "done", "--param", "count=5")
    assert workdir.run(*command).returncode == 0
    again = workdir.run(*command)
    assert again.returncode == 0
    assert "already succeeded" in again.stderr
    assert workdir.items() == list(range(5))
    assert workdir.run("resume", "done").returncode == 0


def test_hooks_run_once_each_as_documented(workdir: Workdir) -> None:
    """on_start only on the first run, on_resume later, on_shutdown at every stop,
    on_complete once at the end, on_error when the job raises."""
    command = [
        "run", "testjobs:Hooks", "--job-id", "hooked", "--param", f"log={workdir.log}",
        "--param", "count=40", "--param", "delay=0.005", "--param", "fail_at=30",
        "--param", "fail_once=1",
    ]  # fmt: skip
    process = workdir.start(*command)
    workdir.wait_items(5, process)
    process.send_signal(signal.SIGTERM)
    assert workdir.finish(process).returncode == 75
    assert workdir.run(*command).returncode == 1
    assert workdir.run(*command).returncode == 0

    hooks = [line for line in workdir.lines() if line.startswith("hook")]
    assert hooks == [
        "hook on_start", "hook on_shutdown",
        "hook on_resume", "hook on_error item 30 is broken", "hook on_shutdown",
        "hook on_resume", "hook on_complete", "hook on_shutdown",
    ]  # fmt: skip


def test_sigterm_while_the_job_module_imports_still_exits_75(workdir: Workdir) -> None:
    """Signal handlers are in place before any job code runs, its import included."""
    marker = workdir.path / "importing"
    (workdir.path / "slowimport.py").write_text(
        "import pathlib, time\n"
        f"pathlib.Path({str(marker)!r}).touch()\n"
        "time.sleep(2)\n"
        "from testjobs import Numbers\n"
    )
    process = workdir.start("run", "slowimport:Numbers", "--job-id", "early",
                            "--param", f"log={workdir.log}")  # fmt: skip
    workdir.wait_for(lambda _: marker.exists(), process)
    process.send_signal(signal.SIGTERM)
    finished = workdir.finish(process)
    assert finished.returncode == 75, finished.stderr
    assert not workdir.log.exists()  # no item was started after the stop request
    assert workdir.status("early")["status"] == "interrupted"


def test_the_resume_hint_names_a_store_other_than_the_default(workdir: Workdir) -> None:
    """The stop line's resume command works as printed, --store included."""
    store = str(workdir.path / "elsewhere.json")
    command = _numbers(workdir, "hinted", "--param", "count=400", "--param", "delay=0.005",
                       "--store", store)  # fmt: skip
    stopped = workdir.run(*command, "--max-runtime", "0.3")
    assert stopped.returncode == 75
    hint = stopped.stderr.split("resume with: ")[1].strip()
    assert hint == f"iterctl resume hinted --store {store}"
    resumed = workdir.run(*hint.split()[1:])
    assert resumed.returncode == 0, resumed.stderr
    assert workdir.items() == list(range(400))
