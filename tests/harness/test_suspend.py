"""Pausing a Job (``spec.suspend``) and Kueue preemption, under the kubelet harness.

Suspending a Job makes the Job controller delete its pod: SIGTERM, the grace period, no
DisruptionTarget condition (Kueue's evictions carry none either). iterctl saves its cursor
and exits 75; the manifest's ``75 -> Ignore`` rule is what keeps such a pod from counting
as a failure. Resuming (``spec.suspend: false``) starts a new pod with the same command,
which carries on. While the Job is paused, every view says the job is interrupted and that
no holder is gone (the process stopped cleanly), and history has one stopped run per pause.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from iterctl.errors import ExitCode

from .kubelet import (
    JobSpec,
    Kubelet,
    LineLog,
    Suspend,
    Verdict,
    container_environment,
    iterctl_executable,
)

#: Soak tests of a simulated Kubernetes Job: CI runs them; `-m 'not slow'` skips them.
pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
MANIFEST = HERE.parents[1] / "deploy" / "kubernetes" / "job.yaml"
JOB_ID = "suspended-job"
TOTAL = 400


def _iterctl(cwd: Path, store: str, *args: str) -> Any:
    result = subprocess.run(
        [iterctl_executable(), *args, "--store", store],
        cwd=cwd, env=container_environment({}), capture_output=True, text=True,
        check=False, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _kubelet(tmp_path: Path, spec: JobSpec) -> tuple[Kubelet, LineLog, str]:
    shutil.copy(HERE / "counted_items.py", tmp_path / "counted_items.py")
    log = LineLog(tmp_path / "items.log")
    store = f"sqlite:///{tmp_path / 'store.db'}"
    command = [iterctl_executable(), "run", "counted_items:CountedItems",
               "--param", f"log={log.path}", "--param", f"total={TOTAL}",
               "--param", "delay=0.002"]  # fmt: skip
    env = {"ITERCTL_JOB_ID": JOB_ID, "ITERCTL_STORE": store, "ITERCTL_LOG_FORMAT": "json",
           "ITERCTL_CHECKPOINT_INTERVAL": "0.05"}  # fmt: skip
    return Kubelet(spec, command, cwd=tmp_path, env=env, progress=log), log, store


def test_suspend_and_resume_stop_uncounted_and_carry_on_exactly_once(tmp_path: Path) -> None:
    """Three pauses with backoffLimit 0: each pod exits 75 on SIGTERM, is ignored, and
    the resumed pods complete the job with every item done once."""
    spec = JobSpec.from_manifest(MANIFEST, backoff_limit=0)
    kubelet, log, store = _kubelet(tmp_path, spec)
    while_paused: list[dict[str, Any]] = []

    def paused() -> None:
        while_paused.append(_iterctl(tmp_path, store, "status", JOB_ID, "--json"))

    plan = [Suspend(after=60, grace=10.0, paused=paused) for _ in range(3)]
    run = kubelet.run_job(plan)

    assert run.condition == "Complete", run.describe()
    assert run.counted == 0
    stopped = run.attempts[:-1]
    assert [(a.exit_code, a.verdict, a.killed) for a in stopped] == [
        (ExitCode.RESUMABLE, Verdict.IGNORE, False)
    ] * 3, run.describe()
    assert [int(line.split()[0]) for line in log.lines()] == list(range(TOTAL))
    assert [(s["status"], s["holder_gone"], s["rate"]) for s in while_paused] == [
        ("interrupted", False, None)
    ] * 3
    counts = [s["processed"] for s in while_paused]
    assert counts == sorted(counts)
    assert counts[0] >= 60
    runs = _iterctl(tmp_path, store, "history", JOB_ID, "--json")
    assert [(r["outcome"], r["exit_code"], r["reason"]) for r in runs] == [
        ("succeeded", 0, None), *[("stopped", 75, "SIGTERM")] * 3,
    ]  # fmt: skip
    assert sum(r["items"] for r in runs) == TOTAL


def test_without_the_75_rule_one_pause_fails_the_job(tmp_path: Path) -> None:
    """The same pause under a policy without `75 -> Ignore`: the pod ended by the
    suspension counts as failed, and with backoffLimit 0 the Job fails."""
    spec = JobSpec.from_manifest(MANIFEST, backoff_limit=0)
    rules = tuple(r for r in spec.rules if 75 not in r.get("onExitCodes", {}).get("values", []))
    assert len(rules) == len(spec.rules) - 1
    kubelet, _log, _store = _kubelet(tmp_path, replace(spec, rules=rules))
    run = kubelet.run_job([Suspend(after=30, grace=10.0)])
    assert (run.condition, run.reason) == ("Failed", "BackoffLimitExceeded"), run.describe()
    assert run.attempts[0].exit_code == ExitCode.RESUMABLE
