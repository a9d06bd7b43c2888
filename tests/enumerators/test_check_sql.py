"""``iterctl check`` over a SQL keyset walk costs K index range scans, not K full scans.

Every statement the check sends is captured: only the fresh walks (the reference and the
determinism walk) start from the table's beginning; each of the K resumes starts with the
keyset predicate on its cursor, the statement shape that test_sql_explain.py shows is an
index range scan on every database. On SQLite the captured statements themselves are
EXPLAINed with their parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Column, Engine, Index, Integer, String, Table, event, insert, select

from iterctl import Job
from iterctl.checking import check_job
from iterctl.cursor import Cursor
from iterctl.enumerators import records

ROWS, LIMIT, SAMPLES, BATCH = 1200, 1000, 10, 50


def test_check_resumes_are_keyset_range_scans_never_walks_from_the_start(
    engine: Engine, make_table: Callable[..., Table]
) -> None:
    table = make_table(
        "checked",
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("grp", Integer, nullable=False),
        Column("payload", String(20), nullable=False),
    )
    Index(f"ix_{table.name}", table.c.grp, table.c.id).create(engine)
    with engine.begin() as connection:
        connection.execute(insert(table), [{"id": i, "grp": i % 7, "payload": "p"}
                                           for i in range(ROWS)])  # fmt: skip

    class Walk(Job):
        def build_enumerator(self, cursor: Cursor) -> Any:
            return records(engine, select(table), columns=[table.c.grp], batch_size=BATCH,
                           cursor=cursor)  # fmt: skip

        def each_iteration(self, item: Any) -> None:
            raise AssertionError("check ran each_iteration")

    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if table.name in statement:
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        report = check_job(Walk, {}, limit=LIMIT, samples=SAMPLES)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert report.passed, "\n".join(report.lines())

    keyset = [s for s in sent if _is_keyset(s[0], table.name)]
    from_start = [s for s in sent if not _is_keyset(s[0], table.name)]
    # The reference walk and the determinism walk; no resume starts from the beginning.
    assert len(from_start) == 2, [s for s, _ in from_start]
    # Each resume reads its suffix of the 1,000-item prefix page by page, from its cursor:
    # no more pages than that suffix needs (a full scan per resume would need all of them).
    positions = [(LIMIT - 1) * n // (SAMPLES - 1) for n in range(SAMPLES)]
    resume_pages = sum(-(-(LIMIT - 1 - p) // BATCH) or 1 for p in positions)
    fresh_pages = 2 * (LIMIT // BATCH)
    assert len(keyset) <= fresh_pages + resume_pages + SAMPLES
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE")
            for statement, parameters in {(s, tuple(p)) for s, p in keyset}:
                plan = " | ".join(
                    str(row[-1])
                    for row in connection.exec_driver_sql(
                        f"EXPLAIN QUERY PLAN {statement}", parameters
                    )
                )
                assert "SEARCH" in plan, plan
                assert "USING" in plan, plan
                assert "TEMP B-TREE" not in plan, plan


def _is_keyset(statement: str, name: str) -> bool:
    """The next-batch statement: row values (grp, id) > (...), or MySQL's grp >= ..."""
    flat = " ".join(statement.split())
    return f"({name}.grp, {name}.id) >" in flat or f"{name}.grp >=" in flat
