"""The example jobs in ``jobs_examples/`` run through the real ``iterctl`` as documented."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest

from iterctl.testing import InjectedFailure, assert_exactly_once, assert_resumes, run_job
from jobs_examples.backfill import Backfill
from jobs_examples.count import CountJob
from jobs_examples.csv_import import CsvImport
from jobs_examples.partitioned import PartitionedCount
from tests.cli.conftest import Workdir

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def work(tmp_path: Path) -> Workdir:
    workdir = Workdir(tmp_path)
    workdir.env["PYTHONPATH"] = str(REPO)
    return workdir


def test_backfill_example_stops_on_sigterm_and_resumes_to_fill_every_order(
    work: Workdir,
) -> None:
    """The backfill creates its table, stops on SIGTERM with exit 75, and the same command
    fills ``tax_cents`` of every order and exits 0."""
    db = work.path / "shop.db"
    args = ["run", "jobs_examples.backfill:Backfill", "--job-id", "fill",
            "--param", f"db={db}", "--param", "rows=3000", "--param", "delay=0.001"]  # fmt: skip
    process = work.start(*args)
    work.wait_for(lambda _lines: _filled(db) >= 200, process)
    process.send_signal(signal.SIGTERM)
    assert work.finish(process).returncode == 75
    assert 200 <= _filled(db) < 3000
    finished = work.run(*args)
    assert finished.returncode == 0, finished.stderr
    assert _filled(db) == 3000
    assert work.status("fill")["processed"] == 3000


def test_backfill_example_on_its_own_file_commits_its_updates_with_the_cursor(
    work: Workdir,
) -> None:
    """With ``--store`` on the orders' own SQLite file the backfill's UPDATEs commit with
    the cursor: killed with SIGKILL mid-run, the filled orders are exactly those the store
    counts as processed; the same command then fills the rest and exits 0."""
    db = work.path / "shop.db"
    args = ["run", "jobs_examples.backfill:Backfill", "--job-id", "exact",
            "--store", f"sqlite:///{db}", "--checkpoint-interval", "0.2",
            "--param", f"db={db}", "--param", "rows=3000", "--param", "delay=0.001"]  # fmt: skip
    process = work.start(*args)
    work.wait_for(lambda _lines: _filled_and_processed(db)[1] >= 200, process)
    process.send_signal(signal.SIGKILL)
    work.finish(process)
    filled, processed = _filled_and_processed(db)
    assert 200 <= filled == processed < 3000
    finished = work.run(*args)
    assert finished.returncode == 0, finished.stderr
    assert _filled_and_processed(db) == (3000, 3000)


def _filled_and_processed(db: Path) -> tuple[int, int]:
    """Orders with tax_cents, and the store's processed count, read in one snapshot."""
    if not db.exists():
        return 0, 0
    with sqlite3.connect(db, timeout=5) as connection:
        try:
            found = connection.execute(
                "SELECT (SELECT count(tax_cents) FROM orders),"
                " (SELECT processed FROM iterctl_jobs WHERE job_id = 'exact')"
            ).fetchone()
        except sqlite3.OperationalError:  # the tables are not there yet
            return 0, 0
    return int(found[0]), int(found[1] or 0)


def _filled(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=5) as connection:
        try:
            found = connection.execute("SELECT count(tax_cents) FROM orders").fetchone()
        except sqlite3.OperationalError:  # the table is not there yet
            return 0
    return int(found[0])


def test_csv_import_example_writes_its_sample_and_imports_every_row(work: Workdir) -> None:
    """Without a CSV the import writes a sample (quoted commas, line breaks) and upserts
    every row; run again with the same job id it does nothing and exits 0."""
    args = ["run", "jobs_examples.csv_import:CsvImport", "--job-id", "import",
            "--param", "rows=500"]  # fmt: skip
    result = work.run(*args)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(work.path / "customers.db") as connection:
        count, noted = connection.execute(
            "SELECT count(*), sum(note LIKE 'VIP,%') FROM customers"
        ).fetchone()
    assert (count, noted) == (500, 10)
    assert work.run(*args).returncode == 0


# -- the same examples in-process, as a job author tests a job with iterctl.testing -----


def test_count_example_stops_resumes_and_resumes_from_every_cursor() -> None:
    """CountJob stopped after 20 items carries on at 20; the check passes on 500 items."""
    first = run_job(CountJob, params={"count": 50, "delay": 0}, stop_after=20)
    assert (first.exit_code, first.items, first.cursor) == (75, list(range(20)), 19)
    rest = first.resume()
    assert (rest.exit_code, rest.items, rest.processed) == (0, list(range(20, 50)), 50)
    assert_resumes(CountJob, params={"count": 500})


def test_backfill_example_resumes_exactly_and_fills_every_order(tmp_path: Path) -> None:
    """The keyset walk resumes exactly from sampled cursors; stopped after 150 orders and
    resumed, every order is filled once."""
    params = {"db": tmp_path / "shop.db", "rows": 400}
    assert_resumes(Backfill, params=params, samples=20)
    rest = assert_exactly_once(Backfill, params=params, stop_after=150)
    assert rest.processed == 400
    assert _filled(tmp_path / "shop.db") == 400


def test_csv_import_example_retries_a_failed_row_and_passes_the_check(tmp_path: Path) -> None:
    params = {"csv": tmp_path / "customers.csv", "db": tmp_path / "customers.db", "rows": 120}
    assert_resumes(CsvImport, params=params)
    failed = run_job(CsvImport, params=params, fail_at=60)
    assert (failed.exit_code, len(failed.items)) == (1, 60)
    assert isinstance(failed.error, InjectedFailure)
    rest = failed.resume()
    assert rest.exit_code == 0
    assert rest.items[0]["email"] == "user60@example.com"
    assert rest.processed == 120


def test_partitioned_example_covers_its_walk_in_four_partitions() -> None:
    assert_resumes(PartitionedCount, params={"count": 1000}, partitions=4)
