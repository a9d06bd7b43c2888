"""Checkpoint-coupled writes (CONTRACT §1, §4): the job's writes and the cursor commit
together, so after any stop, SIGKILL included, every item's effect is there exactly once.

The job (``testjobs:CoupledCounter``) is not idempotent on purpose: each item adds 1 to its
counter and inserts one event row. Every test runs the real ``iterctl`` process on SQLite,
PostgreSQL and MariaDB, and checks the database against the store's cursor after each stop.
"""

from __future__ import annotations

import random
import secrets
import signal
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from iterctl.stores import open_store
from iterctl.stores.base import JobRecord
from iterctl.stores.sql import _lock_key
from tests.cli.conftest import Workdir
from tests.servers import server_url


@dataclass
class Database:
    """A store URL, an engine on the same database, and this test's table prefix."""

    url: str
    engine: Engine
    prefix: str

    def make_tables(self, count: int) -> None:
        serial = {
            "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
            "postgresql": "SERIAL PRIMARY KEY",
        }.get(self.engine.dialect.name, "INTEGER PRIMARY KEY AUTO_INCREMENT")
        with self.engine.begin() as conn:
            conn.execute(text(f"CREATE TABLE {self.prefix}_counters "
                              "(id INTEGER PRIMARY KEY, hits INTEGER NOT NULL)"))  # fmt: skip
            conn.execute(text(f"CREATE TABLE {self.prefix}_events "
                              f"(id {serial}, item INTEGER NOT NULL)"))  # fmt: skip
            conn.execute(
                text(f"INSERT INTO {self.prefix}_counters (id, hits) VALUES (:n, 0)"),
                [{"n": n} for n in range(count)],
            )

    def hits(self) -> list[int]:
        with self.engine.connect() as conn:
            query = text(f"SELECT hits FROM {self.prefix}_counters ORDER BY id")
            return [int(hits) for (hits,) in conn.execute(query)]

    def events(self) -> Counter[int]:
        with self.engine.connect() as conn:
            query = text(f"SELECT item FROM {self.prefix}_events")
            return Counter(int(item) for (item,) in conn.execute(query))

    def record(self, job_id: str) -> JobRecord:
        store = open_store(self.url, create=False)
        try:
            record = store.get(job_id)
        finally:
            store.close()
        assert record is not None
        return record

    def assert_agrees_with_cursor(self, job_id: str, count: int) -> int:
        """Items up to the stored cursor took effect exactly once, the others not at all;
        returns the number of items done."""
        record = self.record(job_id)
        done = 0 if record.cursor_json is None else int(record.cursor_json) + 1
        assert record.processed == done
        assert self.hits() == [1] * done + [0] * (count - done)
        assert self.events() == Counter(range(done))
        return done


def open_database(kind: str, tmp_path: Path) -> Iterator[Database]:
    """The ``kind`` database (a SQLite file in ``tmp_path``, or the server's), tables
    dropped afterwards."""
    url = f"sqlite:///{tmp_path / 'shop.db'}" if kind == "sqlite" else server_url(kind)
    engine = create_engine(url)
    prefix = f"cw_{secrets.token_hex(4)}"
    yield Database(url, engine, prefix)
    if kind != "sqlite":
        with engine.begin() as conn:
            for table in ("counters", "events"):
                conn.execute(text(f"DROP TABLE IF EXISTS {prefix}_{table}"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from open_database(request.param, tmp_path)


@pytest.fixture(params=["postgres", "mysql"])
def server_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """Only the servers: SQLite has no session to lose."""
    yield from open_database(request.param, tmp_path)


@pytest.fixture
def sqlite_database(tmp_path: Path) -> Iterator[Database]:
    yield from open_database("sqlite", tmp_path)


def job_args(database: Database, workdir: Workdir, job_id: str, count: int, *extra: str,
             interval: str = "0.05", delay: str = "0.002") -> list[str]:  # fmt: skip
    return [
        "run", "testjobs:CoupledCounter", "--store", database.url, "--job-id", job_id,
        "--checkpoint-interval", interval, "--param", f"table={database.prefix}",
        "--param", f"log={workdir.log}", "--param", f"count={count}",
        "--param", f"delay={delay}", *extra,
    ]  # fmt: skip


def runs_of(workdir: Workdir) -> list[list[int]]:
    """The items each start of the job logged, one list per start."""
    runs: list[list[int]] = []
    for line in workdir.lines():
        if line == "run":
            runs.append([])
        elif line.startswith("item "):
            runs[-1].append(int(line.split()[1]))
    return runs


@pytest.mark.slow
def test_non_idempotent_writes_land_exactly_once_under_random_sigkills_and_sigterms(
    workdir: Workdir, database: Database
) -> None:
    """Random SIGKILLs and SIGTERMs mid-run: after every stop the counters and event rows
    match the store's cursor exactly, and at the end every counter is 1 and every event
    row exists once."""
    random_stops_then_finish(workdir, database, buffered=False)


@pytest.mark.slow
def test_rows_flushed_by_on_checkpoint_land_exactly_once_under_random_stops(
    workdir: Workdir, sqlite_database: Database
) -> None:
    """The same with the event rows buffered and inserted by on_checkpoint, in the
    checkpoint's transaction (the runner's hook call is the same on every store)."""
    random_stops_then_finish(workdir, sqlite_database, buffered=True)


def random_stops_then_finish(workdir: Workdir, database: Database, *, buffered: bool) -> None:
    count, job_id = 400, f"exact-{secrets.token_hex(3)}"
    database.make_tables(count)
    args = job_args(database, workdir, job_id, count, *(["--param", "buffer=1"] * buffered))
    rng = random.Random(20261201)  # noqa: S311 - a reproducible plan, not a secret
    for _stop in range(6):
        process = workdir.start(*args)
        workdir.wait_items(rng.randint(3, 30), process)
        sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
        process.send_signal(sig)
        finished = workdir.finish(process)
        assert finished.returncode == (75 if sig is signal.SIGTERM else -signal.SIGKILL), (
            finished.stderr
        )
        database.assert_agrees_with_cursor(job_id, count)
    finished = workdir.run(*args)
    assert finished.returncode == 0, finished.stderr
    assert database.hits() == [1] * count
    assert database.events() == Counter(range(count))
    assert database.record(job_id).processed == count


def test_an_item_that_raises_mid_batch_loses_only_its_own_writes_and_resume_retries_it(
    workdir: Workdir, database: Database
) -> None:
    """One batch (no timed checkpoint before item 17 fails): items 0-16 are committed with
    the failure's checkpoint, item 17's writes are rolled back, and resume starts at 17."""
    count, job_id = 30, f"fails-{secrets.token_hex(3)}"
    database.make_tables(count)
    args = job_args(database, workdir, job_id, count, "--param", "fail_at=17",
                    "--param", "fail_once=1", interval="3600", delay="0")  # fmt: skip
    failed = workdir.run(*args)
    assert failed.returncode == 1, failed.stderr
    assert "item 17 is broken" in failed.stderr
    assert database.assert_agrees_with_cursor(job_id, count) == 17
    assert database.record(job_id).status.value == "failed"

    resumed = workdir.run(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert runs_of(workdir)[1][0] == 17
    assert database.hits() == [1] * count
    assert database.events() == Counter(range(count))


def test_items_that_write_nothing_with_a_checkpoint_after_every_item(
    workdir: Workdir, database: Database
) -> None:
    """--checkpoint-interval 0, every fifth item writing nothing: each item is its own
    transaction, the empty ones included, and the final checkpoint (after no item since the
    last one) commits cleanly."""
    count, job_id = 20, f"every-{secrets.token_hex(3)}"
    database.make_tables(count)
    args = job_args(database, workdir, job_id, count, "--param", "skip_fifth=1",
                    interval="0", delay="0")  # fmt: skip
    finished = workdir.run(*args)
    assert finished.returncode == 0, finished.stderr
    written = [n for n in range(count) if n % 5 != 4]
    assert database.hits() == [0 if n % 5 == 4 else 1 for n in range(count)]
    assert database.events() == Counter(written)
    assert database.record(job_id).processed == count


def test_on_checkpoint_that_raises_saves_nothing_of_its_batch(
    workdir: Workdir, sqlite_database: Database
) -> None:
    """on_checkpoint runs before the checkpoint, in its transaction: when it raises, the
    batch's writes roll back with the cursor it would have saved (exit 1), and the run
    after redoes the batch exactly once."""
    database = sqlite_database
    count, job_id = 12, f"hook-{secrets.token_hex(3)}"
    database.make_tables(count)
    args = job_args(database, workdir, job_id, count, "--param", "fail_checkpoint=1",
                    "--param", "fail_once=1", interval="3600", delay="0")  # fmt: skip
    failed = workdir.run(*args)
    assert failed.returncode == 1, failed.stderr
    assert "the flush failed" in failed.stderr
    assert database.assert_agrees_with_cursor(job_id, count) == 0
    resumed = workdir.run(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert database.hits() == [1] * count
    assert database.events() == Counter(range(count))


def test_a_lost_session_mid_batch_rolls_the_batch_back_exits_75_and_resume_redoes_it(
    workdir: Workdir, server_database: Database
) -> None:
    """A first run stops on SIGTERM at some cursor C. The next run opens one long batch;
    the server ends the hold's session (pg_terminate_backend, KILL) in the middle of it:
    the process exits 75 saying so, the store and the counters still agree at C, and the
    run after starts right after C and finishes exactly once."""
    database = server_database
    count, job_id = 300, f"lost-{secrets.token_hex(3)}"
    database.make_tables(count)
    args = job_args(database, workdir, job_id, count, interval="3600", delay="0.005")
    process = workdir.start(*args)
    workdir.wait_items(10, process)
    process.send_signal(signal.SIGTERM)
    assert workdir.finish(process).returncode == 75
    saved = database.assert_agrees_with_cursor(job_id, count)

    process = workdir.start(*args)
    workdir.wait_items(10, process)  # one open batch of at least 10 items
    end_hold_session(database, job_id)
    finished = workdir.finish(process)
    assert finished.returncode == 75, finished.stderr
    assert "lost its database session" in finished.stderr
    assert database.assert_agrees_with_cursor(job_id, count) == saved
    assert len(runs_of(workdir)[1]) >= 10  # ... all of them rolled back

    resumed = workdir.run(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert runs_of(workdir)[2][0] == saved
    assert database.hits() == [1] * count
    assert database.events() == Counter(range(count))


def end_hold_session(database: Database, job_id: str) -> None:
    """Kill the database session that holds ``job_id``'s lock, as a failover would."""
    key = _lock_key(job_id)
    with database.engine.connect() as conn:
        if database.engine.dialect.name == "postgresql":
            # A bigint advisory key shows in pg_locks as classid (high) and objid (low).
            ended = conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = "
                     "'advisory' AND granted AND classid::bigint = :high AND "
                     "objid::bigint = :low AND objsubid = 1"),
                {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF},
            ).scalar()  # fmt: skip
            assert ended is True
        else:
            holder = conn.execute(
                text("SELECT IS_USED_LOCK(:name)"), {"name": f"iterctl:{key:x}"}
            ).scalar()
            assert holder is not None
            conn.execute(text(f"KILL {int(holder)}"))


def test_a_coupled_job_on_a_json_store_is_refused_in_one_line_before_any_write(
    workdir: Workdir,
) -> None:
    """A JSON store has no transaction to share: exit 2, one line saying what to use, and
    no job recorded."""
    store = workdir.path / "jobs.json"
    finished = workdir.run("run", "testjobs:CoupledCounter", "--store", str(store),
                           "--param", "table=t", "--param", f"log={workdir.log}")  # fmt: skip
    assert finished.returncode == 2
    assert finished.stderr.startswith("iterctl: CoupledCounter sets coupled_writes")
    assert "needs an SQL store" in finished.stderr
    assert len(finished.stderr.strip().splitlines()) == 1
    assert finished.stdout == ""  # no new job id announced
    assert not store.exists() or "CoupledCounter" not in store.read_text()


def test_a_partitioned_coupled_job_on_sqlite_is_refused(workdir: Workdir) -> None:
    """SQLite has one write lock, which a coupled run holds for a whole interval: its
    partitions would only wait on each other, so they are refused (exit 2)."""
    finished = workdir.run("run", "testjobs:CoupledCounter", "--job-id", "parts",
                           "--partitions", "2", "--partition", "0",
                           "--param", "table=t", "--param", f"log={workdir.log}")  # fmt: skip
    assert finished.returncode == 2
    assert "run the partitions on a PostgreSQL or MySQL store" in finished.stderr
    assert len(finished.stderr.strip().splitlines()) == 1


def test_a_plain_job_whose_hold_session_is_ended_exits_75_and_resumes(
    workdir: Workdir, server_database: Database
) -> None:
    """Not only coupled runs: a job whose hold's session the server ends saves nothing
    more, says so and exits 75 (CONTRACT §4), and the same command then finishes it."""
    job_id = f"plain-{secrets.token_hex(3)}"
    args = ["run", "testjobs:Numbers", "--store", server_database.url, "--job-id", job_id,
            "--checkpoint-interval", "0.1", "--param", "count=300", "--param", "delay=0.01",
            "--param", f"log={workdir.log}"]  # fmt: skip
    process = workdir.start(*args)
    workdir.wait_items(10, process)
    end_hold_session(server_database, job_id)
    finished = workdir.finish(process)
    assert finished.returncode == 75, finished.stderr
    assert "lost its database session" in finished.stderr
    resumed = workdir.run(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert set(workdir.items()) == set(range(300))
    assert server_database.record(job_id).processed == 300
