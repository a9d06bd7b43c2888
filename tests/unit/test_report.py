"""report.py: exact log lines off a terminal (text and JSON), and a Rich bar on one."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timedelta

from rich.console import Console

from iterctl.report import BarReporter, LineReporter
from iterctl.runner import Outcome, RunResult
from iterctl.stores import JobRecord

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fresh_record() -> JobRecord:
    return JobRecord(job_id="nightly-1", job="jobs.backfill:Backfill", params={})


def resumed_record() -> JobRecord:
    return JobRecord(
        job_id="nightly-1",
        job="jobs.backfill:Backfill",
        params={},
        processed=1200,
        cursor_json='{"id":1200}',
    )


def test_text_lines_for_start_progress_and_stop_are_exact() -> None:
    """Off a terminal, a run writes one plain line per event, each naming the job id."""
    stream, clock = io.StringIO(), FakeClock()
    reporter = LineReporter(stream, clock=clock)

    reporter.started(fresh_record(), resumed=False, total=10_000)
    clock.now += 4
    reporter.progress(1000, 10_000, {"id": 1000})
    clock.now += 1
    reporter.finished(RunResult("nightly-1", Outcome.STOPPED, 1000, {"id": 1000}, "SIGTERM"))

    assert stream.getvalue().splitlines() == [
        "iterctl: started job nightly-1 (jobs.backfill:Backfill), 10,000 items",
        "iterctl: job nightly-1: 1,000/10,000, 10.0%, 250.0 items/s, ETA 0m36s, "
        'cursor {"id": 1000}',
        "iterctl: stopped job nightly-1 (SIGTERM): 1,000 items done, "
        'cursor {"id": 1000} — resume with: iterctl resume nightly-1',
    ]
    assert "\r" not in stream.getvalue()
    assert "\x1b" not in stream.getvalue()


def test_text_lines_for_a_resume_and_a_success_are_exact() -> None:
    """A resumed run says where it resumes from; a success says how many items in all."""
    stream, clock = io.StringIO(), FakeClock()
    reporter = LineReporter(stream, clock=clock)

    reporter.started(resumed_record(), resumed=True, total=None)
    clock.now += 2
    reporter.progress(1300, None, {"id": 1300})
    reporter.finished(RunResult("nightly-1", Outcome.SUCCEEDED, 1500, {"id": 1500}))

    assert stream.getvalue().splitlines() == [
        "iterctl: resumed job nightly-1 (jobs.backfill:Backfill) after 1,200 items, "
        'cursor {"id": 1200}',
        'iterctl: job nightly-1: 1,300, 50.0 items/s, cursor {"id": 1300}',
        "iterctl: job nightly-1 succeeded: 1,500 items",
    ]


def test_json_lines_carry_job_id_event_count_cursor_and_rate() -> None:
    """With --log-format json every line is one JSON object a log pipeline can parse."""
    stream, clock = io.StringIO(), FakeClock()
    reporter = LineReporter(stream, log_format="json", clock=clock)

    reporter.started(resumed_record(), resumed=True, total=2000)
    clock.now += 10
    reporter.progress(1700, 2000, {"id": 1700})
    reporter.finished(RunResult("nightly-1", Outcome.STOPPED, 1700, {"id": 1700}, "SIGTERM"))

    documents = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [d["event"] for d in documents] == ["resume", "progress", "stop"]
    assert {d["job_id"] for d in documents} == {"nightly-1"}
    assert [d["processed"] for d in documents] == [1200, 1700, 1700]
    assert [d["cursor"] for d in documents] == [{"id": 1200}, {"id": 1700}, {"id": 1700}]
    assert documents[1]["rate"] == 50.0
    assert documents[1]["total"] == 2000
    assert (documents[2]["reason"], documents[2]["exit_code"]) == ("SIGTERM", 75)
    for document in documents:
        moment = datetime.fromisoformat(document["time"])
        assert moment.utcoffset() == timedelta(0)


def test_a_failure_line_follows_the_jobs_traceback() -> None:
    """A job's own exception prints its traceback, then one line saying how to resume."""
    stream = io.StringIO()
    reporter = LineReporter(stream, clock=FakeClock())
    reporter.started(fresh_record(), resumed=False, total=None)
    try:
        raise ValueError("bad row")
    except ValueError as error:
        failure = error

    reporter.finished(RunResult("nightly-1", Outcome.FAILED, 3, 2, error=failure))

    output = stream.getvalue()
    assert "Traceback (most recent call last)" in output
    assert output.splitlines()[-1] == (
        "iterctl: job nightly-1 failed: ValueError: bad row (3 items done, cursor 2) "
        "— fix it, then: iterctl resume nightly-1"
    )


def test_the_bar_shows_the_job_id_and_the_count() -> None:
    """On a terminal, a Rich bar names the job id and shows done/total, then the end line."""
    file = io.StringIO()
    reporter = BarReporter(Console(file=file, force_terminal=True, width=100))

    reporter.started(fresh_record(), resumed=False, total=10)
    reporter.progress(7, 10, 6)
    reporter.finished(RunResult("nightly-1", Outcome.SUCCEEDED, 10, 9))

    shown = ANSI.sub("", file.getvalue())
    assert "nightly-1" in shown
    assert "10/10" in shown
    assert "100%" in shown
    assert shown.rstrip().endswith("iterctl: job nightly-1 succeeded: 10 items")
