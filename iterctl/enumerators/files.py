"""CSV and JSON Lines files, resumed by byte offset: a seek, not a re-read.

    def build_enumerator(self, cursor):
        return csv_rows("orders.csv", cursor=cursor)            # header row -> dict per row
        return csv_rows("raw.csv", header=False, cursor=cursor)  # a list per row
        return jsonl_rows("events.jsonl", cursor=cursor)        # one JSON value per line
        return csv_batches("orders.csv", 500, cursor=cursor)     # lists of 500 rows

The cursor is the byte offset just after the row: an int, so rows zip with their offsets
in C (no Python frame per row) and resume is one seek. A resumed run refuses a file that is
now shorter than the offset, or has no line start at the offset (between the CR and LF of
a line end included): it has changed, and seeking into it would skip or repeat rows. A run
also refuses (exit 2, never "succeeded") a file that shrinks while it is read, or that
another file replaced by the time its end is reached; rows appended meanwhile are fine.
(Size and mtime are not kept in the cursor: a list per row would cost a third of the
loop.) Pass ``count=True`` for a
total: it streams the file once more, so it is opt-in. The encoding must be
ASCII-compatible (UTF-8, Latin-1, ...). For
``--partitions N`` a file splits into N byte ranges of near-equal size, each starting on a row.
"""

from __future__ import annotations

import codecs
import copy
import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate, chain, islice, repeat
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

from iterctl.cursor import Cursor
from iterctl.enumerators.base import Enumerator
from iterctl.enumerators.batching import Batched
from iterctl.errors import UsageError

#: Bytes read at a time; each block is cut after its last newline.
BLOCK_SIZE = 1 << 18
#: Lines parsed at a time in a block that has quotes: few enough that rows die young.
CHUNK_LINES = 512
_BOM = codecs.BOM_UTF8

#: One block: its bytes, its lines as text, and ``ends`` where ``ends[0]`` is the block's
#: offset and ``ends[i + 1]`` the offset after ``lines[i]``.
Block = tuple[bytes, list[str], list[int]]


#: How much of a file's start its identity covers (see _ByteRanges.source_identity).
_IDENTITY_BYTES = 64 * 1024


def _digest(path: Path, length: int) -> str:
    with path.open("rb") as f:
        return hashlib.blake2b(f.read(length), digest_size=16).hexdigest()


class ChangedFileError(UsageError):
    """The file changed since the cursor was saved: resuming would skip or repeat rows."""


def _start_offset(path: Path, cursor: Cursor, what: str) -> int | None:
    """The offset to resume at (None on a first run), after checking the file still fits it."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise UsageError(f"{what} cannot open {path}: {error.strerror} — check the path") from None
    if cursor is None:
        return None
    if type(cursor) is not int or cursor < 0:
        raise UsageError(
            f"{what} cannot resume from cursor {cursor!r}: it expects a byte offset "
            "— pass the cursor this enumerator yielded, unchanged"
        )
    problem = None
    if size < cursor:
        problem = f"it is {size} bytes long, shorter than the saved offset {cursor}"
    elif cursor > 0:
        with path.open("rb") as f:
            f.seek(cursor - 1)
            around = f.read(2)
            # Between the \r and the \n of a CRLF is not a line start either.
            if around[:1] not in (b"\n", b"\r") or around == b"\r\n":
                problem = f"the saved offset {cursor} is not at the start of a line"
    if problem is not None:
        raise ChangedFileError(
            f"{path} changed since the cursor was saved: {problem} — restore the original "
            "file, or start a new job id to read this one from the start"
        )
    return cursor


def _check_unchanged(f: IO[bytes], opened: os.stat_result, *, last: bool) -> None:
    """Refuse a file that changed under the run: now shorter than when it was opened, or,
    at its end, no longer the file at its path (another file was renamed over it).

    Rows appended meanwhile are fine. One fstat per block: nothing next to the read.
    """
    now = os.fstat(f.fileno())
    problem = None
    if now.st_size < opened.st_size:
        problem = f"it shrank from {opened.st_size:,} to {now.st_size:,} bytes while being read"
    elif last:
        try:
            at_path = os.stat(f.name)
        except OSError:
            at_path = None
        if at_path is None or (at_path.st_dev, at_path.st_ino) != (now.st_dev, now.st_ino):
            problem = "another file replaced it while it was being read"
    if problem is not None:
        raise ChangedFileError(
            f"{f.name} changed during the run: {problem} — the rows read may not be the "
            "file's; restore it and resume, or start a new job id to read the new file"
        )


def _skip_bom(f: IO[bytes]) -> int:
    return len(_BOM) if f.read(len(_BOM)) == _BOM else 0


def _line_blocks(
    f: IO[bytes], start: int, encoding: str, stop: int | None = None
) -> Iterator[Block]:
    """Whole lines from ``start`` (up to ``stop``), a block at a time, with the byte offset
    after each line."""
    f.seek(start)
    position, carry = start, b""
    left = -1 if stop is None else stop - start  # bytes still to read; -1: to the end
    opened = os.fstat(f.fileno())
    while True:
        block = f.read(BLOCK_SIZE if left < 0 else min(BLOCK_SIZE, left))
        left -= len(block) if left >= 0 else 0
        _check_unchanged(f, opened, last=not block)
        if not block:
            if carry:
                yield carry, [carry.decode(encoding)], [position, position + len(carry)]
            return
        block = carry + block
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            carry = block
            continue
        block, carry = block[:cut], block[cut:]
        if block.isascii():
            # One decode per block; a character is a byte, so text lengths are offsets.
            # StringIO(newline="") splits on \n, \r and \r\n, exactly as bytes.splitlines.
            lines = io.StringIO(block.decode("ascii"), newline="").readlines()
            ends = list(accumulate(map(len, lines), initial=position))
        else:
            raw = block.splitlines(keepends=True)
            ends = list(accumulate(map(len, raw), initial=position))
            lines = [line.decode(encoding) for line in raw]
        position = ends[-1]
        yield block, lines, ends


def _edges(ends: Iterable[int], start: int, targets: list[int]) -> list[int]:
    """For each target offset, the first row end at or after it (row ends in order)."""
    edges: list[int] = []
    last = start
    for last in ends:
        while len(edges) < len(targets) and last >= targets[len(edges)]:
            edges.append(last)
        if len(edges) == len(targets):
            break
    return edges + [last] * (len(targets) - len(edges))


class _ByteRanges(Enumerator[Any]):
    """Partitions of a file by byte ranges that start on a row: ``[first, end)`` offsets."""

    _path: Path
    _offset: int | None
    _first: int | None = None
    _stop: int | None = None

    def _data_start(self) -> int:
        raise NotImplementedError

    def _row_ends(self) -> Iterable[int]:
        """The offset after each row of the whole file, in order."""
        raise NotImplementedError

    def _resume_at(self, default: int) -> int:
        if self._offset is not None:
            return self._offset
        return default if self._first is None else self._first

    def split(self, count: int) -> list[Cursor]:
        """``count`` contiguous byte ranges of near-equal size, each starting on a row.

        Rows appended to the file later belong to the last partition.
        """
        start = self._data_start()
        size = self._path.stat().st_size
        targets = [start + (size - start) * i // count for i in range(1, count)]
        edges = _edges(self._row_ends(), start, targets)
        return [list(pair) for pair in zip([None, *edges], [*edges, None], strict=True)]

    def within(self, bounds: Cursor) -> Any:
        """This file walk cut to one partition's ``[first, end)`` offsets, same cursor."""
        if not (type(bounds) is list and len(bounds) == 2
                and all(b is None or type(b) is int for b in bounds)):  # fmt: skip
            raise UsageError(
                f"{type(self).__name__} cannot use partition bounds {bounds!r}: it expects "
                "[first, end] byte offsets, as its split() made them"
            )
        part = copy.copy(self)
        part._first, part._stop = bounds
        return part

    def source_identity(self, recorded: Cursor) -> Cursor:
        """The file's first bytes (up to 64 KiB) as a digest: recorded with the job at its
        first run, and checked on every resume, so that a file replaced or rewritten while
        the job was stopped is refused (exit 2) instead of being read from a byte offset
        that belongs to another file. Rows appended to it meanwhile are fine: the bytes
        recorded stay as they were."""
        if recorded is None:
            head = min(self._path.stat().st_size, _IDENTITY_BYTES)
            return {"head_bytes": head, "head_blake2b": _digest(self._path, head)}
        if not (isinstance(recorded, dict) and type(recorded.get("head_bytes")) is int):
            raise UsageError(
                f"job's recorded source {recorded!r} is not a file identity — "
                "start a new job id for this file"
            )
        head = recorded["head_bytes"]
        size = self._path.stat().st_size
        if size < head or _digest(self._path, head) != recorded.get("head_blake2b"):
            raise ChangedFileError(
                f"{self._path} is not the file this job started on: its first {head:,} "
                "bytes are not the same — restore the original file to resume, or start a "
                "new job id to read this one from the start"
            )
        return recorded

    def _fresh(self) -> Any:
        """This walk (or partition) from its start, whatever the cursor."""
        fresh = copy.copy(self)
        fresh._offset = None
        return fresh


def _as_dicts(names: list[str], pairs: Iterable[tuple[list[str], Cursor]]) -> Iterator[Any]:
    for row, cursor in pairs:
        yield dict(zip(names, row, strict=False)), cursor


class CsvRows(_ByteRanges):
    """Rows of a CSV file: a dict per row with a header, else a list; cursor = byte offset."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        header: bool | Sequence[str],
        encoding: str,
        count: bool,
        cursor: Cursor,
        dialect: str | csv.Dialect | type[csv.Dialect],
        fmtparams: dict[str, Any],
    ) -> None:
        self._path = Path(path)
        self._offset = _start_offset(self._path, cursor, "csv_rows")
        self._header = header
        self._encoding = encoding
        self._count = count
        self._dialect = dialect
        self._fmtparams = fmtparams
        probe = self._reader(iter(())).dialect  # a bad dialect or option fails here
        special = {probe.escapechar or ""}
        if probe.quoting != csv.QUOTE_NONE:
            special.add(probe.quotechar or "")
        #: Bytes that can make a record span lines; a block without them has a record a line.
        self._specials = [c.encode(encoding) for c in special if c]

    def _reader(self, lines: Iterable[str]) -> Any:
        return csv.reader(lines, self._dialect, **self._fmtparams)

    def _start(self, f: IO[bytes]) -> tuple[int, list[str] | None]:
        """The offset of the first row to read, and the column names for dict rows."""
        start = _skip_bom(f)
        names: list[str] | None = None
        if self._header is True:
            pairs = self._pairs(_line_blocks(f, start, self._encoding), None)
            first = next(pairs, None)
            names, start = ([], start) if first is None else first
        elif self._header is not False:
            names = list(self._header)
        return self._resume_at(start), names

    def __iter__(self) -> Iterator[tuple[Any, Cursor]]:
        with self._path.open("rb") as f:
            start, names = self._start(f)
        return self._pairs(self._blocks(start), names)

    def _blocks(self, start: int) -> Iterator[Block]:
        with self._path.open("rb") as f:
            yield from _line_blocks(f, start, self._encoding, self._stop)

    def _data_start(self) -> int:
        with self._path.open("rb") as f:
            return self._fresh_whole()._start(f)[0]

    def _fresh_whole(self) -> CsvRows:
        whole = self._fresh()
        whole._first = whole._stop = None
        return whole  # type: ignore[no-any-return]

    def _row_ends(self) -> Iterable[int]:
        return map(itemgetter(1), self._fresh_whole())

    def _pairs(self, blocks: Iterator[Block], names: list[str] | None) -> Iterator[Any]:
        return chain.from_iterable(self._runs(blocks, names))

    def _runs(self, blocks: Iterator[Block], names: list[str] | None) -> Iterator[Iterable[Any]]:
        """Runs of pairs, zipped in C wherever every line is known to be one record.

        A block with no quote or escape character has one record per line. Other blocks
        are parsed a chunk at a time (small, so rows die young and the GC stays idle);
        a chunk whose rows match its lines one to one, and whose last line closes its
        record, zips too. Anything else is read line by line by :meth:`_spanning`.
        """
        for block, lines, ends in blocks:
            if not any(c in block for c in self._specials):
                yield self._zip(self._reader(lines), islice(ends, 1, None), names)
                continue
            for first in range(0, len(lines), CHUNK_LINES):
                chunk = lines[first : first + CHUNK_LINES]
                rows = list(self._reader(chunk))
                if len(rows) != len(chunk) or not self._ends_record(chunk[-1]):
                    rest = (block, lines[first:], ends[first:])
                    pairs = self._spanning(chain([rest], blocks))
                    yield pairs if names is None else _as_dicts(names, pairs)
                    break
                yield self._zip(rows, iter(ends[first + 1 : first + 1 + len(chunk)]), names)

    @staticmethod
    def _zip(rows: Iterable[list[str]], ends: Iterator[int], names: list[str] | None) -> Any:
        if names is None:
            return zip(rows, ends, strict=False)
        return zip(map(dict, map(zip, repeat(names), rows)), ends, strict=False)

    def _ends_record(self, line: str) -> bool:
        """Whether ``line``, read from a record's start, ends that record (no open quote)."""
        try:
            next(csv.reader([line], self._dialect, **{**self._fmtparams, "strict": True}))
        except csv.Error:
            return False
        return True

    def _spanning(self, blocks: Iterator[Block]) -> Iterator[tuple[list[str], Cursor]]:
        """Rows of the first block, reading on while a record goes on past a block's end.

        The reader's ``line_num`` says how many lines each record took. It returns once a
        record ends exactly at a block's end, so the next block starts on a record.
        """
        base = 0
        ends: list[int] = [0]

        def source() -> Iterator[str]:
            nonlocal base, ends
            for _block, lines, block_ends in blocks:
                base += len(ends) - 1
                ends = block_ends
                yield from lines

        reader = self._reader(source())
        for row in reader:
            done = reader.line_num - base
            yield row, ends[done]
            if done == len(ends) - 1:
                return

    def total(self) -> int | None:
        if not self._count:
            return None
        return sum(1 for _ in self._fresh())


class JsonLines(_ByteRanges):
    """One parsed JSON value per non-blank line; cursor = byte offset after the line."""

    def __init__(self, path: str | os.PathLike[str], *, count: bool, cursor: Cursor) -> None:
        self._path = Path(path)
        self._offset = _start_offset(self._path, cursor, "jsonl_rows")
        self._count = count

    def __iter__(self) -> Iterator[tuple[Any, Cursor]]:
        loads = json.loads
        with self._path.open("rb") as f:
            start = self._resume_at(_skip_bom(f))
            end = start
            try:
                for _block, lines, ends in _line_blocks(f, start, "utf-8", self._stop):
                    for line, end in zip(lines, islice(ends, 1, None), strict=False):
                        if not line.isspace():
                            yield loads(line), end
            except ValueError as error:
                raise UsageError(
                    f"{self._path}: the line ending at byte {end} is not JSON ({error}) "
                    "— fix or remove that line, then resume"
                ) from None

    def total(self) -> int | None:
        if not self._count:
            return None
        fresh = self._fresh()
        with self._path.open("rb") as f:
            blocks = _line_blocks(f, fresh._resume_at(_skip_bom(f)), "utf-8", self._stop)
            return sum(not line.isspace() for _block, lines, _ends in blocks for line in lines)

    def _data_start(self) -> int:
        with self._path.open("rb") as f:
            return _skip_bom(f)

    def _row_ends(self) -> Iterable[int]:
        """Line ends, found by seeking: a JSON Lines record never spans lines."""
        size = self._path.stat().st_size
        with self._path.open("rb") as f:
            for target in range(self._data_start(), size, max(size // 1024, 1)):
                f.seek(max(target - 1, 0))
                f.readline()
                yield f.tell()
            yield size


def csv_rows(
    path: str | os.PathLike[str],
    *,
    cursor: Cursor = None,
    header: bool | Sequence[str] = True,
    dialect: str | csv.Dialect | type[csv.Dialect] = "excel",
    encoding: str = "utf-8",
    count: bool = False,
    **fmtparams: Any,
) -> CsvRows:
    """Rows of the CSV file at ``path`` after ``cursor``.

    ``header=True`` reads column names from the first row and yields dicts; a list of names
    yields dicts without reading a header row; ``False`` yields lists. ``dialect`` and
    ``fmtparams`` are those of :func:`csv.reader`.
    """
    return CsvRows(
        path,
        header=header,
        encoding=encoding,
        count=count,
        cursor=cursor,
        dialect=dialect,
        fmtparams=fmtparams,
    )


def csv_batches(
    path: str | os.PathLike[str], batch_size: int, *, cursor: Cursor = None, **options: Any
) -> Batched[Any]:
    """Lists of ``batch_size`` rows of a CSV file; options as for :func:`csv_rows`."""
    return Batched(csv_rows(path, cursor=cursor, **options), batch_size)


def jsonl_rows(
    path: str | os.PathLike[str], *, cursor: Cursor = None, count: bool = False
) -> JsonLines:
    """The JSON value on each non-blank line of the UTF-8 file ``path`` after ``cursor``."""
    return JsonLines(path, count=count, cursor=cursor)


def jsonl_batches(
    path: str | os.PathLike[str], batch_size: int, *, cursor: Cursor = None, count: bool = False
) -> Batched[Any]:
    """Lists of ``batch_size`` values of a JSON Lines file."""
    return Batched(jsonl_rows(path, cursor=cursor, count=count), batch_size)
