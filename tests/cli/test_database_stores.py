"""The same stop/resume promises with the store on PostgreSQL and MariaDB."""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from tests.cli.conftest import Workdir
from tests.servers import server_url


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("mysql", marks=pytest.mark.mysql)])  # fmt: skip
def store_url(request: pytest.FixtureRequest) -> str:
    return server_url(request.param)


def test_sigterm_then_the_same_command_finishes_exactly_once(
    workdir: Workdir, store_url: str
) -> None:
    """On a database store: SIGTERM → 75, the same command → 0, every item once."""
    job_id = f"db-{uuid.uuid4().hex[:8]}"
    command = ["run", "testjobs:Numbers", "--job-id", job_id, "--store", store_url,
               "--param", f"log={workdir.log}", "--param", "count=150",
               "--param", "delay=0.003", "--checkpoint-interval", "0.05"]  # fmt: skip
    process = workdir.start(*command)
    workdir.wait_items(30, process)
    process.send_signal(signal.SIGTERM)
    assert workdir.finish(process).returncode == 75
    assert workdir.run(*command).returncode == 0
    assert workdir.items() == list(range(150))
    status = workdir.status(job_id, "--store", store_url)
    assert (status["status"], status["processed"], status["times_interrupted"]) == (
        "succeeded", 150, 1,
    )  # fmt: skip


def test_the_hold_is_freed_when_its_holder_is_killed(workdir: Workdir, store_url: str) -> None:
    """A second runner exits 75 naming the holder; after SIGKILL a new run starts at once
    (the server drops a dead session's lock; no lease to wait out)."""
    job_id = f"held-{uuid.uuid4().hex[:8]}"
    command = ["run", "testjobs:Numbers", "--job-id", job_id, "--store", store_url,
               "--param", f"log={workdir.log}", "--param", "count=100000",
               "--param", "delay=0.002"]  # fmt: skip
    holder = workdir.start(*command)
    workdir.wait_items(5, holder)
    second = workdir.run(*command, timeout=20)
    assert second.returncode == 75, second.stderr
    assert f"pid {holder.pid}" in second.stderr

    holder.send_signal(signal.SIGKILL)
    holder.communicate()
    started = time.monotonic()
    # The server notices the closed socket within moments; allow a few retries.
    for _ in range(20):
        third = workdir.start(*command)
        try:
            workdir.wait_items(3, third, timeout=5)
            break
        except pytest.fail.Exception:
            if third.poll() != 75:
                raise
    else:
        pytest.fail("the hold of a killed process was never freed")
    assert time.monotonic() - started < 10
    third.send_signal(signal.SIGTERM)
    assert workdir.finish(third).returncode == 75
