"""From what the user typed to a running job: match or create the record, take the hold.

``run`` and ``resume`` differ only in where the job class and params come from; both end
in :func:`_launch`, which is where CONTRACT §2's "the same command resumes" rule lives.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from iterctl.cursor import decode_cursor, encode_cursor
from iterctl.errors import IterctlError, JobCancelledError, JobHeldError, NoStoreError, UsageError
from iterctl.job import Job, Partition
from iterctl.loading import load_job_class
from iterctl.params import build_params, param_values
from iterctl.retrying import policy_of
from iterctl.runner import Outcome, Reporter, Runner, RunResult, RunSettings
from iterctl.runstats import RunStats
from iterctl.stopping import StopToken
from iterctl.stores import DEFAULT_STORE, open_store
from iterctl.stores.base import (
    CoupledWrites,
    Hold,
    JobRecord,
    RunEnd,
    RunOutcome,
    Status,
    Store,
    check_job_id,
    first_line,
)


def run_job(
    *,
    job_path: str,
    job_id: str | None,
    raw_params: dict[str, str],
    store_location: str | None,
    settings: RunSettings,
    token: StopToken,
    reporter: Reporter,
    announce_id: Callable[[str], None],
    partitions: int = 1,
    partition: int | None = None,
    job_class: type[Job] | None = None,
    store: Store | None = None,
) -> RunResult:
    """``iterctl run``: start a new job id, or carry on with an existing one.

    With ``partitions`` > 1 this process runs partition ``partition`` of the job; the
    first process to create the job id computes and stores the plan for all of them.
    ``job_class`` and ``store``, when given (:mod:`iterctl.testing`), stand for loading
    ``job_path`` and opening ``store_location``; a store given is left open.
    """
    if job_id is not None:
        check_job_id(job_id)
    index = _check_partition_index(partition, partitions)
    with token.interrupting():  # the job's module runs its own code as it imports
        job_class = job_class or load_job_class(job_path)
    params = build_params(job_class, raw_params)
    opened = store is None
    # What the job sees as self.store_location: the --store given, or the store handed in.
    location = store_location or (DEFAULT_STORE if store is None else store.display_name)
    store = open_store(store_location) if store is None else store
    try:
        new_id = job_id is None
        if job_id is None:
            job_id = f"{job_class.__name__.lower()}-{secrets.token_hex(4)}"
        job = job_class(params, job_id=job_id, stop_token=token, store_location=location)
        _check_coupling(job, store, settings.concurrency or 1, partitions)  # before any write
        policy_of(job)  # a retry_on or max_attempts that makes no sense: refused, nothing written
        if new_id:
            announce_id(job_id)
        records = store.partitions(job_id)
        if not records:
            planned = _plan(job, partitions)
            new = [
                JobRecord(
                    job_id,
                    job_path,
                    dict(raw_params),
                    # Partitions that no process runs yet wait, resumable, as if stopped.
                    status=Status.RUNNING if i == index else Status.INTERRUPTED,
                    partition=i,
                    partitions=partitions,
                    bounds_json=bounds,
                    concurrency=settings.concurrency or 1,
                )
                for i, bounds in enumerate(planned)
            ]
            records, _created = store.create_partitions(new)
        _check_same_job(records[0], job_path, job_class, raw_params)
        _check_same_plan(records, partitions)
        return _launch(
            store, records[index], job_class, params, settings, token, reporter, location
        )
    finally:
        if opened:
            store.close()


def resume_job(
    *,
    job_id: str,
    store_location: str | None,
    settings: RunSettings,
    token: StopToken,
    reporter: Reporter,
    partition: int | None = None,
    job_class: type[Job] | None = None,
    store: Store | None = None,
) -> RunResult:
    """``iterctl resume``: carry on with the job and params recorded for ``job_id``
    (``job_class`` and ``store`` as for :func:`run_job`)."""
    opened = store is None
    store = open_store_of(job_id, store_location) if store is None else store
    try:
        records = store.partitions(job_id)
        if not records:
            get_record(store, job_id)  # raises: unknown job id
        if records[0].partitions > 1 and partition is None:
            raise UsageError(
                f"job {job_id} runs as {records[0].partitions} partitions — "
                f"give the one to resume with --partition I (0 to {records[0].partitions - 1})"
            )
        record = records[_check_partition_index(partition, records[0].partitions)]
        with token.interrupting():
            job_class = job_class or load_job_class(record.job)
        params = build_params(job_class, record.params)
        location = store_location or store.display_name
        return _launch(store, record, job_class, params, settings, token, reporter, location)
    finally:
        if opened:
            store.close()


def open_store_of(job_id: str, store_location: str | None, *, read_only: bool = False) -> Store:
    """The store that should hold ``job_id``; never creates one just to say it isn't there."""
    check_job_id(job_id)
    try:
        return open_store(store_location, create=False, read_only=read_only)
    except NoStoreError as error:
        raise NoStoreError(f"unknown job id {job_id!r}: {error}") from None


def get_record(store: Store, job_id: str) -> JobRecord:
    """The record of ``job_id``, or a usage error that says how to find the right one."""
    record = store.get(check_job_id(job_id))
    if record is None:
        raise UsageError(
            f"unknown job id {job_id!r} in {store.display_name} — "
            "`iterctl status` lists the job ids it holds (is --store the same as at run?)"
        )
    return record


def _check_same_job(
    record: JobRecord, job_path: str, job_class: type[Job], raw_params: dict[str, str]
) -> None:
    """Refuse to resume a job id with another class or other params: say what differs.

    Params are compared as the job would see them (validated by its model, defaults
    filled in), so ``--param batch=100`` matches a first run that relied on the default 100.
    """
    differences = []
    stored_params, given_params = record.params, raw_params
    if record.job != job_path:
        differences.append(f"its job is {record.job}, not {job_path}")
    else:
        # Params stored under an older version of the model may no longer validate: then
        # the strings are all there is to compare.
        with suppress(UsageError):
            stored_params, given_params = (
                param_values(job_class, record.params),
                param_values(job_class, raw_params),
            )
    for key in sorted(stored_params.keys() | given_params.keys()):
        stored, given = stored_params.get(key), given_params.get(key)
        if stored != given:
            differences.append(f"param {key}: stored {stored!r}, given {given!r}")
    if differences:
        raise UsageError(
            f"job id {record.job_id} exists with different settings ({'; '.join(differences)})"
            f" — use `iterctl resume {record.job_id}`, or another --job-id"
        )


def _check_partition_index(partition: int | None, partitions: int) -> int:
    if partitions < 1:
        raise UsageError(f"--partitions must be at least 1, not {partitions}")
    index = 0 if partition is None else partition
    if partitions > 1 and partition is None:
        raise UsageError(
            f"which of the {partitions} partitions should this process run? — give "
            "--partition I, or run it as a Kubernetes Indexed Job (JOB_COMPLETION_INDEX)"
        )
    if not 0 <= index < partitions:
        raise UsageError(
            f"partition {index} does not exist: a job of {partitions} partitions has "
            f"partitions 0 to {partitions - 1} — give --partition 0 to {partitions - 1}"
        )
    return index


def _plan(job: Job, partitions: int) -> list[str | None]:
    """Each partition's bounds as JSON text, computed once, by the process that creates
    the job id, and stored so that restarts and late pods all see the same split."""
    if partitions == 1:
        return [None]
    bounds = job.partition_plan(partitions)
    if len(bounds) != partitions:
        raise UsageError(
            f"{type(job).__name__}.partition_plan({partitions}) gave {len(bounds)} bounds — "
            f"it must give exactly one per partition"
        )
    return [encode_cursor(bound, f"{type(job).__name__}.partition_plan") for bound in bounds]


def _check_same_plan(records: list[JobRecord], partitions: int) -> None:
    planned = records[0].partitions
    if planned != partitions:
        raise UsageError(
            f"job id {records[0].job_id} was planned as {planned} partition(s), not "
            f"{partitions}: a job's split is fixed when it starts — run it with "
            f"--partitions {planned}, or start a new --job-id"
        )


def _launch(
    store: Store,
    record: JobRecord,
    job_class: type[Job],
    params: Any,
    settings: RunSettings,
    token: StopToken,
    reporter: Reporter,
    store_location: str,
) -> RunResult:
    partition = None
    if record.partitions > 1:
        bounds = decode_cursor(record.bounds_json)
        partition = Partition(record.partition, record.partitions, bounds)
    job = job_class(
        params,
        job_id=record.job_id,
        stop_token=token,
        partition=partition,
        store_location=store_location,
    )
    concurrency = settings.concurrency or record.concurrency  # as the Runner decides it
    coupling = _check_coupling(job, store, concurrency, record.partitions)
    if coupling and record.done_json is not None:
        raise UsageError(
            f"{type(job).__name__} sets coupled_writes, but job {record.job_id} holds items "
            "done out of order by an earlier --concurrency run — finish it without "
            "coupled_writes first"
        )
    done = _already_ended(record)
    if done is not None:
        _finish_all_complete(store, job)
        return done
    hold = _acquire(store, record)
    stop_metrics = None
    try:
        done = _already_ended(hold.record)  # it may have ended while we took the hold
        if done is not None:
            _finish_all_complete(store, job)
            return done
        stats = RunStats(hold.record)
        if settings.metrics_port is not None:
            from iterctl.metrics import serve_metrics

            stop_metrics = serve_metrics(settings.metrics_port, stats)
        runner = Runner(
            job,
            store,
            hold,
            token=token,
            reporter=reporter,
            settings=settings,
            first_run=hold.fence == 1,  # the fence counts acquisitions: 1 is the first run
            stats=stats,
            coupled=_couple(store, hold) if coupling else None,
        )
        result = runner.run()
        _record_run_end(store, hold, result, record.job)
        return result
    finally:
        if stop_metrics is not None:
            stop_metrics()
        store.release(hold)


_RUN_OUTCOMES = {
    Outcome.SUCCEEDED: RunOutcome.SUCCEEDED,
    Outcome.FAILED: RunOutcome.FAILED,
    Outcome.REFUSED: RunOutcome.REFUSED,
    Outcome.CANCELLED: RunOutcome.CANCELLED,
    Outcome.STORE_UNAVAILABLE: RunOutcome.UNAVAILABLE,
    Outcome.STOPPED: RunOutcome.STOPPED,
}


def _record_run_end(store: Store, hold: Hold, result: RunResult, job: str) -> None:
    """The run's history row says how it ended; if the store cannot take even that, the
    row stays open and is shown as lost, which is what it then is."""
    reason = result.reason
    if reason is None and result.error is not None:
        reason = first_line(f"{type(result.error).__name__}: {result.error}")
    try:
        cursor_json = encode_cursor(result.cursor, job)
        end = RunEnd(
            _RUN_OUTCOMES[result.outcome],
            int(result.exit_code),
            reason,
            result.processed,
            cursor_json,
        )
        store.end_run(hold, end)
    except IterctlError:
        pass


def _acquire(store: Store, record: JobRecord) -> Hold:
    """Take the hold; a partition that another process runs is named as a partition."""
    try:
        return store.acquire(record.job_id, record.partition)
    except JobHeldError:
        if record.partitions == 1:
            raise
        # The holder wrote its name into the record when it took the hold.
        current = store.partitions(record.job_id)[record.partition]
        holder = current.holder or "another process"
        raise JobHeldError(
            f"partition {record.partition} of job {record.job_id} is already running "
            f"({holder}) — wait for it to stop, or run another of its {record.partitions} "
            "partitions (--partition I); this process changed nothing"
        ) from None


def _check_coupling(job: Job, store: Store, concurrency: int, partitions: int) -> bool:
    """Whether the job's writes commit with its checkpoints; refuse what cannot work."""
    if not job.coupled_writes:
        return False
    name = type(job).__name__
    if not callable(getattr(store, "couple", None)):
        raise UsageError(
            f"{name} sets coupled_writes, so its writes commit in the checkpoint's "
            f"transaction, which needs an SQL store, not {store.display_name} — run it with "
            "--store set to the database it writes to (sqlite:///FILE.db, "
            "postgresql+psycopg://…, mysql+pymysql://…)"
        )
    if inspect.iscoroutinefunction(inspect.unwrap(job.each_iteration)):
        raise UsageError(
            f"{name} sets coupled_writes, which needs a plain each_iteration: an async one "
            "runs on an event loop, where a savepoint per item cannot be kept in order — "
            "make each_iteration a plain def, or drop coupled_writes"
        )
    if concurrency > 1:
        raise UsageError(
            f"{name} sets coupled_writes, which cannot run with --concurrency "
            f"{concurrency}: its writes and its cursor commit in one transaction on "
            "one session — use --concurrency 1, or --partitions N on PostgreSQL or MySQL"
        )
    if partitions > 1 and getattr(store, "single_writer", False):
        raise UsageError(
            f"{name} sets coupled_writes, and a coupled run on SQLite holds the file's only "
            "write lock for a whole checkpoint interval, so its partitions would wait on "
            "each other — run the partitions on a PostgreSQL or MySQL store"
        )
    return True


def _couple(store: Store, hold: Hold) -> CoupledWrites:
    coupled: CoupledWrites = store.couple(hold)  # type: ignore[attr-defined]
    return coupled


def _finish_all_complete(store: Store, job: Job) -> None:
    """Run on_all_complete if the whole job is done and nobody has run it yet: a process
    killed between saving its success and claiming the hook leaves it to the next one."""
    if store.claim_all_complete(job.job_id):
        job.on_all_complete()


def _already_ended(record: JobRecord) -> RunResult | None:
    """A succeeded job does nothing (exit 0); a cancelled one must never run again."""
    if record.status is Status.CANCELLED:
        raise JobCancelledError(
            f"job {record.job_id} was cancelled and will not run again — "
            "start a new job id to run it anew"
        )
    if record.status is Status.SUCCEEDED:
        return RunResult(
            record.job_id,
            Outcome.SUCCEEDED,
            record.processed,
            decode_cursor(record.cursor_json),
            reason="already succeeded",
            partition=f"{record.partition}/{record.partitions}" if record.partitions > 1 else None,
            failed_items=record.failed_items,
        )
    return None
