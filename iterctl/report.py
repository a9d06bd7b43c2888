"""What people and log pipelines see (CONTRACT §5); the only module that imports rich.

On a terminal a run draws a Rich progress bar. Anywhere else (Kubernetes logs, pipes) it
writes steady lines: no animation, carriage returns or escape codes, one progress line per
``--progress-interval`` and one line for each start, resume, stop and end, each naming the
job id; ``--log-format json`` makes each line a JSON object for log pipelines.
"""

from __future__ import annotations

import json
import os
import re
import reprlib
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

# rich is imported where used: a run off a terminal (Kubernetes logs) writes plain lines
# and never needs it, and start-up time counts.
if TYPE_CHECKING:
    from rich.console import Console

from iterctl.cursor import Cursor
from iterctl.runner import Outcome, RunResult
from iterctl.stores.base import FailureRecord, JobRecord, utc_now

#: How often the bar is fed on a terminal: a few times a second looks live and costs nothing.
BAR_REFRESH_SECONDS = 0.25

LOG_FORMATS = ("text", "json")


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


#: Variables by which Rich may treat a non-TTY as a terminal.
_RICH_TERMINAL_VARIABLES = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


def is_interactive() -> bool:
    """True when stderr is a terminal a person watches (Rich's own test, env included).

    Not a TTY and none of Rich's overrides set: certainly not, and no need to load Rich.
    """
    if not sys.stderr.isatty() and not any(v in os.environ for v in _RICH_TERMINAL_VARIABLES):
        return False
    return stderr_console().is_interactive


def _short(cursor: Cursor) -> str:
    text = json.dumps(cursor)
    return text if len(text) <= 80 else text[:77] + "..."


_short_repr = reprlib.Repr()
_short_repr.maxstring = _short_repr.maxother = 60


def _error_text(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".splitlines()[0]
    return text if len(text) <= 200 else text[:197] + "..."


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _took(seconds: float) -> str:
    """How long a run took: tenths of a second under a minute, else as ``_duration``."""
    return f"{seconds:.1f}s" if seconds < 60 else _duration(seconds)


def _clock_time(seconds: float) -> str:
    """``MM:SS``, or ``H:MM:SS`` from an hour on: the bar's times, as tqdm shows them."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def rate_text(rate: float) -> str:
    """Items per second, or seconds per item when items take longer than a second each."""
    if 0 < rate < 1:
        return f"{1 / rate:,.1f} s/item"
    return f"{rate:,.1f} items/s"


#: Control characters (C0, DEL, C1) and the Unicode line separators some log viewers break on.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: The short forms JSON writes; every other control character becomes ``\uXXXX``.
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str) -> str:
    """``text`` with control characters written as JSON writes them (``\\n``, ``\\u001b``).

    Messages carry text iterctl does not choose (an exception's message, a job path), and a
    log is read line by line: a newline in them could forge a line such as ``iterctl: job x
    succeeded``, and an escape code would reach the reader's terminal.
    """
    return _CONTROL.sub(lambda found: _SHORT_ESCAPES.get(found[0], f"\\u{ord(found[0]):04x}"), text)


def job_traceback(error: BaseException) -> str:
    """The traceback of the job's own exception, its messages escaped (see escape_controls).

    It is the one output of several lines (CONTRACT §3); with its messages escaped, none of
    those lines can pass for one of iterctl's. Chained and grouped exceptions included.
    """
    shown = traceback.TracebackException.from_exception(error)
    pending, seen = [shown], set()
    while pending:
        part = pending.pop()
        if id(part) in seen:
            continue
        seen.add(id(part))
        # The message as traceback will print it; there is no public way to set it.
        part._str = escape_controls(part._str)  # type: ignore[attr-defined]
        notes = getattr(part, "__notes__", None)
        if isinstance(notes, list):
            part.__notes__ = [escape_controls(str(note)) for note in notes]
        pending.extend(p for p in (part.__cause__, part.__context__) if p is not None)
        pending.extend(part.exceptions or ())
    return "".join(shown.format())


class Stream(Protocol):
    """Where lines go: a text file such as sys.stderr, or a console."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class LineReporter:
    """Plain log lines (text or JSON), for anything that is not a terminal."""

    def __init__(
        self,
        stream: Stream | None = None,
        *,
        log_format: str = "text",
        clock: Callable[[], float] = time.monotonic,
        job_id: str = "",
    ) -> None:
        self._stream: Stream = stream if stream is not None else sys.stderr
        self._json = log_format == "json"
        self._clock = clock
        #: The job id as far as known: given on the command line, or once the run started.
        self._job_id = job_id
        self._label = job_id
        self._partition: int | None = None
        self._start_time = clock()
        self._start_processed = 0
        self._started = False
        #: What a stop waits for: one item, or with --concurrency N > 1 all those in flight.
        self.current = "the current item"
        # Signal notices come from the watcher thread, progress from the main one.
        self._lock = threading.Lock()

    def _emit(self, event: str, text: str, **fields: Any) -> None:
        if self._json:
            document: dict[str, Any] = {"time": utc_now(), "event": event, "job_id": self._job_id}
            if self._partition is not None:
                document["partition"] = self._partition
            document.update(fields)
            line = json.dumps(document, default=str)
        else:
            line = escape_controls(f"iterctl: {text}")
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def rate(self, processed: int) -> float:
        """Items per second since this run started."""
        elapsed = self._clock() - self._start_time
        return (processed - self._start_processed) / elapsed if elapsed > 0 else 0.0

    def started(self, record: JobRecord, *, resumed: bool, total: int | None) -> None:
        self._job_id = record.job_id
        if record.partitions > 1:
            self._label = f"{record.job_id} partition {record.partition}/{record.partitions}"
            self._partition = record.partition
        else:
            self._label = record.job_id
        self._start_time, self._start_processed = self._clock(), record.processed
        self._started = True
        if record.concurrency > 1:
            self.current = "the items in flight"
        cursor = json.loads(record.cursor_json) if record.cursor_json else None
        of_total = "" if total is None else f" of {total:,}"
        if resumed:
            text = (
                f"resumed job {self._label} ({record.job}) after {record.processed:,}"
                f"{of_total} items, cursor {_short(cursor)}"
            )
        else:
            count = "an unknown number of" if total is None else f"{total:,}"
            text = f"started job {self._label} ({record.job}), {count} items"
        if record.concurrency > 1:
            text += f", {record.concurrency} at once"
        self._emit(
            "resume" if resumed else "start",
            text,
            job=record.job,
            processed=record.processed,
            total=total,
            cursor=cursor,
        )

    def progress(self, processed: int, total: int | None, cursor: Cursor) -> None:
        rate = self.rate(processed)
        parts = [f"job {self._label}: {processed:,}" + ("" if total is None else f"/{total:,}")]
        if total:
            parts.append(f"{100 * processed / total:.1f}%")
        parts.append(rate_text(rate))
        if total and rate > 0 and total > processed:
            parts.append(f"ETA {_duration((total - processed) / rate)}")
        parts.append(f"cursor {_short(cursor)}")
        self._emit(
            "progress",
            ", ".join(parts),
            processed=processed,
            total=total,
            rate=round(rate, 3),
            cursor=cursor,
        )

    def this_run(self, processed: int) -> RunPace | None:
        """What this process did: items and seconds since its start line; None before it."""
        if not self._started:
            return None
        return RunPace(processed - self._start_processed, self._clock() - self._start_time)

    def retrying(
        self, item: Any, attempt: int, max_attempts: int, error: BaseException, delay: float
    ) -> None:
        """One line per retry: which item, which attempt, the error, the wait."""
        self._emit(
            "retry",
            f"job {self._label}: item {_short_repr.repr(item)} failed on attempt {attempt} "
            f"of {max_attempts} ({_error_text(error)}); trying again in {delay:.2f}s",
            attempt=attempt,
            max_attempts=max_attempts,
            error=_error_text(error),
            delay=round(delay, 3),
        )

    def passed_over(self, record: FailureRecord, failed: int, allowed: int) -> None:
        """One line per item recorded as failed and passed over (--max-failures)."""
        cursor = json.loads(record.cursor_json)
        tries = "1 attempt" if record.attempts == 1 else f"{record.attempts} attempts"
        self._emit(
            "item_failed",
            f"job {self._label}: item at cursor {_short(cursor)} failed after {tries} "
            f"({record.error_type}: {record.message.splitlines()[0] if record.message else ''})"
            f"; recorded and passed over ({failed:,} of {allowed:,} allowed)",
            cursor=cursor,
            attempts=record.attempts,
            error_type=record.error_type,
            message=record.message,
            failed_items=failed,
            max_failures=allowed,
        )

    def finished(self, result: RunResult) -> None:
        self._job_id = self._job_id or result.job_id
        # The job's own exception is the one case that shows a traceback (CONTRACT §3).
        trace = None
        if result.outcome is Outcome.FAILED and result.error is not None:
            trace = job_traceback(result.error)
            if not self._json:
                with self._lock:
                    self._stream.write(trace)
        pace = self.this_run(result.processed)
        run: dict[str, Any] = {}
        if pace is not None:  # what this process did, beside the job's totals
            run = {"run_items": pace.items, "run_seconds": round(pace.seconds, 3)}
        self._emit(
            _EVENTS[result.outcome],
            describe_result(result, pace),
            outcome=result.outcome.name.lower(),
            exit_code=int(result.exit_code),
            processed=result.processed,
            cursor=result.cursor,
            reason=result.reason,
            error=None if result.error is None else str(result.error),
            failed_items=result.failed_items,
            rate=round(self.rate(result.processed), 3),
            **run,
            **({"traceback": trace} if trace and self._json else {}),
        )
        for hook, hook_error in result.hook_errors:
            self._hook_raised(result, hook, hook_error)

    def _hook_raised(self, result: RunResult, hook: str, error: BaseException) -> None:
        """A hook that raised as the run ended: its traceback, and that the outcome stands."""
        trace = "".join(traceback.format_exception(error))
        if not self._json:
            self._stream.write(trace)
        self._emit(
            "hook_error",
            f"job {self._label or result.job_id}: {hook} raised {type(error).__name__}: "
            f"{error} — the run's outcome stands ({result.outcome.name.lower()}, exit "
            f"{int(result.exit_code)}); fix the hook",
            hook=hook,
            error=str(error),
            **({"traceback": trace} if self._json else {}),
        )

    def job_named(self, job_id: str) -> None:
        """The id a new job was given, known before its start line."""
        self._job_id = self._label = job_id

    def signal_received(self, signal_name: str, *, now: bool, again: bool) -> None:
        """One line per stop signal, as it arrives (called from the signal watcher thread).

        ``now``: it stops the run at once (a second SIGINT); ``again``: a stop was already
        under way and this signal changes nothing.
        """
        current = self.current
        if now:
            meaning = f"stopping now, in the middle of {current}"
        elif again:
            meaning = f"already stopping after {current}"
        else:
            meaning = f"stopping after {current} (a second SIGINT stops at once)"
        job = f"job {self._label}: " if self._label else ""
        self._emit("signal", f"{job}{signal_name} received — {meaning}", signal=signal_name)

    def note(self, event: str, text: str, **fields: Any) -> None:
        """One line for a message outside a run (e.g. "already succeeded")."""
        self._emit(event, text, **fields)


@dataclass(frozen=True)
class RunPace:
    """How many items this process did, in how many seconds: for the end line."""

    items: int
    seconds: float

    def __str__(self) -> str:
        rate = self.items / self.seconds if self.seconds > 0 else 0.0
        return f"{_took(self.seconds)}, {rate_text(rate)}"


_EVENTS = {
    Outcome.SUCCEEDED: "end",
    Outcome.FAILED: "error",
    Outcome.REFUSED: "error",
    Outcome.CANCELLED: "end",
    Outcome.STORE_UNAVAILABLE: "error",
    Outcome.STOPPED: "stop",
}


def describe_result(result: RunResult, pace: RunPace | None = None) -> str:
    """One human line saying how a run ended and what to do next.

    With ``pace`` (what this process did), a success also says how long it took and how fast.
    """
    job_id = result.job_id
    resume = result.resume_command or f"iterctl resume {job_id}"
    if result.partition is not None:
        job_id = f"{job_id} partition {result.partition}"
    where = f"{result.processed:,} items done, cursor {_short(result.cursor)}"
    match result.outcome:
        case Outcome.SUCCEEDED if result.reason == "already succeeded":
            failed = f", {result.failed_items:,} failed" if result.failed_items else ""
            return (
                f"job {job_id} already succeeded ({result.processed:,} items{failed}); "
                "nothing to do"
            )
        case Outcome.SUCCEEDED:
            done = f"job {job_id} succeeded: {result.processed:,} items"
            if pace is not None and pace.items == result.processed:
                done += f" in {pace}"
            elif pace is not None:
                done += f"; this run {pace.items:,} in {pace}"
            if result.failed_items:
                done += (
                    f"; {result.failed_items:,} of them failed and were passed over — "
                    f"list them: {result.failures_command}"
                )
            return done
        case Outcome.STOPPED:
            return f"stopped job {job_id} ({result.reason}): {where} — resume with: {resume}"
        case Outcome.CANCELLED:
            return f"job {job_id} was cancelled: {where}; it will not run again"
        case Outcome.FAILED:
            recorded = (
                f"; {result.failed_items:,} failed items recorded before it: "
                f"{result.failures_command}"
                if result.failed_items
                else ""
            )
            return (
                f"job {job_id} failed: {type(result.error).__name__}: {result.error} "
                f"({where}) — fix it, then: {resume}{recorded}"
            )
        case Outcome.REFUSED:
            return f"job {job_id} refused: {result.error}"
        case _:
            return f"job {job_id} stopped: {result.error} ({where})"


def _bar_columns() -> list[Any]:
    """The bar's columns, read like tqdm's bar:

    ``demo ━━━━━━━━━━━━━━━━━━ 7,493/100,000  7% [00:04<00:52, 1,707.3 items/s]``
    """
    from rich.progress import BarColumn, ProgressColumn, Task, TaskProgressColumn, TextColumn
    from rich.text import Text

    class CountColumn(ProgressColumn):
        """Items done, and of how many, with thousands separators as every message has."""

        def render(self, task: Task) -> Text:
            done = f"{int(task.completed):,}"
            shown = done if task.total is None else f"{done}/{int(task.total):,}"
            return Text(shown, style="progress.download")

    class TimesColumn(ProgressColumn):
        """``[elapsed<remaining, rate]``; once the run ended, ``[elapsed, average rate]``."""

        def render(self, task: Task) -> Text:
            ended = task.fields.get("average")
            times = _clock_time(task.elapsed or 0.0)
            if ended is None and task.total is not None:
                remaining = task.time_remaining
                times += "<" + ("?" if remaining is None else _clock_time(remaining))
            speed = task.speed if ended is None else ended
            rate = "? items/s" if speed is None else rate_text(speed)
            return Text(f"[{times}, {rate}]", style="progress.elapsed")

    return [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        CountColumn(),
        TaskProgressColumn(),
        TimesColumn(),
    ]


class BarReporter:
    """A Rich progress bar with count, total, rate and times, then the end line."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        job_id: str = "",
    ) -> None:
        from rich.progress import Progress

        self._console = console if console is not None else stderr_console()
        self._progress = Progress(
            *_bar_columns(), console=self._console, transient=False, get_time=clock
        )
        self._task: Any = None
        self._lines = LineReporter(_ConsoleStream(self._console), clock=clock, job_id=job_id)

    def started(self, record: JobRecord, *, resumed: bool, total: int | None) -> None:
        self._lines.started(record, resumed=resumed, total=total)
        self._task = self._progress.add_task(record.job_id, total=total, completed=record.processed)
        self._progress.start()

    def progress(self, processed: int, total: int | None, cursor: Cursor) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=processed, total=total)

    def finished(self, result: RunResult) -> None:
        if self._task is not None:
            pace = self._lines.this_run(result.processed)
            average = pace.items / pace.seconds if pace and pace.seconds > 0 else 0.0
            self._progress.update(self._task, completed=result.processed, average=average)
            self._progress.stop_task(self._task)
            self._progress.stop()
        self._lines.finished(result)

    def job_named(self, job_id: str) -> None:
        self._lines.job_named(job_id)

    def signal_received(self, signal_name: str, *, now: bool, again: bool) -> None:
        """What a Ctrl-C does, said at once, above the bar (from the signal watcher thread)."""
        current = self._lines.current
        if now:
            text = f"Stopping now, in the middle of {current}."
        elif again:
            text = f"{signal_name}: already stopping after {current}."
        elif signal_name == "SIGINT":
            text = f"Stopping after {current} — press Ctrl-C again to stop now."
        else:
            text = f"{signal_name}: stopping after {current} — Ctrl-C to stop now."
        from rich.text import Text

        # A styled Text, not print(style=…): that style would spill onto the bar drawn below.
        self._console.print(Text(text, style="bold yellow"))

    def note(self, event: str, text: str, **fields: Any) -> None:
        self._lines.note(event, text, **fields)

    def retrying(
        self, item: Any, attempt: int, max_attempts: int, error: BaseException, delay: float
    ) -> None:
        self._lines.retrying(item, attempt, max_attempts, error, delay)

    def passed_over(self, record: FailureRecord, failed: int, allowed: int) -> None:
        self._lines.passed_over(record, failed, allowed)


class _ConsoleStream:
    """A write()/flush() face on a Console, so lines print above a live bar."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def write(self, text: str) -> int:
        self._console.print(text.rstrip("\n"), markup=False, highlight=False)
        return len(text)

    def flush(self) -> None:
        self._console.file.flush()


def make_reporter(
    log_format: str, job_id: str | None = None
) -> tuple[LineReporter | BarReporter, float | None]:
    """The reporter for this process, and the progress interval it wants (None: the user's).

    ``job_id``: the id given on the command line, if any, so that a stop signal that comes
    before the run starts can already name it.
    """
    if log_format == "text" and is_interactive():
        return BarReporter(job_id=job_id or ""), BAR_REFRESH_SECONDS
    return LineReporter(log_format=log_format, job_id=job_id or ""), None


def _console() -> Console:
    """Standard output: on a terminal at its width, elsewhere wide enough not to squeeze."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        # A pipe or a file has no width to respect: don't squeeze the table into 80.
        console = Console(width=max(console.width, 200))
    return console


def _ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _rate(rate: float | None) -> str:
    if rate is None:
        return ""
    if 0 < rate < 1:
        return f"{1 / rate:,.1f}s/item"
    return f"{rate:,.1f}/s"


def _seconds(seconds: float | None) -> str:
    return "" if seconds is None else _duration(seconds)


def _percent(job: dict[str, Any]) -> str:
    total = job["total"]
    return f"{100 * job['processed'] / total:.0f}%" if total else ""


def _note(job: dict[str, Any]) -> str:
    """What a person should notice about a job: its error, a holder gone, its parts."""
    notes = []
    if job.get("holder_gone"):
        notes.append("holder gone")
    if job.get("error_line"):
        notes.append(job["error_line"])
    parts = job.get("partitions")
    if parts:
        running = sum(part["status"] == "running" for part in parts)
        notes.append(f"{running} of {len(parts)} partitions running")
    return "; ".join(notes)


def status_lines(jobs: list[dict[str, Any]], *, width: int = 100) -> list[tuple[str, str | None]]:
    """The `status` table as lines (with a style each), fitted to ``width`` columns.

    Ids, statuses and numbers are never cut (the id is what people copy into `resume`);
    only the job's name, the cursor and the note give way, ending in '…'. Columns that
    are empty in every row (no rate when nothing runs) are left out. The widths are
    worked out once for all rows, then each row is one padded line: a Rich Table would
    measure every cell again, 3.5 s for 10,000 jobs.
    """
    rows = [_status_cells(job) for job in jobs]
    shown = [
        i for i, (name, _j, _share) in enumerate(_STATUS_COLUMNS)
        if name in ("job id", "status") or any(row[i] for row in rows)
    ]  # fmt: skip
    widths = {i: max([len(_STATUS_COLUMNS[i][0]), *(len(row[i]) for row in rows)]) for i in shown}
    fixed = sum(widths[i] for i in shown if _STATUS_COLUMNS[i][2] is None)
    room = max(0, width - 2 - fixed - 2 * (len(shown) - 1))  # two spaces between columns
    for i in shown:
        share = _STATUS_COLUMNS[i][2]
        if share is not None:
            widths[i] = max(1, min(widths[i], int(room * share)))

    def line(cells: list[str]) -> str:
        padded = []
        for i in shown:
            cell = _ellipsis(cells[i], widths[i])
            right = _STATUS_COLUMNS[i][1] == "right"
            padded.append(cell.rjust(widths[i]) if right else cell.ljust(widths[i]))
        return " " + "  ".join(padded).rstrip()

    header = line([name for name, _j, _s in _STATUS_COLUMNS])
    lines: list[tuple[str, str | None]] = [(header, "bold"), (" " + "─" * (len(header) - 1), None)]
    lines += [(line(row), _STYLES.get(job["status"])) for job, row in zip(jobs, rows, strict=True)]
    return lines


def status_text(jobs: list[dict[str, Any]], *, width: int, title: str | None = None) -> Any:
    """The `status` table as a Rich renderable, styled line by line (for a terminal).

    Ready-made segments, since the lines are laid out already: Rich then only writes them
    (90 ms for 10,000 jobs, against 600 ms as one Text it would split and measure again).
    """
    from rich.segment import Segment, Segments
    from rich.style import Style

    styles: dict[str | None, Style | None] = {None: None}
    segments: list[Segment] = []
    rows = status_lines(jobs, width=width)
    if title:
        rows = [(title, "italic"), *rows]
    for line, style in rows:
        if style not in styles:
            styles[style] = Style.parse(style)
        segments += (Segment(line, styles[style]), Segment.line())
    return Segments(segments)


#: (heading, justify, share of the room left, or None for "never cut") of each column.
_STATUS_COLUMNS: list[tuple[str, str, float | None]] = [
    ("job id", "left", None),
    ("job", "left", 0.3),
    ("status", "left", None),
    ("done", "right", None),
    ("%", "right", None),
    ("rate", "right", None),
    ("ETA", "right", None),
    ("elapsed", "right", None),
    ("failed", "right", None),
    ("cursor", "left", 0.2),
    ("note", "left", 0.5),
]

_STYLES = {"failed": "red", "cancelled": "dim", "succeeded": "green"}


def _status_cells(job: dict[str, Any]) -> list[str]:
    done = _count(job["processed"])
    if job["total"] is not None:
        done += f"/{job['total']:,}"
    cursor = job["cursor"]
    shown_cursor = "" if job.get("partitions") else _short(cursor)
    return [
        job["job_id"],
        job["job"],
        job["status"],
        done,
        _percent(job),
        _rate(job.get("rate")),
        _seconds(job.get("eta_seconds")),
        _seconds(job.get("elapsed_seconds")),
        f"{job['failed_items']:,}" if job.get("failed_items") else "",
        shown_cursor,
        _note(job),
    ]


def print_status_table(jobs: list[dict[str, Any]], console: Console | None = None) -> None:
    """``iterctl status`` for people: a row per job id."""
    console = console if console is not None else _console()
    if not jobs:
        console.print("no jobs in this store yet — start one with: iterctl run MODULE:CLASS")
        return
    if console.is_terminal:
        console.print(status_text(jobs, width=console.width))
    else:  # a pipe: plain lines, no styling to work out
        console.file.write(
            "".join(line + "\n" for line, _style in status_lines(jobs, width=console.width))
        )


def print_job_detail(job: dict[str, Any], runs: list[dict[str, Any]]) -> None:
    """``iterctl status JOB_ID``: every field of one job, its partitions, its last runs."""
    from rich.table import Table

    console = _console()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in _detail_fields(job):
        grid.add_row(label, value)
    console.print(grid, markup=False, highlight=False)
    parts = job.get("partitions")
    if parts:
        console.print()
        rows = [{**part, "job_id": f"{job['job_id']}@{part['partition']}"} for part in parts]
        console.print(status_text(rows, width=console.width, title="partitions"))
    if runs:
        console.print()
        console.print(history_table(runs, title="last runs (iterctl history for all)"))


def _detail_fields(job: dict[str, Any]) -> list[tuple[str, str]]:
    status = job["status"] + (
        " (holder gone: no live process holds it)" if job.get("holder_gone") else ""
    )
    fields = [
        ("job id", job["job_id"]),
        ("job", job["job"]),
        ("status", status),
        ("params", json.dumps(job["params"], sort_keys=True)),
        (
            "processed",
            _count(job["processed"])
            + (f" of {job['total']:,} ({_percent(job)})" if job["total"] else ""),
        ),
        ("failed items", _count(job.get("failed_items", 0))),
        ("rate", _rate(job.get("rate")) or "—"),
        ("ETA", _seconds(job.get("eta_seconds")) or "—"),
        ("elapsed", _seconds(job.get("elapsed_seconds"))),
        ("concurrency", str(job.get("concurrency", 1))),
        ("interrupted", f"{job['times_interrupted']:,} times"),
        ("cursor", json.dumps(job["cursor"]) if not job.get("partitions") else "one per partition"),
        ("holder", _holder(job)),
        ("created", job["created_at"]),
        ("updated", job["updated_at"]),
    ]
    if job.get("error"):
        fields.append(("error", job["error"]))
    return fields


def print_failures_table(job_id: str, records: list[FailureRecord], recorded: int) -> None:
    """``iterctl failures`` for people: one row per failed item, newest first."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 200))
    if not records:
        console.print(f"job {job_id} has no failed items recorded")
        return
    partitioned = any(record.partition for record in records)
    table = Table(title=f"failed items of job {job_id}")
    table.add_column("failed at (UTC)", no_wrap=True)
    if partitioned:
        table.add_column("partition", justify="right")
    table.add_column("cursor", overflow="fold")
    table.add_column("item", overflow="fold")
    table.add_column("error", overflow="fold")
    table.add_column("attempts", justify="right")
    for record in records:
        cells = [record.failed_at[:19].replace("T", " ")]
        if partitioned:
            cells.append(str(record.partition))
        first_line = record.message.splitlines()[0] if record.message else ""
        cells += [
            _short(json.loads(record.cursor_json)),
            record.item,
            f"{record.error_type}: {first_line}",
            str(record.attempts),
        ]
        table.add_row(*cells)
    console.print(table)
    if recorded > len(records):
        console.print(f"showing the newest {len(records):,} of {recorded:,} — --limit 0 shows all")


def _holder(job: dict[str, Any]) -> str:
    holder = job.get("holder") or "—"
    if job.get("holder_gone"):
        return f"{holder} (gone)"
    return holder if job["status"] == "running" else f"{holder} (last)"


def history_table(runs: list[dict[str, Any]], *, title: str | None = None) -> Any:
    """``iterctl history``: a row per process that ran the job id, newest first."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, title=title, pad_edge=False)
    table.add_column("run", justify="right", no_wrap=True)
    table.add_column("part", justify="right", no_wrap=True)
    for name in ("started (UTC)", "took", "host/pod", "pid", "outcome"):
        table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=24)
    table.add_column("exit", justify="right", no_wrap=True)
    table.add_column("items", justify="right", no_wrap=True)
    table.add_column("reason", overflow="ellipsis", no_wrap=True)
    for run in runs:
        table.add_row(
            str(run["run"]),
            str(run["partition"]),
            run["started_at"][:19].replace("T", " "),
            _run_took(run),
            run["pod"] or run["host"],
            str(run["pid"]),
            run["outcome"],
            "" if run["exit_code"] is None else str(run["exit_code"]),
            f"{run['items']:,}",
            run["reason"] or "",
            style="red" if run["outcome"] in ("lost", "failed") else None,
        )
    return table


def _run_took(run: dict[str, Any]) -> str:
    from datetime import datetime

    if run["ended_at"] is None:
        return ""
    took = datetime.fromisoformat(run["ended_at"]) - datetime.fromisoformat(run["started_at"])
    return _took(took.total_seconds())


def print_history(runs: list[dict[str, Any]], job_id: str) -> None:
    console = _console()
    if not runs:
        console.print(f"job {job_id} has no runs yet — start it with: iterctl resume {job_id}")
        return
    console.print(history_table(runs))


def watch_status(fetch: Callable[[], list[dict[str, Any]]], wait: Callable[[float], bool]) -> None:
    """``status --watch``: a live table, refreshed about once a second until ``wait`` says
    stop (Ctrl-C). Refuses off a terminal: there is nobody to watch it."""
    from rich.console import Console
    from rich.live import Live

    console = Console()
    if not console.is_terminal:
        from iterctl.errors import UsageError

        raise UsageError(
            "status --watch needs a terminal — in a script, poll `iterctl status --json`"
        )

    def render() -> Any:
        jobs = fetch()
        stamp = utc_now()[:19].replace("T", " ")
        title = f"iterctl status — {stamp} UTC — Ctrl-C to leave"
        return status_text(jobs, width=console.width, title=title)

    with Live(render(), console=console, auto_refresh=False, screen=False) as live:
        while not wait(WATCH_REFRESH_SECONDS):
            live.update(render(), refresh=True)


#: How often --watch reads the store again.
WATCH_REFRESH_SECONDS = 1.0
