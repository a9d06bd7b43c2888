"""Engines for the SQL enumerator tests: SQLite always, PostgreSQL and MariaDB when present.

A server test skips only when nothing listens on the server's port, and fails instead under
``CI=true`` (see ``tests/servers.py``). Tables get unique names and are dropped afterwards,
since other suites may use the same databases at the same time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, Table, create_engine
from sqlalchemy.schema import SchemaItem

from tests.servers import server_url

DATABASES = [
    pytest.param("sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]


def _engine(kind: str, folder: Path) -> Engine:
    if kind == "sqlite":
        return create_engine(f"sqlite:///{folder / 'enumerators.db'}")
    return create_engine(server_url(kind), pool_pre_ping=True)


@pytest.fixture(scope="session")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Engine]]:
    """One engine per database kind, made on first use and disposed of at the end."""
    made: dict[str, Engine] = {}
    folder = tmp_path_factory.mktemp("sqlite")

    class Lazy(dict[str, Engine]):
        def __missing__(self, kind: str) -> Engine:
            made[kind] = self[kind] = _engine(kind, folder)
            return made[kind]

    yield Lazy()
    for engine in made.values():
        engine.dispose()


@pytest.fixture(params=DATABASES)
def engine(request: pytest.FixtureRequest, engines: dict[str, Engine]) -> Engine:
    """An engine on each database in turn: sqlite, postgres, mysql (MariaDB)."""
    return engines[request.param]


@pytest.fixture
def make_table(engine: Engine) -> Iterator[Callable[..., Table]]:
    """Create tables with a unique name (``make_table("events", *columns)``); drop them after."""
    metadata = MetaData()
    suffix = uuid.uuid4().hex[:8]

    def make(name: str, *columns: SchemaItem, **options: Any) -> Table:
        if engine.dialect.name in ("mysql", "mariadb"):
            options.setdefault("mysql_charset", "utf8mb4")
            options.setdefault("mysql_collate", "utf8mb4_bin")
        table = Table(f"{name}_{suffix}", metadata, *columns, **options)
        table.create(engine)
        return table

    yield make
    metadata.drop_all(engine)
