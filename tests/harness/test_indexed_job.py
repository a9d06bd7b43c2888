"""An 8-pod Kubernetes Indexed Job, simulated: one iterctl job in 8 partitions on a shared
database store, every pod stopped and restarted the way Kubernetes does it.

Each index is a real ``iterctl run MODULE:CLASS --partitions 8`` process, its partition
from JOB_COMPLETION_INDEX and its job id and store from the environment, as in
deploy/kubernetes/indexed-job.yaml. One thread per index drives a Kubelet (kubelet.py)
that judges exits by that manifest's podFailurePolicy, with backoffLimitPerIndex as the
index's own backoff limit. All 8 run at once, against PostgreSQL and against MariaDB.
Meanwhile a poller reads the whole job's status from the store, as `iterctl status ID`
does, and checks it at every sample.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from iterctl.errors import ExitCode
from iterctl.overview import job_overview
from iterctl.stores import open_store
from tests.servers import server_url

from .kubelet import (
    Event,
    JobRun,
    JobSpec,
    Kubelet,
    LineLog,
    Verdict,
    container_environment,
    iterctl_executable,
)
from .test_kubelet_restarts import random_stops

#: Soak tests of a simulated Kubernetes Job: CI runs them; `-m 'not slow'` skips them.
pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
MANIFEST = HERE.parents[1] / "deploy" / "kubernetes" / "indexed-job.yaml"
PARTITIONS = 8
#: Items per partition, of about 2 ms each: a third of a second of work per partition.
ITEMS = 150
TOTAL = PARTITIONS * ITEMS
DELAY = "0.002"
#: Stops per index (so 3 attempts each): each restart costs iterctl's start-up, about
#: 0.6 s of CPU, with 8 indexes on 2 cores.
DISRUPTIONS = 2
#: Stops come 1..MAX_GAP logged items apart, so the last lands before the partition's
#: last item, never between its last checkpoint and on_all_complete.
MAX_GAP = (ITEMS - 10) // DISRUPTIONS
STORES = [pytest.param("postgres", id="postgresql"), pytest.param("mysql", id="mariadb")]


def _spec() -> JobSpec:
    """indexed-job.yaml's rules; each index's failures count against backoffLimitPerIndex."""
    (job,) = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d and d["kind"] == "Job"]
    per_index = int(job["spec"]["backoffLimitPerIndex"])
    return JobSpec.from_manifest(MANIFEST, backoff_limit=per_index)


@dataclass
class IndexedJob:
    """The job id, its store, and one pod (working directory, log, kubelet) per index."""

    job_id: str
    url: str
    logs: Path
    kubelets: list[Kubelet] = field(default_factory=list)
    part_logs: list[LineLog] = field(default_factory=list)

    def items(self, index: int) -> list[int]:
        """The items partition ``index`` did, in order, repeats included."""
        return [int(line) for line in self.part_logs[index].lines()]

    def all_complete_calls(self) -> list[str]:
        """One line per on_all_complete call: the index of the partition that made it."""
        done = self.logs / "all-complete"
        return done.read_text().splitlines() if done.exists() else []

    def run(
        self, plans: Sequence[Iterable[Event]], *, monotonic: bool
    ) -> tuple[list[JobRun], Poller]:
        """Run all indexes at once, each to the end of its plan, under a status poller."""
        poller = Poller(self, monotonic=monotonic)
        watcher = threading.Thread(target=poller.watch)
        watcher.start()
        try:
            with ThreadPoolExecutor(max_workers=PARTITIONS) as pool:
                futures = [
                    pool.submit(kubelet.run_job, plan)
                    for kubelet, plan in zip(self.kubelets, plans, strict=True)
                ]
                runs = [future.result() for future in futures]
        finally:
            poller.done.set()
            watcher.join()
        return runs, poller

    def status(self) -> dict[str, Any]:
        """`iterctl status ID --json`, as a person would run it."""
        result = subprocess.run(
            [iterctl_executable(), "status", self.job_id, "--json", "--store", self.url],
            env=container_environment({}),
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        status: dict[str, Any] = json.loads(result.stdout)
        return status


def make_indexed_job(tmp_path: Path, kind: str, *, checkpoint_interval: float) -> IndexedJob:
    """The pods of indexed-job.yaml with the harness job: the same args for every index,
    the index in JOB_COMPLETION_INDEX, the job id and store in ITERCTL_* variables."""
    url = server_url(kind)
    job = IndexedJob(f"indexed-{secrets.token_hex(4)}", url, tmp_path / "logs")
    job.logs.mkdir()
    spec = _spec()
    args = ["run", "partitioned_items:PartitionedItems", "--partitions", str(PARTITIONS),
            "--param", f"total={TOTAL}", "--param", f"delay={DELAY}",
            "--param", f"logs={job.logs}"]  # fmt: skip
    for index in range(PARTITIONS):
        # A working directory per pod: the kubelet keeps each attempt's stderr there.
        pod = tmp_path / f"pod-{index}"
        pod.mkdir()
        shutil.copy(HERE / "partitioned_items.py", pod / "partitioned_items.py")
        env = {
            "ITERCTL_JOB_ID": job.job_id,
            "ITERCTL_STORE": url,
            "ITERCTL_CHECKPOINT_INTERVAL": str(checkpoint_interval),
            "ITERCTL_LOG_FORMAT": "json",
            "JOB_COMPLETION_INDEX": str(index),
        }
        log = LineLog(job.logs / f"part-{index}.log")
        job.part_logs.append(log)
        command = [iterctl_executable(), *args]
        kubelet = Kubelet(spec, command, cwd=pod, env=env, progress=log, poll_interval=0.005)
        job.kubelets.append(kubelet)
    return job


class Poller:
    """Reads the whole job's status from the store, as `status ID` does, until told to
    stop, and records every way a sample is wrong."""

    def __init__(self, job: IndexedJob, *, monotonic: bool) -> None:
        self._job = job
        self._monotonic = monotonic
        self.done = threading.Event()
        self.samples = 0
        #: Samples taken while the job ran, with some but not all items saved.
        self.midway = 0
        self.problems: list[str] = []
        self._last: list[int] = [0] * PARTITIONS

    def watch(self) -> None:
        store = open_store(self._job.url)
        try:
            while not self.done.wait(0.01):
                records = store.partitions(self._job.job_id)
                if records:
                    self._check(job_overview(records))
        finally:
            store.close()

    def _check(self, view: dict[str, Any]) -> None:
        self.samples += 1
        parts = view["partitions"]
        processed = [part["processed"] for part in parts]
        wrong = self.problems.append
        if len(parts) != PARTITIONS:
            wrong(f"{len(parts)} partitions")
            return
        if view["processed"] != sum(processed):
            wrong(f"processed {view['processed']} != sum of the partitions' {processed}")
        if view["total"] is not None and not view["processed"] <= view["total"] == TOTAL:
            wrong(f"processed {view['processed']} of total {view['total']}")
        if view["status"] in ("failed", "cancelled"):
            wrong(f"status {view['status']}: {view['error']}")
        if view["status"] == "succeeded":
            self._check_succeeded(parts)
        elif 0 < view["processed"] < TOTAL:
            self.midway += 1
        for index, part in enumerate(parts):
            first, end = part["bounds"]
            # Read after the store: every item saved as done is in the partition's log.
            logged = {item for item in self._job.items(index) if first <= item < end}
            if not part["processed"] <= len(logged) <= end - first:
                wrong(f"partition {index}: processed {part['processed']}, {len(logged)} logged")
            if self._monotonic and part["processed"] < self._last[index]:
                wrong(f"partition {index}: processed went down to {part['processed']}")
        self._last = [max(a, b) for a, b in zip(self._last, processed, strict=True)]

    def _check_succeeded(self, parts: list[dict[str, Any]]) -> None:
        """The whole job shows succeeded only once every partition has, every item done."""
        if any(part["status"] != "succeeded" for part in parts):
            self.problems.append(f"succeeded with partitions {[p['status'] for p in parts]}")
        done = {item for index in range(PARTITIONS) for item in self._job.items(index)}
        if done != set(range(TOTAL)):
            self.problems.append(f"succeeded with {TOTAL - len(done)} items not done")


def _check_end(job: IndexedJob, runs: list[JobRun], poller: Poller) -> None:
    """What both scenarios end with: every index complete, the status right all along,
    on_all_complete run once, and `status --json` showing the whole job succeeded."""
    for index, run in enumerate(runs):
        assert run.condition == "Complete", f"index {index}:\n{run.describe()}"
        assert run.counted == 0, run.describe()
    assert poller.problems == []
    assert poller.samples >= 20, "the poller barely saw the job run"
    assert poller.midway >= 5, "the poller never saw the job part-way"
    assert len(job.all_complete_calls()) == 1, job.all_complete_calls()
    status = job.status()
    assert (status["status"], status["processed"], status["total"]) == (
        "succeeded",
        TOTAL,
        TOTAL,
    )
    parts = status["partitions"]
    assert [part["partition"] for part in parts] == list(range(PARTITIONS))
    assert [part["bounds"] for part in parts] == [
        [i * ITEMS, (i + 1) * ITEMS] for i in range(PARTITIONS)
    ]
    for index, part in enumerate(parts):
        first, end = part["bounds"]
        assert all(first <= item < end for item in job.items(index)), f"partition {index}"


@pytest.mark.parametrize("kind", STORES)
def test_indexed_job_under_sigterms_does_every_item_exactly_once(tmp_path: Path, kind: str) -> None:
    """8 partitions at once, each pod SIGTERMed at random points and replaced: every
    stop exits 75 and is ignored by the podFailurePolicy, every item of the whole job is
    done exactly once, by the partition that owns it; the status never shows succeeded
    early, its processed is the sum of the partitions' and never goes down or past the
    total; on_all_complete runs exactly once."""
    job = make_indexed_job(tmp_path, kind, checkpoint_interval=0.05)
    plans = [random_stops(100 + i, DISRUPTIONS, max_gap=MAX_GAP) for i in range(PARTITIONS)]
    runs, poller = job.run(plans, monotonic=True)

    _check_end(job, runs, poller)
    done = [item for index in range(PARTITIONS) for item in job.items(index)]
    assert sorted(done) == list(range(TOTAL))
    for index, run in enumerate(runs):
        assert job.items(index) == list(range(index * ITEMS, (index + 1) * ITEMS))
        stopped = run.attempts[:-1]
        assert len(stopped) == DISRUPTIONS, run.describe()
        assert all(a.exit_code == ExitCode.RESUMABLE for a in stopped), run.describe()
        assert all(a.verdict is Verdict.IGNORE and not a.killed for a in stopped)


@pytest.mark.parametrize("kind", STORES)
def test_indexed_job_with_sigkills_skips_no_item(tmp_path: Path, kind: str) -> None:
    """The same Job with SIGKILLs mixed in (drains whose grace runs out, marked
    DisruptionTarget): every index still completes without a counted failure, no item of
    the whole job is skipped, the status is right at every sample, and on_all_complete
    runs exactly once."""
    job = make_indexed_job(tmp_path, kind, checkpoint_interval=0.05)
    plans = [
        random_stops(200 + i, DISRUPTIONS, max_gap=MAX_GAP, kill_share=0.5)
        for i in range(PARTITIONS)
    ]
    runs, poller = job.run(plans, monotonic=False)

    _check_end(job, runs, poller)
    done = {item for index in range(PARTITIONS) for item in job.items(index)}
    assert done == set(range(TOTAL)), "an item was skipped"
    kills = [a for run in runs for a in run.attempts if a.killed]
    assert len(kills) >= PARTITIONS, "too few SIGKILLs to mean anything"
    assert all(a.exit_code == 128 + 9 and a.verdict is Verdict.IGNORE for a in kills)
