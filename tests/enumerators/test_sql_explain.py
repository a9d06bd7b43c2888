"""Each next-batch query is an index range scan, on every database: its EXPLAIN shows the
keyset predicate used as an index bound, not as a filter over a full scan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Column, Engine, Index, Integer, String, Table, insert, select, text

from iterctl.enumerators.sql import Keyset


def plan(engine: Engine, make_table: Callable[..., Table], descending: bool) -> str:
    """The database's plan for a next batch of ``(grp, id)`` keyset pages, as one text."""
    table = make_table(
        "pages",
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("grp", Integer, nullable=False),
        Column("payload", String(40), nullable=False),
    )
    Index(f"ix_{table.name}", table.c.grp, table.c.id).create(engine)
    with engine.begin() as connection:
        rows = [{"id": i, "grp": i % 20, "payload": "x" * 30} for i in range(4000)]
        connection.execute(insert(table), rows)
    columns: list[Any] = [table.c.grp.desc() if descending else table.c.grp]
    keyset = Keyset(engine, select(table), columns=columns, batch_size=100, cursor=None,
                    what="records")  # fmt: skip
    _first, after, _names = keyset.statements(select(table))
    sql = str(after.params(iterctl_k0=7, iterctl_k1=1500).compile(
        engine, compile_kwargs={"literal_binds": True}
    ))
    dialect = engine.dialect.name
    with engine.begin() as connection:
        if dialect == "sqlite":
            connection.exec_driver_sql("ANALYZE")
            found = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}").all()
            return "\n".join(str(row[-1]) for row in found)
        if dialect == "postgresql":
            connection.exec_driver_sql(f"ANALYZE {table.name}")
            # Prove the predicate *can* bound an index scan, whatever the table's size.
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            return "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {sql}"))
        connection.exec_driver_sql(f"ANALYZE TABLE {table.name}").all()
        steps = connection.execute(text(f"EXPLAIN {sql}")).mappings().all()
        return "\n".join(f"{step['type']} {step['key']} {step['Extra']}" for step in steps)


@pytest.mark.parametrize("descending", [False, True], ids=["ascending", "descending"])
def test_next_batch_is_an_index_range_scan(
    engine: Engine, make_table: Callable[..., Table], descending: bool
) -> None:
    """Row values ``(grp, id) > (7, 1500)`` on SQLite and PostgreSQL, the expanded form
    with ``grp >= 7`` on MariaDB: each EXPLAIN shows a range scan of the index, no sort."""
    found = plan(engine, make_table, descending)
    dialect = engine.dialect.name
    if dialect == "sqlite":
        assert "SEARCH" in found
        assert "USING INDEX ix_" in found or "USING COVERING INDEX ix_" in found
        assert "TEMP B-TREE" not in found
    elif dialect == "postgresql":
        assert "Index Scan" in found
        assert "Index Cond: (ROW(grp, id) " in found
        assert "Sort" not in found
    else:
        assert found.startswith("range ix_")
        assert "filesort" not in found
