"""Output (CONTRACT §5), options from the environment (§2) and `status --json` fields."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
from datetime import datetime

from tests.cli.conftest import Workdir, iterctl_executable

_CONTRACT_FIELDS = {
    "job_id", "job", "status", "params", "cursor", "processed", "total",
    "times_interrupted", "error", "created_at", "updated_at",
}  # fmt: skip


def test_a_new_job_id_goes_to_stdout_and_messages_to_stderr(workdir: Workdir) -> None:
    """Without --job-id, run prints the new id (alone) on stdout; `status ID` finds it."""
    result = workdir.run("run", "testjobs:Numbers", "--param", f"log={workdir.log}",
                         "--param", "count=3")  # fmt: skip
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert re.fullmatch(r"numbers-[0-9a-f]{8}", job_id)
    assert job_id in result.stderr
    assert workdir.status(job_id)["status"] == "succeeded"


def test_off_a_terminal_lines_are_plain_steady_and_name_the_job(workdir: Workdir) -> None:
    """No animation, carriage returns or escape codes; start, progress, stop, resume and
    end lines, each with the job id."""
    command = [
        "run", "testjobs:Numbers", "--job-id", "plain", "--param", f"log={workdir.log}",
        "--param", "count=60", "--param", "delay=0.01", "--progress-interval", "0.1",
    ]  # fmt: skip
    process = workdir.start(*command)
    workdir.wait_items(30, process)
    process.send_signal(signal.SIGTERM)
    stopped = workdir.finish(process)
    resumed = workdir.run(*command)
    assert (stopped.returncode, resumed.returncode) == (75, 0)

    text = stopped.stderr + resumed.stderr
    assert "\r" not in text
    assert "\x1b" not in text
    lines = text.splitlines()
    assert all(line.startswith("iterctl: ") and "plain" in line for line in lines), text
    assert lines[0].startswith("iterctl: started job plain (testjobs:Numbers), 60 items")
    assert any(re.search(r"job plain: \d+/60, [\d.]+%, [\d.,]+ items/s", line) for line in lines)
    assert any(line.startswith("iterctl: stopped job plain (SIGTERM)") for line in lines)
    assert any(line.startswith("iterctl: resumed job plain") for line in lines)
    assert re.fullmatch(
        r"iterctl: job plain succeeded: 60 items; this run \d+ in [\d.]+s, [\d,.]+ items/s",
        lines[-1],
    )


def test_json_log_format_gives_one_object_per_line(workdir: Workdir) -> None:
    """--log-format json: each stderr line is a JSON object with event, job id, counts."""
    result = workdir.run(
        "run", "testjobs:Numbers", "--job-id", "logs", "--param", f"log={workdir.log}",
        "--param", "count=20", "--param", "delay=0.01", "--progress-interval", "0.05",
        "--log-format", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert events[0]["event"] == "start"
    assert events[-1]["event"] == "end"
    assert events[-1]["processed"] == 20
    assert {event["job_id"] for event in events} == {"logs"}
    assert "progress" in {event["event"] for event in events}


def test_on_a_terminal_a_rich_bar_shows_count_total_and_rate(workdir: Workdir) -> None:
    """Under a pseudo-terminal, iterctl draws a progress bar (Rich) with n/total."""
    main, secondary = pty.openpty()
    process = subprocess.Popen(
        [iterctl_executable(), "run", "testjobs:Numbers", "--job-id", "tty",
         "--param", f"log={workdir.log}", "--param", "count=40", "--param", "delay=0.02"],
        cwd=workdir.path, env={**workdir.env, "TERM": "xterm", "COLUMNS": "120"},
        stdin=secondary, stdout=secondary, stderr=secondary,
    )  # fmt: skip
    os.close(secondary)
    screen = b""
    while True:
        ready, _, _ = select.select([main], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal closes when the process exits
            break
        if not chunk:
            break
        screen += chunk
    assert process.wait(timeout=30) == 0
    os.close(main)
    text = screen.decode(errors="replace")
    assert "\x1b[" in text  # a live display, not log lines
    assert "40/40" in text
    assert "items/s" in text
    assert "job tty succeeded: 40 items" in text


def test_options_come_from_iterctl_environment_variables_and_flags_win(
    workdir: Workdir,
) -> None:
    """ITERCTL_JOB_ID and ITERCTL_STORE stand in for the flags; a flag beats its variable."""
    store = workdir.path / "from-env.json"
    env = {"ITERCTL_JOB_ID": "env-id", "ITERCTL_STORE": str(store)}
    result = workdir.run("run", "testjobs:Numbers", "--param", f"log={workdir.log}",
                         "--param", "count=2", env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # the id was given, so none is announced
    assert json.loads(store.read_text())["jobs"]["env-id"]["status"] == "succeeded"

    flagged = workdir.run("run", "testjobs:Numbers", "--job-id", "flag-id",
                          "--param", f"log={workdir.log}", "--param", "count=2",
                          env=env)  # fmt: skip
    assert flagged.returncode == 0, flagged.stderr
    assert set(json.loads(store.read_text())["jobs"]) == {"env-id", "flag-id"}


def test_status_json_has_every_contract_field_for_one_and_for_all(workdir: Workdir) -> None:
    """`status ID --json` is one object, `status --json` an array, with CONTRACT §2 fields."""
    for job_id in ("first", "second"):
        workdir.run("run", "testjobs:Numbers", "--job-id", job_id,
                    "--param", f"log={workdir.log}", "--param", "count=3")  # fmt: skip
    one = workdir.status("first")
    assert one.keys() >= _CONTRACT_FIELDS
    assert one["job"] == "testjobs:Numbers"
    assert one["params"] == {"count": "3", "log": str(workdir.log)}
    assert (one["cursor"], one["processed"], one["total"], one["error"]) == (2, 3, 3, None)
    for stamp in (one["created_at"], one["updated_at"]):
        assert datetime.fromisoformat(stamp).utcoffset() is not None
        assert stamp.endswith("+00:00")

    listed = workdir.run("status", "--json")
    everything = json.loads(listed.stdout)
    assert [job["job_id"] for job in everything] == ["first", "second"]
    assert all(job.keys() >= _CONTRACT_FIELDS for job in everything)


def test_status_without_json_is_a_table_for_people(workdir: Workdir) -> None:
    """Plain `status` shows a table with the job id and its status."""
    workdir.run("run", "testjobs:Numbers", "--job-id", "tabled",
                "--param", f"log={workdir.log}", "--param", "count=3")  # fmt: skip
    shown = workdir.run("status")
    assert shown.returncode == 0
    assert "tabled" in shown.stdout
    assert "succeeded" in shown.stdout


def test_typed_params_reach_the_job_typed(workdir: Workdir) -> None:
    """A declared parameter model turns --param strings into typed values."""
    result = workdir.run("run", "testjobs:Typed", "--param", "count=2", "--param", "ratio=0.5",
                         env={"TESTJOBS_LOG": str(workdir.log)})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert workdir.lines() == ["item 0 ratio 0.5", "item 1 ratio 0.5"]


def test_the_termination_message_summarises_the_exit(workdir: Workdir) -> None:
    """--termination-log gets one JSON line: outcome, exit code, processed, cursor, the
    number of items recorded as failed and the age of the last checkpoint."""
    message = workdir.path / "termination-log"
    result = workdir.run("run", "testjobs:Numbers", "--job-id", "term",
                         "--param", f"log={workdir.log}", "--param", "count=4",
                         "--termination-log", str(message))  # fmt: skip
    assert result.returncode == 0
    summary = json.loads(message.read_text())
    # The final checkpoint was saved just before the exit: its age is a fraction of a second.
    assert 0 <= summary.pop("checkpoint_age_seconds") < 5
    assert summary == {
        "job_id": "term", "outcome": "succeeded", "exit_code": 0, "processed": 4,
        "cursor": 3, "reason": None, "failed_items": 0,
    }  # fmt: skip


def test_with_json_logs_even_errors_are_json_lines(workdir: Workdir) -> None:
    """A log pipeline that asked for JSON gets usage errors as JSON objects too."""
    result = workdir.run("resume", "nobody", env={"ITERCTL_LOG_FORMAT": "json"})
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    event = json.loads(line)
    assert event["exit_code"] == 2
    assert "unknown job id 'nobody'" in event["message"]


def test_commands_that_need_no_database_do_not_import_sqlalchemy(workdir: Workdir) -> None:
    """--help, and a run on the JSON store, never load SQLAlchemy: start-up time counts."""
    store = str(workdir.path / "s.json")
    for args in (["--help"], ["run", "--help"],
                 ["run", "testjobs:Numbers", "--param", f"log={workdir.log}",
                  "--param", "count=2", "--store", store]):  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "iterctl", *args],
            cwd=workdir.path, env=workdir.env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
        assert "sqlalchemy" not in imported, args
        assert "iterctl.cli" in imported  # the check itself saw the imports
