"""SQLAlchemy records, batches and batch ranges, keyset-paginated.

    def build_enumerator(self, cursor):
        return records(engine, select(users).where(users.c.active), cursor=cursor)
        return records(engine, select(events), columns=[events.c.at.desc()], cursor=cursor)
        return records(Session, select(User), cursor=cursor)          # ORM: items are Users
        return record_batches(engine, select(users), batch_size=500, cursor=cursor)
        return batch_ranges(engine, select(users), batch_size=10_000, cursor=cursor)

    def each_iteration(self, batch):                               # with batch_ranges
        with engine.begin() as conn:
            conn.execute(update(users).where(batch.where).values(score=0))

The cursor columns are the primary key by default, or the columns named (strings, columns,
ORM attributes, ``col.desc()`` for descending). When they are not unique, the primary key
is appended; a nullable one is refused. The cursor is a JSON list of the last row's values
(decimals, datetimes, dates, UUIDs as exact strings). Each batch is one short query::

    ... WHERE <yours> AND (a, b) > (:a, :b) ORDER BY a, b LIMIT :batch_size

a row-value comparison on PostgreSQL and SQLite; on MySQL/MariaDB, which scan for it, the
expanded ``a >= :a AND (a > :a OR a = :a AND b > :b)``: an index range scan either way.
For ``--partitions N`` each builder splits into N key ranges of near-equal row counts.
Importing this module imports SQLAlchemy; ``iterctl.enumerators`` loads it only when used.
"""

from __future__ import annotations

import copy
import enum
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Engine,
    Join,
    Select,
    UniqueConstraint,
    and_,
    bindparam,
    false,
    func,
    literal,
    or_,
    select,
    tuple_,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.sql.operators import desc_op

from iterctl.cursor import Cursor
from iterctl.enumerators.base import Enumerator
from iterctl.errors import UsageError

#: Something that executes a batch: an Engine, or a callable returning a Session.
Bind = Engine | Callable[[], Session]
#: A cursor column as the author names it.
ColumnSpec = str | ColumnElement[Any] | Any

_ROW_VALUES_SCAN = {"mysql", "mariadb"}
#: The bounds of a partition that has no rows (the table was empty when split).
EMPTY = "empty"  # these do not use an index for (a, b) > (x, y)

_CODECS: dict[type, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    Decimal: (str, Decimal),
    datetime: (datetime.isoformat, datetime.fromisoformat),
    date: (date.isoformat, date.fromisoformat),
    time: (time.isoformat, time.fromisoformat),
    timedelta: (
        lambda value: value // timedelta(microseconds=1),
        lambda micros: timedelta(microseconds=micros),
    ),
    uuid.UUID: (str, uuid.UUID),
    bytes: (bytes.hex, bytes.fromhex),
}
_JSON_NATIVE = (int, str, float, bool)


@dataclass(frozen=True)
class _Key:
    """One cursor column: how it sorts, and how its value goes to and from JSON."""

    column: Column[Any]
    descending: bool
    encode: Callable[[Any], Any] | None
    decode: Callable[[Any], Any] | None

    @property
    def label(self) -> str:
        return f"{self.column.table.name}.{self.column.name}"


def _codec(column: Column[Any]) -> tuple[Callable[[Any], Any] | None, Callable[[Any], Any] | None]:
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        python_type = object
    if issubclass(python_type, _JSON_NATIVE):
        return None, None
    if issubclass(python_type, enum.Enum):
        return attrgetter("name"), python_type.__getitem__
    for kind, codec in _CODECS.items():
        if issubclass(python_type, kind):
            return codec
    raise UsageError(
        f"cursor column {column} has type {column.type}, which iterctl cannot keep exactly in "
        "a JSON cursor — name other cursor columns with columns=[...] (integers, text, "
        "decimals, dates, datetimes, UUIDs)"
    )


def _as_column(spec: ColumnSpec, table: Any) -> tuple[Column[Any], bool]:
    """The column and whether it sorts descending, from a name, column, attribute or .desc()."""
    descending = False
    if isinstance(spec, UnaryExpression) and spec.modifier is not None:
        descending = spec.modifier is desc_op
        spec = spec.element
    if isinstance(spec, str):
        if spec not in table.c:
            raise UsageError(
                f"cursor column {spec!r} is not a column of {table.name} "
                f"({', '.join(table.c.keys())}) — name one of them, or pass the column itself"
            )
        return table.c[spec], descending
    clause = getattr(spec, "__clause_element__", None)
    if clause is not None:
        spec = clause()
    if isinstance(spec, UnaryExpression) and spec.modifier is not None:
        return _as_column(spec, table)
    if not isinstance(spec, Column):
        raise UsageError(
            f"cursor column {spec} is not a table column — name columns of the query's "
            "tables (a string, table.c.name, an ORM attribute, or column.desc())"
        )
    return spec, descending


def _tables(query: Select[Any]) -> list[Any]:
    """The tables the query selects from, joins opened up, leftmost first."""
    found: list[Any] = []
    pending = list(query.get_final_froms())
    while pending:
        item = pending.pop(0)
        if isinstance(item, Join):
            pending[:0] = [item.left, item.right]
        else:
            found.append(item)
    return found


def _primary_table(query: Select[Any]) -> Any:
    froms = query.get_final_froms()
    if not froms:
        raise UsageError("the query selects from no table — select from a table or ORM entity")
    table = froms[0]
    while isinstance(table, Join):  # its leftmost table leads
        table = table.left
    return table


def _is_unique(table: Any, columns: list[Column[Any]]) -> bool:
    """Whether ``columns`` include a primary key or unique constraint/index of ``table``."""
    names = {c.name for c in columns if c.table is table}
    candidates = [[c.name for c in table.primary_key.columns]]
    candidates += [
        [c.name for c in k.columns]
        for k in getattr(table, "constraints", ())
        if isinstance(k, UniqueConstraint)
    ]
    candidates += [[c.name for c in i.columns] for i in getattr(table, "indexes", ()) if i.unique]
    return any(found and set(found) <= names for found in candidates)


def _keys(query: Select[Any], columns: Sequence[ColumnSpec] | None) -> list[_Key]:
    table = _primary_table(query)
    primary = list(table.primary_key.columns)
    named = [_as_column(spec, table) for spec in columns] if columns else []
    if not named and not primary:
        raise UsageError(
            f"{getattr(table, 'name', table)} has no primary key to use as cursor — name "
            "unique NOT NULL cursor columns with columns=[...]"
        )
    chosen = named or [(c, False) for c in primary]
    if not _is_unique(table, [c for c, _ in chosen]):
        if not primary:
            raise UsageError(
                f"cursor columns {', '.join(str(c) for c, _ in chosen)} are not unique and "
                f"{table.name} has no primary key to add — add a unique column to columns=[...]"
            )
        # Ties would be skipped at a batch's edge: the primary key breaks them.
        direction = chosen[-1][1]
        chosen += [(c, direction) for c in primary if all(c is not k for k, _ in chosen)]
    tables = _tables(query)
    keys = []
    for column, descending in chosen:
        if all(column.table is not t for t in tables):
            raise UsageError(
                f"cursor column {column} is not in the query's tables "
                f"({', '.join(str(getattr(t, 'name', t)) for t in tables)}) — join its table "
                "in the query, or name a column of those tables"
            )
        # A reflected SQLite INTEGER PRIMARY KEY says nullable; a primary key never is NULL.
        if column.nullable and not column.primary_key:
            raise UsageError(
                f"cursor column {column} is nullable: rows where it is NULL can never compare "
                "greater than a cursor, so they would be skipped — make it NOT NULL, or name "
                "NOT NULL cursor columns with columns=[...]"
            )
        keys.append(_Key(column, descending, *_codec(column)))
    return keys


def _after(
    keys: Sequence[_Key],
    values: Sequence[Any],
    *,
    row_values: bool,
    inclusive: bool = False,
    reverse: bool = False,
) -> ColumnElement[bool]:
    """``keys`` come after ``values`` in the walk's order (or before, with ``reverse``).

    Row values ``(a, b) > (x, y)`` when the database ranges an index on them; else the
    expanded form, led by a redundant ``a >= x`` that the optimizer turns into a range.
    """
    ups = [k.descending == reverse for k in keys]
    cols = [k.column for k in keys]
    if (len(keys) == 1 or row_values) and len(set(ups)) == 1:
        left = cols[0] if len(keys) == 1 else tuple_(*cols)
        right = values[0] if len(keys) == 1 else tuple_(*values)
        if ups[0]:
            return left >= right if inclusive else left > right
        return left <= right if inclusive else left < right
    terms = []
    for i, (col, up) in enumerate(zip(cols, ups, strict=True)):
        equal = [c == v for c, v in zip(cols[:i], values[:i], strict=True)]
        terms.append(and_(*equal, col > values[i] if up else col < values[i]))
    if inclusive:
        terms.append(and_(*(c == v for c, v in zip(cols, values, strict=True))))
    lead = cols[0] >= values[0] if ups[0] else cols[0] <= values[0]
    return and_(lead, or_(*terms))


def _position(query: Select[Any], column: Column[Any]) -> int | None:
    for index, selected in enumerate(query.selected_columns):
        element = getattr(selected, "element", selected)  # through a label
        if selected is column or element is column or selected.compare(column):
            return index
    return None


def _refuse_paging(query: Select[Any], what: str) -> None:
    """Refuse a query that orders or pages itself: the walk's order is the cursor's."""
    if not isinstance(query, Select):
        raise UsageError(f"{what} needs a select() statement, not {type(query).__name__}")
    for clause, present in (
        ("an ORDER BY", bool(query._order_by_clauses)),
        ("a LIMIT", query._limit_clause is not None),
        ("an OFFSET", query._offset_clause is not None),
    ):
        if present:
            raise UsageError(
                f"{what} query has {clause}: iterctl orders and pages by the cursor "
                "columns itself — remove it, filter with .where(...) and name the order "
                "with columns=[...]"
            )


class Keyset:
    """The keyset walk shared by the SQL builders: statements, cursor codec, batches."""

    def __init__(
        self,
        bind: Bind,
        query: Select[Any],
        *,
        columns: Sequence[ColumnSpec] | None,
        batch_size: int,
        cursor: Cursor,
        what: str,
    ) -> None:
        _refuse_paging(query, what)
        if batch_size < 1:
            raise UsageError(f"batch_size {batch_size} is less than 1 — use 1 or more")
        self.batch_size = batch_size
        self.keys = _keys(query, columns)
        self._query = query
        descriptions = query.column_descriptions
        self.orm = (
            len(descriptions) == 1
            and descriptions[0].get("expr") is descriptions[0].get("entity") is not None
        )
        if isinstance(bind, Engine):
            self._engine: Engine | None = bind
            self._sessions: Callable[[], Session] | None = sessionmaker(bind) if self.orm else None
            dialect = bind.dialect
        else:
            self._engine, self._sessions = None, bind
            with bind() as session:
                dialect = session.get_bind(clause=query).dialect
        self.row_values = dialect.name not in _ROW_VALUES_SCAN
        self.resume = self._decode(cursor, what)

    @property
    def query(self) -> Select[Any]:
        """The author's query (with a partition's bounds, if any)."""
        return self._query

    def _decode(self, cursor: Cursor, what: str) -> list[Any] | None:
        if cursor is None:
            return None
        names = ", ".join(k.label for k in self.keys)
        if type(cursor) is not list or len(cursor) != len(self.keys):
            raise UsageError(
                f"{what} cannot resume from cursor {cursor!r}: it expects a list of values of "
                f"{names} — pass the cursor it yielded unchanged, or start a new job id after "
                "changing the cursor columns"
            )
        try:
            return [
                v if k.decode is None else k.decode(v)
                for k, v in zip(self.keys, cursor, strict=True)
            ]
        except (TypeError, ValueError) as error:
            raise UsageError(
                f"{what} cannot read cursor {cursor!r} as values of {names} ({error}) — pass "
                "the cursor it yielded unchanged"
            ) from None

    def statements(self, query: Select[Any]) -> tuple[Select[Any], Select[Any], list[str]]:
        """The first-batch and next-batch statements for ``query``, and the bind names."""
        names = [f"iterctl_k{i}" for i in range(len(self.keys))]
        binds = [bindparam(n, type_=k.column.type) for n, k in zip(names, self.keys, strict=True)]
        order = [k.column.desc() if k.descending else k.column.asc() for k in self.keys]
        first = query.order_by(*order).limit(self.batch_size)
        after = query.where(_after(self.keys, binds, row_values=self.row_values))
        return first, after.order_by(*order).limit(self.batch_size), names

    def with_keys(self) -> tuple[Select[Any], list[int]]:
        """The author's query with any cursor column it lacks added, and their positions."""
        query = self._query
        positions = [] if self.orm else [_position(query, k.column) for k in self.keys]
        if self.orm or None in positions:
            width = len(query.selected_columns) if not self.orm else 1
            extra = [k.column.label(f"iterctl_c{i}") for i, k in enumerate(self.keys)]
            return query.add_columns(*extra), list(range(width, width + len(self.keys)))
        return query, [p for p in positions if p is not None]

    def only_keys(self) -> Select[Any]:
        return self._query.with_only_columns(
            *(k.column for k in self.keys), maintain_column_froms=True
        )

    def batches(self, query: Select[Any], positions: list[int]) -> Iterator[Sequence[Any]]:
        """Lists of up to ``batch_size`` rows after the cursor, each from its own query."""
        first, after, names = self.statements(query)
        params = None if self.resume is None else dict(zip(names, self.resume, strict=True))
        last_of = itemgetter(*positions)
        size = self.batch_size
        while True:
            rows = self._fetch(first if params is None else after, params)
            if rows:
                yield rows
            if len(rows) < size:
                return
            last = last_of(rows[-1])
            params = dict(zip(names, last if len(names) > 1 else (last,), strict=True))

    def _fetch(self, statement: Select[Any], params: dict[str, Any] | None) -> Sequence[Any]:
        # One short transaction per batch: nothing stays open while items are processed.
        if self._sessions is not None:
            with self._sessions() as session:
                return session.execute(statement, params).all()
        assert self._engine is not None
        with self._engine.connect() as connection:
            return connection.execute(statement, params).fetchall()

    def cursors(self, rows: Sequence[Any], positions: list[int]) -> Iterator[list[Any]]:
        """The JSON cursor of each row, built lazily in C (no Python frame per row)."""
        columns = []
        for key, position in zip(self.keys, positions, strict=True):
            values = map(itemgetter(position), rows)
            columns.append(values if key.encode is None else map(key.encode, values))
        return map(list, zip(*columns, strict=False))

    def count(self) -> int:
        statement = select(func.count()).select_from(self._query.subquery())
        return int(self._fetch(statement, None)[0][0])

    def key_at(self, position: int) -> list[Any] | None:
        """The JSON cursor of the row at ``position`` (0-based) of the walk; None past it."""
        order = [k.column.desc() if k.descending else k.column.asc() for k in self.keys]
        statement = self.only_keys().order_by(*order).offset(position).limit(1)
        rows = self._fetch(statement, None)
        return next(self.cursors(rows, list(range(len(self.keys)))), None)

    def restricted(self, bounds: Cursor, what: str) -> Keyset:
        """This walk limited to a partition's ``[first, end)`` keys, resuming as before."""
        part = copy.copy(self)
        if bounds == EMPTY:
            part._query = self._query.where(false())
            return part
        if not (type(bounds) is list and len(bounds) == 2):
            raise UsageError(
                f"{what} cannot use partition bounds {bounds!r}: it expects [first, end] "
                "cursors, as its split() made them"
            )
        first, end = (self._decode(b, what) for b in bounds)
        for values, kwargs in ((first, {"inclusive": True}), (end, {"reverse": True})):
            if values is not None:
                typed = [literal(v, k.column.type) for v, k in zip(values, self.keys, strict=True)]
                part._query = part._query.where(
                    _after(self.keys, typed, row_values=self.row_values, **kwargs)
                )
        return part


class _SqlEnumerator(Enumerator[Any]):
    def __init__(self, keyset: Keyset, count: bool) -> None:
        self._keyset = keyset
        self._count = count

    def total(self) -> int | None:
        return self._keyset.count() if self._count else None

    def split(self, count: int) -> list[Cursor]:
        """``count`` partitions of near-equal row counts, as ``[first, end)`` cursor keys.

        One COUNT and ``count - 1`` OFFSET queries, once, when the job's plan is made; rows
        added later fall in the partition whose key range holds them.
        """
        rows = self._keyset.count()
        if rows == 0:
            return [[None, None]] + [EMPTY] * (count - 1)
        edges = [self._keyset.key_at(rows * i // count) for i in range(1, count)]
        return [list(pair) for pair in zip([None, *edges], [*edges, None], strict=True)]

    def within(self, bounds: Cursor) -> Any:
        """The same walk, limited to one partition's bounds from :meth:`split`."""
        return type(self)(self._keyset.restricted(bounds, type(self).__name__), self._count)


class Records(_SqlEnumerator):
    """Each row (Core) or entity (ORM) of the query, in cursor-column order."""

    def __iter__(self) -> Iterator[tuple[Any, Cursor]]:
        keyset = self._keyset
        query, positions = keyset.with_keys()
        first_item = itemgetter(0) if keyset.orm else None

        def pairs(rows: Sequence[Any]) -> Iterable[tuple[Any, Cursor]]:
            items = rows if first_item is None else map(first_item, rows)
            return zip(items, keyset.cursors(rows, positions), strict=False)

        return chain.from_iterable(map(pairs, keyset.batches(query, positions)))


class RecordBatches(_SqlEnumerator):
    """Lists of up to ``batch_size`` rows or entities; the cursor is the last one's."""

    def __iter__(self) -> Iterator[tuple[Any, Cursor]]:
        keyset = self._keyset
        query, positions = keyset.with_keys()
        for rows in keyset.batches(query, positions):
            items = [row[0] for row in rows] if keyset.orm else list(rows)
            yield items, next(keyset.cursors(rows[-1:], positions))

    def total(self) -> int | None:
        total = super().total()
        return None if total is None else -(-total // self._keyset.batch_size)


@dataclass(frozen=True)
class KeyRange:
    """The bounds of one batch, for a bulk statement over exactly its rows.

    ``first`` and ``last`` are the key values of its first and last rows; ``where`` is
    the condition selecting them (the query's own WHERE included), ready for
    ``update(table).where(batch.where)`` or ``delete``; ``select`` is the query limited to it.
    """

    first: list[Any]
    last: list[Any]
    where: ColumnElement[bool]
    select: Select[Any]


class BatchRanges(_SqlEnumerator):
    """A :class:`KeyRange` per batch of ``batch_size`` rows; the cursor is its last key."""

    def __iter__(self) -> Iterator[tuple[Any, Cursor]]:
        keyset = self._keyset
        query = keyset.only_keys()
        positions = list(range(len(keyset.keys)))
        own = keyset.query.whereclause
        for rows in keyset.batches(query, positions):
            first, last = list(rows[0]), list(rows[-1])
            typed = [
                [literal(v, k.column.type) for v, k in zip(bound, keyset.keys, strict=True)]
                for bound in (first, last)
            ]
            bounds = and_(
                _after(keyset.keys, typed[0], row_values=keyset.row_values, inclusive=True),
                _after(
                    keyset.keys,
                    typed[1],
                    row_values=keyset.row_values,
                    inclusive=True,
                    reverse=True,
                ),
            )
            where = bounds if own is None else and_(own, bounds)
            cursor = next(keyset.cursors(rows[-1:], positions))
            yield KeyRange(first, last, where, keyset.query.where(bounds)), cursor

    def total(self) -> int | None:
        total = super().total()
        return None if total is None else -(-total // self._keyset.batch_size)


def records(
    bind: Bind,
    query: Select[Any],
    *,
    cursor: Cursor = None,
    columns: Sequence[ColumnSpec] | None = None,
    batch_size: int = 100,
    count: bool = False,
) -> Records:
    """Rows of ``query`` after ``cursor``, fetched ``batch_size`` at a time by keyset.

    ``bind`` is an Engine or a session factory. For an ORM entity query the items are the
    entities, detached once their batch's session closes: load what each item needs with
    the query (``selectinload``), or ``session.merge`` it. ``count=True`` gives a total
    from ``SELECT count(*)``, run once.
    """
    return Records(
        Keyset(bind, query, columns=columns, batch_size=batch_size, cursor=cursor, what="records"),
        count,
    )


def record_batches(
    bind: Bind,
    query: Select[Any],
    *,
    cursor: Cursor = None,
    columns: Sequence[ColumnSpec] | None = None,
    batch_size: int = 100,
    count: bool = False,
) -> RecordBatches:
    """Lists of up to ``batch_size`` rows of ``query``: one query and one item per batch."""
    return RecordBatches(
        Keyset(
            bind,
            query,
            columns=columns,
            batch_size=batch_size,
            cursor=cursor,
            what="record_batches",
        ),
        count,
    )


def batch_ranges(
    bind: Bind,
    query: Select[Any],
    *,
    cursor: Cursor = None,
    columns: Sequence[ColumnSpec] | None = None,
    batch_size: int = 1000,
    count: bool = False,
) -> BatchRanges:
    """A :class:`KeyRange` per ``batch_size`` rows, for bulk UPDATE/DELETE by key range.

    Only the cursor columns are read. Rows inserted inside a range after it was read are
    caught by its ``where`` too, as in any bulk statement by key range.
    """
    return BatchRanges(
        Keyset(
            bind, query, columns=columns, batch_size=batch_size, cursor=cursor, what="batch_ranges"
        ),
        count,
    )
