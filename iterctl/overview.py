"""One view of a job id: a plain job's record, or the sum of a partitioned job's parts.

Every view (the table, the detail view, ``--json``, ``--watch``, ``history``) is built
here from the records plus the set of holds a live process has (``Store.live_holds``), so
they all agree: a record that says running while no live process holds it is shown as
interrupted, holder gone.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from iterctl.cursor import decode_cursor
from iterctl.stores.base import JobRecord, Records, Status, Store, first_line


def running_names(records: Records) -> list[str]:
    """The hold names whose records say running: the only ones a probe must ask about."""
    return [record.hold_name for record in records if record.status is Status.RUNNING]


def live_of(store: Store, records: Records) -> set[str]:
    """Which running records a live process holds now: one question to the store."""
    return store.live_holds(running_names(records))


def seen_status(record: JobRecord, live: Collection[str]) -> Status:
    """The record's status as it truly is: running only while a live process holds it."""
    if record.status is Status.RUNNING and record.hold_name not in live:
        return Status.INTERRUPTED
    return record.status


def holder_gone(record: JobRecord, live: Collection[str]) -> bool:
    """True when the record says running but its holder is gone (killed, session lost)."""
    return record.status is Status.RUNNING and record.hold_name not in live


def record_view(record: JobRecord, live: Collection[str]) -> dict[str, Any]:
    """One record's ``status --json`` object, as seen now."""
    status = seen_status(record, live)
    rate = record.rate if status is Status.RUNNING else None
    view = record.to_json()
    view.update(
        status=status.value,
        holder_gone=holder_gone(record, live),
        rate=rate,
        eta_seconds=_eta(record.total, record.processed, rate),
        error_line=first_line(record.error),
    )
    return view


def overall_status(statuses: Collection[Status]) -> Status:
    """A partitioned job succeeded only when every partition has; one cancelled or failed
    partition makes the job so; otherwise it runs while any part runs."""
    for status in (Status.CANCELLED, Status.FAILED, Status.RUNNING, Status.INTERRUPTED):
        if status in statuses:
            return status
    return Status.SUCCEEDED


def job_overview(records: Records, live: Collection[str] = ()) -> dict[str, Any]:
    """The ``status --json`` object of one job id (records: all its partitions, in order)."""
    first = records[0]
    if first.partitions == 1:
        return record_view(first, live)
    parts = [
        {**record_view(r, live), "partition": r.partition, "bounds": decode_cursor(r.bounds_json)}
        for r in records
    ]
    processed = sum(record.processed for record in records)
    totals = [record.total for record in records]
    total = None if None in totals else sum(t for t in totals if t is not None)
    rates = [part["rate"] for part in parts if part["rate"] is not None]
    rate = sum(rates) if rates else None
    errors = [f"partition {r.partition}: {r.error}" for r in records if r.error]
    return {
        "job_id": first.job_id,
        "job": first.job,
        "status": overall_status({Status(part["status"]) for part in parts}).value,
        "params": first.params,
        # One cursor per partition: each resumes on its own.
        "cursor": [decode_cursor(record.cursor_json) for record in records],
        "processed": processed,
        "total": total,
        "times_interrupted": sum(record.times_interrupted for record in records),
        # Failures are kept per partition; the job has all of them.
        "failed_items": sum(record.failed_items for record in records),
        "error": "; ".join(errors) or None,
        "error_line": first_line(errors[0]) if errors else None,
        "created_at": min(record.created_at for record in records),
        "updated_at": max(record.updated_at for record in records),
        "holder": None,
        "holder_gone": any(part["holder_gone"] for part in parts),
        "concurrency": first.concurrency,
        # The partitions run side by side: the job has run as long as its longest one.
        "elapsed_seconds": max(record.elapsed for record in records),
        # The running partitions' recent rates add up; the time left at that pace.
        "rate": rate,
        "eta_seconds": _eta(total, processed, rate),
        "partitions": parts,
    }


def _eta(total: int | None, processed: int, rate: float | None) -> float | None:
    if total is None or not rate or rate <= 0:
        return None
    return max(0.0, (total - processed) / rate)


def group_by_job(records: Records) -> list[Records]:
    """Records of a whole store, grouped per job id, first-created first."""
    groups: dict[str, Records] = {}
    for record in records:
        groups.setdefault(record.job_id, []).append(record)
    return [sorted(group, key=lambda r: r.partition) for group in groups.values()]


def store_overview(store: Store, job_id: str | None = None) -> list[dict[str, Any]]:
    """The views of every job in ``store`` (or of ``job_id``): two questions to the store,
    whatever the number of jobs and partitions: the records, then the live holds."""
    records = store.partitions(job_id) if job_id else store.list()
    live = live_of(store, records)
    return [job_overview(group, live) for group in group_by_job(records)]
