"""``--metrics-port``: Prometheus metrics of the running process, on ``/metrics``.

prometheus-client is imported only when the flag is given. The collector reads the run's
:class:`~iterctl.runstats.RunStats` when Prometheus scrapes: nothing is counted per item,
so serving metrics adds nothing to the loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from iterctl.errors import UsageError
from iterctl.runstats import RunStats


def serve_metrics(port: int, stats: RunStats) -> Callable[[], None]:
    """Serve ``stats`` on ``http://0.0.0.0:PORT/metrics``; return what stops the server."""
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ModuleNotFoundError:
        raise UsageError(
            "--metrics-port needs prometheus-client — pip install 'iterctl[metrics]'"
        ) from None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(stats))
    try:
        server, _thread = start_http_server(port, registry=registry)
    except OSError as error:
        raise UsageError(
            f"cannot serve metrics on port {port}: {error.strerror} — choose another --metrics-port"
        ) from None

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop


class RunCollector:
    """A custom collector: every scrape reads the run's counts as they are now."""

    def __init__(self, stats: RunStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self._stats
        labels = ["job_id", "partition"]
        values = [stats.job_id, str(stats.partition)]

        def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, documentation, labels=labels)
            family.add_metric(values, value)
            return family

        processed = CounterMetricFamily(
            "iterctl_items_processed",
            "Items done across every run of the job id, as of the last checkpoint or tick.",
            labels=labels,
        )
        processed.add_metric(values, stats.processed)
        yield processed
        failed = CounterMetricFamily(
            "iterctl_items_failed", "Items recorded as failed and passed over.", labels=labels
        )
        failed.add_metric(values, stats.failed_items)
        yield failed
        if stats.total is not None:
            yield gauge(
                "iterctl_items_expected", "Items in the whole job, when known.", stats.total
            )
        yield gauge("iterctl_items_in_flight", "Items in progress now.", stats.in_flight)
        if stats.rate is not None:
            yield gauge("iterctl_items_per_second", "Recent items per second.", stats.rate)
        age = stats.checkpoint_age()
        since = age if age is not None else time.time() - stats.started_at
        yield gauge(
            "iterctl_seconds_since_checkpoint",
            "Seconds since the last saved checkpoint (since the run began, before one).",
            since,
        )
        yield gauge(
            "iterctl_checkpoint_duration_seconds",
            "Seconds the last checkpoint's store write took.",
            stats.checkpoint_seconds,
        )
        yield gauge(
            "iterctl_run_start_time_seconds",
            "When this run began, in Unix seconds.",
            stats.started_at,
        )
