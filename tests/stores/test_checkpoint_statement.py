"""The SQL store's checkpoint, and coupled writes in process: what is built once, what a
checkpoint writes, and what iterctl refuses a coupled job."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from iterctl import Job, UsageError
from iterctl.cursor import Cursor
from iterctl.launch import run_job
from iterctl.runner import Outcome, Runner, RunSettings
from iterctl.stopping import StopToken
from iterctl.stores import open_store
from iterctl.stores.base import Checkpoint, Status
from iterctl.stores.sql import SqlStore
from tests.servers import server_url
from tests.stores.conftest import new_job_id, new_record
from tests.unit.test_runner import FakeReporter

SQL_KINDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]


@pytest.fixture(params=SQL_KINDS)
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    kind = request.param
    url = f"sqlite:///{tmp_path / 'store.db'}" if kind == "sqlite" else server_url(kind)
    store = SqlStore(url)
    yield store
    store.close()


def count_compilations(store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement compiled for ``store`` from now on, as text."""
    dialect = store._engine.dialect
    real = type(dialect).statement_compiler
    compiled: list[str] = []

    def counting(dialect: Any, statement: Any, **kwargs: Any) -> Any:
        compiler = real(dialect, statement, **kwargs)
        compiled.append(compiler.string)
        return compiler

    monkeypatch.setattr(dialect, "statement_compiler", counting, raising=False)
    return compiled


def test_the_checkpoint_statement_is_compiled_once_per_store(
    sql_store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fifty checkpoints of every shape (each status, the kept-or-given fields set or not)
    compile one UPDATE, at the first checkpoint, and nothing after."""
    record, _ = sql_store.create(new_record())
    hold = sql_store.acquire(record.job_id)
    compiled = count_compilations(sql_store, monkeypatch)
    for n in range(50):
        given = n % 2 == 0
        sql_store.checkpoint(hold, Checkpoint(
            str(n), n, Status.RUNNING if n % 3 else Status.INTERRUPTED,
            total=100 if given else None, failed_items=n if given else None,
            elapsed=n / 2 if given else None, rate=1.5 if given else None,
        ))  # fmt: skip
    assert len(compiled) == 1
    assert compiled[0].startswith("UPDATE iterctl_jobs")


def test_a_checkpoint_keeps_total_failures_elapsed_and_rate_unless_given(
    sql_store: SqlStore,
) -> None:
    """None keeps the stored value, a value replaces it; an interrupted checkpoint counts
    one interruption; a cancelled job keeps its status."""
    record, _ = sql_store.create(new_record())
    hold = sql_store.acquire(record.job_id)
    given = Checkpoint("1", 1, Status.RUNNING, total=9, failed_items=2, elapsed=3.5, rate=7.0)
    sql_store.checkpoint(hold, given)
    sql_store.checkpoint(hold, Checkpoint("2", 2, Status.INTERRUPTED, error=None))
    stored = sql_store.get(record.job_id)
    assert stored is not None
    assert (stored.cursor_json, stored.processed, stored.status) == ("2", 2, Status.INTERRUPTED)
    assert (stored.total, stored.failed_items, stored.elapsed, stored.rate) == (9, 2, 3.5, 7.0)
    assert stored.times_interrupted == 1


# -- coupled writes in process ------------------------------------------------------------


class Committing(Job):
    """Inserts item N into ``{table}`` through self.transaction; commits it at item 2."""

    coupled_writes = True
    table = ""

    def build_enumerator(self, cursor: Cursor) -> Iterator[tuple[int, int]]:
        start = 0 if cursor is None else int(cursor) + 1
        return ((n, n) for n in range(start, 5))

    def each_iteration(self, item: int) -> None:
        self.transaction.execute(text(f"INSERT INTO {self.table} (n) VALUES (:n)"), {"n": item})
        if item == 2:
            self.transaction.commit()


def test_a_commit_by_the_job_on_its_transaction_stops_the_run_at_once(
    sql_store: SqlStore,
) -> None:
    """Committing self.transaction saves writes without their cursor: iterctl sees it right
    after the item that did it and stops the run (exit 2, saying why), with the store's
    cursor where the last checkpoint left it. (What the job committed stays committed.)"""
    table = f"ct_{secrets.token_hex(4)}"
    with sql_store._engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {table} (n INTEGER NOT NULL)"))
    try:
        record, _ = sql_store.create(new_record())
        hold = sql_store.acquire(record.job_id)
        job = Committing(job_id=record.job_id)
        job.table = table
        runner = Runner(job, sql_store, hold, token=StopToken(), reporter=FakeReporter(),
                        settings=RunSettings(checkpoint_interval=3600), first_run=True,
                        coupled=sql_store.couple(hold))  # fmt: skip
        result = runner.run()
        sql_store.release(hold)
        assert result.outcome is Outcome.REFUSED
        assert "do not call commit() or rollback() on it" in str(result.error)
        stored = sql_store.get(record.job_id)
        assert stored is not None
        assert (stored.status, stored.cursor_json, stored.processed) == (Status.FAILED, None, 0)
        with sql_store._engine.connect() as conn:
            rows = [n for (n,) in conn.execute(text(f"SELECT n FROM {table} ORDER BY n"))]
        assert rows == [0, 1, 2]  # the job's own commit, at item 2, and nothing after
    finally:
        with sql_store._engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {table}"))


def test_job_transaction_outside_a_coupled_run_says_where_it_is_open() -> None:
    """self.transaction before the first item (or in a job without coupled writes) is a
    usage error that says how to use it."""
    with pytest.raises(UsageError, match="coupled_writes = True"):
        _ = Committing().transaction


def test_coupled_writes_with_concurrency_above_one_are_refused_before_any_write(
    tmp_path: Path,
) -> None:
    """One transaction on one session cannot serve items in flight at once: refused, and
    the store is left without the job."""
    location = f"sqlite:///{tmp_path / 'store.db'}"
    job_id = new_job_id()
    with pytest.raises(UsageError, match="cannot run with --concurrency 4"):
        run_job(job_path="tests.stores.test_checkpoint_statement:Committing", job_id=job_id,
                raw_params={}, store_location=location,
                settings=RunSettings(concurrency=4), token=StopToken(),
                reporter=FakeReporter(), announce_id=lambda _id: None)  # fmt: skip
    store = open_store(location)
    try:
        assert store.get(job_id) is None
    finally:
        store.close()
