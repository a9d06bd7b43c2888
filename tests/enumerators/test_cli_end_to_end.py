"""Enumerator-built jobs through the real ``iterctl`` process, with real SIGTERM and SIGKILL:
after SIGTERM every item is done exactly once; after SIGKILL nothing is skipped and only a
tail is redone; every refusal exits 2 with its one-line message and no traceback."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.cli.conftest import Workdir

HERE = Path(__file__).parent
SQL_IDS = sorted(range(1, 301), key=lambda n: (n % 5, n))  # the walk's (grp, id) order
TREE = [[[1, 2], [], [3]], [], [[]], [[4, 5, 6], [7]], [[], [8, 9, 10, 11, 12]],
        [[n] for n in range(13, 120)]]  # fmt: skip
TREE_ITEMS = list(range(1, 120))


@pytest.fixture
def work(tmp_path: Path) -> Workdir:
    """A working folder with the enumerator jobs, a 300-row SQLite table and a CSV file."""
    workdir = Workdir(tmp_path)
    shutil.copy(HERE / "enumjobs.py", tmp_path / "enumjobs.py")
    with sqlite3.connect(tmp_path / "events.db") as db:
        db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, grp INTEGER NOT NULL, note TEXT)")
        rows = [(n, n % 5) for n in range(1, 301)]
        db.executemany("INSERT INTO events VALUES (?, ?, NULL)", rows)
    with (tmp_path / "rows.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows([n, "multi\nline, quoted" if n % 9 == 0 else "plain"] for n in range(300))
    return workdir


def command(work: Workdir, job: str, job_id: str, *params: str) -> list[str]:
    pairs = [("log", str(work.log)), ("db", str(work.path / "events.db")),
             ("csv", str(work.path / "rows.csv")), ("tree", json.dumps(TREE)), *(
                 tuple(p.split("=", 1)) for p in params)]  # fmt: skip
    args = ["run", f"enumjobs:{job}", "--job-id", job_id, "--checkpoint-interval", "0.05"]
    for key, value in pairs:
        args += ["--param", f"{key}={value}"]
    return args


CASES = [
    pytest.param("SqlRows", SQL_IDS, id="sql-records"),
    pytest.param("CsvRows", list(range(300)), id="csv-rows"),
    pytest.param("NestedRows", TREE_ITEMS, id="nested"),
]


@pytest.mark.parametrize(("job", "expected"), CASES)
def test_sigterm_then_rerun_does_every_item_exactly_once(
    work: Workdir, job: str, expected: list[int]
) -> None:
    """SIGTERM mid-walk exits 75; the same command finishes with exit 0; the items done
    across both runs are exactly the walk, in order, each once."""
    args = command(work, job, "term", "delay=0.004")
    process = work.start(*args)
    work.wait_items(40, process)
    process.send_signal(signal.SIGTERM)
    assert work.finish(process).returncode == 75
    assert 40 <= len(work.items()) < len(expected)
    again = work.run(*args)
    assert again.returncode == 0, again.stderr
    assert work.items() == expected


@pytest.mark.parametrize(("job", "expected"), CASES)
def test_sigkill_then_rerun_skips_nothing_and_redoes_only_a_tail(
    work: Workdir, job: str, expected: list[int]
) -> None:
    """SIGKILL mid-walk, then the same command: no item is skipped; the second run starts
    at or before the kill point (items since the last checkpoint are done again)."""
    args = command(work, job, "kill", "delay=0.004")
    process = work.start(*args)
    work.wait_items(40, process)
    process.send_signal(signal.SIGKILL)
    work.finish(process)
    first = work.items()
    assert first == expected[: len(first)]
    again = work.run(*args)
    assert again.returncode == 0, again.stderr
    second = work.items()[len(first) :]
    restart = len(expected) - len(second)
    assert 0 <= restart <= len(first)
    assert second == expected[restart:]


@pytest.mark.parametrize(
    ("job", "message"),
    [
        pytest.param("SqlNullable", "cursor column events.note is nullable", id="nullable"),
        pytest.param("SqlOrdered", "records query has an ORDER BY", id="order-by"),
        pytest.param("TupleCursor", "yielded a cursor that is not a JSON value", id="tuple"),
    ],
)
def test_refusals_exit_2_with_their_message_and_no_traceback(
    work: Workdir, job: str, message: str
) -> None:
    """A nullable cursor column, an ORDER BY in the query and a non-JSON custom cursor
    stop the run before any item: exit 2, the message on stderr, no traceback."""
    result = work.run(*command(work, job, "refused"))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert work.items() == []


def test_a_csv_changed_since_the_cursor_was_saved_is_refused_on_resume(work: Workdir) -> None:
    """Stopped part-way, then the file shrinks: the resume exits 2 saying the file changed,
    with no traceback, instead of skipping or repeating rows."""
    args = command(work, "CsvRows", "changed", "delay=0.004")
    process = work.start(*args)
    work.wait_items(40, process)
    process.send_signal(signal.SIGTERM)
    assert work.finish(process).returncode == 75
    (work.path / "rows.csv").write_text("id,text\n1,x\n")
    result = work.run(*args)
    assert result.returncode == 2
    assert "rows.csv changed since the cursor was saved" in result.stderr
    assert "Traceback" not in result.stderr
