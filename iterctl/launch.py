"""From what the user typed to a running job: match or create the record, take the hold.

``run`` and ``resume`` differ only in where the job class and params come from; both end
in :func:`_launch`, which is where CONTRACT §2's "the same command resumes" rule lives.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from iterctl.cursor import decode_cursor
from iterctl.errors import JobCancelledError, NoStoreError, UsageError
from iterctl.job import Job
from iterctl.loading import load_job_class
from iterctl.params import build_params
from iterctl.runner import Outcome, Reporter, Runner, RunResult, RunSettings
from iterctl.stopping import StopToken
from iterctl.stores import open_store
from iterctl.stores.base import JobRecord, Status, Store, check_job_id


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
) -> RunResult:
    """``iterctl run``: start a new job id, or carry on with an existing one."""
    if job_id is not None:
        check_job_id(job_id)
    job_class = load_job_class(job_path)
    params = build_params(job_class, raw_params)
    store = open_store(store_location)
    try:
        if job_id is None:
            job_id = f"{job_class.__name__.lower()}-{secrets.token_hex(4)}"
            announce_id(job_id)
        record, created = store.create(JobRecord(job_id, job_path, dict(raw_params)))
        if not created:
            _check_same_job(record, job_path, raw_params)
        return _launch(store, record, job_class, params, settings, token, reporter)
    finally:
        store.close()


def resume_job(
    *,
    job_id: str,
    store_location: str | None,
    settings: RunSettings,
    token: StopToken,
    reporter: Reporter,
) -> RunResult:
    """``iterctl resume``: carry on with the job and params recorded for ``job_id``."""
    store = open_store_of(job_id, store_location)
    try:
        record = get_record(store, job_id)
        job_class = load_job_class(record.job)
        params = build_params(job_class, record.params)
        return _launch(store, record, job_class, params, settings, token, reporter)
    finally:
        store.close()


def open_store_of(job_id: str, store_location: str | None) -> Store:
    """The store that should hold ``job_id``; never creates one just to say it isn't there."""
    check_job_id(job_id)
    try:
        return open_store(store_location, create=False)
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


def _check_same_job(record: JobRecord, job_path: str, raw_params: dict[str, str]) -> None:
    """Refuse to resume a job id with another class or other params: say what differs."""
    differences = []
    if record.job != job_path:
        differences.append(f"its job is {record.job}, not {job_path}")
    for key in sorted(record.params.keys() | raw_params.keys()):
        stored, given = record.params.get(key), raw_params.get(key)
        if stored != given:
            differences.append(f"param {key}: stored {stored!r}, given {given!r}")
    if differences:
        raise UsageError(
            f"job id {record.job_id} exists with different settings ({'; '.join(differences)})"
            f" — use `iterctl resume {record.job_id}`, or another --job-id"
        )


def _launch(
    store: Store,
    record: JobRecord,
    job_class: type[Job],
    params: Any,
    settings: RunSettings,
    token: StopToken,
    reporter: Reporter,
) -> RunResult:
    done = _already_ended(record)
    if done is not None:
        return done
    job = job_class(params, job_id=record.job_id, stop_token=token)
    hold = store.acquire(record.job_id)
    try:
        done = _already_ended(hold.record)  # it may have ended while we took the hold
        if done is not None:
            return done
        runner = Runner(
            job,
            store,
            hold,
            token=token,
            reporter=reporter,
            settings=settings,
            first_run=hold.fence == 1,  # the fence counts acquisitions: 1 is the first run
        )
        return runner.run()
    finally:
        store.release(hold)


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
        )
    return None
