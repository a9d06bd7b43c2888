"""The Kubernetes manifests in deploy/kubernetes/: schema-valid, and consistent with iterctl.

The schemas (kubernetes-validate, strict: unknown fields are errors) catch misspelt and
misplaced fields. The rules the API server only checks on apply, and the ones that tie a
manifest to iterctl's contract (its exit codes, its environment variables, the image's
user), are checked here one by one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from iterctl.errors import ExitCode

from .buildcontext import parse_dockerfile

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
#: A recent Kubernetes release whose schemas kubernetes-validate ships. podFailurePolicy is
#: GA since 1.31, podReplacementPolicy and ReadWriteOncePod are in its schema.
KUBERNETES_VERSION = "1.33"
JOB_NAME_LABEL = "metadata.labels['batch.kubernetes.io/job-name']"

Document = dict[str, Any]


def _load(path: Path) -> list[Document]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


FILES = sorted(MANIFESTS.glob("*.yaml"))
DOCUMENTS = [(path, index, doc) for path in FILES for index, doc in enumerate(_load(path))]
JOBS = [(path, doc) for path, _index, doc in DOCUMENTS if doc.get("kind") == "Job"]


def _doc_id(path: Path, index: int, doc: Document) -> str:
    return f"{path.name}#{index}-{doc.get('kind')}"


def _pod(job: Document) -> Document:
    pod: Document = job["spec"]["template"]["spec"]
    return pod


def _container(job: Document) -> Document:
    containers: list[Document] = _pod(job)["containers"]
    assert len(containers) == 1, "an iterctl Job runs one container"
    return containers[0]


def _env(job: Document) -> dict[str, Document]:
    return {var["name"]: var for var in _container(job).get("env", [])}


def _rules(job: Document) -> list[Document]:
    policy = job["spec"].get("podFailurePolicy")
    return [] if policy is None else list(policy["rules"])


def _codes(job: Document, action: str) -> set[int]:
    return {
        code
        for rule in _rules(job)
        if rule["action"] == action and "onExitCodes" in rule
        for code in rule["onExitCodes"]["values"]
    }


def _params(jobs: list[tuple[Path, Document]]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(("path", "job"), jobs, ids=[p.name for p, _job in jobs])


job_params = _params(JOBS)
#: The Jobs that restart with restartPolicy Never and judge exit codes by a podFailurePolicy.
policy_params = _params([(p, job) for p, job in JOBS if "podFailurePolicy" in job["spec"]])
#: The Jobs whose store is a file (SQLite) rather than a database server.
file_store_params = _params([(p, job) for p, job in JOBS if "value" in _env(job)["ITERCTL_STORE"]])


def test_the_documented_manifests_are_there() -> None:
    """The four manifests the README describes exist, each with exactly one Job."""
    names = {path.name for path in FILES}
    assert names >= {"job.yaml", "job-onfailure.yaml", "job-sqlite-pvc.yaml", "job-postgres.yaml"}
    for path in FILES:
        assert sum(doc.get("kind") == "Job" for doc in _load(path)) == 1, path.name


@pytest.mark.parametrize(
    ("path", "index", "doc"),
    DOCUMENTS,
    ids=[_doc_id(path, index, doc) for path, index, doc in DOCUMENTS],
)
def test_document_is_valid_against_kubernetes_schema(path: Path, index: int, doc: Document) -> None:
    """Each YAML document validates against the strict Kubernetes schema of a recent
    release: no unknown, misspelt or misplaced field, every type right."""
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = "/".join(str(p) for p in error.path)
        pytest.fail(f"{path.name} document {index}: {where}: {error.message}")


def test_strict_schema_rejects_unknown_fields() -> None:
    """The schema check has teeth: a misspelt field in a Job is an error, not ignored."""
    job = dict(JOBS[0][1])
    job["spec"] = {**job["spec"], "backofLimit": 3}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


@job_params
def test_pod_failure_policy_only_with_restart_policy_never(path: Path, job: Document) -> None:
    """A podFailurePolicy is accepted by the API server only with restartPolicy: Never;
    the OnFailure variant has none."""
    restart = _pod(job)["restartPolicy"]
    if "podFailurePolicy" in job["spec"]:
        assert restart == "Never"
        # Replacing a pod before the old one is gone is refused with a podFailurePolicy.
        assert job["spec"].get("podReplacementPolicy", "Failed") == "Failed"
    else:
        assert restart == "OnFailure", f"{path.name}: restartPolicy Never without a policy"


def test_only_the_onfailure_variant_lacks_a_pod_failure_policy() -> None:
    """Every Job uses restartPolicy Never plus podFailurePolicy, except job-onfailure.yaml;
    and the SQLite variant is the one Job whose store is a file."""
    without = {path.name for path, job in JOBS if "podFailurePolicy" not in job["spec"]}
    assert without == {"job-onfailure.yaml"}
    file_stores = {path.name for path, job in JOBS if "value" in _env(job)["ITERCTL_STORE"]}
    assert file_stores == {"job-sqlite-pvc.yaml"}


@job_params
def test_exit_code_rules_name_the_container(path: Path, job: Document) -> None:
    """Each onExitCodes rule names the Job's container, so the rule applies to iterctl's
    exit code and to no sidecar's."""
    name = _container(job)["name"]
    for rule in _rules(job):
        if "onExitCodes" in rule:
            assert rule["onExitCodes"].get("containerName") == name, f"{path.name}: {rule}"


@policy_params
def test_exit_code_rules_are_iterctls_documented_codes(path: Path, job: Document) -> None:
    """The rules map iterctl's exit codes as CONTRACT §3 says: 75 -> Ignore (restart, not
    counted), 2 and 3 -> FailJob, and nothing else named, so 1, 69 and signals count
    against backoffLimit. Each rule uses `In` and no code is in two rules."""
    assert _codes(job, "FailJob") == {ExitCode.USAGE, ExitCode.CANCELLED}, path.name
    assert _codes(job, "Ignore") == {ExitCode.RESUMABLE}
    assert _codes(job, "Count") == set()
    named = [
        code
        for rule in _rules(job)
        if "onExitCodes" in rule
        for code in rule["onExitCodes"]["values"]
    ]
    assert len(named) == len(set(named)), "an exit code appears in two rules"
    assert all(r["onExitCodes"]["operator"] == "In" for r in _rules(job) if "onExitCodes" in r)


@policy_params
def test_disruptions_are_ignored(path: Path, job: Document) -> None:
    """A pod with the DisruptionTarget condition (evicted, preempted, drained) is replaced
    without counting against backoffLimit."""
    conditions = [
        (rule["action"], cond["type"], cond["status"])
        for rule in _rules(job)
        for cond in rule.get("onPodConditions", [])
    ]
    assert ("Ignore", "DisruptionTarget", "True") in conditions, path.name


@job_params
def test_job_id_comes_from_the_job_name_label(path: Path, job: Document) -> None:
    """ITERCTL_JOB_ID is read through the downward API from the job-name label the Job
    controller sets, so every pod of a Job, and a re-applied Job of the same name, resumes
    the same iterctl job."""
    var = _env(job)["ITERCTL_JOB_ID"]
    assert var["valueFrom"]["fieldRef"]["fieldPath"] == JOB_NAME_LABEL, path.name
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", job["metadata"]["name"])


@job_params
def test_store_url_comes_from_a_secret_or_holds_no_credentials(path: Path, job: Document) -> None:
    """ITERCTL_STORE comes from a Secret (secretKeyRef). Only a file store (SQLite path,
    no password) may be written inline. A Secret shipped in the same file has the key."""
    var = _env(job)["ITERCTL_STORE"]
    if "value" in var:
        assert re.fullmatch(r"sqlite:////\S+|/\S+\.json", var["value"]), var["value"]
        return
    ref = var["valueFrom"]["secretKeyRef"]
    secrets = [
        doc
        for doc in _load(path)
        if doc["kind"] == "Secret" and doc["metadata"]["name"] == ref["name"]
    ]
    for secret in secrets:
        data = {**secret.get("data", {}), **secret.get("stringData", {})}
        assert ref["key"] in data


@file_store_params
def test_file_store_lives_on_a_read_write_once_pod_claim(path: Path, job: Document) -> None:
    """A SQLite store must outlive the pod: its path is under a mount of a
    PersistentVolumeClaim (never an emptyDir), and that claim is ReadWriteOncePod so that
    only one pod at a time can open the database."""
    db_path = _env(job)["ITERCTL_STORE"]["value"].removeprefix("sqlite:///")
    mounts = {m["name"]: m["mountPath"].rstrip("/") for m in _container(job)["volumeMounts"]}
    volumes = {v["name"]: v for v in _pod(job)["volumes"]}
    holding = [name for name, mount in mounts.items() if db_path.startswith(mount + "/")]
    assert holding, f"{db_path} is on no mounted volume"
    claim = volumes[holding[0]]["persistentVolumeClaim"]["claimName"]
    claims = {
        doc["metadata"]["name"]: doc
        for doc in _load(path)
        if doc["kind"] == "PersistentVolumeClaim"
    }
    assert claims[claim]["spec"]["accessModes"] == ["ReadWriteOncePod"]
    # The image's user is not root: the volume must be group-writable for it.
    assert _pod(job)["securityContext"].get("fsGroup") == _image_user()[1]


@job_params
def test_args_run_an_example_job(path: Path, job: Document) -> None:
    """The container's args are `run MODULE:CLASS`: the one command that starts a job and
    resumes it on every restart (`resume` would fail the first pod, being no job yet).
    The module is one of the example jobs the image ships."""
    container = _container(job)
    assert "command" not in container, "command would replace the image's iterctl entrypoint"
    args = container["args"]
    assert args[0] == "run", path.name
    module, _, cls = args[1].partition(":")
    assert re.fullmatch(r"[A-Za-z_]\w*", cls)
    assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), f"{module} is not in the repo"


@job_params
def test_pod_runs_as_the_images_user(path: Path, job: Document) -> None:
    """runAsNonRoot is set and runAsUser/runAsGroup equal the Dockerfile's numeric USER."""
    security = _pod(job)["securityContext"]
    assert security["runAsNonRoot"] is True, path.name
    assert (security["runAsUser"], security["runAsGroup"]) == _image_user()


@job_params
def test_limits_and_logging_are_set(path: Path, job: Document) -> None:
    """The Job is bounded in time (activeDeadlineSeconds), cleaned up
    (ttlSecondsAfterFinished), runs one pod at a time (one process per job id) unless it
    is an Indexed Job (one pod per partition, see test_indexed_job.py), gives iterctl a
    grace period for its last item, and logs JSON lines."""
    spec = job["spec"]
    assert spec["activeDeadlineSeconds"] > 0, path.name
    assert spec["ttlSecondsAfterFinished"] > 0
    if spec.get("completionMode") != "Indexed":
        assert spec.get("parallelism", 1) == 1
        assert spec.get("completions", 1) == 1
    grace = _pod(job)["terminationGracePeriodSeconds"]
    interval = float(_env(job)["ITERCTL_CHECKPOINT_INTERVAL"]["value"])
    # CONTRACT §4: iterctl exits within one item's time plus one second of SIGTERM.
    assert grace > 1 + interval
    assert _env(job)["ITERCTL_LOG_FORMAT"]["value"] == "json"
    assert not _container(job)["image"].endswith(":latest")


def _image_user() -> tuple[int, int]:
    _args, stages = parse_dockerfile((ROOT / "Dockerfile").read_text())
    uid, _, gid = stages[-1].all("USER")[-1].args.partition(":")
    return int(uid), int(gid or uid)
