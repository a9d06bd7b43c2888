"""One view of a job id: a plain job's record, or the sum of a partitioned job's parts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from iterctl.cursor import decode_cursor
from iterctl.stores.base import JobRecord, Status


def overall_status(records: list[JobRecord]) -> Status:
    """A partitioned job succeeded only when every partition has; one cancelled or failed
    partition makes the job so; otherwise it runs while any part runs."""
    statuses = {record.status for record in records}
    for status in (Status.CANCELLED, Status.FAILED, Status.RUNNING, Status.INTERRUPTED):
        if status in statuses:
            return status
    return Status.SUCCEEDED


def job_overview(records: list[JobRecord]) -> dict[str, Any]:
    """The ``status --json`` object of one job id (records: all its partitions, in order)."""
    first = records[0]
    if first.partitions == 1:
        return first.to_json()
    processed = sum(record.processed for record in records)
    totals = [record.total for record in records]
    total = None if None in totals else sum(t for t in totals if t is not None)
    created = min(record.created_at for record in records)
    updated = max(record.updated_at for record in records)
    elapsed = (datetime.fromisoformat(updated) - datetime.fromisoformat(created)).total_seconds()
    rate = processed / elapsed if elapsed > 0 else None
    errors = [f"partition {r.partition}: {r.error}" for r in records if r.error]
    return {
        "job_id": first.job_id,
        "job": first.job,
        "status": overall_status(records).value,
        "params": first.params,
        # One cursor per partition: each resumes on its own.
        "cursor": [decode_cursor(record.cursor_json) for record in records],
        "processed": processed,
        "total": total,
        "times_interrupted": sum(record.times_interrupted for record in records),
        # Failures are kept per partition; the job has all of them.
        "failed_items": sum(record.failed_items for record in records),
        "error": "; ".join(errors) or None,
        "created_at": created,
        "updated_at": updated,
        "holder": None,
        "concurrency": first.concurrency,
        # Items per second over the job's life so far, and the time left at that pace.
        "rate": rate,
        "eta_seconds": (total - processed) / rate if total is not None and rate else None,
        "partitions": [
            {
                **record.to_json(),
                "partition": record.partition,
                "bounds": decode_cursor(record.bounds_json),
            }
            for record in records
        ],
    }


def group_by_job(records: list[JobRecord]) -> list[list[JobRecord]]:
    """Records of a whole store, grouped per job id, first-created first."""
    groups: dict[str, list[JobRecord]] = {}
    for record in records:
        groups.setdefault(record.job_id, []).append(record)
    return [sorted(group, key=lambda r: r.partition) for group in groups.values()]
