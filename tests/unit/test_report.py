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
        "iterctl: job nightly-1 succeeded: 1,500 items; this run 300 in 2.0s, 150.0 items/s",
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
    file, clock = io.StringIO(), FakeClock()
    reporter = BarReporter(Console(file=file, force_terminal=True, width=100), clock=clock)

    reporter.started(fresh_record(), resumed=False, total=10)
    reporter.progress(7, 10, 6)
    clock.now += 2
    reporter.finished(RunResult("nightly-1", Outcome.SUCCEEDED, 10, 9))

    shown = ANSI.sub("", file.getvalue())
    assert "nightly-1" in shown
    assert "10/10" in shown
    assert "100%" in shown
    end = "iterctl: job nightly-1 succeeded: 10 items in 2.0s, 5.0 items/s"
    assert shown.rstrip().endswith(end)


def test_a_success_says_how_long_the_run_took_and_how_fast() -> None:
    """The end line of a fresh run gives its duration and average rate; minutes from 60 s."""
    stream, clock = io.StringIO(), FakeClock()
    reporter = LineReporter(stream, clock=clock)
    reporter.started(fresh_record(), resumed=False, total=100_000)
    clock.now += 125
    reporter.finished(RunResult("nightly-1", Outcome.SUCCEEDED, 100_000, 99_999))

    assert stream.getvalue().splitlines()[-1] == (
        "iterctl: job nightly-1 succeeded: 100,000 items in 2m05s, 800.0 items/s"
    )


def test_slow_items_are_shown_as_seconds_per_item() -> None:
    """Under one item a second, the rate reads "s/item", never "0.0 items/s"."""
    stream, clock = io.StringIO(), FakeClock()
    reporter = LineReporter(stream, clock=clock)
    reporter.started(fresh_record(), resumed=False, total=10)
    clock.now += 25
    reporter.progress(2, 10, 1)

    assert stream.getvalue().splitlines()[-1] == (
        "iterctl: job nightly-1: 2/10, 20.0%, 12.5 s/item, ETA 1m40s, cursor 1"
    )


def _bar_frames(file: io.StringIO) -> list[str]:
    """The bar's successive frames, escape codes removed."""
    text = ANSI.sub("", file.getvalue())
    return [frame.strip() for frame in re.split(r"[\r\n]", text) if frame.strip()]


def test_the_bar_reads_like_tqdm_with_separators_elapsed_remaining_and_rate() -> None:
    """Counts with thousands separators, then [elapsed<remaining, rate]; at the end the
    remaining time goes and the rate is the run's average."""
    file, clock = io.StringIO(), FakeClock()
    reporter = BarReporter(Console(file=file, force_terminal=True, width=120), clock=clock)
    reporter.started(fresh_record(), resumed=False, total=100_000)
    clock.now += 4
    reporter.progress(3_000, 100_000, 2_999)
    clock.now += 1
    reporter.progress(7_493, 100_000, 7_492)
    reporter._progress.refresh()
    clock.now += 20
    reporter.finished(RunResult("nightly-1", Outcome.SUCCEEDED, 100_000, 99_999))

    frames = _bar_frames(file)
    # 4,493 items in the one second between the two updates: 4,493 items/s, so 92,507
    # left take 21 s.
    assert any(
        frame.endswith("7,493/100,000   7% [00:05<00:21, 4,493.0 items/s]") for frame in frames
    ), frames
    assert any(
        frame.endswith("100,000/100,000 100% [00:25, 4,000.0 items/s]") for frame in frames
    ), frames
    assert frames[-1] == "iterctl: job nightly-1 succeeded: 100,000 items in 25.0s, 4,000.0 items/s"


def test_the_bar_shows_seconds_per_item_for_slow_items_and_no_eta_without_a_total() -> None:
    """Items of several seconds: "s/item"; an unknown total: the count and elapsed only."""
    file, clock = io.StringIO(), FakeClock()
    reporter = BarReporter(Console(file=file, force_terminal=True, width=120), clock=clock)
    reporter.started(fresh_record(), resumed=False, total=None)
    clock.now += 10
    reporter.progress(1, None, 0)
    clock.now += 10
    reporter.progress(2, None, 1)
    reporter._progress.refresh()
    reporter.finished(RunResult("nightly-1", Outcome.STOPPED, 2, 1, "SIGTERM"))

    assert any(frame.endswith(" 2  [00:20, 10.0 s/item]") for frame in _bar_frames(file))


def test_text_logs_escape_control_characters_so_no_line_can_be_forged() -> None:
    """An exception message with a newline and escape codes is written as JSON writes it,
    in the end line and in the traceback: every line iterctl prints is one of its own."""
    stream = io.StringIO()
    reporter = LineReporter(stream, clock=FakeClock())
    reporter.started(fresh_record(), resumed=False, total=None)
    try:
        raise ValueError("bad row\niterctl: job nightly-1 succeeded: 3 items\x1b[2J")
    except ValueError as error:
        failure = error

    reporter.finished(RunResult("nightly-1", Outcome.FAILED, 3, 2, error=failure))

    output = stream.getvalue()
    lines = output.splitlines()
    assert "\x1b" not in output
    assert not any(line.startswith("iterctl: job nightly-1 succeeded") for line in lines)
    escaped = "bad row\\niterctl: job nightly-1 succeeded: 3 items\\u001b[2J"
    assert f"ValueError: {escaped}" in lines  # the traceback's last line
    assert lines[-1].startswith(f"iterctl: job nightly-1 failed: ValueError: {escaped} (")


def test_json_logs_keep_the_message_as_it_was() -> None:
    """JSON mode needs no escaping of its own: the parsed message is the original text."""
    stream = io.StringIO()
    reporter = LineReporter(stream, log_format="json", clock=FakeClock())
    reporter.started(fresh_record(), resumed=False, total=None)
    reporter.finished(RunResult("nightly-1", Outcome.FAILED, 0, None, error=ValueError("a\nb")))

    (end,) = [json.loads(line) for line in stream.getvalue().splitlines()][-1:]
    assert end["error"] == "a\nb"
    assert len(stream.getvalue().splitlines()) == 2


def test_each_stop_signal_gets_a_line_naming_the_job() -> None:
    """Off a terminal, a stop signal is logged as it arrives, with the job id and what it does."""
    stream = io.StringIO()
    reporter = LineReporter(stream, clock=FakeClock(), job_id="nightly-1")
    reporter.signal_received("SIGTERM", now=False, again=False)
    reporter.signal_received("SIGTERM", now=False, again=True)
    reporter.signal_received("SIGINT", now=True, again=False)

    assert stream.getvalue().splitlines() == [
        "iterctl: job nightly-1: SIGTERM received — stopping after the current item "
        "(a second SIGINT stops at once)",
        "iterctl: job nightly-1: SIGTERM received — already stopping after the current item",
        "iterctl: job nightly-1: SIGINT received — stopping now, in the middle of the current item",
    ]
