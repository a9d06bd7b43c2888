"""SQL keyset builders on SQLite, PostgreSQL and MariaDB: resuming from any cursor they
yielded gives exactly the remaining rows, in order, once each; bad setups are refused."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    Select,
    String,
    Table,
    Uuid,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, sessionmaker

from iterctl.enumerators import batch_ranges, record_batches, records
from iterctl.errors import UsageError

DB_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=8
)
OFFSETS = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-14 * 60, 14 * 60)
)


def roundtrip(cursor: Any) -> Any:
    """The cursor as the store gives it back."""
    return json.loads(json.dumps(cursor))


def make_events(make_table: Callable[..., Table]) -> tuple[Table, Table]:
    owners = make_table(
        "owners",
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("label", String(20), nullable=False),
    )
    events = make_table(
        "events",
        Column("id", BigInteger, primary_key=True, autoincrement=False),
        Column("at", DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql"),
               nullable=False),
        Column("amount", Numeric(30, 10), nullable=False),
        Column("name", String(40), nullable=False),
        Column("big", BigInteger, nullable=False),
        Column("uid", Uuid, nullable=False),
        Column("owner_id", Integer, ForeignKey(owners.c.id), nullable=False),
        Column("note", String(20), nullable=True),
    )
    return owners, events


@st.composite
def event_rows(draw: st.DrawFn, dialect: str) -> list[dict[str, Any]]:
    """Up to 25 rows with many ties: three instants, three owners, repeated names."""
    aware = dialect == "postgresql"
    instants = st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1),
        timezones=OFFSETS if aware else st.none(),
    )
    pool = draw(st.lists(instants, min_size=1, max_size=3))
    # SQLite keeps NUMERIC as a float: give it values a float holds exactly.
    places = 10 if dialect != "sqlite" else 2
    limit = 10**19 if dialect != "sqlite" else 10**9
    amounts = st.decimals(min_value=-limit, max_value=limit, places=places,
                          allow_nan=False, allow_infinity=False)
    names = draw(st.lists(TEXT, min_size=1, max_size=4))
    ids = draw(st.lists(st.integers(-(2**62), 2**62), unique=True, max_size=25))
    return [
        {
            "id": id_,
            "at": draw(st.sampled_from(pool)),
            "amount": draw(amounts),
            "name": draw(st.sampled_from(names)),
            "big": draw(st.integers(-(2**63), 2**63 - 1)),
            "uid": draw(st.uuids(version=4)),
            "owner_id": draw(st.sampled_from([1, 2, 3])),
            "note": None,
        }
        for id_ in ids
    ]


def cursor_columns(events: Table, dialect: str) -> list[Any]:
    choices: list[Any] = [
        None,
        ["at"],
        [events.c.at.desc()],
        [events.c.name.desc(), events.c.big],
        [events.c.uid],
        [events.c.big, events.c.id.desc()],
    ]
    if dialect != "sqlite":
        choices.append([events.c.amount.desc()])
    return choices


def queries(events: Table, owners: Table) -> list[Select[Any]]:
    joined = select(events, owners).join_from(events, owners)
    return [select(events), select(events).where(events.c.big > 0), joined]


def load(engine: Engine, events: Table, owners: Table, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as connection:
        connection.execute(delete(events))
        if not connection.execute(select(owners.c.id)).first():
            connection.execute(insert(owners), [{"id": i, "label": f"o{i % 2}"} for i in (1, 2, 3)])
        if rows:
            connection.execute(insert(events), rows)


def ids_of(pairs: Any, position: int = 0) -> list[int]:
    return [row[position] for row, _cursor in pairs]


@DB_SETTINGS
@given(data=st.data())
def test_records_resume_from_any_cursor_yields_exactly_the_rest(
    engine: Engine, make_table: Callable[..., Table], data: st.DataObject
) -> None:
    """For any rows (ties, unicode, offsets, big numbers) and cursor columns (descending,
    mixed, of a joined table), resuming from any yielded cursor after a JSON round trip
    gives the remaining rows in order, once each, and the first run gives every row once."""
    owners, events = _tables(make_table)
    dialect = engine.dialect.name
    rows = data.draw(event_rows(dialect))
    load(engine, events, owners, rows)
    query = data.draw(st.sampled_from(queries(events, owners)))
    choices = cursor_columns(events, dialect)
    if hasattr(query.get_final_froms()[0], "left"):  # the join
        choices.append([owners.c.label, events.c.at])  # a joined table's column leads
    columns = data.draw(st.sampled_from(choices))
    batch_size = data.draw(st.integers(1, 4))

    full = list(records(engine, query, columns=columns, batch_size=batch_size))
    wanted = {r["id"] for r in rows if query.whereclause is None or r["big"] > 0}
    assert sorted(ids_of(full)) == sorted(wanted)
    for index in data.draw(st.lists(st.integers(0, max(len(full) - 1, 0)), max_size=3)):
        if not full:
            break
        cursor = roundtrip(full[index][1])
        rest = records(engine, query, columns=columns, batch_size=batch_size, cursor=cursor)
        assert ids_of(rest) == ids_of(full[index + 1 :])


_TABLES: dict[Callable[..., Table], tuple[Table, Table]] = {}


def _tables(make_table: Callable[..., Table]) -> tuple[Table, Table]:
    """The test's two tables, made once per test function (hypothesis reruns the body)."""
    if make_table not in _TABLES:
        _TABLES.clear()
        _TABLES[make_table] = make_events(make_table)
    return _TABLES[make_table]


@DB_SETTINGS
@given(data=st.data())
def test_record_batches_and_batch_ranges_resume_exactly(
    engine: Engine, make_table: Callable[..., Table], data: st.DataObject
) -> None:
    """Batches flatten to the records walk; batch ranges select exactly their rows; both
    resume from any yielded cursor with exactly the remaining batches."""
    owners, events = _tables(make_table)
    rows = data.draw(event_rows(engine.dialect.name))
    load(engine, events, owners, rows)
    columns = data.draw(st.sampled_from([None, ["at"], [events.c.name.desc(), events.c.big]]))
    query = data.draw(st.sampled_from(queries(events, owners)[:2]))
    size = data.draw(st.integers(1, 4))

    expected = ids_of(records(engine, query, columns=columns))
    batches = list(record_batches(engine, query, columns=columns, batch_size=size))
    assert [row[0] for batch, _ in batches for row in batch] == expected
    ranges = list(batch_ranges(engine, query, columns=columns, batch_size=size))
    with engine.connect() as connection:
        covered = [
            connection.execute(select(events.c.id).where(r.where)).scalars().all()
            for r, _ in ranges
        ]
    assert sorted(i for part in covered for i in part) == sorted(expected)
    assert all(len(part) == size for part in covered[:-1])
    if batches:
        index = data.draw(st.integers(0, len(batches) - 1))
        again = record_batches(engine, query, columns=columns, batch_size=size,
                               cursor=roundtrip(batches[index][1]))
        assert [b for b, _ in again] == [b for b, _ in batches[index + 1 :]]
        later = batch_ranges(engine, query, columns=columns, batch_size=size,
                             cursor=roundtrip(ranges[index][1]))
        assert [r.first for r, _ in later] == [r.first for r, _ in ranges[index + 1 :]]


def test_cursor_keeps_values_exactly_as_json(
    engine: Engine, make_table: Callable[..., Table]
) -> None:
    """Cursor values are JSON: integers exact, decimals and datetimes (microseconds and
    offset) and UUIDs as exact strings that read back to the same value."""
    owners, events = make_events(make_table)
    dialect = engine.dialect.name
    at = datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    row = {"id": 2**62 + 1, "at": at if dialect == "postgresql" else at.replace(tzinfo=None),
           "amount": Decimal("12345678901234567890.0123456789") if dialect != "sqlite"
           else Decimal("12.5"), "name": "Zoë ✓", "big": -(2**63), "uid": uuid.UUID(int=7),
           "owner_id": 1, "note": None}  # fmt: skip
    load(engine, events, owners, [row])
    columns = [events.c.at, events.c.amount, events.c.uid, events.c.name, events.c.big]
    [(_, cursor)] = records(engine, select(events), columns=columns)
    assert cursor == roundtrip(cursor)
    assert cursor[0].startswith("2024-03-01")
    assert cursor[0].endswith(".123456+00:00" if dialect == "postgresql" else ".123456")
    assert Decimal(cursor[1]) == row["amount"]
    assert cursor[2:] == [str(uuid.UUID(int=7)), "Zoë ✓", -(2**63), 2**62 + 1]
    assert list(records(engine, select(events), columns=columns, cursor=cursor)) == []


class Base(DeclarativeBase):
    pass


def test_orm_entities_resume_with_a_session_factory_or_an_engine(
    engine: Engine, make_table: Callable[..., Table]
) -> None:
    """With an ORM entity query the items are entities, from a session factory or an
    engine, and resuming from a cursor gives the remaining entities."""
    table = make_table(
        "people",
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("name", String(20), nullable=False),
    )

    class Person(Base):
        __table__ = table
        id: Mapped[int]
        name: Mapped[str]

    with engine.begin() as connection:
        connection.execute(insert(table), [{"id": i, "name": f"p{i % 3}"} for i in range(10)])
    query = select(Person).where(Person.id > 1)
    for bind in (sessionmaker(engine), engine):
        full = list(records(bind, query, columns=[Person.name], batch_size=3))
        assert all(isinstance(person, Person) for person, _ in full)
        assert sorted(p.id for p, _ in full) == list(range(2, 10))
        rest = records(bind, query, columns=[Person.name], batch_size=3, cursor=full[4][1])
        assert [p.id for p, _ in rest] == [p.id for p, _ in full[5:]]
    Base.registry.dispose()


def test_total_is_a_count_only_when_asked(engines: dict[str, Engine]) -> None:
    """``count=True`` gives the query's row count (batches: rounded up); else None."""
    engine = engines["sqlite"]
    table = _scratch_table(engine, rows=7)
    assert records(engine, select(table)).total() is None
    assert records(engine, select(table), count=True).total() == 7
    assert record_batches(engine, select(table), batch_size=3, count=True).total() == 3
    assert batch_ranges(engine, select(table), batch_size=3, count=True).total() == 3


def test_batch_range_where_drives_a_bulk_update(engines: dict[str, Engine]) -> None:
    """A batch range's ``where`` updates exactly that batch's rows, the query's WHERE kept."""
    engine = engines["sqlite"]
    table = _scratch_table(engine, rows=10)
    query = select(table).where(table.c.id % 2 == 0)
    with engine.begin() as connection:
        for batch, _cursor in batch_ranges(engine, query, batch_size=2):
            connection.execute(update(table).where(batch.where).values(name="done"))
        done = connection.execute(select(table.c.id).where(table.c.name == "done")).scalars()
        assert sorted(done) == [0, 2, 4, 6, 8]


def _other() -> Table:
    return Table("other", MetaData(), Column("id", Integer, primary_key=True))


def _scratch_table(engine: Engine, rows: int) -> Table:
    table = Table(
        f"scratch_{uuid.uuid4().hex[:8]}",
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("name", String(20), nullable=False),
        Column("maybe", String(20), nullable=True),
        Column("doc", JSON, nullable=False),
    )
    table.create(engine)
    with engine.begin() as connection:
        connection.execute(
            insert(table), [{"id": i, "name": f"n{i}", "doc": {}} for i in range(rows)]
        )
    return table


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda t: {"query": select(t).order_by(t.c.id)}, "has an ORDER BY"),
        (lambda t: {"query": select(t).limit(5)}, "has a LIMIT"),
        (lambda t: {"query": select(t), "columns": ["maybe"]}, "is nullable"),
        (lambda t: {"query": select(t), "columns": ["doc"]}, "cannot keep exactly"),
        (lambda t: {"query": select(t), "columns": ["nope"]}, "is not a column of"),
        (lambda t: {"query": select(t.c.id), "columns": [_other().c.id]}, "not in the query"),
        (lambda t: {"query": select(t), "cursor": [1, 2]}, "cannot resume from cursor"),
        (lambda t: {"query": select(t), "cursor": 5}, "cannot resume from cursor"),
    ],
    ids=["order-by", "limit", "nullable", "json-column", "unknown-column", "other-table",
         "wrong-length",
         "not-a-list"],
)
def test_bad_setups_are_refused_with_what_to_do(
    engines: dict[str, Engine], build: Callable[[Table], dict[str, Any]], message: str
) -> None:
    """ORDER BY/LIMIT in the query, a nullable or non-JSON-able cursor column, an unknown
    column and a cursor of the wrong shape are usage errors saying what to do instead."""
    engine = engines["sqlite"]
    table = _scratch_table(engine, rows=1)
    with pytest.raises(UsageError, match=message) as raised:
        records(engine, **build(table))
    assert " — " in str(raised.value)


def test_composite_primary_key_is_the_default_cursor_and_unique_columns_need_no_more(
    engine: Engine, make_table: Callable[..., Table]
) -> None:
    """A composite primary key is the default cursor (both columns); named columns that
    are unique by a constraint get nothing appended; others get the primary key."""
    table = make_table(
        "tenants",
        Column("tenant", Integer, primary_key=True, autoincrement=False),
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("code", String(10), nullable=False, unique=True),
        Column("size", Integer, nullable=False),
    )
    rows = [{"tenant": t, "id": i, "code": f"c{t}-{i}", "size": i % 2}
            for t in (2, 1) for i in (3, 1, 2)]  # fmt: skip
    with engine.begin() as connection:
        connection.execute(insert(table), rows)
    full = list(records(engine, select(table), batch_size=2))
    assert [cursor for _, cursor in full] == [[1, 1], [1, 2], [1, 3], [2, 1], [2, 2], [2, 3]]
    assert list(records(engine, select(table), cursor=[1, 3])) == full[3:]
    [(_row, by_code)] = list(records(engine, select(table).where(table.c.id == 1),
                                     columns=["code"]))[:1]  # fmt: skip
    assert by_code == ["c1-1"]
    [(_row, by_size)] = list(records(engine, select(table), columns=["size"]))[:1]
    assert by_size == [0, 1, 2]


@DB_SETTINGS
@given(data=st.data())
def test_partitions_cover_the_walk_once_and_each_resumes_exactly(
    engine: Engine, make_table: Callable[..., Table], data: st.DataObject
) -> None:
    """split(n) bounds (JSON) cut the walk into n contiguous parts: walked one after the
    other they give the whole walk once, and each resumes from its own cursors exactly."""
    owners, events = _tables(make_table)
    rows = data.draw(event_rows(engine.dialect.name))
    load(engine, events, owners, rows)
    columns = data.draw(st.sampled_from([None, ["at"], [events.c.name.desc(), events.c.big]]))
    count = data.draw(st.integers(1, 4))
    whole = records(engine, select(events), columns=columns, batch_size=2, count=True)
    bounds = roundtrip(whole.split(count))
    assert len(bounds) == count
    parts = [list(whole.within(b)) for b in bounds]
    assert [pair for part in parts for pair in part] == list(whole)
    assert sum(whole.within(b).total() or 0 for b in bounds) == len(rows)
    index = data.draw(st.integers(0, count - 1))
    if parts[index]:
        at = data.draw(st.integers(0, len(parts[index]) - 1))
        resumed = records(engine, select(events), columns=columns, batch_size=2,
                          cursor=roundtrip(parts[index][at][1])).within(bounds[index])
        assert list(resumed) == parts[index][at + 1 :]
