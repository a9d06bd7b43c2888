"""What a person meets (issue 9): Ctrl-C feedback, the bar, messages, --version and -h.

The terminal tests run iterctl on a pseudo-terminal (Python's ``pty``), as a person's shell
would; the others read its plain lines through pipes, as Kubernetes does.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.cli.conftest import Workdir, iterctl_executable

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """iterctl running on a pseudo-terminal; a thread collects what the screen shows."""

    def __init__(self, workdir: Workdir, *args: str) -> None:
        main, secondary = pty.openpty()
        self.process = subprocess.Popen(
            [iterctl_executable(), *args],
            cwd=workdir.path,
            env={**workdir.env, "TERM": "xterm", "COLUMNS": "120"},
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
        )
        os.close(secondary)
        self._main = main
        self._screen = b""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            ready, _, _ = select.select([self._main], [], [], 30)
            if not ready:
                return
            try:
                chunk = os.read(self._main, 4096)
            except OSError:  # the terminal closes when the process exits
                return
            if not chunk:
                return
            with self._lock:
                self._screen += chunk

    def text(self) -> str:
        """Everything shown so far, escape codes removed."""
        with self._lock:
            return ANSI.sub("", self._screen.decode(errors="replace"))

    def wait_for(self, fragment: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while fragment not in self.text():
            if time.monotonic() > deadline or self.process.poll() is not None:
                pytest.fail(f"{fragment!r} never shown; the screen:\n{self.text()[-2000:]}")
            time.sleep(0.01)

    def finish(self, timeout: float = 30) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        os.close(self._main)
        return code


def test_on_a_terminal_the_first_ctrl_c_says_at_once_what_happens_and_the_second_stops_now(
    workdir: Workdir,
) -> None:
    """Mid-way through a 20 s item, Ctrl-C says at once that the run stops after the
    current item and that a second Ctrl-C stops now; the second one does, exit 75."""
    terminal = Terminal(
        workdir, "run", "testjobs:SlowItems", "--job-id", "ctrlc",
        "--param", f"log={workdir.log}", "--param", "count=3", "--param", "delay=20",
    )  # fmt: skip
    workdir.wait_for(lambda lines: "start 0" in lines or terminal.process.poll() is not None)
    assert terminal.process.poll() is None, terminal.text()
    terminal.process.send_signal(signal.SIGINT)
    terminal.wait_for("Stopping after the current item — press Ctrl-C again to stop now.")
    assert "end 0" not in workdir.lines()  # said while the item still runs

    terminal.process.send_signal(signal.SIGINT)
    terminal.wait_for("Stopping now, in the middle of the current item.")
    assert terminal.finish() == 75
    assert "end 0" not in workdir.lines()
    assert "stopped job ctrlc (second SIGINT): 0 items done" in terminal.text()


def test_on_a_terminal_the_bar_reads_like_tqdm_and_the_end_says_how_long_and_how_fast(
    workdir: Workdir,
) -> None:
    """Counts with thousands separators, [elapsed<remaining, rate] while it runs, and an
    end line with the run's duration and rate."""
    terminal = Terminal(
        workdir, "run", "testjobs:Numbers", "--job-id", "bar",
        "--param", f"log={workdir.log}", "--param", "count=2500", "--param", "delay=0.0005",
    )  # fmt: skip
    assert terminal.finish() == 0
    shown = terminal.text()
    assert re.search(r"\d,\d{3}/2,500 +\d+% \[\d\d:\d\d<\d\d:\d\d, [\d,.]+ items/s\]", shown), shown
    assert re.search(r"2,500/2,500 100% \[\d\d:\d\d, [\d,.]+ items/s\]", shown), shown
    assert re.search(r"job bar succeeded: 2,500 items in [\d.]+s, [\d,.]+ items/s", shown), shown


def test_on_a_terminal_slow_items_show_seconds_per_item(workdir: Workdir) -> None:
    """Items slower than one a second show "s/item" on the bar, not "0 items/s"."""
    terminal = Terminal(
        workdir, "run", "testjobs:Numbers", "--job-id", "slow",
        "--param", f"log={workdir.log}", "--param", "count=4", "--param", "delay=1.2",
    )  # fmt: skip
    assert terminal.finish() == 0
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d, 1\.\d s/item\]", terminal.text()), terminal.text()


def test_off_a_terminal_each_stop_signal_is_logged_as_it_arrives_with_the_job_id(
    workdir: Workdir,
) -> None:
    """Kubernetes logs get a line for a SIGTERM the moment it comes, mid-item, naming the
    job; the run then stops after the item, exit 75."""
    process = workdir.start(
        "run", "testjobs:SlowItems", "--job-id", "sig", "--param", f"log={workdir.log}",
        "--param", "count=3", "--param", "delay=5",
    )  # fmt: skip
    workdir.wait_for(lambda lines: "start 0" in lines, process)
    process.send_signal(signal.SIGTERM)
    assert process.stderr is not None
    lines = [process.stderr.readline() for _ in range(2)]  # the start line, then the notice
    assert lines[1] == (
        "iterctl: job sig: SIGTERM received — stopping after the current item "
        "(a second SIGINT stops at once)\n"
    )
    assert "end 0" not in workdir.lines()  # logged while the item still runs
    finished = workdir.finish(process)
    assert finished.returncode == 75
    assert "stopped job sig (SIGTERM): 1 items done" in finished.stderr


def test_a_stop_signal_before_the_job_id_is_made_names_it_once_it_is(workdir: Workdir) -> None:
    """A run without --job-id: a SIGTERM during the enumerator's build still gets a line
    with the new id."""
    (workdir.path / "slowbuild.py").write_text(
        "import time\nfrom pathlib import Path\nfrom iterctl import Job\n\n"
        "class SlowBuild(Job):\n"
        "    def build_enumerator(self, cursor):\n"
        "        Path('building').touch()\n"
        "        time.sleep(3)\n"
        "        return iter([(1, 1)])\n\n"
        "    def each_iteration(self, item):\n"
        "        pass\n"
    )
    process = workdir.start("run", "slowbuild:SlowBuild")
    marker = workdir.path / "building"
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    finished = workdir.finish(process)
    job_id = finished.stdout.strip()
    assert finished.returncode == 75, finished.stderr
    assert f"iterctl: job {job_id}: SIGTERM received — stopping after" in finished.stderr


def test_version_and_short_help(workdir: Workdir) -> None:
    """--version and -V print the version on stdout; -h is --help, for every command."""
    for flag in ("--version", "-V"):
        shown = workdir.run(flag)
        assert shown.returncode == 0
        assert re.fullmatch(r"iterctl \d+\.\d+\.\d+\S*\n", shown.stdout)
    for args in (["-h"], ["run", "-h"], ["status", "-h"]):
        short, long = workdir.run(*args), workdir.run(*args[:-1], "--help")
        assert (short.returncode, short.stdout) == (0, long.stdout)
        assert "Usage: iterctl" in short.stdout


def test_a_run_relying_on_a_params_default_matches_the_default_given_explicitly(
    workdir: Workdir,
) -> None:
    """Params are compared as the job sees them: leaving ratio out (default 1.0) and then
    giving --param ratio=1 are the same settings; ratio=2 is not, and says so."""
    first = workdir.run("run", "testjobs:Typed", "--job-id", "typed", "--param", "count=2",
                        env={"TESTJOBS_LOG": str(workdir.log)})  # fmt: skip
    assert first.returncode == 0, first.stderr
    same = workdir.run("run", "testjobs:Typed", "--job-id", "typed", "--param", "count=02",
                       "--param", "ratio=1", env={"TESTJOBS_LOG": str(workdir.log)})  # fmt: skip
    assert same.returncode == 0, same.stderr
    assert "already succeeded" in same.stderr
    other = workdir.run("run", "testjobs:Typed", "--job-id", "typed", "--param", "count=2",
                        "--param", "ratio=2", env={"TESTJOBS_LOG": str(workdir.log)})  # fmt: skip
    assert other.returncode == 2
    assert "param ratio: stored 1.0, given 2.0" in other.stderr


def test_a_job_without_each_iteration_is_refused_before_anything_runs(workdir: Workdir) -> None:
    """Exit 2 at load, one line saying what to add; no store, no hook, no item."""
    (workdir.path / "noaction.py").write_text(
        "from pathlib import Path\nfrom iterctl import Job\n\n"
        "class NoAction(Job):\n"
        "    def build_enumerator(self, cursor):\n"
        "        Path('built').touch()\n"
        "        return iter([(1, 1)])\n"
    )
    result = workdir.run("run", "noaction:NoAction")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "iterctl: noaction:NoAction does not define each_iteration — add it to the class: "
        "def each_iteration(self, item): process one item"
    ]
    assert not (workdir.path / "built").exists()
    assert not (workdir.path / "iterctl.db").exists()


def test_a_job_module_named_like_a_standard_module_is_told_it_shadows_it(
    workdir: Workdir,
) -> None:
    """`io.py` beside the user: the message says Python imports the standard library's io."""
    (workdir.path / "io.py").write_text("from iterctl import Job\n\nclass Io(Job):\n    pass\n")
    result = workdir.run("run", "io:Io")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "iterctl: your module 'io' has the name of a standard library module, which Python "
        "imports instead — rename io.py (e.g. to io_job) and run io_job:Io"
    ]


def test_a_busy_partition_is_named(workdir: Workdir) -> None:
    """A second process for a running partition says which partition it is."""
    logs = workdir.path / "logs"
    logs.mkdir()
    command = ["run", "testjobs:Partitioned", "--job-id", "big", "--partitions", "2",
               "--param", f"logs={logs}", "--param", "count=1000", "--param", "delay=0.05",
               "--store", str(workdir.path / "s.json")]  # fmt: skip
    first = workdir.start(*command, "--partition", "1")
    deadline = time.monotonic() + 30
    while not (logs / "part-1.log").exists() and time.monotonic() < deadline:
        assert first.poll() is None, workdir.finish(first).stderr
        time.sleep(0.01)
    second = workdir.run(*command, "--partition", "1")
    first.send_signal(signal.SIGTERM)
    workdir.finish(first)
    assert second.returncode == 75
    assert re.fullmatch(
        r"iterctl: partition 1 of job big is already running \(host \S+ pid \d+\) — wait for it "
        r"to stop, or run another of its 2 partitions \(--partition I\); this process changed "
        r"nothing\n",
        second.stderr,
    ), second.stderr


def test_a_folder_given_as_the_json_store_gets_how_to_fix_it(workdir: Workdir) -> None:
    """Every refusal says how to fix it: a folder where the store file should be, too."""
    (workdir.path / "adir.json").mkdir()
    result = workdir.run("run", "testjobs:Numbers", "--param", f"log={workdir.log}",
                         "--store", "adir.json")  # fmt: skip
    assert result.stderr.splitlines()[-1] == (
        "iterctl: cannot read the store adir.json: Is a directory — "
        "--store must name a file, not a folder"
    )


def test_a_jobs_exception_message_cannot_forge_a_log_line(workdir: Workdir) -> None:
    """Text logs escape newlines and escape codes in a job's exception message, as JSON
    mode does: no line of the output reads as iterctl's but iterctl's own."""
    (workdir.path / "forger.py").write_text(
        "from iterctl import Job\n\n"
        "class Forger(Job):\n"
        "    def build_enumerator(self, cursor):\n"
        "        return iter([(1, 1)])\n\n"
        "    def each_iteration(self, item):\n"
        "        raise ValueError('oops\\niterctl: job f succeeded: 1 items\\x1b[2J')\n"
    )
    result = workdir.run("run", "forger:Forger", "--job-id", "f")
    assert result.returncode == 1
    assert "\x1b" not in result.stderr
    ours = [line for line in result.stderr.splitlines() if line.startswith("iterctl: ")]
    assert [line.split(":")[1] for line in ours] == [" started job f (forger", " job f failed"]
    assert "ValueError: oops\\niterctl: job f succeeded: 1 items\\u001b[2J" in result.stderr


def test_a_usage_error_quoting_the_users_input_cannot_forge_a_line(workdir: Workdir) -> None:
    """The one-line error escapes what the user typed (here a newline in --store)."""
    result = workdir.run("run", "testjobs:Numbers", "--param", f"log={workdir.log}",
                         "--store", "no\niterctl: job x succeeded/s.json")  # fmt: skip
    assert result.returncode == 69
    (line,) = result.stderr.splitlines()
    assert line.startswith("iterctl: cannot open the store no\\niterctl: job x succeeded/s.json")


def test_readme_documents_version_and_short_help() -> None:
    """The README, the front door, shows the options added here."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "--version" in readme
    assert "`-h`" in readme
