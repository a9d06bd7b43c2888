"""The PodMonitor example scrapes what the Job manifests serve: same labels, same port."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
SERVING = ["job.yaml", "indexed-job.yaml"]


def _job(name: str) -> Any:
    (job,) = [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d["kind"] == "Job"]
    return job


@pytest.mark.parametrize("name", SERVING)
def test_the_pod_monitor_selects_the_jobs_pods_and_their_metrics_port(name: str) -> None:
    """Its selector matches the pod template's labels, and the port it names is the
    container's, the one ITERCTL_METRICS_PORT makes iterctl serve on."""
    (monitor,) = yaml.safe_load_all((MANIFESTS / "monitoring" / "podmonitor.yaml").read_text())
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    template = _job(name)["spec"]["template"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    )
    (container,) = template["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    env = {var["name"]: var.get("value") for var in container["env"]}
    assert ports[endpoint["port"]] == int(env["ITERCTL_METRICS_PORT"])
