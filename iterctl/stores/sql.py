"""The SQL store: SQLite (the default), PostgreSQL and MySQL/MariaDB through SQLAlchemy Core.

One table holds a row per job id (and, for partitioned jobs, per partition). The hold is
whatever the database offers that dies with its holder: an ``flock`` beside a SQLite file,
a session advisory lock on PostgreSQL, ``GET_LOCK`` on MySQL/MariaDB.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from math import inf
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Double,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from iterctl.errors import (
    IterctlError,
    JobCancelledError,
    JobHeldError,
    LostHoldError,
    NoStoreError,
    StoreUnavailableError,
    StoreUnusableError,
    UsageError,
    store_os_error,
)
from iterctl.stopping import STORE_WAIT_SECONDS, interruptible_wait
from iterctl.stores.base import (
    RESUMABLE,
    RUNS_KEPT,
    Checkpoint,
    FailureRecord,
    FailureRecords,
    Hold,
    JobRecord,
    Records,
    RunEnd,
    RunOutcome,
    RunRecord,
    Runs,
    Status,
    checked_record,
    cursor_key,
    delete_refused,
    ended_run,
    hold_name,
    new_run,
    utc_now,
)
from iterctl.stores.coupled import SqlCoupledWrites, lost_session
from iterctl.stores.file_hold import FileHolds, holder_name

#: Bumped whenever the tables change; a store written by a newer iterctl is refused.
SCHEMA_VERSION = 3

metadata = MetaData()

#: Text of any length on every database: MySQL's TEXT stops at 64 KB, LONGTEXT does not.
LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
#: A job id compares case-sensitively everywhere: MySQL's default collation ignores case.
JobId = String(128).with_variant(mysql.VARCHAR(128, collation="utf8mb4_bin"), "mysql", "mariadb")

jobs_table = Table(
    "iterctl_jobs",
    metadata,
    Column("job_id", JobId, primary_key=True),
    # A partitioned job has one row per partition; a plain job has partition 0 of 1.
    Column("partition_index", Integer, primary_key=True, default=0),
    Column("partitions", Integer, nullable=False, default=1),
    Column("job", String(512), nullable=False),
    Column("params", LongText, nullable=False),
    Column("status", String(16), nullable=False),
    Column("cursor", LongText),
    Column("processed", BigInteger, nullable=False),
    Column("total", BigInteger),
    Column("times_interrupted", Integer, nullable=False),
    Column("error", LongText),
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
    Column("holder", String(300)),
    Column("fence", BigInteger, nullable=False),
    # Since schema 2: a partition's bounds from the job's plan, and on partition 0 whether
    # on_all_complete has been claimed by the partition that finished last.
    Column("bounds", LongText),
    Column("all_complete", Integer, nullable=False, default=0),
    # Since schema 3: items done past the cursor (the watermark) with --concurrency, as a
    # JSON list of their cursors; the concurrency and other run options kept with the job;
    # how many items were recorded as failed; running time across runs; the recent rate;
    # the identity of the enumerator's source (a file's size and mtime, say).
    Column("done", LongText),
    Column("concurrency", Integer, nullable=False, default=1),
    Column("options", LongText),
    Column("failed_items", BigInteger, nullable=False, default=0),
    Column("elapsed", Double, nullable=False, default=0.0),
    Column("rate", Double),
    Column("source", LongText),
)

#: One row per item recorded as failed and passed over (--max-failures), written in the
#: transaction of the checkpoint that passes the item.
failures_table = Table(
    "iterctl_failures",
    metadata,
    Column("job_id", JobId, primary_key=True),
    Column("partition_index", Integer, primary_key=True),
    # A digest of the encoded cursor: the cursor itself may be too long for a key.
    Column("cursor_key", String(64), primary_key=True),
    Column("cursor", LongText, nullable=False),
    Column("cursor_before", LongText),
    Column("item", Text, nullable=False),
    Column("error_type", String(300), nullable=False),
    Column("message", LongText, nullable=False),
    Column("traceback", LongText, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("failed_at", String(40), nullable=False),
)

#: One row per process that ran a job id (or partition): the history of runs.
runs_table = Table(
    "iterctl_runs",
    metadata,
    Column("job_id", JobId, primary_key=True),
    Column("partition_index", Integer, primary_key=True),
    # The hold's fence: one acquisition, one run.
    Column("fence", BigInteger, primary_key=True),
    Column("host", String(300), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("pod", String(300)),
    Column("started_at", String(40), nullable=False),
    Column("ended_at", String(40)),
    Column("outcome", String(16), nullable=False),
    Column("exit_code", Integer),
    Column("reason", LongText),
    Column("items", BigInteger, nullable=False, default=0),
    Column("cursor_start", LongText),
    Column("cursor_end", LongText),
)

_MYSQL = ("mysql", "mariadb")

#: How often a checkpoint also moves its run's history row (items, end cursor).
_RUN_PROGRESS_SECONDS = 1.0

#: How to bring a store from schema version N to N + 1: statements, each with the
#: dialects it is for (None: every dialect); tables new in N + 1 are created after them.
_MIGRATIONS: dict[int, list[tuple[str, tuple[str, ...] | None]]] = {
    1: [
        ("ALTER TABLE iterctl_jobs ADD COLUMN bounds TEXT", None),
        ("ALTER TABLE iterctl_jobs ADD COLUMN all_complete INTEGER NOT NULL DEFAULT 0", None),
    ],
    2: [
        (
            "ALTER TABLE iterctl_jobs MODIFY job_id VARCHAR(128) COLLATE utf8mb4_bin NOT NULL,"
            " MODIFY params LONGTEXT NOT NULL, MODIFY `cursor` LONGTEXT, MODIFY error LONGTEXT,"
            " MODIFY bounds LONGTEXT",
            _MYSQL,
        ),
        ("ALTER TABLE iterctl_jobs ADD COLUMN done LONGTEXT", _MYSQL),
        ("ALTER TABLE iterctl_jobs ADD COLUMN done TEXT", ("sqlite", "postgresql")),
        ("ALTER TABLE iterctl_jobs ADD COLUMN concurrency INTEGER NOT NULL DEFAULT 1", None),
        ("ALTER TABLE iterctl_jobs ADD COLUMN options LONGTEXT", _MYSQL),
        ("ALTER TABLE iterctl_jobs ADD COLUMN options TEXT", ("sqlite", "postgresql")),
        ("ALTER TABLE iterctl_jobs ADD COLUMN failed_items BIGINT NOT NULL DEFAULT 0", None),
        ("ALTER TABLE iterctl_jobs ADD COLUMN elapsed DOUBLE PRECISION NOT NULL DEFAULT 0", None),
        ("ALTER TABLE iterctl_jobs ADD COLUMN rate DOUBLE PRECISION", None),
        ("ALTER TABLE iterctl_jobs ADD COLUMN source LONGTEXT", _MYSQL),
        ("ALTER TABLE iterctl_jobs ADD COLUMN source TEXT", ("sqlite", "postgresql")),
    ],
}

schema_table = Table(
    "iterctl_schema",
    metadata,
    Column("version", Integer, nullable=False),
)

_INSTALL_HINTS = {
    "psycopg": "install it: pip install 'psycopg[binary]' (iterctl's `postgres` extra)",
    "psycopg2": "use postgresql+psycopg:// and pip install 'psycopg[binary]'",
    "pymysql": "install it: pip install pymysql (iterctl's `mysql` extra)",
    "MySQLdb": "use mysql+pymysql:// and pip install pymysql",
}


def _first_line(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    return (str(original).strip().splitlines() or [type(original).__name__])[0]


#: Query-string keys whose values are secrets (``?password=…``, ``?sslpassword=…``, …).
_SECRET_KEY = re.compile(r"pass|pwd|secret|token|key", re.IGNORECASE)


def shown_url(url: URL) -> str:
    """``url`` as messages may show it: its password and every secret query value hidden."""
    query = {key: "***" if _SECRET_KEY.search(key) else value for key, value in url.query.items()}
    shown = url.set(query=query).render_as_string(hide_password=True)
    return shown.replace("%2A%2A%2A", "***")


def shown_unparsed(text: str) -> str:
    """A URL that did not parse, with whatever looks like a password hidden."""
    text = re.sub(r"(^|//)([^/@:]*:)[^/@]*@", r"\1\2***@", text)
    return re.sub(
        r"([?&][^=&]*(?:pass|pwd|secret|token|key)[^=&]*=)[^&]*",
        r"\1***",
        text,
        flags=re.IGNORECASE,
    )


def _secrets_of(url: URL) -> list[str]:
    values = [url.password or ""]
    values += [str(v) for k, v in url.query.items() if _SECRET_KEY.search(k)]
    return [value for value in values if value]


def parse_store_url(url: str) -> URL:
    """``url`` as SQLAlchemy reads it, or a usage error that shows it without its password."""
    try:
        return make_url(url)
    except (sa_exc.ArgumentError, ValueError) as error:
        detail = "" if isinstance(error, sa_exc.ArgumentError) else f" ({_port_problem(error)})"
        raise UsageError(
            f"cannot parse the store URL {shown_unparsed(url)!r}{detail} — use "
            "sqlite:///path.db, postgresql+psycopg://user@host/db, mysql+pymysql://user@host/db, "
            "a path ending in .db, .sqlite, .sqlite3 or .json"
        ) from None


def _port_problem(error: Exception) -> str:
    return "the port is not a number" if "int()" in str(error) else "not a URL"


class SqlStore:
    """A :class:`~iterctl.stores.base.Store` on any database SQLAlchemy reaches."""

    def __init__(self, url: str, *, create: bool = True, read_only: bool = False) -> None:
        parsed = parse_store_url(url)
        self.display_name = shown_url(parsed)
        self._secrets = _secrets_of(parsed)
        self._dialect = parsed.get_backend_name()
        #: One writer at a time (SQLite): a coupled run's transaction blocks every other.
        self.single_writer = self._dialect == "sqlite"
        self._create = create and not read_only
        self._read_only = read_only
        #: Holds whose database session dropped: they are lost for good (CONTRACT §4).
        self._lost: set[str] = set()
        self._engine = self._create_engine(parsed)
        self._file_holds: FileHolds | None = None
        if self._dialect == "sqlite":
            database = parsed.database or ""
            if database in ("", ":memory:"):
                raise UsageError(
                    "an in-memory SQLite store forgets everything at exit — "
                    "give a file, e.g. sqlite:///iterctl.db"
                )
            self._file_holds = FileHolds(Path(database))
        #: Each hold's own database session: on PostgreSQL/MySQL the one that holds the
        #: lock; on SQLite one opened with the flock. Checkpoints go through it.
        self._hold_connections: dict[str, Connection] = {}
        #: When each hold's run row was last moved (see _note_run_progress).
        self._run_noted: dict[str, float] = {}
        self._run_progress: _Prepared | None = None
        self._checkpoint_statement: _Prepared | None = None
        self._ensure_schema()

    # -- setup ------------------------------------------------------------------------

    def _create_engine(self, url: URL) -> Engine:
        connect_args: dict[str, Any] = {}
        if url.get_backend_name() == "sqlite":
            self._create_sqlite_file(url.database or "")
            connect_args["timeout"] = STORE_WAIT_SECONDS
            if self._read_only and not (url.database or "").startswith("file:"):
                url = _read_only_sqlite(url)
        elif url.get_backend_name() == "postgresql":
            connect_args["connect_timeout"] = 5
            # Bound every statement's wait for a lock another session holds.
            # (Added to the URL's own ?options=…, which connect_args would otherwise replace.)
            given = url.query.get("options", "")
            given = given if isinstance(given, str) else " ".join(given)
            bound = f"-c lock_timeout={int(STORE_WAIT_SECONDS * 1000)}"
            connect_args["options"] = f"{given} {bound}".strip()
        elif url.get_backend_name() in ("mysql", "mariadb"):
            # connect_timeout covers the TCP connect only: a server that accepts and then
            # never sends its greeting needs the read timeout too.
            connect_args.update(
                connect_timeout=5, read_timeout=STORE_WAIT_SECONDS, write_timeout=STORE_WAIT_SECONDS
            )
        try:
            # A server store keeps no idle pooled session: while a job runs, its hold's
            # session is the only one (checkpoints go through it, see checkpoint).
            pooling: dict[str, Any] = (
                {"poolclass": NullPool}
                if url.get_backend_name() != "sqlite"
                else {"pool_pre_ping": True}
            )
            engine = create_engine(url, connect_args=connect_args, **pooling)
        except ModuleNotFoundError as missing:
            hint = _INSTALL_HINTS.get(missing.name or "", "install its database driver")
            raise UsageError(
                f"the store {self.display_name} needs the module {missing.name!r} — {hint}"
            ) from None
        except sa_exc.NoSuchModuleError:
            raise UsageError(
                f"unknown kind of store {url.drivername!r} — use sqlite:///, "
                "postgresql+psycopg://, mysql+pymysql:// or a path ending in .json"
            ) from None
        if url.get_backend_name() == "sqlite":
            event.listen(engine, "connect", _tune_sqlite)
        return engine

    def _create_sqlite_file(self, database: str) -> None:
        """Create the database file readable by its owner only, before SQLite does."""
        if database in ("", ":memory:") or database.startswith("file:"):
            return
        path = Path(database)
        if not self._create and not path.exists():
            raise NoStoreError(
                f"there is no store at {database} — no job has run with this --store; "
                "run iterctl from the folder the job ran in, or pass its --store"
            )
        if not path.parent.is_dir():
            raise StoreUnusableError(
                f"cannot open the store {self.display_name}: the folder {str(path.parent)!r} "
                "does not exist — create it or choose another --store"
            )
        if path.is_dir():
            raise StoreUnusableError(
                f"cannot open the store {self.display_name}: {database} is a directory — "
                "--store must name a file, not a folder"
            )
        if self._read_only:
            return
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as error:
            raise store_os_error(error, f"open the store {self.display_name}") from None

    def _ensure_schema(self) -> None:
        """Create the tables on first use; refuse a store written by a newer iterctl."""
        if self._read_only:
            self._check_schema_read_only()
            return
        with self._connect() as conn:
            for _attempt in range(3):
                try:
                    version = conn.execute(select(schema_table.c.version)).scalar()
                except (sa_exc.ProgrammingError, sa_exc.OperationalError):
                    conn.rollback()  # no tables yet (PostgreSQL also aborts the transaction)
                    version = None
                if version is not None:
                    break
                try:
                    metadata.create_all(conn, checkfirst=True)
                    conn.execute(insert(schema_table).values(version=SCHEMA_VERSION))
                    conn.commit()
                    version = SCHEMA_VERSION
                    break
                except (sa_exc.ProgrammingError, sa_exc.IntegrityError, sa_exc.OperationalError):
                    conn.rollback()  # another process created them at the same moment
            if version is None:
                raise StoreUnusableError(
                    f"cannot create iterctl's tables in {self.display_name} — "
                    "check that the user may create tables there"
                )
            self._refuse_newer(version)
            if version < SCHEMA_VERSION:
                self._migrate(conn, version)
            conn.rollback()
        if self._dialect == "sqlite":
            # WAL lets `status` read while a run writes.
            with self._connect() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreUnusableError(
                f"the store {self.display_name} was written by a newer iterctl "
                f"(schema {version}, this one knows {SCHEMA_VERSION}) — upgrade iterctl"
            )

    def _check_schema_read_only(self) -> None:
        """For reading commands: the tables must be there and of this iterctl's schema."""
        with self._connect() as conn:
            try:
                version = conn.execute(select(schema_table.c.version)).scalar()
            except (sa_exc.ProgrammingError, sa_exc.OperationalError) as error:
                if self._dialect == "sqlite" and "no such table" not in str(error):
                    raise  # a file that is not a database: _connect_errors says so
                version = None
        if version is None:
            raise NoStoreError(
                f"the store {self.display_name} holds no iterctl jobs yet — no job has run "
                "with this --store"
            )
        self._refuse_newer(version)
        if version < SCHEMA_VERSION:
            raise StoreUnusableError(
                f"the store {self.display_name} is of an older iterctl (schema {version}) — "
                "run any job of it once (`iterctl resume`) to upgrade it, then read it"
            )

    def _migrate(self, conn: Connection, version: int) -> None:
        """Upgrade the tables in place, one version at a time, each step in a transaction."""
        conn.rollback()
        while version < SCHEMA_VERSION:
            # Lock the version row so that two processes never run the same step.
            current = conn.execute(select(schema_table.c.version).with_for_update()).scalar_one()
            if current == version:
                for statement, dialects in _MIGRATIONS[version]:
                    if dialects is None or self._dialect in dialects:
                        conn.execute(text(statement))
                metadata.create_all(conn, checkfirst=True)  # the tables new in this version
                conn.execute(update(schema_table).values(version=version + 1))
            conn.commit()
            version = max(current, version + 1)

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        """A connection whose database errors become one line: exit 69, nothing changed."""
        with self._connect_errors():
            # A stop signal may end the wait for a server (a local SQLite file is no wait).
            with nullcontext() if self._dialect == "sqlite" else interruptible_wait():
                conn = self._engine.connect()
            with conn:
                yield conn

    # -- reading ----------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        with self._connect() as conn:
            row = conn.execute(_by_id(job_id)).mappings().first()
        return None if row is None else self._record(row)

    def list(self) -> Records:
        query = select(jobs_table).order_by(
            jobs_table.c.created_at, jobs_table.c.job_id, jobs_table.c.partition_index
        )
        with self._connect() as conn:
            return [self._record(row) for row in conn.execute(query).mappings()]

    def _record(self, row: Any) -> JobRecord:
        return _record(row, self.display_name)

    def partitions(self, job_id: str) -> Records:
        query = (
            select(jobs_table)
            .where(jobs_table.c.job_id == job_id)
            .order_by(jobs_table.c.partition_index)
        )
        with self._connect() as conn:
            return [self._record(row) for row in conn.execute(query).mappings()]

    def create(self, record: JobRecord) -> tuple[JobRecord, bool]:
        stored, created = self.create_partitions([record])
        return stored[0], created

    def create_partitions(self, records: Records) -> tuple[Records, bool]:
        with self._connect() as conn:
            try:
                conn.execute(insert(jobs_table), [_row(record) for record in records])
                conn.commit()
            except sa_exc.IntegrityError:
                conn.rollback()  # another process created this job id first: use theirs
                return self.partitions(records[0].job_id), False
        return records, True

    def claim_all_complete(self, job_id: str) -> bool:
        # MySQL cannot read the table an UPDATE writes except through a derived table,
        # hence the count over a subquery rather than a plain NOT EXISTS.
        unfinished = (
            select(jobs_table.c.partition_index)
            .where(
                jobs_table.c.job_id == job_id,
                jobs_table.c.status != Status.SUCCEEDED.value,
            )
            .subquery()
        )
        none_unfinished = select(func.count()).select_from(unfinished).scalar_subquery() == 0
        with self._connect() as conn:
            result = conn.execute(
                update(jobs_table)
                .where(_matches(job_id, 0), jobs_table.c.all_complete == 0, none_unfinished)
                .values(all_complete=1)
            )
            conn.commit()
        return result.rowcount == 1

    def acquire(self, job_id: str, partition: int = 0) -> Hold:
        name = hold_name(job_id, partition)
        self._take_lock(name)
        try:
            with self._connect() as conn:
                row = conn.execute(_by_id(job_id, partition)).mappings().first()
                if row is None:
                    raise UsageError(f"unknown job id {name!r} in {self.display_name}")
                before = self._record(row)
                if before.status not in RESUMABLE:
                    # Held all the same (retry-failed on a succeeded job): say by whom.
                    conn.execute(
                        update(jobs_table)
                        .where(_matches(job_id, partition))
                        .values(holder=holder_name())
                    )
                    conn.commit()
                    return Hold(job_id, before.fence, before, partition)
                # A record still marked running after a run began was left by a process
                # that died: count that as an interruption.
                crashed = 1 if before.status is Status.RUNNING and before.fence > 0 else 0
                result = conn.execute(
                    update(jobs_table)
                    .where(_matches(job_id, partition), jobs_table.c.fence == before.fence)
                    .values(
                        fence=before.fence + 1,
                        status=Status.RUNNING.value,
                        holder=holder_name(),
                        times_interrupted=before.times_interrupted + crashed,
                        updated_at=utc_now(),
                    )
                )
                if result.rowcount != 1:
                    raise LostHoldError(f"job {job_id} was taken over while starting — retry")
                _start_run(conn, new_run(before, before.fence + 1))
                if self._run_progress is None:  # compiled here, not at a checkpoint
                    self._run_progress = _Prepared(_RUN_PROGRESS, self._engine.dialect)
                conn.commit()
        except BaseException:
            self._drop_lock(name)
            raise
        return Hold(job_id, before.fence + 1, before, partition)

    def checkpoint(self, hold: Hold, checkpoint: Checkpoint) -> None:
        name = hold_name(hold.job_id, hold.partition)
        conn = self._hold_connections.get(name)
        if conn is None:  # the hold was released: say so as a takeover would
            raise LostHoldError(f"job {hold.job_id} is no longer held by this process")
        if name in self._lost:  # its session dropped: never write through another one
            raise lost_session(hold.job_id)
        statement = self._checkpoint_statement or self._prepare_checkpoint()
        values = {
            "new_cursor": checkpoint.cursor_json,
            "new_processed": checkpoint.processed,
            "new_done": checkpoint.done_json,
            "new_status": checkpoint.status.value,
            "new_error": checkpoint.error,
            "new_updated_at": utc_now(),
            # None keeps what the store has (COALESCE in the statement).
            "new_total": checkpoint.total,
            "new_failed_items": checkpoint.failed_items,
            "new_elapsed": checkpoint.elapsed,
            "new_rate": checkpoint.rate,
            "new_source": checkpoint.source_json,
            "new_concurrency": checkpoint.concurrency,
            "interrupted": 1 if checkpoint.status is Status.INTERRUPTED else 0,
            "key_job_id": hold.job_id,
            "key_partition": hold.partition,
            "key_fence": hold.fence,
            "cancelled": Status.CANCELLED.value,
        }
        try:
            with self._one_transaction(conn, bool(checkpoint.failures or checkpoint.resolved)):
                if checkpoint.failures or checkpoint.resolved:
                    # Same transaction as the cursor: a lost hold below rolls these back too.
                    checkpoint = replace(
                        checkpoint, failed_items=self._write_failures(conn, hold, checkpoint)
                    )
                    values["new_failed_items"] = checkpoint.failed_items
                self._note_run_progress(conn, hold, checkpoint)
                result = conn.exec_driver_sql(statement.sql, statement.bind(values))
                if result.rowcount == 1:
                    conn.commit()  # with a coupled run, the job's writes commit here too
                    return
                self._checkpoint_refused(conn, hold, checkpoint)
        except sa_exc.DBAPIError as error:
            raise self._session_error(hold, error) from None

    def _note_run_progress(
        self, conn: Connection, hold: Hold, checkpoint: Checkpoint, *, now_anyway: bool = False
    ) -> None:
        """Move the run's history row (items, end cursor: what a lost run is remembered
        by) at most once a second, and at every checkpoint that ends the run: a
        checkpoint after every item must not cost two writes. Inside the checkpoint's
        transaction when it has one (a coupled run, failure records), else on its own."""
        name = hold_name(hold.job_id, hold.partition)
        now = time.monotonic()
        final = now_anyway or checkpoint.status is not Status.RUNNING
        if not final and now - self._run_noted.get(name, -inf) < _RUN_PROGRESS_SECONDS:
            return
        self._run_noted[name] = now
        if self._run_progress is not None:
            values = {
                "new_items": max(0, checkpoint.processed - hold.record.processed),
                "new_cursor_end": checkpoint.cursor_json,
                "key_job_id": hold.job_id,
                "key_partition": hold.partition,
                "key_fence": hold.fence,
            }
            conn.exec_driver_sql(self._run_progress.sql, self._run_progress.bind(values))

    @contextmanager
    def _one_transaction(self, conn: Connection, needed: bool) -> Iterator[None]:
        """When ``needed``, make the block one transaction on a hold session that runs in
        autocommit (a server store's lock session, SQLite's driver autocommit), unless a
        coupled run has one open already: a checkpoint that writes failure records must
        write them with the cursor, or not at all."""
        if not needed:
            yield
            return
        if self._dialect == "sqlite":
            dbapi = conn.connection.dbapi_connection
            if not dbapi.in_transaction:  # type: ignore[union-attr]
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                conn.rollback()
                raise
            return
        autocommit = conn.get_isolation_level() == "AUTOCOMMIT"
        if autocommit:
            conn.execution_options(isolation_level=conn.default_isolation_level)
        try:
            yield
        finally:
            if autocommit:
                conn.rollback()  # a no-op after the commit; ends a refused write
                conn.execution_options(isolation_level="AUTOCOMMIT")

    @staticmethod
    def _write_failures(conn: Connection, hold: Hold, checkpoint: Checkpoint) -> int:
        """Replace and drop the checkpoint's failure records; return the hold's new count
        of them, read in this transaction."""
        of_hold = (failures_table.c.job_id == hold.job_id) & (
            failures_table.c.partition_index == hold.partition
        )
        keys = [cursor_key(c) for c in checkpoint.resolved]
        keys += [record.cursor_key for record in checkpoint.failures]
        # Writing a record replaces the cursor's old one; in slices, as SQLite caps the
        # number of bound parameters in one statement.
        for start in range(0, len(keys), 500):
            chosen = failures_table.c.cursor_key.in_(keys[start : start + 500])
            conn.execute(delete(failures_table).where(of_hold, chosen))
        if checkpoint.failures:
            rows = [_failure_row(hold, record) for record in checkpoint.failures]
            conn.execute(insert(failures_table), rows)
        count = select(func.count()).select_from(failures_table).where(of_hold)
        return int(conn.execute(count).scalar_one())

    def failures(self, job_id: str, limit: int | None = None) -> FailureRecords:
        query = (
            select(failures_table)
            .where(failures_table.c.job_id == job_id)
            .order_by(
                failures_table.c.failed_at.desc(),
                failures_table.c.partition_index.desc(),
                failures_table.c.cursor.desc(),
            )
            .limit(limit)
        )
        with self._connect() as conn:
            return [_failure(row) for row in conn.execute(query).mappings()]

    def _prepare_checkpoint(self) -> _Prepared:
        """The checkpoint's UPDATE, compiled once per store: each checkpoint then costs
        one statement and one commit, with nothing for SQLAlchemy to build or look up."""
        c = jobs_table.c

        def keep_unless(name: str, column: Any) -> Any:
            return func.coalesce(bindparam(name, type_=column.type), column)

        statement = (
            update(jobs_table)
            .where(
                c.job_id == bindparam("key_job_id"),
                c.partition_index == bindparam("key_partition"),
                c.fence == bindparam("key_fence"),
                c.status != bindparam("cancelled"),
            )
            .values(
                cursor=bindparam("new_cursor", type_=c.cursor.type),
                processed=bindparam("new_processed", type_=c.processed.type),
                done=bindparam("new_done", type_=c.done.type),
                status=bindparam("new_status", type_=c.status.type),
                error=bindparam("new_error", type_=c.error.type),
                updated_at=bindparam("new_updated_at", type_=c.updated_at.type),
                total=keep_unless("new_total", c.total),
                failed_items=keep_unless("new_failed_items", c.failed_items),
                elapsed=keep_unless("new_elapsed", c.elapsed),
                rate=keep_unless("new_rate", c.rate),
                source=keep_unless("new_source", c.source),
                concurrency=keep_unless("new_concurrency", c.concurrency),
                times_interrupted=c.times_interrupted + bindparam("interrupted", type_=Integer),
            )
        )
        self._checkpoint_statement = _Prepared(statement, self._engine.dialect)
        return self._checkpoint_statement

    def _checkpoint_refused(self, conn: Connection, hold: Hold, checkpoint: Checkpoint) -> None:
        """The fenced UPDATE matched nothing: the job was cancelled (save the cursor and
        count, then say so) or another process took it over (save nothing)."""
        fence = conn.execute(
            select(jobs_table.c.fence).where(_matches(hold.job_id, hold.partition))
        ).scalar()
        if fence != hold.fence:
            conn.rollback()
            raise LostHoldError(
                f"job {hold.job_id} was taken over by another process; "
                "this one stopped without saving"
            )
        progress: dict[str, Any] = {
            "cursor": checkpoint.cursor_json,
            "processed": checkpoint.processed,
            "done": checkpoint.done_json,
            "updated_at": utc_now(),
        }
        for column in ("total", "failed_items", "elapsed", "rate", "concurrency"):
            value = getattr(checkpoint, column)
            if value is not None:  # None keeps what the store has
                progress[column] = value
        if checkpoint.source_json is not None:
            progress["source"] = checkpoint.source_json
        conn.execute(
            update(jobs_table)
            .where(_matches(hold.job_id, hold.partition), jobs_table.c.fence == hold.fence)
            .values(progress)
        )
        # The run's last checkpoint: its row must say what it saved.
        self._note_run_progress(conn, hold, checkpoint, now_anyway=True)
        conn.commit()
        raise JobCancelledError(f"job {hold.job_id} was cancelled")

    def _session_error(self, hold: Hold, error: sa_exc.DBAPIError) -> IterctlError:
        """A database error on the hold's session: a dead session means the hold is lost
        (exit 75, its transaction rolled back); anything else is the store failing (69)."""
        if error.connection_invalidated:
            self._lost.add(hold_name(hold.job_id, hold.partition))
            return lost_session(hold.job_id)
        return self._explained(error)

    def couple(self, hold: Hold) -> SqlCoupledWrites:
        """Open the job's writes to the checkpoint's transaction on the hold's session:
        from now on they commit only with a checkpoint under ``hold``."""
        conn = self._hold_connections[hold_name(hold.job_id, hold.partition)]
        if self._dialect != "sqlite":
            # The server session took its lock in autocommit mode; the job's writes need
            # a transaction that only the checkpoint ends. The lock is the session's.
            with self._connect_errors():
                conn.rollback()
                conn.execution_options(isolation_level=conn.default_isolation_level)
        return SqlCoupledWrites(conn, hold.job_id, self.display_name)

    def check_hold(self, hold: Hold) -> None:
        """Raise LostHoldError if the hold's database session has dropped (one round trip).

        The lock lives and dies with that session: once it is gone (a killed backend, a
        failover, a network cut) the hold is lost for good, and is never used again, so
        nothing is written through a session that does not hold the lock.
        """
        if self._file_holds is not None:
            return  # a file lock cannot be lost while its process lives
        name = hold_name(hold.job_id, hold.partition)
        conn = self._hold_connections.get(name)
        if conn is None or name in self._lost:
            raise lost_session(hold.job_id)
        try:
            conn.exec_driver_sql("SELECT 1")
        except sa_exc.DBAPIError as error:
            raise self._session_error(hold, error) from None

    def release(self, hold: Hold) -> None:
        self._drop_lock(hold_name(hold.job_id, hold.partition))

    # -- runs, holds seen from outside, deletion ----------------------------------------

    def end_run(self, hold: Hold, end: RunEnd) -> None:
        start = RunRecord(hold.job_id, hold.partition, hold.fence, "", 0, None, "")
        ended = ended_run(start, end, hold.record.processed)
        # As ended_run says: never fewer items than a checkpoint of this run saved.
        more = runs_table.c["items"] <= ended.items
        statement = (
            update(runs_table)
            .where(_run_of(hold))
            .values(
                ended_at=ended.ended_at,
                outcome=ended.outcome.value,
                exit_code=ended.exit_code,
                reason=ended.reason,
                items=case((more, ended.items), else_=runs_table.c["items"]),
                cursor_end=case((more, ended.cursor_end_json), else_=runs_table.c.cursor_end),
            )
        )
        try:
            with self._hold_session(hold) as conn:
                conn.execute(statement)
                conn.commit()
                return
        except (sa_exc.SQLAlchemyError, StoreUnavailableError):
            pass  # the hold's session is gone (maybe why the run ended): use a new one
        with self._connect() as conn:
            conn.execute(statement)
            conn.commit()

    @contextmanager
    def _hold_session(self, hold: Hold) -> Iterator[Connection]:
        """The hold's own session while it lasts (no second connection), else a new one."""
        conn = self._hold_connections.get(hold_name(hold.job_id, hold.partition))
        if conn is None:
            with self._connect() as fresh:
                yield fresh
        else:
            with self._connect_errors():
                yield conn

    def runs(self, job_id: str, limit: int | None = None) -> Runs:
        query = (
            select(runs_table)
            .where(runs_table.c.job_id == job_id)
            .order_by(runs_table.c.started_at.desc(), runs_table.c.partition_index.desc())
            .limit(limit)
        )
        with self._connect() as conn:
            return [_run(row) for row in conn.execute(query).mappings()]

    def live_holds(self, names: Collection[str]) -> set[str]:
        if not names:
            return set()
        if self._file_holds is not None:
            return self._file_holds.held(names)
        with self._connect() as conn:
            if self._dialect == "postgresql":
                return _pg_live(conn, names)
            return _mysql_live(conn, names)

    def delete(self, job_id: str) -> int:
        names: Sequence[str] = [record.hold_name for record in self.partitions(job_id)]
        session = self._lock_all(names)  # refuses, deleting nothing, while one is held
        try:
            with self._connect() as conn:
                for table in (failures_table, runs_table, jobs_table):
                    conn.execute(delete(table).where(table.c.job_id == job_id))
                conn.commit()
            if self._file_holds is not None:
                for name in names:
                    self._file_holds.remove(name)
        finally:
            if session is not None:
                session.invalidate()  # ends the session and every lock it took
                session.close()
            elif self._file_holds is not None:
                for name in names:
                    self._file_holds.drop(name)
        return len(names)

    def _lock_all(self, names: Sequence[str]) -> Connection | None:
        """Take every one of ``names`` (one session for all on a server), or none."""
        if self._file_holds is not None:
            taken: set[str] = set()
            try:
                for name in names:
                    self._file_holds.take(name)
                    taken.add(name)
            except JobHeldError:
                for taken_name in taken:
                    self._file_holds.drop(taken_name)
                record = self._record_of(name)
                raise delete_refused(name, record.holder if record else None) from None
            return None
        with self._connect_errors():
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            for name in names:
                got = conn.execute(self._lock_statement(), {"key": self._key_of(name)}).scalar()
                if got != 1 and got is not True:
                    conn.invalidate()
                    conn.close()
                    record = self._record_of(name)
                    raise delete_refused(name, record.holder if record else None)
        return conn

    def _record_of(self, name: str) -> JobRecord | None:
        job_id, _, partition = name.partition("@")
        with self._connect() as conn:
            row = conn.execute(_by_id(job_id, int(partition or 0))).mappings().first()
        return None if row is None else self._record(row)

    def _key_of(self, name: str) -> int | str:
        key = _lock_key(name)
        # GET_LOCK takes a name (64 characters at most), advisory locks a bigint.
        return key if self._dialect == "postgresql" else _mysql_lock_name(key)

    def cancel(self, job_id: str) -> JobRecord:
        with self._connect() as conn:
            conn.execute(
                update(jobs_table)
                .where(
                    jobs_table.c.job_id == job_id,
                    jobs_table.c.status.in_([status.value for status in RESUMABLE]),
                )
                .values(status=Status.CANCELLED.value, updated_at=utc_now())
            )
            row = conn.execute(_by_id(job_id)).mappings().first()
            conn.commit()
        if row is None:
            raise UsageError(f"unknown job id {job_id!r} in {self.display_name}")
        return self._record(row)

    def close(self) -> None:
        for job_id in list(self._hold_connections):
            self._drop_lock(job_id)
        if self._file_holds is not None:
            self._file_holds.drop_all()
        self._engine.dispose()

    # -- holds ------------------------------------------------------------------------

    def _take_lock(self, job_id: str) -> None:
        if self._file_holds is not None:
            self._file_holds.take(job_id)
            try:
                self._hold_connections[job_id] = self._sqlite_session()
            except BaseException:
                self._file_holds.drop(job_id)
                raise
            return
        # A dedicated autocommit connection: the lock lives exactly as long as this
        # session, so a killed process releases it when its socket closes.
        with self._connect_errors():
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            got = conn.execute(self._lock_statement(), {"key": self._key_of(job_id)}).scalar()
        if got != 1 and got is not True:
            conn.close()
            record = self.get(job_id)
            holder = record.holder if record and record.holder else "another process"
            raise JobHeldError(
                f"job {job_id} is already running ({holder}) — wait for it to stop, "
                "or stop it first; this process changed nothing"
            )
        self._hold_connections[job_id] = conn

    def _drop_lock(self, job_id: str) -> None:
        conn = self._hold_connections.pop(job_id, None)
        if conn is not None:
            # End the database session itself, which releases its lock and rolls back
            # what no checkpoint committed: close() alone would only hand the connection,
            # lock, transaction and all, back to the pool.
            conn.invalidate()
            conn.close()
        if self._file_holds is not None:
            self._file_holds.drop(job_id)

    def _sqlite_session(self) -> Connection:
        """A SQLite connection in the driver's autocommit mode: a checkpoint's UPDATE is a
        transaction of its own, and a coupled run says BEGIN IMMEDIATE itself.

        pysqlite's own transaction handling begins only before DML, so a SAVEPOINT first
        in a transaction would start one that its RELEASE commits; and a deferred BEGIN
        that upgrades to a write can fail at once when another connection wrote between.
        """
        with self._connect_errors():
            conn = self._engine.connect()
            conn.connection.dbapi_connection.isolation_level = None  # type: ignore[union-attr]
        return conn

    def _lock_statement(self) -> Any:
        if self._dialect == "postgresql":
            return text("SELECT pg_try_advisory_lock(:key)")
        if self._dialect in ("mysql", "mariadb"):
            return text("SELECT GET_LOCK(:key, 0)")
        raise UsageError(
            f"iterctl cannot lock job ids on {self._dialect} — use SQLite, PostgreSQL or MySQL"
        )

    @contextmanager
    def _connect_errors(self) -> Iterator[None]:
        """Database errors inside the block become one line for people, with the exit code
        of the rule in :class:`~iterctl.errors.StoreUnavailableError`."""
        try:
            yield
        except sa_exc.DBAPIError as error:
            raise self._explained(error) from None

    def _explained(self, error: sa_exc.DBAPIError) -> StoreUnavailableError | StoreUnusableError:
        reason = _first_line(error)
        for secret in self._secrets:
            reason = reason.replace(secret, "***")
        where = f"the store {self.display_name}"
        if self._dialect != "sqlite":
            return StoreUnavailableError(
                f"cannot use {where}: {reason} — check the URL, the credentials and that "
                "the server is up"
            )
        if "locked" in reason or "busy" in reason:
            return StoreUnavailableError(
                f"cannot use {where}: another process kept it locked for {STORE_WAIT_SECONDS:g}"
                " s (a writer that is stuck or stopped) — end that process, then run again"
            )
        if "disk is full" in reason or "disk I/O" in reason:
            return StoreUnavailableError(
                f"cannot write {where}: {reason} — nothing was changed; free space, then run again"
            )
        if "not a database" in reason or "malformed" in reason or "encrypted" in reason:
            return StoreUnusableError(
                f"cannot use {where}: the file is not an SQLite database or is damaged "
                f"({reason}) — point --store at another file, or restore it from a copy"
            )
        return StoreUnusableError(
            f"cannot use {where}: {reason} — check the file, its folder and their permissions"
        )


class _Prepared:
    """A statement compiled once for one dialect, run with ``exec_driver_sql``."""

    def __init__(self, statement: Any, dialect: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql: str = compiled.string
        self._order = tuple(compiled.positiontup or ()) if compiled.positional else None

    def bind(self, values: dict[str, Any]) -> dict[str, Any] | tuple[Any, ...]:
        """``values`` as the driver's paramstyle wants them."""
        if self._order is None:
            return values
        return tuple(values[name] for name in self._order)


def _lock_key(job_id: str) -> int:
    """A 64-bit key standing for the job id in the database's lock namespace."""
    digest = hashlib.blake2b(f"iterctl:{job_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _read_only_sqlite(url: URL) -> URL:
    """Reading commands read: a read-only file or folder is no obstacle.

    SQLite opens a WAL database read-only only where it may create the ``-shm`` file; in
    a folder this user cannot write, nobody of this user writes the store either, so it is
    opened as immutable.
    """
    database = url.database or ""
    folder = os.path.dirname(os.path.abspath(database))
    mode = {"mode": "ro"} if os.access(folder, os.W_OK) else {"immutable": "1"}
    return url.set(database=f"file:{database}", query={**mode, "uri": "true"})


def _mysql_lock_name(key: int) -> str:
    return f"iterctl:{key:x}"


def _pg_live(conn: Connection, names: Collection[str]) -> set[str]:
    """The held ones among ``names``: one read of pg_locks, whatever their number.

    A bigint advisory lock shows as classid (high 32 bits) and objid (low 32 bits)."""
    rows = conn.execute(
        text(
            "SELECT classid::bigint, objid::bigint FROM pg_locks "
            "WHERE locktype = 'advisory' AND objsubid = 1 AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    )
    held = set()
    for high, low in rows:
        key = (high << 32) | low
        held.add(key - (1 << 64) if key >= 1 << 63 else key)
    return {name for name in names if _lock_key(name) in held}


def _mysql_live(conn: Connection, names: Collection[str]) -> set[str]:
    """The held ones among ``names``: one query of IS_USED_LOCK over all of them."""
    ordered = list(names)
    keys = union_all(
        *(
            select(literal(i).label("i"), literal(_mysql_lock_name(_lock_key(name))).label("k"))
            for i, name in enumerate(ordered)
        )
    ).subquery()
    query = select(keys.c.i).where(func.IS_USED_LOCK(keys.c.k).is_not(None))
    return {ordered[i] for (i,) in conn.execute(query)}


def _start_run(conn: Connection, run: RunRecord) -> None:
    """In the acquisition's transaction: the previous run, if still open, was left by a
    process that died (lost); this run begins; the one that falls out of the newest
    RUNS_KEPT is dropped.

    Each acquisition closes the run before it, so only the previous fence's run can be
    open, and fences count up one by one: every statement names one row by its primary
    key. (A range would take InnoDB gap locks that deadlock with the partitions of the
    same job starting at once.)"""
    key = (runs_table.c.job_id == run.job_id) & (runs_table.c.partition_index == run.partition)
    if run.fence > 1:
        conn.execute(
            update(runs_table)
            .where(key, runs_table.c.fence == run.fence - 1, runs_table.c.ended_at.is_(None))
            .values(outcome=RunOutcome.LOST.value)
        )
    if run.fence > RUNS_KEPT:
        conn.execute(delete(runs_table).where(key, runs_table.c.fence == run.fence - RUNS_KEPT))
    conn.execute(
        insert(runs_table).values(
            job_id=run.job_id,
            partition_index=run.partition,
            fence=run.fence,
            host=run.host,
            pid=run.pid,
            pod=run.pod,
            started_at=run.started_at,
            outcome=run.outcome.value,
            items=0,
            cursor_start=run.cursor_start_json,
            cursor_end=run.cursor_end_json,
        )
    )


def _run_of(hold: Hold) -> Any:
    return (
        (runs_table.c.job_id == hold.job_id)
        & (runs_table.c.partition_index == hold.partition)
        & (runs_table.c.fence == hold.fence)
    )


#: A run's items and end cursor as of a checkpoint (see SqlStore._note_run_progress).
_RUN_PROGRESS = (
    update(runs_table)
    .where(
        runs_table.c.job_id == bindparam("key_job_id"),
        runs_table.c.partition_index == bindparam("key_partition"),
        runs_table.c.fence == bindparam("key_fence"),
    )
    .values(
        items=bindparam("new_items", type_=BigInteger),
        cursor_end=bindparam("new_cursor_end", type_=LongText),
    )
)


def _run(row: Any) -> RunRecord:
    return RunRecord(
        job_id=row["job_id"],
        partition=row["partition_index"],
        fence=row["fence"],
        host=row["host"],
        pid=row["pid"],
        pod=row["pod"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        outcome=RunOutcome(row["outcome"]),
        exit_code=row["exit_code"],
        reason=row["reason"],
        items=row["items"],
        cursor_start_json=row["cursor_start"],
        cursor_end_json=row["cursor_end"],
    )


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # FULL makes each checkpoint durable; at the default interval its fsync costs far
    # under 1% of the run. (WAL is set once the store is known to be ours: it is
    # persistent, and a store we refuse must be left exactly as it was.)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _matches(job_id: str, partition: int = 0) -> Any:
    return (jobs_table.c.job_id == job_id) & (jobs_table.c.partition_index == partition)


def _by_id(job_id: str, partition: int = 0) -> Any:
    return select(jobs_table).where(_matches(job_id, partition))


def _row(record: JobRecord) -> dict[str, Any]:
    return {
        "job_id": record.job_id,
        "job": record.job,
        "params": json.dumps(record.params, sort_keys=True),
        "status": record.status.value,
        "cursor": record.cursor_json,
        "processed": record.processed,
        "total": record.total,
        "times_interrupted": record.times_interrupted,
        "error": record.error,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "holder": record.holder,
        "fence": record.fence,
        "partition_index": record.partition,
        "partitions": record.partitions,
        "bounds": record.bounds_json,
        "all_complete": 0,
        "done": record.done_json,
        "concurrency": record.concurrency,
        "options": record.options_json,
        "failed_items": record.failed_items,
        "elapsed": record.elapsed,
        "rate": record.rate,
        "source": record.source_json,
    }


def _record(row: Any, store_name: str) -> JobRecord:
    try:
        params = json.loads(row["params"])
    except (TypeError, ValueError, RecursionError):
        params = None  # checked_record names it
    return checked_record(
        {
            "job_id": row["job_id"],
            "job": row["job"],
            "params": params,
            "status": row["status"],
            "cursor_json": row["cursor"],
            "processed": row["processed"],
            "total": row["total"],
            "times_interrupted": row["times_interrupted"],
            "error": row["error"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "holder": row["holder"],
            "fence": row["fence"],
            "partition": row["partition_index"],
            "partitions": row["partitions"],
            "bounds_json": row["bounds"],
            "done_json": row["done"],
            "concurrency": row["concurrency"],
            "options_json": row["options"],
            "failed_items": row["failed_items"],
            "elapsed": row["elapsed"],
            "rate": row["rate"],
            "source_json": row["source"],
        },
        store_name,
    )


def _failure_row(hold: Hold, record: FailureRecord) -> dict[str, Any]:
    return {
        "job_id": hold.job_id,
        "partition_index": hold.partition,
        "cursor_key": record.cursor_key,
        "cursor": record.cursor_json,
        "cursor_before": record.cursor_before_json,
        "item": record.item,
        "error_type": record.error_type[:300],
        "message": record.message,
        "traceback": record.traceback,
        "attempts": record.attempts,
        "failed_at": record.failed_at,
    }


def _failure(row: Any) -> FailureRecord:
    return FailureRecord(
        cursor_json=row["cursor"],
        cursor_before_json=row["cursor_before"],
        item=row["item"],
        error_type=row["error_type"],
        message=row["message"],
        traceback=row["traceback"],
        attempts=row["attempts"],
        failed_at=row["failed_at"],
        partition=row["partition_index"],
    )
