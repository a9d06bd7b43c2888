"""``iterctl check`` and ``iterctl describe`` through the real process: every example job
passes, a broken one exits 1 with its divergence and runs no item, bad input exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import Workdir

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def work(tmp_path: Path) -> Workdir:
    workdir = Workdir(tmp_path)
    workdir.env["PYTHONPATH"] = str(REPO)
    return workdir


@pytest.mark.parametrize(
    "args",
    [
        ["jobs_examples.count:CountJob"],
        ["jobs_examples.partitioned:PartitionedCount", "--param", "count=900",
         "--partitions", "4"],
        ["jobs_examples.csv_import:CsvImport", "--param", "rows=400"],
        ["jobs_examples.backfill:Backfill", "--param", "rows=2500", "--limit", "3000",
         "--partitions", "3"],
    ],
    ids=["count", "partitioned", "csv_import", "backfill"],
)
def test_every_example_job_passes_check(work: Workdir, args: list[str]) -> None:
    """Each jobs_examples/ job: exit 0, an ok line per check, nothing processed."""
    result = work.run("check", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[1] for line in lines[:6]] == [
        "cursors", "unique", "resume", "determinism", "count", "partitions"
    ]  # fmt: skip
    assert not any(line.startswith("FAIL") for line in lines)
    assert lines[-1].endswith("resumes from its cursors as the contract says")
    if "--partitions" in args:
        assert lines[5].startswith("ok    partitions")
    assert not (work.path / "iterctl.db").exists()  # check keeps no store


def test_backfill_check_reads_but_never_backfills(work: Workdir) -> None:
    """The SQL example's check leaves every order's tax_cents NULL: no each_iteration."""
    import sqlite3

    result = work.run("check", "jobs_examples.backfill:Backfill", "--param", "rows=300")
    assert result.returncode == 0, result.stdout
    with sqlite3.connect(work.path / "shop.db") as connection:
        filled, rows = connection.execute(
            "SELECT count(tax_cents), count(*) FROM orders"
        ).fetchone()
    assert (filled, rows) == (0, 300)


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ("OffByOne", "AT the cursor again (off by one)"),
        ("NonUniqueCursor", "items #0 and #1 both have cursor 0"),
        ("StaleNestedCursor", "outer level moved on"),
        ("LossyDatetimeCursor", "datetime without a UTC offset"),
    ],
)
def test_a_broken_enumerator_exits_1_naming_the_divergence_and_runs_no_item(
    work: Workdir, job: str, expected: str
) -> None:
    marks = work.path / "marks"
    marks.mkdir()
    result = work.run("check", f"tests.checking.brokenjobs:{job}", "--param", f"marks={marks}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stdout
    assert "expected next:" in result.stdout or "both have cursor" in result.stdout
    assert result.stdout.splitlines()[-1].startswith(
        f"tests.checking.brokenjobs:{job} does NOT resume as the contract says"
    )
    assert list(marks.iterdir()) == []
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere:Job"], "cannot import 'nowhere'"),
        (["jobs_examples.count:CountJob", "--param", "count=many"], "param 'count'"),
        (["jobs_examples.count:CountJob", "--param", "colour=red"], "unknown param 'colour'"),
        (["jobs_examples.count:CountJob", "--samples", "0"], "--samples"),
        (["jobs_examples.count:CountJob", "--limit", "-1"], "--limit"),
    ],
)
def test_bad_input_to_check_exits_2_with_one_line(
    work: Workdir, args: list[str], message: str
) -> None:
    result = work.run("check", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_describe_shows_the_docstring_and_every_param(work: Workdir) -> None:
    result = work.run("describe", "jobs_examples.backfill:Backfill")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "jobs_examples.backfill:Backfill"
    assert "the cursor is [created_at, id]" in result.stdout
    table = [line.split(None, 3) for line in lines if line.startswith("  ")]
    assert table == [
        ["name", "type", "default", "description"],
        ["db", "str", "'shop.db'", "SQLite file holding the orders table"],
        ["rows", "int", "100000", "orders to create on first use"],
        ["delay", "float", "0.0", "extra seconds per order, for demos"],
    ]


def test_describe_a_job_without_a_params_model_and_a_bad_path(work: Workdir) -> None:
    result = work.run("describe", "testjobs:Numbers")
    assert result.returncode == 0, result.stderr
    assert "Items 0..count-1." in result.stdout
    assert "parameters: none declared" in result.stdout
    missing = work.run("describe", "testjobs:Nope")
    assert missing.returncode == 2
    assert "module 'testjobs' has no attribute 'Nope'" in missing.stderr


def test_check_help_states_the_defaults_check_uses(work: Workdir) -> None:
    """The CLI does not import iterctl.checking to start; its help must not drift."""
    from iterctl.checking import DEFAULT_LIMIT, DEFAULT_SAMPLES

    result = work.run("check", "--help")
    flat = " ".join(result.stdout.split())
    assert f"Read the first N pairs of the walk. Default: {DEFAULT_LIMIT}." in flat
    assert f"Default: {DEFAULT_SAMPLES}." in flat


def test_run_help_after_a_job_shows_run_options_then_the_job(work: Workdir) -> None:
    """`iterctl run MODULE:CLASS --help`: the options of run, then describe's text; nothing
    runs and no store is made. Without a job it is run's plain help."""
    result = work.run("run", "jobs_examples.count:CountJob", "--store", "sqlite:///x.db",
                      "--help")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "--checkpoint-interval" in result.stdout
    assert "The job jobs_examples.count:CountJob" in result.stdout
    assert "count  int    300      how many items" in result.stdout
    assert not (work.path / "x.db").exists()
    assert not (work.path / "iterctl.db").exists()
    plain = work.run("run", "--help")
    assert plain.returncode == 0
    assert "The job" not in plain.stdout
    assert plain.stdout == result.stdout.split("\nThe job ")[0]


def test_run_help_with_a_bad_job_path_is_one_line_and_exit_2(work: Workdir) -> None:
    result = work.run("run", "nowhere:Job", "-h")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "iterctl: cannot import 'nowhere': no module named 'nowhere' — run iterctl from the "
        "folder that holds it, or install its package"
    )
