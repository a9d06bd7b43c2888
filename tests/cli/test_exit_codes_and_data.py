"""Issue 8, data and exit codes: what breaking iterctl on purpose found, through the real CLI.

Each test fails on the code before the fix: a full disk that destroyed the JSON store, job
code that picked the process's exit code, a --max-runtime that never made progress, hooks
whose errors changed the exit code or hid the outcome, a cancelled run that said 0 items.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.conftest import Finished, Workdir, iterctl_executable


def _numbers(workdir: Workdir, job_id: str, *more: str, job: str = "Numbers") -> list[str]:
    return ["run", f"testjobs:{job}", "--job-id", job_id, "--param", f"log={workdir.log}", *more]


def _file_size_limit(limit: int) -> Callable[[], None]:
    """For preexec_fn: no file this process writes may grow past ``limit`` bytes, which is
    how a full disk looks to a writer (a short write, then an error)."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return apply


def _run_limited(workdir: Workdir, limit: int, *args: str) -> Finished:
    done = subprocess.run(
        [iterctl_executable(), *args],
        cwd=workdir.path, env=workdir.env, capture_output=True, text=True, timeout=60,
        preexec_fn=_file_size_limit(limit), check=False,
    )  # fmt: skip
    return Finished(done.returncode, done.stdout, done.stderr)


# -- 1. a full disk ------------------------------------------------------------------


@pytest.mark.parametrize("store_name", ["state.json", "state.db"])
def test_a_full_disk_leaves_the_store_whole_and_says_so(workdir: Workdir, store_name: str) -> None:
    """A write that comes up short (a full disk) never replaces the store: the command
    fails with one line, and every job recorded before is still there, readable."""
    store = str(workdir.path / store_name)
    for n in range(3):
        done = workdir.run(*_numbers(workdir, f"j{n}", "--param", "count=2", "--store", store))
        assert done.returncode == 0, done.stderr
    before = Path(store).read_bytes()

    # The new job's record alone is bigger than what the disk has left.
    result = _run_limited(
        workdir, len(before) + 4096,
        *_numbers(workdir, "big", "--param", "count=2", "--param", "pad=" + "x" * 60_000,
                  "--store", store),
    )  # fmt: skip

    assert result.returncode == 69, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "nothing was changed" in result.stderr
    if store_name.endswith(".json"):
        assert Path(store).read_bytes() == before
    listed = workdir.run("status", "--json", "--store", store)
    assert listed.returncode == 0, listed.stderr
    assert sorted(job["job_id"] for job in json.loads(listed.stdout)) == ["j0", "j1", "j2"]
    leftovers = sorted(p.name for p in workdir.path.iterdir() if p.name.startswith("."))
    assert leftovers == []


# -- 2. the job's code cannot pick the exit code ---------------------------------------


@pytest.mark.parametrize("raised", ["exit0", "exit3", "keyboard", "generator", "custom"])
def test_whatever_each_iteration_raises_is_the_jobs_failure(workdir: Workdir, raised: str) -> None:
    """SystemExit(0), SystemExit(3), KeyboardInterrupt, GeneratorExit or any BaseException
    from the job's code: status failed, the last completed cursor saved, on_error and
    on_shutdown called, the end line printed, exit 1 — every time it is run."""
    command = _numbers(
        workdir, "raiser", "--param", "count=10", "--param", "at=4", "--param", f"raise={raised}",
        job="RaisesBase",
    )  # fmt: skip
    for attempt in range(2):
        result = workdir.run(*command)
        assert result.returncode == 1, (attempt, result.stderr)
        assert "job raiser failed" in result.stderr
        status = workdir.status("raiser")
        assert (status["status"], status["cursor"], status["processed"]) == ("failed", 3, 4)
    hooks = [line for line in workdir.lines() if line.startswith("hook ")]
    assert hooks[:3] == ["hook on_start", hooks[1], "hook on_shutdown"]
    assert hooks[1].startswith("hook on_error")
    assert workdir.items() == [0, 1, 2, 3]


def test_a_module_that_calls_sys_exit_0_at_import_exits_2(workdir: Workdir) -> None:
    """`sys.exit(0)` while the job's module imports is an import failure: exit 2, not 0."""
    (workdir.path / "quits.py").write_text("import sys\nsys.exit(0)\n")
    result = workdir.run("run", "quits:Job", "--job-id", "q")
    assert result.returncode == 2, result.stderr
    assert "cannot import the job module 'quits': SystemExit: 0" in result.stderr
    assert not (workdir.path / "iterctl.db").exists()


# -- 8. --max-runtime shorter than start-up ----------------------------------------------


def test_every_run_completes_an_item_even_if_start_up_outlasts_max_runtime(
    workdir: Workdir,
) -> None:
    """A 1 s enumerator build and --max-runtime 0.3: each run still does at least one
    item and exits 75, so restarts make progress instead of looping for ever."""
    command = _numbers(
        workdir, "slow-start", "--param", "count=3", "--param", "build_delay=1",
        "--max-runtime", "0.3", job="SlowStart",
    )  # fmt: skip
    first = workdir.run(*command)
    assert first.returncode == 75, first.stderr
    assert workdir.items() == [0]
    second = workdir.run(*command)
    assert second.returncode == 75, second.stderr
    assert workdir.items() == [0, 1]


def test_sigterm_before_the_first_item_still_stops_with_nothing_done(workdir: Workdir) -> None:
    """The one-item rule is --max-runtime's only: a SIGTERM during start-up stops at once."""
    process = workdir.start(*_numbers(
        workdir, "early", "--param", "count=3", "--param", "build_delay=1", job="SlowStart",
    ))  # fmt: skip
    workdir.wait_for(lambda _lines: (workdir.path / "iterctl.db").exists(), process)
    process.send_signal(signal.SIGTERM)
    result = workdir.finish(process)
    assert result.returncode == 75, result.stderr
    assert workdir.items() == []


# -- 11. a bad cursor after the first item --------------------------------------------------


def test_a_bad_last_cursor_is_refused_before_on_complete_and_before_done(
    workdir: Workdir,
) -> None:
    """The last item's cursor is a set: refused (exit 2) before on_complete runs and
    before the job is marked succeeded; the store keeps the last cursor it could."""
    result = workdir.run(*_numbers(
        workdir, "late-bad", "--param", "count=50", "--checkpoint-interval", "60",
        job="BadLastCursor",
    ))  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "not a JSON value" in result.stderr
    assert "hook on_complete" not in workdir.lines()
    status = workdir.status("late-bad")
    assert status["status"] == "failed"
    assert "not a JSON value" in status["error"]


# -- 12. hooks that raise -------------------------------------------------------------------


def test_an_on_error_that_raises_still_reports_the_failure_and_runs_on_shutdown(
    workdir: Workdir,
) -> None:
    """on_error raises: the 'failed' line is printed, on_shutdown runs, exit 1 and the
    store says failed; both errors are reported."""
    result = workdir.run(*_numbers(
        workdir, "bad-hook", "--param", "count=5", "--param", "fail_at=2",
        "--param", "hook=on_error", job="HookRaises",
    ))  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "job bad-hook failed: RuntimeError: item 2 is broken" in result.stderr
    assert "on_error raised RuntimeError: on_error is broken too" in result.stderr
    assert "hook on_shutdown" in workdir.lines()
    assert workdir.status("bad-hook")["status"] == "failed"


def test_an_on_shutdown_that_raises_after_success_keeps_exit_0_and_says_so(
    workdir: Workdir,
) -> None:
    """The store says succeeded, so the exit code does too; the hook's error is shown
    with its traceback (a rerun would only find the job done)."""
    result = workdir.run(*_numbers(
        workdir, "shut", "--param", "count=3", "--param", "hook=on_shutdown", job="HookRaises",
    ))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "job shut succeeded: 3 items" in result.stderr
    assert "on_shutdown raised RuntimeError: on_shutdown is broken" in result.stderr
    assert "Traceback" in result.stderr
    assert workdir.status("shut")["status"] == "succeeded"


# -- 13. cancel reports what was done -----------------------------------------------------


def test_a_cancelled_run_reports_the_items_it_saved(workdir: Workdir) -> None:
    """The stop line, the JSON end event and the termination log of a cancelled run give
    the count and cursor the store holds, not 0 and null."""
    message = workdir.path / "termination-log"
    process = workdir.start(*_numbers(
        workdir, "cancelled", "--param", "count=100000", "--param", "delay=0.002",
        "--checkpoint-interval", "0.1", "--log-format", "json",
        "--termination-log", str(message),
    ))  # fmt: skip
    workdir.wait_items(20, process)
    assert workdir.run("cancel", "cancelled").returncode == 0
    result = workdir.finish(process)
    assert result.returncode == 3, result.stderr

    status = workdir.status("cancelled")
    assert status["processed"] >= 20
    end = [json.loads(line) for line in result.stderr.splitlines()][-1]
    assert (end["processed"], end["cursor"]) == (status["processed"], status["cursor"])
    summary = json.loads(message.read_text())
    assert (summary["processed"], summary["cursor"]) == (status["processed"], status["cursor"])


# -- 10. signal handlers come first -----------------------------------------------------


def test_the_signal_handlers_go_in_before_any_of_iterctls_own_imports(workdir: Workdir) -> None:
    """Between execve and the handlers only the entry point and the stop module load:
    nothing of the job API, pydantic, typer or rich (which take tens of milliseconds, in
    which a SIGTERM would kill the process with 143 rather than exit 75)."""
    result = subprocess.run(
        [iterctl_executable(), "--help"], cwd=workdir.path, capture_output=True, text=True,
        env={**workdir.env, "PYTHONPROFILEIMPORTTIME": "1"}, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    names = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()]
    before = names[names.index("site") + 1 : names.index("iterctl.entry")]
    assert [name for name in before if name.startswith("iterctl")] == [
        "iterctl", "iterctl.stopping",
    ]  # fmt: skip
    heavy = {"typing", "dataclasses", "json", "pydantic", "typer", "rich", "iterctl.job"}
    assert heavy.isdisjoint(before), before


# -- 7. a file changed under a running file enumerator -----------------------------------------


@pytest.mark.parametrize("how", ["truncate", "rename"])
def test_a_csv_file_rewritten_during_the_run_is_refused_not_succeeded(
    workdir: Workdir, how: str
) -> None:
    """6,000 rows of 100 bytes (a few read blocks), rewritten with 100 rows at row 10 (in
    place, or by a rename over it): the run refuses with exit 2 and the job is marked
    failed — it never 'succeeds'."""
    data = workdir.path / "rows.csv"
    pad = "x" * 90
    data.write_text("n,pad\n" + "".join(f"{i},{pad}\n" for i in range(6_000)))
    result = workdir.run(
        "run", "testjobs:CsvNumbers", "--job-id", "csv", "--param", f"log={workdir.log}",
        "--param", f"file={data}", "--param", "rewrite_at=10", "--param", f"how={how}",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-800:]
    assert "changed during the run" in result.stderr
    assert workdir.status("csv")["status"] == "failed"


def test_a_resume_offset_between_cr_and_lf_is_refused(workdir: Workdir) -> None:
    """A CRLF file stopped mid-way, then one byte put in front of it: the saved offset
    falls between a \\r and its \\n; the resume refuses (exit 2) instead of reading a
    phantom empty row."""
    data = workdir.path / "rows.csv"
    data.write_bytes(b"n\r\n" + b"".join(b"%d\r\n" % i for i in range(200)))
    command = [
        "run", "testjobs:CsvNumbers", "--job-id", "crlf", "--param", f"log={workdir.log}",
        "--param", f"file={data}", "--param", "delay=0.01", "--checkpoint-interval", "0",
    ]  # fmt: skip
    process = workdir.start(*command)
    workdir.wait_items(5, process)
    process.send_signal(signal.SIGTERM)
    assert workdir.finish(process).returncode == 75
    data.write_bytes(b"x" + data.read_bytes())

    resumed = workdir.run(*command)
    assert resumed.returncode == 2, resumed.stderr
    assert "not at the start of a line" in resumed.stderr
    assert "item " not in "".join(workdir.lines()[len(workdir.items()):])


@pytest.mark.parametrize("change", ["replaced", "appended"])
def test_a_file_replaced_while_the_job_was_stopped_is_refused_on_resume(
    workdir: Workdir, change: str
) -> None:
    """The job's file is recorded (its first bytes) at the first checkpoint. Stopped with
    --limit, then the file is swapped for another of the same size: the resume refuses
    (exit 2) rather than read the new file from the old offset. Rows appended to the
    original instead are fine: the resume reads on to the end."""
    data = workdir.path / "rows.csv"
    data.write_text("n\n" + "".join(f"{i}\n" for i in range(100, 200)))
    command = ["run", "testjobs:CsvNumbers", "--job-id", "swap", "--param",
               f"log={workdir.log}", "--param", f"file={data}"]  # fmt: skip
    assert workdir.run(*command, "--limit", "10").returncode == 75
    if change == "replaced":
        data.write_text("n\n" + "".join(f"{i}\n" for i in range(300, 400)))
    else:
        with data.open("a") as f:
            f.write("".join(f"{i}\n" for i in range(200, 250)))

    resumed = workdir.run(*command)

    if change == "replaced":
        assert resumed.returncode == 2, resumed.stderr
        assert "is not the file this job started on" in resumed.stderr
        assert "Traceback" not in resumed.stderr
        assert workdir.items() == list(range(100, 110))
    else:
        assert resumed.returncode == 0, resumed.stderr
        assert workdir.items() == list(range(100, 250))
