"""A store written by an older iterctl is migrated in place, its jobs intact."""

from __future__ import annotations

import sqlite3

from tests.cli.conftest import Workdir

# The tables as iterctl's schema 1 created them.
_SCHEMA_1 = """
CREATE TABLE iterctl_jobs (
    job_id VARCHAR(128) NOT NULL, partition_index INTEGER NOT NULL, partitions INTEGER NOT NULL,
    job VARCHAR(512) NOT NULL, params TEXT NOT NULL, status VARCHAR(16) NOT NULL, cursor TEXT,
    processed BIGINT NOT NULL, total BIGINT, times_interrupted INTEGER NOT NULL, error TEXT,
    created_at VARCHAR(40) NOT NULL, updated_at VARCHAR(40) NOT NULL, holder VARCHAR(300),
    fence BIGINT NOT NULL, PRIMARY KEY (job_id, partition_index)
);
CREATE TABLE iterctl_schema (version INTEGER NOT NULL);
INSERT INTO iterctl_schema VALUES (1);
"""


def test_a_schema_1_store_is_migrated_and_its_job_resumes(workdir: Workdir) -> None:
    """An interrupted job in a schema-1 SQLite store resumes after the upgrade."""
    store = workdir.path / "old.db"
    with sqlite3.connect(store) as db:
        db.executescript(_SCHEMA_1)
        db.execute(
            "INSERT INTO iterctl_jobs VALUES ('old', 0, 1, 'testjobs:Numbers', ?, "
            "'interrupted', '6', 7, 10, 1, NULL, '2026-01-01T00:00:00.000000+00:00', "
            "'2026-01-01T00:00:00.000000+00:00', NULL, 3)",
            (f'{{"count": "10", "log": "{workdir.log}"}}',),
        )
    result = workdir.run("resume", "old", "--store", f"sqlite:///{store}")
    assert result.returncode == 0, result.stderr
    assert workdir.items() == [7, 8, 9]
    status = workdir.status("old", "--store", f"sqlite:///{store}")
    assert (status["status"], status["processed"], status["times_interrupted"]) == (
        "succeeded", 10, 1,
    )  # fmt: skip
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT version FROM iterctl_schema").fetchall() == [(3,)]


def test_a_schema_1_store_resumes_with_concurrency_and_keeps_it(workdir: Workdir) -> None:
    """A job saved before done sets existed resumes with --concurrency 4 from its cursor:
    no item before it redone, none after it skipped; the new N is recorded."""
    store = workdir.path / "old.db"
    with sqlite3.connect(store) as db:
        db.executescript(_SCHEMA_1)
        db.execute(
            "INSERT INTO iterctl_jobs VALUES ('old', 0, 1, 'testjobs:Concurrent', ?, "
            "'interrupted', '39', 40, 100, 1, NULL, '2026-01-01T00:00:00.000000+00:00', "
            "'2026-01-01T00:00:00.000000+00:00', NULL, 3)",
            (f'{{"count": "100", "log": "{workdir.log}"}}',),
        )
    result = workdir.run("resume", "old", "--store", f"sqlite:///{store}", "--concurrency", "4")
    assert result.returncode == 0, result.stderr
    assert sorted(workdir.items()) == list(range(40, 100))
    status = workdir.status("old", "--store", f"sqlite:///{store}")
    assert (status["processed"], status["concurrency"]) == (100, 4)


def test_a_store_from_a_newer_iterctl_is_refused_with_2(workdir: Workdir) -> None:
    """Schema 99: iterctl says to upgrade itself, exits 2 (a person must upgrade it; a
    retry cannot help) and changes nothing."""
    store = workdir.path / "new.db"
    with sqlite3.connect(store) as db:
        db.executescript(_SCHEMA_1.replace("VALUES (1)", "VALUES (99)"))
    before = store.read_bytes()
    result = workdir.run("status", "--store", f"sqlite:///{store}")
    assert result.returncode == 2
    assert "written by a newer iterctl" in result.stderr
    assert "Traceback" not in result.stderr
    assert store.read_bytes() == before
