"""The operator's view through the real CLI: status never lies, history, delete, metrics.

Every view is asked right after a SIGKILL: the record still says running, and each view
(table, detail, JSON, --status filter, history) must say interrupted, holder gone,
without anyone resuming the job first (issue 8 item 14, issue 14).
"""

from __future__ import annotations

import functools
import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, func, select, text

from iterctl.stores.sql import _lock_key, failures_table, jobs_table, runs_table
from tests.cli.conftest import HERE, Finished, Workdir, iterctl_executable
from tests.servers import server_url

KINDS = [
    "sqlite",
    "json",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]


def _store_args(kind: str, workdir: Workdir) -> list[str]:
    if kind == "sqlite":
        return ["--store", f"sqlite:///{workdir.path / 'iterctl.db'}"]
    if kind == "json":
        return ["--store", str(workdir.path / "state.json")]
    return ["--store", server_url(kind)]


def _new_id(prefix: str) -> str:
    """Ids differ per test: the server databases are shared by every test."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _numbers(workdir: Workdir, job_id: str, *extra: str) -> list[str]:
    return ["run", "testjobs:Numbers", "--job-id", job_id, "--param", f"log={workdir.log}",
            *extra]  # fmt: skip


def _ok(result: Finished) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def _json(result: Finished) -> Any:
    return json.loads(_ok(result))


def _row_of(table: str, job_id: str) -> str:
    (row,) = [line for line in table.splitlines() if line.split()[:1] == [job_id]]
    return row


@pytest.mark.parametrize("kind", KINDS)
def test_after_sigkill_every_view_says_interrupted_holder_gone(workdir: Workdir, kind: str) -> None:
    """SIGKILL leaves the record saying running; at once, and with no resume, the JSON,
    the table, the detail view, the --status filter and history all say it is not."""
    store = _store_args(kind, workdir)
    job_id = _new_id("killed")
    process = workdir.start(*_numbers(workdir, job_id, "--param", "count=100000",
                                      "--param", "delay=0.005", "--checkpoint-interval",
                                      "0.05", *store))  # fmt: skip
    workdir.wait_items(20, process)
    live = _json(workdir.run("status", job_id, "--json", *store))
    assert (live["status"], live["holder_gone"]) == ("running", False)
    workdir.wait_for(lambda _lines: workdir.status(job_id, *store)["processed"] > 0, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)

    seen = _json(workdir.run("status", job_id, "--json", *store))
    assert (seen["status"], seen["holder_gone"], seen["rate"]) == ("interrupted", True, None)
    assert seen["processed"] > 0
    listed = _json(workdir.run("status", "--json", "--status", "interrupted", *store))
    assert job_id in [job["job_id"] for job in listed]
    running = _json(workdir.run("status", "--json", "--status", "running", *store))
    assert job_id not in [job["job_id"] for job in running]
    row = _row_of(_ok(workdir.run("status", *store)), job_id)
    assert "interrupted" in row
    assert "holder gone" in row
    assert "running" not in row
    detail = _ok(workdir.run("status", job_id, *store))
    assert "interrupted (holder gone" in detail
    (run,) = _json(workdir.run("history", job_id, "--json", *store))
    assert (run["outcome"], run["ended_at"], run["pid"]) == ("lost", None, process.pid)
    # As of a checkpoint shortly before the kill (the SQL stores move a run's row at most
    # once a second; the JSON store at every checkpoint).
    assert 0 < run["items"] <= seen["processed"]


def test_a_partition_killed_beside_a_live_one_is_shown_as_such(workdir: Workdir) -> None:
    """Two partitions: the killed one is interrupted, holder gone; the live one runs; the
    job as a whole runs, and the table's note says so."""
    logs = workdir.path / "logs"
    logs.mkdir()
    shutil.copy(HERE / "operatorjobs.py", workdir.path / "operatorjobs.py")
    command = ["run", "operatorjobs:Gated", "--job-id", "halves", "--param", f"logs={logs}",
               "--param", "count=100000", "--param", "delay=0.005", "--partitions", "2",
               "--checkpoint-interval", "0.05"]  # fmt: skip
    doomed = workdir.start(*command, "--partition", "0")
    alive = workdir.start(*command, "--partition", "1")
    try:
        for part in (0, 1):
            workdir.log = logs / f"part-{part}.log"
            workdir.wait_items(20, doomed if part == 0 else alive)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
        whole = workdir.status("halves")
        parts = whole["partitions"]
        assert [(p["status"], p["holder_gone"]) for p in parts] == [
            ("interrupted", True), ("running", False),
        ]  # fmt: skip
        assert (whole["status"], whole["holder_gone"]) == ("running", True)
        assert whole["rate"] == parts[1]["rate"]
        assert "1 of 2 partitions running" in _row_of(_ok(workdir.run("status")), "halves")
    finally:
        (logs / "gate").touch()
        alive.send_signal(signal.SIGTERM)
        assert workdir.finish(alive).returncode == 75


@pytest.mark.parametrize(
    "kind",
    [pytest.param("postgres", marks=pytest.mark.postgres),
     pytest.param("mysql", marks=pytest.mark.mysql)],
)  # fmt: skip
def test_a_dropped_session_shows_as_holder_gone(workdir: Workdir, kind: str) -> None:
    """The runner's database session is killed (a failover, pg_terminate_backend): its lock
    is gone, so status no longer says running, whatever the process does next."""
    store = _store_args(kind, workdir)
    job_id = _new_id("dropped")
    process = workdir.start(*_numbers(workdir, job_id, "--param", "count=100000",
                                      "--param", "delay=0.005", *store))  # fmt: skip
    try:
        workdir.wait_items(10, process)
        engine = create_engine(store[1])
        key = _lock_key(job_id)
        with engine.connect() as conn:
            if kind == "postgres":
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = "
                        "'advisory' AND ((classid::bigint << 32) | objid::bigint) = :key"
                    ),
                    {"key": key},
                )
            else:
                holder = conn.execute(
                    text("SELECT IS_USED_LOCK(:name)"), {"name": f"iterctl:{key:x}"}
                ).scalar()
                assert holder is not None
                conn.execute(text(f"KILL {int(holder)}"))
        engine.dispose()
        deadline = time.monotonic() + 10
        while (seen := workdir.status(job_id, *store))["status"] == "running":
            assert time.monotonic() < deadline, seen
            time.sleep(0.05)
        # Nothing more reaches the store from the runner: the record says running still,
        # and only the probe knows better.
        assert (seen["status"], seen["holder_gone"]) == ("interrupted", True)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_history_has_one_row_per_process_with_its_outcome_and_items(workdir: Workdir) -> None:
    """SIGTERM, SIGKILL, a job error, then success (and a cancel on another id): one row
    per process, newest first, with the right outcome, exit code, reason and items; the
    items of each run that ended are what it added to the job's processed count."""
    command = _numbers(workdir, "mix", "--param", "count=300", "--param", "delay=0.01",
                       "--param", "fail_at=250", "--param", "fail_once=1",
                       "--checkpoint-interval", "0.02")  # fmt: skip
    seen: list[int] = []
    first = workdir.start(*command)
    workdir.wait_items(10, first)
    first.send_signal(signal.SIGTERM)
    assert workdir.finish(first).returncode == 75
    seen.append(workdir.status("mix")["processed"])
    second = workdir.start(*command)
    workdir.wait_items(10, second)
    workdir.wait_for(lambda _l: workdir.status("mix")["processed"] > seen[-1], second)
    second.send_signal(signal.SIGKILL)
    second.wait(timeout=10)
    seen.append(workdir.status("mix")["processed"])
    assert workdir.run(*command).returncode == 1
    seen.append(workdir.status("mix")["processed"])
    assert seen[-1] == 250
    assert workdir.run(*command).returncode == 0
    seen.append(300)

    runs = _json(workdir.run("history", "mix", "--json"))
    assert [r["outcome"] for r in runs] == ["succeeded", "failed", "lost", "stopped"]
    assert [r["exit_code"] for r in runs] == [0, 1, None, 75]
    assert [r["run"] for r in runs] == [4, 3, 2, 1]
    assert [r["reason"] for r in runs] == [None, "RuntimeError: item 250 is broken", None,
                                           "SIGTERM"]  # fmt: skip
    items = [b - a for a, b in zip([0, *seen], seen, strict=False)]
    stopped, lost, failed, succeeded = (r["items"] for r in reversed(runs))
    assert (stopped, failed, succeeded) == (items[0], items[2], items[3])
    # The killed run is remembered as of a checkpoint at most a second before the kill.
    assert 0 < lost <= items[1]
    assert runs[-1]["cursor_start"] is None
    assert runs[0]["cursor_end"] == 299
    assert len({r["pid"] for r in runs}) == 4
    assert len(_json(workdir.run("history", "mix", "--json", "--limit", "2"))) == 2
    table = _ok(workdir.run("history", "mix"))
    assert all(word in table for word in ("succeeded", "failed", "lost", "stopped"))

    cancelled = workdir.start(*_numbers(workdir, "mix-cancel", "--param", "count=100000",
                                        "--param", "delay=0.005",
                                        "--checkpoint-interval", "0.05"))  # fmt: skip
    workdir.wait_items(10, cancelled)
    _ok(workdir.run("cancel", "mix-cancel"))
    assert workdir.finish(cancelled).returncode == 3
    (run,) = _json(workdir.run("history", "mix-cancel", "--json"))
    assert (run["outcome"], run["exit_code"]) == ("cancelled", 3)
    assert run["items"] == workdir.status("mix-cancel")["processed"]


def _rows_of(url: str, job_id: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table.name: conn.execute(
                    select(func.count()).select_from(table).where(table.c.job_id == job_id)
                ).scalar_one()
                for table in (jobs_table, runs_table, failures_table)
            }
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", KINDS)
def test_delete_is_refused_while_running_and_then_leaves_nothing(
    workdir: Workdir, kind: str
) -> None:
    """delete of a running job exits 75 and changes nothing; once it stopped, delete
    removes its record, its runs, its failure rows and its lock file."""
    store = _store_args(kind, workdir)
    job_id = _new_id("gone")
    process = workdir.start(*_numbers(workdir, job_id, "--param", "count=100000",
                                      "--param", "delay=0.005", *store))  # fmt: skip
    workdir.wait_items(5, process)
    refused = workdir.run("delete", job_id, *store)
    assert refused.returncode == 75, refused.stderr
    assert "running" in refused.stderr
    assert "nothing was deleted" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    process.send_signal(signal.SIGTERM)
    assert workdir.finish(process).returncode == 75
    assert workdir.status(job_id, *store)["status"] == "interrupted"
    if kind == "json":  # a failure record, kept as --max-failures keeps them there
        path = workdir.path / "state.json"
        document = json.loads(path.read_text())
        document.setdefault("failures", {})[job_id] = {"3": {"cursor": "3", "error": "bad"}}
        path.write_text(json.dumps(document))
    else:
        engine = create_engine(store[1])
        with engine.begin() as conn:  # a failure record, as --max-failures writes one
            conn.execute(failures_table.insert().values(
                job_id=job_id, partition_index=0, cursor_key="k", cursor="3", item="3",
                error_type="ValueError", message="bad", traceback="", attempts=1,
                failed_at="2026-01-01T00:00:00+00:00"))  # fmt: skip
        engine.dispose()

    deleted = workdir.run("delete", job_id, *store)
    assert deleted.returncode == 0, deleted.stderr
    assert f"deleted job {job_id}" in deleted.stderr
    assert workdir.run("status", job_id, *store).returncode == 2
    assert workdir.run("history", job_id, *store).returncode == 2
    if kind == "json":
        document = json.loads((workdir.path / "state.json").read_text())
        assert job_id not in json.dumps(document)
    else:
        assert _rows_of(store[1], job_id) == {
            "iterctl_jobs": 0, "iterctl_runs": 0, "iterctl_failures": 0,
        }  # fmt: skip
    assert not list(workdir.path.glob(f"*.holds/{job_id}.lock"))
    assert workdir.run("delete", job_id, *store).returncode == 2  # unknown now


def test_status_filter_is_repeatable(workdir: Workdir) -> None:
    """--status picks jobs by status; given twice, either one."""
    _ok(workdir.run(*_numbers(workdir, "fine", "--param", "count=3")))
    assert workdir.run(*_numbers(workdir, "bad", "--param", "count=5",
                                 "--param", "fail_at=2")).returncode == 1  # fmt: skip
    failed = _json(workdir.run("status", "--json", "--status", "failed"))
    assert [job["job_id"] for job in failed] == ["bad"]
    assert failed[0]["error_line"] == "RuntimeError: item 2 is broken"
    both = _json(workdir.run("status", "--json", "--status", "failed", "--status", "succeeded"))
    assert sorted(job["job_id"] for job in both) == ["bad", "fine"]
    assert workdir.run("status", "--status", "bogus").returncode == 2
    table = _ok(workdir.run("status"))
    assert "RuntimeError: item 2 is broken" in _row_of(table, "bad")


def test_status_json_has_rate_eta_elapsed_and_counts_while_running(workdir: Workdir) -> None:
    """A running job shows its total and progress from the first item, then a recent rate,
    an ETA and its running time; elapsed adds up across runs."""
    command = _numbers(workdir, "pace", "--param", "count=100000", "--param", "delay=0.005",
                       "--checkpoint-interval", "0.1")  # fmt: skip
    process = workdir.start(*command)
    workdir.wait_items(1, process)
    workdir.wait_for(lambda _l: workdir.status("pace")["processed"] > 0, process, timeout=5)
    workdir.wait_for(lambda _l: (workdir.status("pace")["rate"] or 0) > 0, process)
    seen = workdir.status("pace")
    assert seen["total"] == 100000
    assert seen["failed_items"] == 0
    assert seen["concurrency"] == 1
    assert 1 < seen["rate"] < 1000  # items take 5 ms each
    assert seen["eta_seconds"] == pytest.approx((100000 - seen["processed"]) / seen["rate"])
    process.send_signal(signal.SIGTERM)
    assert workdir.finish(process).returncode == 75
    first = workdir.status("pace")
    assert (first["rate"], first["eta_seconds"]) == (None, None)
    assert first["elapsed_seconds"] > 0
    again = workdir.start(*command)
    workdir.wait_items(20, again)
    again.send_signal(signal.SIGTERM)
    assert workdir.finish(again).returncode == 75
    assert workdir.status("pace")["elapsed_seconds"] > first["elapsed_seconds"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _scrape(port: int) -> dict[str, float]:
    """The samples of /metrics, parsed by prometheus_client's own parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            assert set(sample.labels) == {"job_id", "partition"}
            samples[sample.name] = sample.value
            samples["partition"] = float(sample.labels["partition"])
    return samples


def _counted(port: int, _lines: list[str]) -> bool:
    """True once the run has done items and saved a first checkpoint."""
    scraped = _scrape(port)
    return scraped["iterctl_items_processed_total"] > 0 and (
        "iterctl_seconds_since_checkpoint" in scraped
    )


def _in_flight(port: int, _lines: list[str]) -> bool:
    return _scrape(port)["iterctl_items_in_flight"] >= 1


@pytest.mark.parametrize("concurrency", [1, 4])
def test_metrics_scraped_during_a_partitioned_run_match_status(
    workdir: Workdir, concurrency: int
) -> None:
    """Two partitions, each serving /metrics, some items failing within --max-failures:
    scraped while they run, the counts move and one item (up to --concurrency items) is
    in flight; scraped after the final checkpoint, processed and failed items are what
    status --json says."""
    logs = workdir.path / "logs"
    logs.mkdir()
    shutil.copy(HERE / "operatorjobs.py", workdir.path / "operatorjobs.py")
    ports = [_free_port(), _free_port()]
    command = ["run", "operatorjobs:Gated", "--job-id", "scraped", "--param", f"logs={logs}",
               "--param", "count=400", "--param", f"delay={0.005 * concurrency}",
               "--param", "fail_every=50",
               "--max-failures", "100", "--partitions", "2",
               "--checkpoint-interval", "0.1", "--progress-interval", "0.1",
               "--concurrency", str(concurrency)]  # fmt: skip
    processes = [
        workdir.start(*command, "--partition", str(i), "--metrics-port", str(ports[i]))
        for i in (0, 1)
    ]
    try:
        for i in (0, 1):
            workdir.log = logs / f"part-{i}.log"
            workdir.wait_items(30, processes[i])
            port = ports[i]
            workdir.wait_for(functools.partial(_counted, port), processes[i])
            during = _scrape(port)
            assert during["partition"] == i
            # A gauge of this moment: between two batches (a checkpoint, say) it reads 0.
            workdir.wait_for(functools.partial(_in_flight, port), processes[i])
            assert _scrape(port)["iterctl_items_in_flight"] <= concurrency
            assert during["iterctl_items_expected"] == 200
            assert abs(during["iterctl_run_start_time_seconds"] - time.time()) < 60
            assert during["iterctl_seconds_since_checkpoint"] < 5
            assert during["iterctl_checkpoint_duration_seconds"] >= 0
        for i in (0, 1):
            workdir.log = logs / f"part-{i}.log"
            workdir.wait_for(lambda lines: "shutdown" in lines, processes[i])
        status = workdir.status("scraped")
        assert status["status"] == "succeeded"
        for i, part in enumerate(status["partitions"]):
            after = _scrape(ports[i])
            assert after["iterctl_items_processed_total"] == part["processed"] == 200
            assert after["iterctl_items_expected"] == part["total"]
            # Items 7, 57, ... 157 of each half fail and are recorded and passed over.
            assert after["iterctl_items_failed_total"] == part["failed_items"] == 4
            assert after["iterctl_items_in_flight"] == 0
        assert (
            sum(_scrape(p)["iterctl_items_processed_total"] for p in ports) == status["processed"]
        )
    finally:
        (logs / "gate").touch()
        for process in processes:
            assert workdir.finish(process).returncode == 0


def test_a_busy_metrics_port_is_one_line_exit_2(workdir: Workdir) -> None:
    """A port another process already serves on is refused before any item is done."""
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))  # noqa: S104 - the metrics server binds every address
        busy.listen()
        port = busy.getsockname()[1]
        result = workdir.run(*_numbers(workdir, "busy", "--param", "count=3",
                                       "--metrics-port", str(port)))  # fmt: skip
    assert result.returncode == 2
    assert f"cannot serve metrics on port {port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_watch_off_a_terminal_refuses_with_a_hint(workdir: Workdir) -> None:
    """--watch in a pipe has nobody to show it to: one line, exit 2."""
    result = workdir.run("status", "--watch")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "status --watch needs a terminal" in line
    assert "iterctl status --json" in line


def test_watch_on_a_terminal_refreshes_until_ctrl_c(workdir: Workdir) -> None:
    """On a terminal, --watch draws the table again about once a second; Ctrl-C exits 0."""
    import os
    import pty

    _ok(workdir.run(*_numbers(workdir, "watched", "--param", "count=3")))
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [iterctl_executable(), "status", "--watch"],
        cwd=workdir.path, env={**workdir.env, "TERM": "xterm", "COLUMNS": "100"},
        stdin=follower, stdout=follower, stderr=follower, start_new_session=True,
    )  # fmt: skip
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 20
    while seen.count(b"Ctrl-C to leave") < 2 and time.monotonic() < deadline:
        seen += os.read(leader, 65536)
    assert seen.count(b"Ctrl-C to leave") >= 2, seen[-2000:]
    assert b"watched" in seen
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 0
    os.close(leader)
