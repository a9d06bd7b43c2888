"""iterctl under a kubelet-faithful restart loop, judged by the shipped Job manifests.

The real ``iterctl run`` process is started, stopped and restarted the way Kubernetes
does it (see kubelet.py), with the restart rules read from deploy/kubernetes/job.yaml.
What must hold (CONTRACT §3, §4): after SIGTERMs only, every item is done exactly once;
after SIGKILLs, no item is skipped and each kill redoes at most one checkpoint interval of
items; a job that always raises fails after backoffLimit; a cancelled job fails at once.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from iterctl.errors import ExitCode

from .kubelet import (
    Event,
    JobRun,
    JobSpec,
    Kubelet,
    LineLog,
    Meddle,
    Stop,
    Verdict,
    container_environment,
    iterctl_executable,
)

#: Soak tests of a simulated Kubernetes Job: CI runs them; `-m 'not slow'` skips them.
pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
MANIFESTS = HERE.parents[1] / "deploy" / "kubernetes"
JOB_ID = "harness-job"
#: Long enough that iterctl never needs it after a SIGTERM; short enough to notice a hang.
GRACE = 10.0


@dataclass
class Pod:
    """A job's working directory, store and log, and the kubelet that runs it."""

    kubelet: Kubelet
    log: LineLog
    store: str
    cwd: Path

    def items(self) -> list[int]:
        """The items in the order they were done, repeats included."""
        return [int(line.split()[0]) for line in self.log.lines()]

    def times(self) -> list[float]:
        """When each logged item was done (time.monotonic() in the job's process)."""
        return [float(line.split()[1]) for line in self.log.lines()]

    def iterctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run another iterctl command against the same store, as a person would."""
        return subprocess.run(
            [iterctl_executable(), *args, "--store", self.store],
            cwd=self.cwd,
            env=container_environment({}),
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )

    def cancel(self) -> None:
        """`iterctl cancel` the job id."""
        result = self.iterctl("cancel", JOB_ID)
        assert result.returncode == 0, result.stderr

    def status(self) -> dict[str, object]:
        result = self.iterctl("status", JOB_ID, "--json")
        assert result.returncode == 0, result.stderr
        status: dict[str, object] = json.loads(result.stdout)
        return status


def make_pod(
    tmp_path: Path,
    *,
    manifest: str = "job.yaml",
    backoff_limit: int | None = None,
    checkpoint_interval: float = 5.0,
    **params: str,
) -> Pod:
    """The container of ``manifest``: its args and environment, with the harness job.

    As in the manifests, the job id and the store come from ITERCTL_JOB_ID and
    ITERCTL_STORE, and the args are `run MODULE:CLASS` plus the job's params.
    """
    shutil.copy(HERE / "counted_items.py", tmp_path / "counted_items.py")
    log = LineLog(tmp_path / "items.log")
    store = f"sqlite:///{tmp_path / 'store.db'}"
    args = ["run", "counted_items:CountedItems", "--param", f"log={log.path}"]
    for key, value in sorted(params.items()):
        args += ["--param", f"{key}={value}"]
    env = {
        "ITERCTL_JOB_ID": JOB_ID,
        "ITERCTL_STORE": store,
        "ITERCTL_CHECKPOINT_INTERVAL": str(checkpoint_interval),
        "ITERCTL_LOG_FORMAT": "json",
    }
    spec = JobSpec.from_manifest(MANIFESTS / manifest, backoff_limit=backoff_limit)
    kubelet = Kubelet(spec, [iterctl_executable(), *args], cwd=tmp_path, env=env, progress=log)
    return Pod(kubelet, log, store, tmp_path)


def random_stops(
    seed: int, count: int, *, max_gap: int, kill_share: float = 0.0
) -> Iterator[Event]:
    """``count`` stops, each after 1..max_gap items of the attempt it hits.

    A share ``kill_share`` of them get no grace (SIGKILL right after SIGTERM) and come
    with the DisruptionTarget condition, as a node drain whose grace runs out would.
    """
    rng = random.Random(seed)  # noqa: S311 - a reproducible test plan, not a secret
    for _ in range(count):
        if rng.random() < kill_share:
            yield Stop(after=rng.randint(1, max_gap), grace=0.0, disruption_target=True)
        else:
            yield Stop(after=rng.randint(1, max_gap), grace=GRACE)


def segments(pod: Pod, run: JobRun) -> list[list[int]]:
    """The items each attempt did, in order (attempts run one after another)."""
    items = pod.items()
    return [items[a.progress_before : a.progress_after] for a in run.attempts]


TOTAL = 2000
#: Two dozen: each restart costs iterctl's start-up (about half a second) in test time.
DISRUPTIONS = 24
#: Items of about half a millisecond: a second or two of work, interrupted two dozen times.
DELAY = "0.0005"
#: Stops come every 1..MAX_GAP items, so they are all used up before the last item.
MAX_GAP = 3 * TOTAL // (2 * DISRUPTIONS)


def test_sigterm_only_every_item_exactly_once(tmp_path: Path) -> None:
    """Dozens of SIGTERMs at random points: each exit is 75, podFailurePolicy ignores it
    (no failure counted), and across all restarts every item is done exactly once. The
    same Job applied again afterwards completes at once without redoing anything."""
    pod = make_pod(tmp_path, total=str(TOTAL), delay=DELAY)
    run = pod.kubelet.run_job(random_stops(7, DISRUPTIONS, max_gap=MAX_GAP))

    assert run.condition == "Complete", run.describe()
    assert pod.items() == list(range(TOTAL)), run.describe()
    stopped = run.attempts[:-1]
    assert len(stopped) >= DISRUPTIONS * 2 // 3, run.describe()
    assert all(a.exit_code == ExitCode.RESUMABLE for a in stopped), run.describe()
    assert all(a.verdict is Verdict.IGNORE and not a.killed for a in stopped)
    assert run.counted == 0
    status = pod.status()
    assert (status["status"], status["processed"]) == ("succeeded", TOTAL)
    assert status["times_interrupted"] == len(stopped)
    # Re-applying the finished Job (same name, same command): done at once, no item redone.
    again = pod.kubelet.run_job()
    assert [(a.exit_code, a.verdict) for a in again.attempts] == [(0, Verdict.COMPLETE)]
    assert len(pod.items()) == TOTAL


@pytest.mark.parametrize(
    ("interval", "slack", "disruptions"),
    [(0.0, 0.0, DISRUPTIONS), (0.05, 0.5, DISRUPTIONS // 2)],
    ids=["checkpoint-every-item", "checkpoint-every-50ms"],
)
def test_sigkills_skip_nothing_and_redo_at_most_one_checkpoint_interval(
    tmp_path: Path, interval: float, slack: float, disruptions: int
) -> None:
    """SIGTERMs with SIGKILLs mixed in (no grace): the Job still completes, no item is
    skipped, a clean stop redoes nothing, and each kill redoes only items done within one
    checkpoint interval before it (with interval 0: at most the one item in progress)."""
    pod = make_pod(tmp_path, checkpoint_interval=interval, total=str(TOTAL), delay=DELAY)
    plan = random_stops(11, disruptions, max_gap=MAX_GAP, kill_share=0.4)
    run = pod.kubelet.run_job(plan)

    assert run.condition == "Complete", run.describe()
    assert set(pod.items()) == set(range(TOTAL)), "an item was skipped"
    kills = [a for a in run.attempts if a.killed]
    assert len(kills) >= 3, run.describe()
    # A kill on a drain carries DisruptionTarget: ignored, like a clean stop's exit 75.
    assert all(a.exit_code == 128 + 9 and a.verdict is Verdict.IGNORE for a in kills)
    assert run.counted == 0

    done = segments(pod, run)
    times = pod.times()
    for index, attempt in enumerate(run.attempts):
        later = {item for segment in done[index + 1 :] for item in segment}
        redone = [item for item in done[index] if item in later]
        if not attempt.killed:
            assert redone == [], f"attempt {attempt.number} stopped cleanly yet {redone} redone"
        elif interval == 0:
            assert redone in ([], done[index][-1:]), f"attempt {attempt.number}: {redone}"
        else:
            # Redone items are the tail of the killed attempt, all done within one
            # interval (plus the item and scheduling slack) before its last item.
            assert redone == done[index][len(done[index]) - len(redone) :]
            end = times[attempt.progress_after - 1] if done[index] else 0.0
            first = times[attempt.progress_after - len(redone)] if redone else end
            assert end - first <= interval + slack, f"attempt {attempt.number}: {redone}"
    assert sum(Counter(pod.items()).values()) - TOTAL <= len(kills) * (TOTAL if interval else 1)


def test_job_that_always_raises_fails_after_backoff_limit(tmp_path: Path) -> None:
    """An item that raises every time: each attempt exits 1, which podFailurePolicy counts;
    the Job fails once backoffLimit is exceeded (backoffLimit + 1 attempts). The items
    before it were done once: the cursor stays at the last completed item even with a
    checkpoint interval far longer than the run."""
    pod = make_pod(tmp_path, checkpoint_interval=60, total="100", fail_at="5")
    run = pod.kubelet.run_job()

    limit = JobSpec.from_manifest(MANIFESTS / "job.yaml").backoff_limit
    assert (run.condition, run.reason) == ("Failed", "BackoffLimitExceeded"), run.describe()
    assert len(run.attempts) == limit + 1
    assert all(a.exit_code == ExitCode.JOB_FAILED for a in run.attempts), run.describe()
    assert pod.items() == [0, 1, 2, 3, 4]
    status = pod.status()
    assert (status["status"], status["cursor"], status["processed"]) == ("failed", 4, 5)
    assert "item 5 fails every time" in str(status["error"])


def test_cancelled_job_fails_without_restart(tmp_path: Path) -> None:
    """`iterctl cancel` while the Job runs: the process stops after its item and exits 3,
    podFailurePolicy fails the Job with no restart, and re-applying the same Job (same
    command, same job id) fails again at once without doing any item."""
    pod = make_pod(tmp_path, checkpoint_interval=0.2, total="1000000", delay=DELAY)
    run = pod.kubelet.run_job([Meddle(after=50, action=pod.cancel)])

    assert (run.condition, run.reason) == ("Failed", "PodFailurePolicy"), run.describe()
    assert [(a.exit_code, a.verdict) for a in run.attempts] == [
        (ExitCode.CANCELLED, Verdict.FAIL_JOB)
    ]
    done = len(pod.items())
    assert pod.status()["status"] == "cancelled"

    again = pod.kubelet.run_job()
    assert [a.exit_code for a in again.attempts] == [ExitCode.CANCELLED], again.describe()
    assert len(pod.items()) == done


def test_onfailure_variant_restarts_a_cancelled_job_until_backoff_limit(tmp_path: Path) -> None:
    """The trade-off of job-onfailure.yaml: without a podFailurePolicy, exit 3 cannot fail
    the Job fast; the container is restarted in place, each exit counted, until
    backoffLimit runs out."""
    pod = make_pod(
        tmp_path,
        manifest="job-onfailure.yaml",
        backoff_limit=3,
        checkpoint_interval=0.2,
        total="1000000",
        delay=DELAY,
    )
    run = pod.kubelet.run_job([Meddle(after=20, action=pod.cancel)])

    assert (run.condition, run.reason) == ("Failed", "BackoffLimitExceeded"), run.describe()
    assert [(a.exit_code, a.verdict) for a in run.attempts] == [
        (ExitCode.CANCELLED, Verdict.COUNT)
    ] * 3


def test_policy_of_job_yaml_maps_every_iterctl_exit_code() -> None:
    """The harness's reading of job.yaml's podFailurePolicy: 0 completes, 75 and
    disruptions are ignored, 2 and 3 fail the Job, 1, 69 and a SIGKILL are counted."""
    spec = JobSpec.from_manifest(MANIFESTS / "job.yaml")
    assert spec.judge(ExitCode.SUCCEEDED) is Verdict.COMPLETE
    assert spec.judge(ExitCode.RESUMABLE) is Verdict.IGNORE
    assert spec.judge(ExitCode.USAGE) is Verdict.FAIL_JOB
    assert spec.judge(ExitCode.CANCELLED) is Verdict.FAIL_JOB
    assert spec.judge(ExitCode.JOB_FAILED) is Verdict.COUNT
    assert spec.judge(ExitCode.STORE_UNAVAILABLE) is Verdict.COUNT
    assert spec.judge(137) is Verdict.COUNT
    assert spec.judge(137, disruption_target=True) is Verdict.IGNORE
    assert spec.judge(ExitCode.USAGE, disruption_target=True) is Verdict.FAIL_JOB
