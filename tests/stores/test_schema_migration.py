"""A schema-2 store on a database server is brought to schema 3 in place, its job intact."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text

from iterctl.stores.sql import SCHEMA_VERSION, SqlStore
from tests.servers import server_url

# The job table as iterctl's schema 2 created it on each server.
_SCHEMA_2 = """
CREATE TABLE {table} (
    job_id VARCHAR(128) NOT NULL, partition_index INTEGER NOT NULL, partitions INTEGER NOT NULL,
    job VARCHAR(512) NOT NULL, params TEXT NOT NULL, status VARCHAR(16) NOT NULL,
    {cursor} TEXT, processed BIGINT NOT NULL, total BIGINT, times_interrupted INTEGER NOT NULL,
    error TEXT, created_at VARCHAR(40) NOT NULL, updated_at VARCHAR(40) NOT NULL,
    holder VARCHAR(300), fence BIGINT NOT NULL, bounds TEXT,
    all_complete INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (job_id, partition_index)
)
"""


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def test_a_schema_2_store_on_a_server_is_migrated_and_keeps_its_job(kind: str) -> None:
    """In a database of its own, a schema-2 store with one interrupted job: opening it
    migrates it to the current schema, the job reads back as it was, and on MySQL/MariaDB
    the job id compares case-sensitively and a cursor over 64 KB fits."""
    url = server_url(kind)
    database = f"iterctl_migration_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {database}"))
    own_url = url.rsplit("/", 1)[0] + "/" + database
    try:
        engine = create_engine(own_url)
        cursor = '"cursor"' if kind == "postgres" else "`cursor`"
        with engine.begin() as conn:
            conn.execute(text(_SCHEMA_2.format(table="iterctl_jobs", cursor=cursor)))
            conn.execute(text("CREATE TABLE iterctl_schema (version INTEGER NOT NULL)"))
            conn.execute(text("INSERT INTO iterctl_schema VALUES (2)"))
            conn.execute(
                text(
                    f"INSERT INTO iterctl_jobs (job_id, partition_index, partitions, job, params,"
                    f" status, {cursor}, processed, times_interrupted, created_at, updated_at,"
                    " fence, all_complete) VALUES ('Old', 0, 1, 'm:Job', '{}', 'interrupted',"
                    " '6', 7, 1, '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00', 3, 0)"
                )
            )
        engine.dispose()

        store = SqlStore(own_url)
        try:
            record = store.get("Old")
            assert record is not None
            assert (record.status.value, record.cursor_json, record.processed) == (
                "interrupted", "6", 7,
            )  # fmt: skip
            assert (record.concurrency, record.failed_items, record.done_json) == (1, 0, None)
            assert store.get("old") is None  # ids are case-sensitive after the migration
        finally:
            store.close()
        engine = create_engine(own_url)
        with engine.connect() as conn:
            version = conn.execute(text("SELECT version FROM iterctl_schema")).scalar_one()
            if kind == "mysql":
                conn.execute(
                    text(f"UPDATE iterctl_jobs SET {cursor} = :big WHERE job_id = 'Old'"),
                    {"big": '"' + "x" * 70_000 + '"'},
                )
                length = conn.execute(
                    text(f"SELECT LENGTH({cursor}) FROM iterctl_jobs WHERE job_id = 'Old'")
                ).scalar_one()
                assert length == 70_002
        engine.dispose()
        assert version == SCHEMA_VERSION
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {database}"))
        admin.dispose()
