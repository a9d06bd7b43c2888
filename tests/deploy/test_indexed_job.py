"""deploy/kubernetes/indexed-job.yaml: one iterctl job split across the pods of an Indexed Job.

test_manifests.py validates it with every other manifest (strict schema, exit code rules,
job id, Secret, user). What only an Indexed Job must get right is checked here: the
fields that tie the Job's indexes to iterctl's partitions.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import yaml

from iterctl.errors import ExitCode

from .test_manifests import KUBERNETES_VERSION, MANIFESTS

PATH = MANIFESTS / "indexed-job.yaml"


def _job() -> dict[str, Any]:
    (job,) = [d for d in yaml.safe_load_all(PATH.read_text()) if d and d["kind"] == "Job"]
    return dict(job)


def _args() -> list[str]:
    args: list[str] = _job()["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def test_indexed_job_is_valid_against_kubernetes_schema() -> None:
    """The manifest validates against the strict Kubernetes schema, the per-index fields
    (backoffLimitPerIndex, maxFailedIndexes) included."""
    kubernetes_validate.validate(_job(), KUBERNETES_VERSION, strict=True)


def test_one_index_per_partition() -> None:
    """completionMode is Indexed and completions equals the --partitions N of the args, so
    JOB_COMPLETION_INDEX runs over exactly the partitions 0..N-1; --partition is left to
    JOB_COMPLETION_INDEX; parallelism runs at most one pod per partition."""
    spec = _job()["spec"]
    args = _args()
    assert spec["completionMode"] == "Indexed"
    partitions = int(args[args.index("--partitions") + 1])
    assert spec["completions"] == partitions > 1
    assert 1 <= spec["parallelism"] <= spec["completions"]
    assert "--partition" not in args


def test_failures_are_counted_per_index() -> None:
    """backoffLimitPerIndex and maxFailedIndexes are set (per-index retries need
    restartPolicy Never), and a Job-wide backoffLimit does not also cap them."""
    spec = _job()["spec"]
    assert spec["backoffLimitPerIndex"] >= 1
    assert 0 <= spec["maxFailedIndexes"] < spec["completions"]
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert "backoffLimit" not in spec


def test_pod_failure_policy_uses_iterctls_exit_codes() -> None:
    """75 is ignored (restart, not counted) and 2 and 3 fail the whole Job: both are
    Job-wide (the shared command, a cancel of every partition), never FailIndex."""
    rules = _job()["spec"]["podFailurePolicy"]["rules"]
    by_action: dict[str, set[int]] = {}
    for rule in rules:
        if "onExitCodes" in rule:
            by_action.setdefault(rule["action"], set()).update(rule["onExitCodes"]["values"])
    assert by_action == {
        "FailJob": {ExitCode.USAGE, ExitCode.CANCELLED},
        "Ignore": {ExitCode.RESUMABLE},
    }


def test_the_example_job_can_split() -> None:
    """The job in the args splits itself into partitions (its enumerator has split and
    within), so the pods would not all exit 2 at start."""
    from jobs_examples.partitioned import PartitionedCount

    module, _, name = _args()[1].partition(":")
    assert (module, name) == ("jobs_examples.partitioned", "PartitionedCount")
    job = PartitionedCount(PartitionedCount.Params(count=800, delay=0))
    bounds = job.partition_plan(8)
    assert bounds == [[n, n + 100] for n in range(0, 800, 100)]
