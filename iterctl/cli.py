"""The ``iterctl`` command: parse, call the core, map the outcome to an exit code.

This is the only module that imports typer. Every option can also be set through an
environment variable ``ITERCTL_<OPTION>``; a flag beats it (CONTRACT §2).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple, NoReturn

import typer
import typer.core

from iterctl.errors import ExitCode, IterctlError, NoStoreError
from iterctl.params import parse_param_pairs
from iterctl.runner import (
    DEFAULT_CHECKPOINT_INTERVAL,
    DEFAULT_PROGRESS_INTERVAL,
    RunResult,
    RunSettings,
)
from iterctl.stopping import (
    SignalWatcher,
    StopNow,
    StopToken,
    StopWaiting,
    signals_stop,
    wait_notice,
)
from iterctl.stores.base import Status, Store

if TYPE_CHECKING:  # report loads rich; the CLI imports it only where it prints
    from iterctl.report import BarReporter, LineReporter

app = typer.Typer(
    name="iterctl",
    help="Run long batch jobs that stop between two items and resume after the last one done.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import version

        sys.stdout.write(f"iterctl {version('iterctl')}\n")
        raise typer.Exit(0)


@app.callback()
def _options(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print iterctl's version and exit.",
        ),
    ] = False,
) -> None:
    """Run long batch jobs that stop between two items and resume after the last one done."""


#: Where Kubernetes reads a container's termination message from, by default.
KUBERNETES_TERMINATION_LOG = "/dev/termination-log"

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="ITERCTL_STORE",
        help="SQLAlchemy URL (sqlite:///x.db, postgresql+psycopg://…, mysql+pymysql://…) "
        "or a path ending in .json. Default: sqlite:///iterctl.db",
        show_default=False,
    ),
]
ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        envvar="ITERCTL_PARAM",
        help="A job parameter KEY=VALUE; repeat for more.",
        show_default=False,
    ),
]
CheckpointOption = Annotated[
    float,
    typer.Option(
        "--checkpoint-interval",
        envvar="ITERCTL_CHECKPOINT_INTERVAL",
        min=0,
        help="Seconds between checkpoints; 0 saves after every item. "
        "A SIGKILL redoes at most this much work.",
    ),
]
MaxRuntimeOption = Annotated[
    float | None,
    typer.Option(
        "--max-runtime",
        envvar="ITERCTL_MAX_RUNTIME",
        min=0,
        help="Stop (exit 75, resumable) after this many seconds.",
    ),
]
ProgressOption = Annotated[
    float,
    typer.Option(
        "--progress-interval",
        envvar="ITERCTL_PROGRESS_INTERVAL",
        min=0.01,
        help="Seconds between progress lines when not on a terminal.",
    ),
]
ConcurrencyOption = Annotated[
    int | None,
    typer.Option(
        "--concurrency",
        envvar="ITERCTL_CONCURRENCY",
        min=1,
        help="Items in progress at once: on threads, or as asyncio tasks for an async "
        "each_iteration. Kept with the job id. Default: the job id's, else 1.",
        show_default=False,
    ),
]


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


LogFormatOption = Annotated[
    LogFormat,
    typer.Option(
        "--log-format",
        envvar="ITERCTL_LOG_FORMAT",
        case_sensitive=False,
        help="Off a terminal: plain text lines, or one JSON object per line.",
    ),
]
TerminationLogOption = Annotated[
    str | None,
    typer.Option(
        "--termination-log",
        envvar="ITERCTL_TERMINATION_LOG",
        help=f"File for a one-line summary at exit. Default: {KUBERNETES_TERMINATION_LOG} "
        "when it is writable (Kubernetes shows it in `kubectl describe pod`).",
        show_default=False,
    ),
]
MetricsPortOption = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        envvar="ITERCTL_METRICS_PORT",
        min=1,
        max=65535,
        help="Serve Prometheus metrics on http://0.0.0.0:PORT/metrics while the job runs "
        "(needs prometheus-client: pip install 'iterctl[metrics]').",
        show_default=False,
    ),
]
LimitOption = Annotated[
    int | None,
    typer.Option(
        "--limit",
        envvar="ITERCTL_LIMIT",
        min=1,
        help="Process at most N items in this run, then stop as a resumable stop does "
        "(checkpoint, exit 75). Default: no limit.",
        show_default=False,
    ),
]
MaxFailuresOption = Annotated[
    str,
    typer.Option(
        "--max-failures",
        envvar="ITERCTL_MAX_FAILURES",
        help="Items that may fail (after their retries) and be recorded and passed over, "
        "across all runs of the job id: a count, or a percentage of the total (0.5%). "
        "One more ends the run with exit 1. 0: the first failure does.",
    ),
]
PartitionOption = Annotated[
    int | None,
    typer.Option(
        "--partition",
        # A Kubernetes Indexed Job gives each pod its index in JOB_COMPLETION_INDEX.
        envvar=["ITERCTL_PARTITION", "JOB_COMPLETION_INDEX"],
        min=0,
        help="Which partition this process runs (0 to N-1). Default: $JOB_COMPLETION_INDEX.",
        show_default=False,
    ),
]


class _RunCommand(typer.core.TyperCommand):
    """`run`: `--help` after MODULE:CLASS also shows the job's docstring and params."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if set(args) & set(ctx.help_option_names):
            try:  # only to find MODULE:CLASS; the real parse below reports any error
                found, _rest, _order = self.make_parser(ctx).parse_args(args=list(args))
            except typer.TyperException:
                found = {}
            ctx.meta["iterctl.job"] = found.get("job")
        return super().parse_args(ctx, args)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        super().format_help(ctx, formatter)
        job = ctx.meta.get("iterctl.job")
        if job:
            from iterctl.describing import describe_job

            formatter.write(f"\nThe job {describe_job(job)}\n")


@app.command(cls=_RunCommand)
def run(
    job: Annotated[str, typer.Argument(metavar="MODULE:CLASS", help="The Job class to run.")],
    job_id: Annotated[
        str | None,
        typer.Option(
            "--job-id",
            envvar="ITERCTL_JOB_ID",
            help="Id to run under; an existing id of the same job and params resumes it. "
            "Default: a new id, printed on stdout.",
            show_default=False,
        ),
    ] = None,
    param: ParamOption = None,
    store: StoreOption = None,
    checkpoint_interval: CheckpointOption = DEFAULT_CHECKPOINT_INTERVAL,
    max_runtime: MaxRuntimeOption = None,
    progress_interval: ProgressOption = DEFAULT_PROGRESS_INTERVAL,
    limit: LimitOption = None,
    concurrency: ConcurrencyOption = None,
    log_format: LogFormatOption = LogFormat.TEXT,
    termination_log: TerminationLogOption = None,
    partitions: Annotated[
        int,
        typer.Option(
            "--partitions",
            envvar="ITERCTL_PARTITIONS",
            min=1,
            help="Split the job into N partitions, each run by its own process; the split "
            "is computed once, when the job id is created.",
        ),
    ] = 1,
    partition: PartitionOption = None,
    metrics_port: MetricsPortOption = None,
    max_failures: MaxFailuresOption = "0",
) -> None:
    """Run MODULE:CLASS from the start, or from where the job id stopped."""
    from iterctl.launch import run_job

    _run_and_exit(
        lambda token, reporter, settings: run_job(
            job_path=job,
            job_id=job_id,
            raw_params=parse_param_pairs(param or []),
            store_location=store,
            settings=settings,
            token=token,
            reporter=reporter,
            announce_id=_announcer(reporter),
            partitions=partitions,
            partition=partition,
        ),
        log_format=log_format,
        pacing=Pacing(checkpoint_interval, progress_interval, max_runtime, limit, concurrency),
        termination_log=termination_log,
        metrics_port=metrics_port,
        job_id=job_id,
        max_failures=max_failures,
    )


@app.command()
def resume(
    job_id: Annotated[str, typer.Argument(metavar="JOB_ID", help="The job id to carry on.")],
    store: StoreOption = None,
    checkpoint_interval: CheckpointOption = DEFAULT_CHECKPOINT_INTERVAL,
    max_runtime: MaxRuntimeOption = None,
    progress_interval: ProgressOption = DEFAULT_PROGRESS_INTERVAL,
    limit: LimitOption = None,
    concurrency: ConcurrencyOption = None,
    log_format: LogFormatOption = LogFormat.TEXT,
    termination_log: TerminationLogOption = None,
    partition: PartitionOption = None,
    metrics_port: MetricsPortOption = None,
    max_failures: MaxFailuresOption = "0",
) -> None:
    """Carry on with JOB_ID after its last completed item, with the params it started with."""
    from iterctl.launch import resume_job

    _run_and_exit(
        lambda token, reporter, settings: resume_job(
            job_id=job_id,
            store_location=store,
            settings=settings,
            token=token,
            reporter=reporter,
            partition=partition,
        ),
        log_format=log_format,
        pacing=Pacing(checkpoint_interval, progress_interval, max_runtime, limit, concurrency),
        termination_log=termination_log,
        metrics_port=metrics_port,
        job_id=job_id,
        max_failures=max_failures,
    )


@app.command()
def status(
    job_id: Annotated[
        str | None, typer.Argument(metavar="[JOB_ID]", help="One job id; default: all.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (an object for one id, else an array).")
    ] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="A live table, refreshed every second; Ctrl-C ends.")
    ] = False,
    only: Annotated[
        list[Status] | None,
        typer.Option(
            "--status",
            case_sensitive=False,
            help="Only jobs with this status; repeat for more.",
            show_default=False,
        ),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Show jobs: status, progress, rate, ETA, errors; one JOB_ID in detail."""
    from iterctl.overview import store_overview

    wanted = {status.value for status in only or ()}
    opened = _reading_store(job_id, store)
    try:
        if watch:
            from iterctl.report import watch_status

            watch_status(lambda: _filtered(store_overview(opened, job_id), wanted), _stopped)
            return
        jobs = _filtered(store_overview(opened, job_id), wanted)
        runs = _history(opened, job_id, _DETAIL_RUNS) if job_id and not as_json else []
    finally:
        opened.close()
    if as_json:
        sys.stdout.write(_json_view(jobs[0] if job_id else jobs))
        return
    from iterctl.report import print_job_detail, print_status_table

    if job_id:
        print_job_detail(jobs[0], runs)
    else:
        print_status_table(jobs)


def _json_view(view: object) -> str:
    """One object indented; an array with one object per line. (An indented dump runs
    json's pure-Python encoder: half a second for 10,000 jobs, against 50 ms this way.)"""
    if not isinstance(view, list):
        return json.dumps(view, indent=2) + "\n"
    if not view:
        return "[]\n"
    return "[\n" + ",\n".join(json.dumps(item) for item in view) + "\n]\n"


#: Runs shown under `status JOB_ID`.
_DETAIL_RUNS = 5


def _reading_store(job_id: str | None, store: str | None, *, read_only: bool = True) -> Store:
    """The store to read (or, with ``read_only=False``, change), never created here."""
    from iterctl.launch import get_record, open_store_of
    from iterctl.stores import open_store
    from iterctl.stores.memory import MemoryStore

    if job_id:
        opened = open_store_of(job_id, store, read_only=read_only)
        try:
            get_record(opened, job_id)
        except BaseException:
            opened.close()
            raise
        return opened
    try:
        return open_store(store, create=False, read_only=read_only)
    except NoStoreError:
        return MemoryStore()  # no store yet: no jobs to show


def _filtered(jobs: list[dict[str, object]], wanted: set[str]) -> list[dict[str, object]]:
    return [job for job in jobs if job["status"] in wanted] if wanted else jobs


def _stopped(seconds: float) -> bool:
    """Wait up to ``seconds``; True once Ctrl-C (or SIGTERM) asked to leave."""
    return _process_token.wait(seconds)


def _history(opened: Store, job_id: str, limit: int | None) -> list[dict[str, object]]:
    """Runs newest first, a run left open by a dead process shown as lost."""
    from iterctl.stores.base import as_seen, hold_name

    runs = opened.runs(job_id, limit)
    open_names = {hold_name(r.job_id, r.partition) for r in runs if r.ended_at is None}
    live = opened.live_holds(open_names)
    return [as_seen(run, live).to_json() for run in runs]


#: Rows of `history` without --limit (a job of 1,000 partitions keeps up to 50,000 runs).
_HISTORY_ROWS = 100


@app.command()
def history(
    job_id: Annotated[str, typer.Argument(metavar="JOB_ID", help="The job id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=1,
            help=f"Only the newest N runs. Default: all with --json, {_HISTORY_ROWS} in the table.",
            show_default=False,
        ),
    ] = None,
    store: StoreOption = None,
) -> None:
    """One row per process that ran JOB_ID: start, end, host, pid, outcome, items."""
    opened = _reading_store(job_id, store)
    shown = limit or (None if as_json else _HISTORY_ROWS)
    try:
        runs = _history(opened, job_id, shown)
    finally:
        opened.close()
    if as_json:
        sys.stdout.write(_json_view(runs))
        return
    from iterctl.report import print_history

    print_history(runs, job_id)
    if limit is None and len(runs) == _HISTORY_ROWS:
        _say(f"the newest {_HISTORY_ROWS} runs; --limit N or --json for more")


@app.command()
def delete(
    job_id: Annotated[str, typer.Argument(metavar="JOB_ID", help="The job id to delete.")],
    store: StoreOption = None,
) -> None:
    """Remove JOB_ID and everything kept for it; refused (exit 75) while it runs."""
    opened = _reading_store(job_id, store, read_only=False)
    try:
        removed = opened.delete(job_id)
    finally:
        opened.close()
    parts = f"{removed} partition records" if removed > 1 else "its record"
    _say(f"deleted job {job_id}: {parts}, its run history and failure records")


@app.command()
def cancel(
    job_id: Annotated[str, typer.Argument(metavar="JOB_ID", help="The job id to cancel.")],
    store: StoreOption = None,
) -> None:
    """Cancel JOB_ID for good; a running process stops at its next checkpoint (exit 3)."""
    from iterctl.launch import get_record, open_store_of
    from iterctl.stores.base import Status

    opened = open_store_of(job_id, store)
    try:
        get_record(opened, job_id)
        record = opened.cancel(job_id)
    finally:
        opened.close()
    if record.status is Status.CANCELLED:
        _say(f"cancelled job {job_id}; a running process stops at its next checkpoint (exit 3)")
    else:
        _say(f"job {job_id} already {record.status.value}; nothing to cancel")


@app.command()
def check(
    job: Annotated[str, typer.Argument(metavar="MODULE:CLASS", help="The Job class to check.")],
    param: ParamOption = None,
    # Defaults live in iterctl.checking (2000 and 50), which loads only when check runs.
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            envvar="ITERCTL_LIMIT",
            min=1,
            help="Read the first N pairs of the walk. Default: 2000.",
            show_default=False,
        ),
    ] = None,
    samples: Annotated[
        int | None,
        typer.Option(
            "--samples",
            envvar="ITERCTL_SAMPLES",
            min=1,
            help="Resume from K cursors: the first, the last and a spread between. Default: 50.",
            show_default=False,
        ),
    ] = None,
    partitions: Annotated[
        int | None,
        typer.Option(
            "--partitions",
            envvar="ITERCTL_PARTITIONS",
            min=1,
            help="Also check that P partitions cover the walk once, and resume within bounds.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check that MODULE:CLASS resumes from its cursors as the contract says, without
    running each_iteration: exit 0 when it does, 1 when it does not."""
    from iterctl.checking import check_path

    given = {"limit": limit, "samples": samples, "partitions": partitions}
    options = {name: value for name, value in given.items() if value is not None}
    report = check_path(job, parse_param_pairs(param or []), **options)
    sys.stdout.write("\n".join(report.lines()) + "\n")
    raise typer.Exit(int(report.exit_code))


@app.command()
def describe(
    job: Annotated[str, typer.Argument(metavar="MODULE:CLASS", help="The Job class.")],
) -> None:
    """Show what MODULE:CLASS does and the --param values it takes."""
    from iterctl.describing import describe_job

    sys.stdout.write(describe_job(job) + "\n")


@app.command()
def failures(
    job_id: Annotated[str, typer.Argument(metavar="JOB_ID", help="The job id.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON array of the records.")
    ] = False,
    limit: Annotated[
        int,
        typer.Option("--limit", min=0, help="Show at most N records, newest first; 0: all."),
    ] = 100,
    store: StoreOption = None,
) -> None:
    """List the items of JOB_ID recorded as failed and passed over, newest first."""
    from iterctl.launch import get_record, open_store_of

    opened = open_store_of(job_id, store)
    try:
        get_record(opened, job_id)
        found = opened.failures(job_id, limit or None)
        recorded = sum(record.failed_items for record in opened.partitions(job_id))
    finally:
        opened.close()
    if as_json:
        sys.stdout.write(json.dumps([record.to_json() for record in found], indent=2) + "\n")
    else:
        from iterctl.report import print_failures_table

        print_failures_table(job_id, found, recorded)


@app.command("retry-failed")
def retry_failed(
    job_id: Annotated[str, typer.Argument(metavar="JOB_ID", help="The job id.")],
    store: StoreOption = None,
    log_format: LogFormatOption = LogFormat.TEXT,
    termination_log: TerminationLogOption = None,
) -> None:
    """Run again only the items of JOB_ID recorded as failed: successes drop their record."""
    from iterctl.rerun import retry_failed as retry

    _run_and_exit(
        lambda token, reporter, _settings: retry(
            job_id=job_id, store_location=store, token=token, reporter=reporter
        ),
        log_format=log_format,
        pacing=Pacing(DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_PROGRESS_INTERVAL, None, None, None),
        termination_log=termination_log,
        job_id=job_id,
    )


# -- helpers ----------------------------------------------------------------------------


class Pacing(NamedTuple):
    """The options of `run` and `resume` that say how a run paces and ends itself."""

    checkpoint_interval: float
    progress_interval: float
    max_runtime: float | None
    limit: int | None
    concurrency: int | None


def _run_and_exit(
    start: Callable[[StopToken, LineReporter | BarReporter, RunSettings], RunResult],
    *,
    log_format: LogFormat,
    pacing: Pacing,
    termination_log: str | None,
    metrics_port: int | None = None,
    job_id: str | None,
    max_failures: str = "0",
) -> NoReturn:
    """What `run`, `resume` and `retry-failed` share: signals, reporter and pacing around
    the core call."""
    from iterctl.budget import FailureBudget
    from iterctl.report import make_reporter

    budget = FailureBudget.parse(max_failures)  # bad input: exit 2 before any work
    token = _process_token
    # Before any job code runs, its import included; kept to the end, as we exit after it.
    with signals_stop(token, restore=False):
        reporter, bar_interval = make_reporter(log_format.value, job_id)
        settings = RunSettings(
            checkpoint_interval=pacing.checkpoint_interval,
            # On a terminal the bar wants a few updates a second, whatever the option says.
            progress_interval=bar_interval or pacing.progress_interval,
            max_runtime=pacing.max_runtime,
            limit=pacing.limit,
            metrics_port=metrics_port,
            max_failures=budget,
            concurrency=pacing.concurrency,
        )
        # The watcher says what each stop signal does, as it arrives (CONTRACT §5).
        with SignalWatcher(token, reporter.signal_received):
            result = start(token, reporter, settings)
    _exit_with(result, termination_log)


def _announcer(reporter: LineReporter | BarReporter) -> Callable[[str], None]:
    """The new job id goes to stdout, so `ID=$(iterctl run …)` works; the reporter learns it
    too, so that a stop signal before the start line already names the job."""

    def announce(job_id: str) -> None:
        sys.stdout.write(job_id + "\n")
        sys.stdout.flush()
        reporter.job_named(job_id)

    return announce


def _say(message: str, **fields: object) -> None:
    if _wants_json_logs():
        from iterctl.stores.base import utc_now

        line = json.dumps({"time": utc_now(), "event": "message", "message": message, **fields})
    else:
        from iterctl.report import escape_controls

        line = escape_controls(f"iterctl: {message}")
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _wants_json_logs() -> bool:
    """Whether --log-format json (or its variable) is in force, even when parsing failed:
    a log pipeline that asked for JSON should get its errors as JSON too."""
    args = sys.argv[1:]
    for index, arg in enumerate(args):
        if arg == "--log-format=json" or (
            arg == "--log-format" and args[index + 1 :][:1] == ["json"]
        ):
            return True
        if arg.startswith("--log-format"):
            return False
    return os.environ.get("ITERCTL_LOG_FORMAT", "").lower() == "json"


def _exit_with(result: RunResult, termination_log: str | None) -> NoReturn:
    if result.reason == "already succeeded":
        from iterctl.report import describe_result

        _say(describe_result(result))
    _write_termination_message(result, termination_log)
    if result.abandoned:
        # A second SIGINT left items running on worker threads, which cannot be killed and
        # which Python would wait for at exit: the checkpoint is saved, so leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(result.exit_code))
    raise typer.Exit(int(result.exit_code))


def _write_termination_message(result: RunResult, path: str | None) -> None:
    """A one-line summary where Kubernetes looks, so `kubectl describe` says why it ended."""
    target = path or KUBERNETES_TERMINATION_LOG
    if path is None and not os.access(target, os.W_OK):
        return
    summary = json.dumps(
        {
            "job_id": result.job_id,
            "outcome": result.outcome.name.lower(),
            "exit_code": int(result.exit_code),
            "processed": result.processed,
            "cursor": result.cursor,
            "reason": result.reason,
            # How much work a SIGKILL now would redo.
            "checkpoint_age_seconds": None
            if result.checkpoint_age is None
            else round(result.checkpoint_age, 3),
            "failed_items": result.failed_items,
        }
    )
    try:
        with open(target, "w", encoding="utf-8") as file:
            file.write(summary + "\n")
    except OSError as error:
        _say(f"could not write the termination message to {target}: {error.strerror}")


#: Stop requests since the process began (see iterctl.entry); a fresh one when embedded.
_process_token = StopToken()


def main(token: StopToken | None = None) -> NoReturn:
    """Entry point: one line per error, CONTRACT §3's exit codes, no traceback for bad input."""
    global _process_token  # noqa: PLW0603 - one token per process, set once, here
    if token is not None:
        _process_token = token
    wait_notice[0] = _say
    command = typer.main.get_command(app)
    try:
        code = command.main(sys.argv[1:], prog_name="iterctl", standalone_mode=False)
    except typer.TyperException as error:  # Typer's usage errors: unknown option, missing argument…
        message = error.format_message()
        if "\n" in message:  # `iterctl` alone: the help text itself
            sys.stderr.write(message + "\n")
        else:
            context = getattr(error, "ctx", None)
            where = context.command_path if context is not None else "iterctl"
            # Click ends its sentences with a period; ours go on: "… — see `… --help`".
            _say(f"{message.rstrip('.')} — see `{where} --help`", exit_code=int(ExitCode.USAGE))
        code = ExitCode.USAGE
    except typer.Abort:
        code = ExitCode.RESUMABLE
    except IterctlError as error:
        if error.details and not _wants_json_logs():
            sys.stderr.write(error.details)
        details = {"traceback": error.details} if error.details else {}
        _say(str(error), exit_code=int(error.exit_code), **details)
        code = error.exit_code
    except StopWaiting as stopped:
        _say(
            f"stopped by {stopped.reason} while waiting for the store; nothing was changed — "
            "run the same command again",
            exit_code=int(ExitCode.RESUMABLE),
        )
        code = ExitCode.RESUMABLE
    except StopNow:
        _say("stopped at once by a second SIGINT", exit_code=int(ExitCode.RESUMABLE))
        code = ExitCode.RESUMABLE
    sys.exit(int(code or 0))
