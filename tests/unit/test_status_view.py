"""The status views built from records and live holds (no process, no store)."""

from __future__ import annotations

import io

from rich.console import Console

from iterctl.overview import job_overview, record_view
from iterctl.report import print_status_table
from iterctl.stores.base import JobRecord, Status


def _record(job_id: str, **fields: object) -> JobRecord:
    return JobRecord(job_id, "jobs.backfill:BackfillEveryCustomerInvoice", {}, **fields)  # type: ignore[arg-type]


def test_a_running_record_without_a_live_holder_is_interrupted_holder_gone() -> None:
    """The record says running; the probe found no holder: every view says interrupted."""
    record = _record("a", status=Status.RUNNING, rate=12.0, total=100, processed=40)
    gone = record_view(record, live=set())
    assert (gone["status"], gone["holder_gone"], gone["rate"], gone["eta_seconds"]) == (
        "interrupted", True, None, None,
    )  # fmt: skip
    alive = record_view(record, live={"a"})
    assert (alive["status"], alive["holder_gone"], alive["rate"]) == ("running", False, 12.0)
    assert alive["eta_seconds"] == 5.0


def test_a_partitioned_job_adds_running_rates_and_takes_the_longest_elapsed() -> None:
    """Rates of live partitions add up; ETA is the whole job's remaining at that rate."""
    parts = [
        _record(
            "p",
            partition=i,
            partitions=3,
            status=Status.RUNNING,
            rate=10.0,
            total=100,
            processed=50,
            elapsed=float(10 * (i + 1)),
        )
        for i in range(3)
    ]
    view = job_overview(parts, live={"p", "p@1"})  # partition 2's holder is gone
    assert view["rate"] == 20.0
    assert view["eta_seconds"] == 150 / 20
    assert view["elapsed_seconds"] == 30.0
    assert view["holder_gone"] is True
    assert [p["status"] for p in view["partitions"]] == ["running", "running", "interrupted"]


def test_the_table_fits_100_columns_without_cutting_ids() -> None:
    """A long id stays whole; a long cursor, job name and error end in '…'; nothing wraps."""
    long_id = "backfill-invoices-2026-q4-eu-west-1"
    jobs = [
        record_view(
            _record(
                long_id,
                status=Status.FAILED,
                processed=1234567,
                total=9876543,
                cursor_json='{"customer_id": 12345678, "invoice": "INV-2026-000000001"}',
                error="ValueError: the invoice has no customer\nTraceback ...",
            ),
            live=set(),
        ),
        record_view(_record("short", status=Status.SUCCEEDED, processed=3, total=3), set()),
    ]
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=True, color_system=None)
    print_status_table(jobs, console)
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 100 for line in lines)
    (row,) = [line for line in lines if long_id in line]
    assert "1,234,567/9,876,543" in row
    assert "12%" in row
    assert "…" in row
    assert "Traceback" not in out.getvalue()
    assert len([line for line in lines if "short" in line]) == 1
