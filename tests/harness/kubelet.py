"""A stand-in for Kubernetes that runs one fixed container command until its Job ends.

It plays two parts. As the kubelet it starts the container's process, stops it the way a
pod is stopped (SIGTERM, a grace period, then SIGKILL for whatever still runs) and
reports the exit code as a container runtime does (128 + N for death by signal N). As the
Job controller it judges each exit by the Job's ``restartPolicy`` and ``podFailurePolicy``
(read from a real manifest in deploy/kubernetes/) and either completes the Job, fails it,
or starts the same command again, counting the failure against ``backoffLimit`` or not.

Disruptions come from a plan: each names how much observable progress the attempt must
make first (lines in the job's log), so a signal never lands at a fixed time, only after
the process has shown that it runs.

What is modelled of Kubernetes, and what is not:

- restartPolicy Never: every restart is a new pod; the first podFailurePolicy rule that
  matches decides (``onExitCodes`` for the one container, ``onPodConditions`` for
  DisruptionTarget only); no match counts; the Job fails when the count of counted
  failures exceeds backoffLimit.
- restartPolicy OnFailure: no podFailurePolicy (Kubernetes forbids it); every non-zero
  exit restarts the container in place and counts; the Job fails once the restarts reach
  backoffLimit (at the first failure when it is 0).
- Not modelled: back-off delays between restarts, activeDeadlineSeconds, scheduling.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sysconfig
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

#: Environment variables that would make iterctl think it writes to a terminal.
_TERMINAL_VARIABLES = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")


class Verdict(StrEnum):
    """What the Job controller does with a finished attempt."""

    COMPLETE = "Complete"  # exit 0: the Job is done
    IGNORE = "Ignore"  # restart, not counted against backoffLimit
    COUNT = "Count"  # restart, counted against backoffLimit
    FAIL_JOB = "FailJob"  # the Job fails now, no restart


@dataclass(frozen=True)
class JobSpec:
    """The parts of a Job manifest that decide restarts."""

    container: str
    restart_policy: str
    backoff_limit: int
    rules: tuple[Mapping[str, Any], ...]

    @classmethod
    def from_manifest(cls, path: Path, *, backoff_limit: int | None = None) -> JobSpec:
        """Read the (one) Job in a manifest file; ``backoff_limit`` overrides its own."""
        jobs = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "Job"]
        (job,) = jobs
        spec = job["spec"]
        pod = spec["template"]["spec"]
        (container,) = pod["containers"]
        return cls(
            container=container["name"],
            restart_policy=pod["restartPolicy"],
            backoff_limit=spec.get("backoffLimit", 6) if backoff_limit is None else backoff_limit,
            rules=tuple(spec.get("podFailurePolicy", {}).get("rules", ())),
        )

    def judge(self, exit_code: int, *, disruption_target: bool = False) -> Verdict:
        """The Job controller's decision for a container that exited with ``exit_code``."""
        if exit_code == 0:
            return Verdict.COMPLETE
        for rule in self.rules:
            if self._matches(rule, exit_code, disruption_target=disruption_target):
                return Verdict(rule["action"])
        return Verdict.COUNT

    def _matches(self, rule: Mapping[str, Any], exit_code: int, *, disruption_target: bool) -> bool:
        on_codes = rule.get("onExitCodes")
        if on_codes is not None:
            if on_codes.get("containerName", self.container) != self.container:
                return False
            listed = exit_code in on_codes["values"]
            return listed if on_codes["operator"] == "In" else not listed
        return disruption_target and any(
            cond["type"] == "DisruptionTarget" and cond.get("status", "True") == "True"
            for cond in rule.get("onPodConditions", ())
        )


@dataclass(frozen=True)
class Stop:
    """Stop the pod once the attempt has made ``after`` units of progress.

    SIGTERM, then SIGKILL if the process still runs ``grace`` seconds later (0: at once,
    as when the grace period is too short or the node loses power). ``disruption_target``
    marks the pod as Kubernetes marks an evicted, preempted or drained one.
    """

    after: int
    grace: float
    disruption_target: bool = False


@dataclass(frozen=True)
class Suspend(Stop):
    """``spec.suspend: true`` (or a Kueue preemption): the Job controller deletes the pod,
    so it is stopped as any deleted pod is, with SIGTERM and the grace period, and no
    DisruptionTarget condition (Kueue-evicted pods carry none). No new pod starts while
    the Job is suspended: ``paused`` runs then, before ``spec.suspend: false`` resumes it."""

    paused: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class Meddle:
    """Do ``action`` (e.g. run ``iterctl cancel``) once the attempt has made ``after``
    units of progress, and leave the pod alone."""

    after: int
    action: Callable[[], None]


Event = Stop | Meddle


@dataclass
class Attempt:
    """One run of the container command, and what the Job controller made of it."""

    number: int
    exit_code: int
    verdict: Verdict
    #: The signals the kubelet sent, in order.
    signals: list[str]
    disruption_target: bool
    #: Progress (e.g. log lines) when the attempt started and when its process had exited.
    progress_before: int
    progress_after: int
    stderr: str

    @property
    def killed(self) -> bool:
        """True when the process was SIGKILLed instead of stopping by itself."""
        return "SIGKILL" in self.signals


@dataclass
class JobRun:
    """The Job's history: every attempt, and how the Job ended."""

    attempts: list[Attempt] = field(default_factory=list)
    #: "Complete" or "Failed".
    condition: str = ""
    #: Why it failed: "PodFailurePolicy" or "BackoffLimitExceeded"; empty when complete.
    reason: str = ""
    #: Failures counted against backoffLimit.
    counted: int = 0

    def describe(self) -> str:
        """The attempts as one line each, for assertion messages."""
        return "\n".join(
            f"#{a.number} exit {a.exit_code} {a.verdict} signals={a.signals} "
            f"progress {a.progress_before}->{a.progress_after} stderr={a.stderr[-300:]!r}"
            for a in self.attempts
        )


class HarnessError(AssertionError):
    """The process under test did not exit in time: a hang, not a Kubernetes outcome."""


class Kubelet:
    """Runs ``command`` as a Job's container until the Job completes or fails."""

    def __init__(
        self,
        spec: JobSpec,
        command: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        progress: Callable[[], int],
        attempt_timeout: float = 30.0,
        poll_interval: float = 0.001,
    ) -> None:
        self._spec = spec
        self._command = list(command)
        self._cwd = cwd
        self._env = container_environment(env)
        self._progress = progress
        self._attempt_timeout = attempt_timeout
        self._poll = poll_interval

    def run_job(self, events: Iterable[Event] = ()) -> JobRun:
        """Start attempts until the Job ends; each attempt takes the next planned event."""
        plan: Iterator[Event] = iter(events)
        run = JobRun()
        while True:
            event = next(plan, None)
            attempt = self._attempt(len(run.attempts) + 1, event)
            run.attempts.append(attempt)
            if isinstance(event, Suspend) and attempt.signals:
                event.paused()
            if attempt.verdict is Verdict.COMPLETE:
                run.condition = "Complete"
                return run
            if attempt.verdict is Verdict.FAIL_JOB:
                run.condition, run.reason = "Failed", "PodFailurePolicy"
                return run
            if attempt.verdict is Verdict.COUNT:
                run.counted += 1
                if self._backoff_exceeded(run.counted):
                    run.condition, run.reason = "Failed", "BackoffLimitExceeded"
                    return run

    def _backoff_exceeded(self, counted: int) -> bool:
        limit = self._spec.backoff_limit
        if self._spec.restart_policy == "OnFailure":
            # The controller sums the pod's container restarts and fails the Job once
            # the sum reaches backoffLimit (any restart at all when it is 0).
            return counted >= max(limit, 1)
        return counted > limit

    def _attempt(self, number: int, event: Event | None) -> Attempt:
        before = self._progress()
        log_path = self._cwd / f".kubelet-attempt-{number}.stderr"
        with log_path.open("w+b") as stderr:
            process = subprocess.Popen(
                self._command,
                cwd=self._cwd,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
            deadline = time.monotonic() + self._attempt_timeout
            signals: list[str] = []
            try:
                if event is not None and self._wait_for_progress(process, before + event.after):
                    if isinstance(event, Stop):
                        signals = self._stop(process, event.grace)
                    else:
                        event.action()
                self._wait(process, deadline)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            stderr.seek(0)
            text = stderr.read().decode(errors="replace")
        log_path.unlink()
        code = container_exit_code(process.returncode)
        target = isinstance(event, Stop) and bool(signals) and event.disruption_target
        return Attempt(
            number=number,
            exit_code=code,
            verdict=self._judge(code, disruption_target=target),
            signals=signals,
            disruption_target=target,
            progress_before=before,
            progress_after=self._progress(),
            stderr=text,
        )

    def _judge(self, exit_code: int, *, disruption_target: bool) -> Verdict:
        if self._spec.restart_policy == "OnFailure":
            return Verdict.COMPLETE if exit_code == 0 else Verdict.COUNT
        return self._spec.judge(exit_code, disruption_target=disruption_target)

    def _wait_for_progress(self, process: subprocess.Popen[bytes], target: int) -> bool:
        """Wait until progress reaches ``target``; False if the process exited first."""
        deadline = time.monotonic() + self._attempt_timeout
        while self._progress() < target:
            if process.poll() is not None:
                return False
            if time.monotonic() > deadline:
                raise HarnessError(f"no progress to {target} within {self._attempt_timeout}s")
            time.sleep(self._poll)
        return process.poll() is None

    @staticmethod
    def _stop(process: subprocess.Popen[bytes], grace: float) -> list[str]:
        """SIGTERM, then SIGKILL after ``grace`` seconds: the kubelet's way to stop a pod."""
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            return ["SIGTERM", "SIGKILL"]
        return ["SIGTERM"]

    def _wait(self, process: subprocess.Popen[bytes], deadline: float) -> None:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise HarnessError(
                f"{self._command} still running after {self._attempt_timeout}s"
            ) from None


def container_exit_code(returncode: int) -> int:
    """The exit code Kubernetes reports: 128 + N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def container_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment as a container would see it: no terminal, no stray
    ITERCTL_* settings from the developer's shell, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _TERMINAL_VARIABLES and not key.startswith("ITERCTL_")
    }
    env.update(extra)
    return env


def iterctl_executable() -> str:
    """The ``iterctl`` console script of this interpreter's installation.

    The one beside this Python is preferred to one on PATH: a wrapper on PATH (a pyenv
    shim, say) would be a shell for a moment, and a signal that reached the shell would
    not reach iterctl.
    """
    beside = Path(sysconfig.get_path("scripts")) / "iterctl"
    if beside.is_file():
        return str(beside)
    found = shutil.which("iterctl")
    if found is None:
        raise HarnessError("iterctl is not installed: pip install -e '.[test]'")
    return found


class LineLog:
    """Counts the lines of a file that another process appends to, reading only what is new."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._count = 0

    def __call__(self) -> int:
        """How many complete lines the file has now."""
        try:
            with self.path.open("rb") as file:
                file.seek(self._offset)
                chunk = file.read()
        except FileNotFoundError:
            return 0
        complete = chunk.rfind(b"\n") + 1
        self._count += chunk.count(b"\n", 0, complete)
        self._offset += complete
        return self._count

    def lines(self) -> list[str]:
        """Every complete line written so far."""
        if not self.path.exists():
            return []
        return self.path.read_text().splitlines()
