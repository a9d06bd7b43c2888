"""CSV and JSON Lines by byte offset: rows match the csv/json modules, resuming from any
yielded offset gives exactly the remaining rows, and a changed file is refused."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iterctl.enumerators import (
    ChangedFileError,
    csv_batches,
    csv_rows,
    files,
    jsonl_batches,
    jsonl_rows,
)
from iterctl.errors import UsageError

FIELD = st.text(st.sampled_from('ab,"\n\r é✓'), max_size=6)
ROWS = st.lists(st.lists(FIELD, max_size=4), max_size=15)
FILE_SETTINGS = settings(
    max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@contextmanager
def tiny_blocks(block: int, chunk: int) -> Iterator[None]:
    """Blocks of a few bytes and chunks of a few lines, so every boundary case happens."""
    with mock.patch.object(files, "BLOCK_SIZE", block), mock.patch.object(
        files, "CHUNK_LINES", chunk
    ):
        yield


def write_csv(path: Path, rows: list[list[str]], terminator: str, encoding: str) -> None:
    with path.open("w", newline="", encoding=encoding) as f:
        csv.writer(f, lineterminator=terminator).writerows(rows)


@FILE_SETTINGS
@given(
    rows=ROWS,
    terminator=st.sampled_from(["\r\n", "\n"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig"]),
    block=st.integers(1, 40),
    chunk=st.integers(1, 4),
    data=st.data(),
)
def test_csv_rows_resume_from_any_offset_with_exactly_the_rest(
    tmp_path: Path, rows: list[list[str]], terminator: str, encoding: str, block: int,
    chunk: int, data: st.DataObject,
) -> None:
    """For any rows (quotes, commas, newlines in fields, unicode, BOM) and block sizes,
    csv_rows yields what csv.reader reads, and resuming from any yielded offset (JSON
    round-tripped) yields exactly the rows after it."""
    path = tmp_path / "rows.csv"
    write_csv(path, rows, terminator, encoding)
    with tiny_blocks(block, chunk):
        full = list(csv_rows(path, header=False))
        with path.open(newline="", encoding="utf-8-sig") as f:
            assert [row for row, _ in full] == list(csv.reader(f))
        assert all(type(offset) is int for _, offset in full)
        if full:
            index = data.draw(st.integers(0, len(full) - 1))
            cursor = json.loads(json.dumps(full[index][1]))
            rest = list(csv_rows(path, header=False, cursor=cursor))
            assert rest == full[index + 1 :]


@FILE_SETTINGS
@given(rows=ROWS, block=st.integers(1, 40), data=st.data())
def test_csv_header_rows_are_dicts_and_resume_exactly(
    tmp_path: Path, rows: list[list[str]], block: int, data: st.DataObject
) -> None:
    """With a header row, rows are dicts as csv.DictReader makes them (header read again
    on resume), and resume from any offset gives the rest."""
    path = tmp_path / "rows.csv"
    write_csv(path, [["id", "name, full", "note"], *rows], "\r\n", "utf-8")
    with tiny_blocks(block, 2):
        full = list(csv_rows(path))
        with path.open(newline="") as f:
            expected = [dict(zip(["id", "name, full", "note"], r, strict=False))
                        for r in list(csv.reader(f))[1:]]  # fmt: skip
        assert [row for row, _ in full] == expected
        if full:
            index = data.draw(st.integers(0, len(full) - 1))
            assert list(csv_rows(path, cursor=full[index][1])) == full[index + 1 :]


def test_csv_dialect_options_names_and_batches(tmp_path: Path) -> None:
    """Dialect options pass to csv.reader; given names make dicts without a header row;
    batches hold N rows with the last row's offset; a last line without newline counts."""
    path = tmp_path / "semi.csv"
    path.write_text("a;b\n1;2\n3;4\n5;6")
    rows = list(csv_rows(path, header=["x", "y"], delimiter=";"))
    assert [r for r, _ in rows] == [{"x": "a", "y": "b"}, {"x": "1", "y": "2"},
                                    {"x": "3", "y": "4"}, {"x": "5", "y": "6"}]  # fmt: skip
    assert rows[-1][1] == path.stat().st_size
    batches = list(csv_batches(path, 3, header=False, delimiter=";"))
    assert [len(b) for b, _ in batches] == [3, 1]
    assert batches[0][1] == rows[2][1]


def test_csv_total_is_counted_only_when_asked(tmp_path: Path) -> None:
    """count=True streams the file once for the number of rows (header excluded)."""
    path = tmp_path / "t.csv"
    write_csv(path, [["h"], ["1"], ["two\nlines"], ["3"]], "\r\n", "utf-8")
    assert csv_rows(path).total() is None
    assert csv_rows(path, count=True).total() == 3
    assert csv_rows(path, header=False, count=True).total() == 4
    assert csv_batches(path, 2, count=True).total() == 2


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=6,
)


@FILE_SETTINGS
@given(
    values=st.lists(st.tuples(JSON, st.booleans(), st.booleans()), max_size=15),
    block=st.integers(1, 40),
    data=st.data(),
)
def test_jsonl_rows_resume_from_any_offset_skipping_blank_lines(
    tmp_path: Path, values: list[tuple[Any, bool, bool]], block: int, data: st.DataObject
) -> None:
    """Each non-blank line's value, in order; blank lines are skipped; resuming from any
    yielded offset gives exactly the values after it."""
    path = tmp_path / "v.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for value, ascii_only, blank_after in values:
            end = "\n  \n" if blank_after else "\n"
            f.write(json.dumps(value, ensure_ascii=ascii_only) + end)
    with tiny_blocks(block, 2):
        full = list(jsonl_rows(path))
        assert [v for v, _ in full] == [v for v, _, _ in values]
        if full:
            index = data.draw(st.integers(0, len(full) - 1))
            assert list(jsonl_rows(path, cursor=full[index][1])) == full[index + 1 :]
    assert jsonl_rows(path, count=True).total() == len(values)
    assert [len(b) for b, _ in jsonl_batches(path, 10)] == [
        min(10, len(values) - i) for i in range(0, len(values), 10)
    ]


def test_a_truncated_file_is_refused(tmp_path: Path) -> None:
    """A file now shorter than the saved offset has changed: resuming is refused."""
    path = tmp_path / "a.csv"
    path.write_text("id\n1\n2\n3\n")
    cursor = list(csv_rows(path))[-1][1]
    path.write_text("id\n1\n")
    with pytest.raises(ChangedFileError, match="shorter than the saved offset"):
        csv_rows(path, cursor=cursor)


def test_an_offset_that_is_not_at_a_line_start_is_refused(tmp_path: Path) -> None:
    """A rewritten file whose line starts moved is refused, not read from mid-line."""
    path = tmp_path / "a.jsonl"
    path.write_text('{"n": 1}\n{"n": 2}\n')
    cursor = next(iter(jsonl_rows(path)))[1]
    path.write_text('{"n": 10}\n{"n": 20}\n')
    with pytest.raises(ChangedFileError, match="not at the start of a line") as raised:
        jsonl_rows(path, cursor=cursor)
    assert " — " in str(raised.value)


@pytest.mark.parametrize("cursor", ["12", [12, 3], -1, 1.5])
def test_a_cursor_that_is_not_an_offset_is_refused(tmp_path: Path, cursor: Any) -> None:
    """Only a non-negative int offset is a file cursor."""
    path = tmp_path / "a.csv"
    path.write_text("id\n1\n")
    with pytest.raises(UsageError, match="expects a byte offset"):
        csv_rows(path, cursor=cursor)


def test_a_missing_file_and_a_bad_json_line_are_usage_errors(tmp_path: Path) -> None:
    """A missing file, and a line that is not JSON, are usage errors naming the problem."""
    with pytest.raises(UsageError, match="cannot open"):
        csv_rows(tmp_path / "missing.csv")
    path = tmp_path / "bad.jsonl"
    path.write_text('{"ok": 1}\nnot json\n')
    with pytest.raises(UsageError, match="line ending at byte 19 is not JSON"):
        list(jsonl_rows(path))


def test_latin1_csv_offsets_are_bytes(tmp_path: Path) -> None:
    """With a one-byte encoding, offsets still count bytes and resume exactly."""
    path = tmp_path / "l.csv"
    path.write_bytes("name\ncafé\nnaïve\n".encode("latin-1"))
    rows = list(csv_rows(path, encoding="latin-1"))
    assert [r["name"] for r, _ in rows] == ["café", "naïve"]
    assert list(csv_rows(path, encoding="latin-1", cursor=rows[0][1])) == rows[1:]
    assert io.BytesIO(path.read_bytes()).read()[rows[0][1]:].startswith(b"na")


def assert_a_partition_resumes(
    parts: list[list[Any]], bounds: list[Any], build: Any, data: st.DataObject
) -> None:
    """Resuming a drawn partition from a drawn cursor of its own gives the rest of it."""
    index = data.draw(st.integers(0, len(parts) - 1))
    if parts[index]:
        at = data.draw(st.integers(0, len(parts[index]) - 1))
        resumed = build(parts[index][at][1]).within(bounds[index])
        assert list(resumed) == parts[index][at + 1 :]


@FILE_SETTINGS
@given(rows=ROWS, count=st.integers(1, 5), block=st.integers(1, 40), data=st.data())
def test_csv_partitions_cover_every_row_once_and_resume_exactly(
    tmp_path: Path, rows: list[list[str]], count: int, block: int, data: st.DataObject
) -> None:
    """split(n) cuts the file into n byte ranges that start on a record (even inside a
    quoted newline's file): walked in turn they give every row once, and a partition
    resumes from its own cursors exactly."""
    path = tmp_path / "rows.csv"
    write_csv(path, [["h1", "h2"], *rows], "\r\n", "utf-8")
    with tiny_blocks(block, 2):
        whole = csv_rows(path, count=True)
        bounds = json.loads(json.dumps(whole.split(count)))
        parts = [list(whole.within(b)) for b in bounds]
        assert [pair for part in parts for pair in part] == list(whole)
        assert sum(whole.within(b).total() for b in bounds) == len(rows)
        assert_a_partition_resumes(parts, bounds, lambda c: csv_rows(path, cursor=c), data)


@FILE_SETTINGS
@given(values=st.lists(JSON, max_size=30), count=st.integers(1, 5), data=st.data())
def test_jsonl_partitions_cover_every_value_once(
    tmp_path: Path, values: list[Any], count: int, data: st.DataObject
) -> None:
    """JSON Lines split by line-aligned byte ranges: every value once across partitions,
    each partition resuming exactly from its own cursors."""
    path = tmp_path / "v.jsonl"
    path.write_text("".join(json.dumps(v) + "\n" for v in values))
    whole = jsonl_rows(path, count=True)
    bounds = whole.split(count)
    parts = [list(whole.within(b)) for b in bounds]
    assert [v for part in parts for v, _ in part] == values
    assert sum(whole.within(b).total() for b in bounds) == len(values)
    assert_a_partition_resumes(parts, bounds, lambda c: jsonl_rows(path, cursor=c), data)
