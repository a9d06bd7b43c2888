"""Fixtures for black-box tests: the installed ``iterctl`` run as a real process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
#: Rich switches to a terminal bar when these say so; the tests read plain lines.
_TTY_VARIABLES = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")


def iterctl_executable() -> str:
    """The console script beside this Python: a wrapper on PATH (a pyenv shim) could be
    a shell for a moment, and a signal sent to it would not reach iterctl."""
    beside = Path(sysconfig.get_path("scripts")) / "iterctl"
    if beside.is_file():
        return str(beside)
    found = shutil.which("iterctl")
    if found is None:
        pytest.fail("the iterctl command is not installed: pip install -e '.[test]'")
    return found


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


class Workdir:
    """A folder holding the test jobs module, where iterctl runs as a user would run it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        shutil.copy(HERE / "testjobs.py", path / "testjobs.py")
        self.log = path / "items.log"
        self.env = {k: v for k, v in os.environ.items() if k not in _TTY_VARIABLES}
        self.env = {k: v for k, v in self.env.items() if not k.startswith("ITERCTL_")}
        self.env["PYTHONUNBUFFERED"] = "1"

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [iterctl_executable(), *args],
            cwd=self.path,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Finished:
        process = self.start(*args, env=env)
        stdout, stderr = process.communicate(timeout=timeout)
        return Finished(process.returncode, stdout, stderr)

    def finish(self, process: subprocess.Popen[str], timeout: float = 30) -> Finished:
        stdout, stderr = process.communicate(timeout=timeout)
        return Finished(process.returncode, stdout, stderr)

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def items(self) -> list[int]:
        return [int(line.split()[1]) for line in self.lines() if line.startswith("item ")]

    def wait_for(
        self,
        condition: Callable[[list[str]], bool],
        process: subprocess.Popen[str] | None = None,
        timeout: float = 30,
    ) -> None:
        """Wait until the job's log satisfies ``condition``: progress we can observe."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition(self.lines()):
                return
            if process is not None and process.poll() is not None:
                _out, err = process.communicate()
                pytest.fail(f"iterctl exited {process.returncode} too early:\n{err}")
            time.sleep(0.01)
        pytest.fail(f"timed out waiting on the job log; it has {len(self.lines())} lines")

    def wait_items(self, count: int, process: subprocess.Popen[str], timeout: float = 30) -> None:
        """Wait until the log holds at least ``count`` more item lines than now."""
        target = len(self.items()) + count
        self.wait_for(
            lambda lines: sum(line.startswith("item ") for line in lines) >= target,
            process,
            timeout,
        )

    def status(self, job_id: str, *store: str) -> dict[str, Any]:
        result = self.run("status", job_id, "--json", *store)
        assert result.returncode == 0, result.stderr
        document: dict[str, Any] = json.loads(result.stdout)
        return document


def stop(process: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM) -> None:
    process.send_signal(sig)


@pytest.fixture
def workdir(tmp_path: Path) -> Workdir:
    return Workdir(tmp_path)
