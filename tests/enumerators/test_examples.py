"""The example jobs in ``jobs_examples/`` run through the real ``iterctl`` as documented."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest

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
