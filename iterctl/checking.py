"""``iterctl check``: does a job's enumerator resume from its cursors as the contract says?

    report = check_job(CountJob, CountParams(count=1000), name="jobs_examples.count:CountJob")
    print("\\n".join(report.lines()))
    report.passed            # False when any check failed; report.exit_code is 0 or 1

Only the enumerator is read: ``each_iteration`` and the hooks never run, so a check has no
side effects beyond what ``build_enumerator`` itself does. Every enumeration is built on a
fresh job instance, as a resumed process would build it. The checks, one verdict each:

- ``cursors``: every cursor of the first ``limit`` pairs is a JSON value and comes back
  unchanged from the store's encoding;
- ``unique``: no two items share a cursor (a resume could not tell them apart);
- ``resume``: from each of ``samples`` cursors (the first, the last and a spread between;
  all of them when there are fewer), ``build_enumerator(cursor)`` yields exactly the rest
  of the reference walk, compared by cursor, and by item where items compare;
- ``determinism``: a second fresh walk yields the same pairs;
- ``count``: ``count()`` and the enumerator's ``total()``, where given, match the walk's
  length when the whole walk fits in ``limit``;
- ``partitions`` (with ``partitions`` > 1): the partitions cover the walk, no item in two,
  none in none, and each resumes within its bounds.

A failure names its first divergence: from which cursor, at which item, the items
expected next, what came instead, and the likely cause.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from itertools import islice
from operator import itemgetter
from typing import Any

from iterctl.cursor import Cursor, decode_cursor, encode_cursor
from iterctl.errors import ExitCode, InvalidCursorError
from iterctl.job import Job, Partition

DEFAULT_LIMIT = 2000
DEFAULT_SAMPLES = 50
#: How many pairs a divergence shows on each side.
_SHOWN = 3

Pair = tuple[Any, Cursor]


class Status(StrEnum):
    OK = "ok"
    FAIL = "FAIL"
    SKIP = "skip"


@dataclass(frozen=True)
class Verdict:
    """What one check found: a one-line summary, and for a failure, the divergence."""

    check: str
    status: Status
    summary: str
    details: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        head = f"{self.status.value:<4}  {self.check:<11}  {self.summary}"
        return [head, *(f"      {detail}" for detail in self.details)]


@dataclass(frozen=True)
class CheckReport:
    """Every verdict of one ``check``; it passed when none failed."""

    job: str
    verdicts: tuple[Verdict, ...]

    @property
    def passed(self) -> bool:
        return all(verdict.status is not Status.FAIL for verdict in self.verdicts)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.SUCCEEDED if self.passed else ExitCode.JOB_FAILED

    def failed(self) -> list[Verdict]:
        return [verdict for verdict in self.verdicts if verdict.status is Status.FAIL]

    def lines(self) -> list[str]:
        lines = [line for verdict in self.verdicts for line in verdict.lines()]
        if self.passed:
            lines.append(f"{self.job} resumes from its cursors as the contract says")
        else:
            names = ", ".join(verdict.check for verdict in self.failed())
            lines.append(f"{self.job} does NOT resume as the contract says (failed: {names})")
        return lines


class EnumeratorError(Exception):
    """Building or reading an enumerator raised, or it yielded something not a pair."""


def check_path(job_path: str, raw_params: dict[str, str], **options: Any) -> CheckReport:
    """``iterctl check MODULE:CLASS``: load the job and its params (exit 2 when they are
    wrong), then :func:`check_job` it."""
    from iterctl.loading import load_job_class
    from iterctl.params import build_params

    job_class = load_job_class(job_path)
    return check_job(job_class, build_params(job_class, raw_params), name=job_path, **options)


def check_job(
    job_class: type[Job],
    params: Any,
    *,
    name: str | None = None,
    limit: int = DEFAULT_LIMIT,
    samples: int = DEFAULT_SAMPLES,
    partitions: int | None = None,
) -> CheckReport:
    """Check ``job_class``'s enumerator with ``params`` (its ``self.params``); see the module."""
    if limit < 1 or samples < 1:
        raise ValueError("limit and samples must be at least 1")
    subject = _Subject(job_class, params, name or job_class.__name__)
    try:
        pairs = subject.read(None, limit + 1)
    except EnumeratorError as error:
        failed = Verdict("read", Status.FAIL, str(error))
        return CheckReport(subject.name, (failed,))
    walk = _Walk(pairs[:limit], complete=len(pairs) <= limit)
    verdicts = [_check_cursors(subject, walk), _check_unique(walk)]
    verdicts.append(_check_resumes(subject, walk, samples))
    verdicts.append(_check_determinism(subject, walk))
    verdicts.append(_check_count(subject, walk, limit))
    verdicts.append(_check_partitions(subject, walk, partitions, limit))
    return CheckReport(subject.name, tuple(verdicts))


# -- what is checked -------------------------------------------------------------------


class _Subject:
    """The job under check: builds enumerators on fresh instances, as a new process would."""

    def __init__(self, job_class: type[Job], params: Any, name: str) -> None:
        self.job_class = job_class
        self.params = params
        self.name = name

    def job(self, partition: Partition | None = None) -> Job:
        return self.job_class(self.params, job_id="iterctl-check", partition=partition)

    def read(self, cursor: Cursor, count: int, partition: Partition | None = None) -> list[Pair]:
        """The first ``count`` pairs of ``build_enumerator(cursor)``, as the runner reads them."""
        what = f"build_enumerator({_short(cursor)})"
        if partition is not None:
            what += f" in partition {partition.index}"
        try:
            job = self.job(partition)
            enumerator: Any = job.build_enumerator(cursor)
            if partition is not None and not job.splits_itself():
                enumerator = enumerator.within(partition.bounds)
            pairs = _take(enumerator, count)
        except Exception as error:  # the job's code: reported as a verdict
            raise EnumeratorError(f"{what} raised {type(error).__name__}: {error}") from error
        return _as_pairs(pairs, what)


def _as_pairs(values: list[Any], what: str) -> list[Pair]:
    """``values`` as (item, cursor) tuples, or the error the runner would give."""
    for index, pair in enumerate(values):
        if type(pair) is tuple and len(pair) == 2:
            continue
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise EnumeratorError(
                f"{what} yielded {_short(pair)} as its pair #{index}, not an (item, cursor) "
                "pair — yield pairs like this: return ((row, row.id) for row in rows)"
            )
        values[index] = tuple(pair)
    return values


def _take(enumerator: Any, count: int) -> list[Any]:
    if not hasattr(enumerator, "__iter__") and hasattr(enumerator, "__aiter__"):
        import asyncio  # only for async enumerators: it is slow to import

        return asyncio.run(_take_async(enumerator, count))
    return list(islice(enumerator, count))


async def _take_async(enumerator: Any, count: int) -> list[Any]:
    taken: list[Any] = []
    if count > 0:
        async for pair in enumerator:
            taken.append(pair)
            if len(taken) >= count:
                break
    return taken


class _Walk:
    """The reference: the first pairs of a fresh walk, their cursors as the store keeps them."""

    def __init__(self, pairs: list[Pair], *, complete: bool) -> None:
        self.pairs = pairs
        #: True when the whole walk fit in the limit: resumes must then end where it ends.
        self.complete = complete
        self.decoded: list[Cursor] = []
        self.texts: list[str] = []
        self.index: dict[str, int] = {}
        self.items_compare = bool(pairs) and _compares(pairs[0][0])

    def at(self, cursor: Cursor) -> int | None:
        """The position of the first item with ``cursor`` in the walk, None if none has it."""
        try:
            return self.index.get(encode_cursor(cursor, "check"))
        except InvalidCursorError:
            return None

    def span(self) -> str:
        count = len(self.pairs)
        if self.complete:
            return f"{count:,} items (the whole walk)"
        return f"the first {count:,} items"


def _check_cursors(subject: _Subject, walk: _Walk) -> Verdict:
    for position, (_item, cursor) in enumerate(walk.pairs):
        try:
            text = encode_cursor(cursor, subject.name)
        except InvalidCursorError as error:
            walk.decoded.clear()
            return Verdict("cursors", Status.FAIL, f"item #{position}: {error}")
        back = decode_cursor(text)
        if not _same(back, cursor):
            walk.decoded.clear()
            return Verdict(
                "cursors",
                Status.FAIL,
                f"item #{position}'s cursor {_short(cursor)} comes back from the store as "
                f"{_short(back)} — yield a cursor that JSON keeps exactly",
            )
        walk.decoded.append(back)
        walk.texts.append(text)
        walk.index.setdefault(text, position)
    return Verdict(
        "cursors", Status.OK, f"{walk.span()}: every cursor JSON, unchanged through the store"
    )


def _check_unique(walk: _Walk) -> Verdict:
    if not walk.texts and walk.pairs:
        return Verdict("unique", Status.SKIP, "cursors are not JSON (see cursors)")
    shared = [(walk.index[text], n) for n, text in enumerate(walk.texts) if walk.index[text] != n]
    if not shared:
        return Verdict("unique", Status.OK, f"{len(walk.texts):,} distinct cursors")
    first, again = shared[0]
    return Verdict(
        "unique",
        Status.FAIL,
        f"{len(shared):,} items share a cursor with an earlier item; the first: items "
        f"#{first} and #{again} both have cursor {_short(walk.pairs[again][1])}",
        (
            "cause: a cursor must identify its item, else a resume from it cannot tell the "
            "items apart and skips or repeats some — make it unique (add the primary key "
            "as its last column)",
        ),
    )


def _check_resumes(subject: _Subject, walk: _Walk, samples: int) -> Verdict:
    if not walk.decoded:
        why = "the walk is empty" if not walk.pairs else "cursors are not JSON (see cursors)"
        return Verdict("resume", Status.SKIP, why)
    chosen = _spread(len(walk.pairs), samples)
    first: tuple[str, tuple[str, ...]] | None = None
    diverged = 0
    for position in chosen:
        found = _resume_divergence(subject, walk, position)
        if found is not None:
            diverged += 1
            first = first or found
    every = "every cursor" if len(chosen) == len(walk.pairs) else _plural(len(chosen), "cursor")
    if first is None:
        return Verdict(
            "resume", Status.OK, f"from {every} of {walk.span()}: exactly the rest of the walk"
        )
    summary, details = first
    return Verdict(
        "resume",
        Status.FAIL,
        f"{diverged} of {len(chosen)} resumes diverge; the first: {summary}",
        details,
    )


def _resume_divergence(
    subject: _Subject, walk: _Walk, position: int
) -> tuple[str, tuple[str, ...]] | None:
    """None when resuming from the cursor at ``position`` yields exactly what follows it."""
    cursor = walk.decoded[position]
    expected = walk.pairs[position + 1 :]
    where = f"from cursor {_short(cursor)} (item #{position})"
    try:
        got = subject.read(cursor, len(expected) + walk.complete)
    except EnumeratorError as error:
        return where, (f"cause: {error}",)
    offset = _first_difference(expected, got, walk.complete, walk.items_compare)
    if offset is None:
        return None
    at = position + 1 + offset
    details = [
        f"expected next: {_show(expected[offset:])}",
        f"came instead:  {_show(got[offset:])}",
        f"cause: {_cause(walk, position, at, expected[offset:], got[offset:])}",
        *_hints(walk, position, at),
    ]
    return f"{where}, at item #{at}", tuple(details)


def _check_determinism(subject: _Subject, walk: _Walk) -> Verdict:
    try:
        again = subject.read(None, len(walk.pairs) + walk.complete)
    except EnumeratorError as error:
        return Verdict("determinism", Status.FAIL, f"a second fresh walk: {error}")
    offset = _first_difference(walk.pairs, again, walk.complete, walk.items_compare)
    if offset is None:
        return Verdict("determinism", Status.OK, "two fresh walks yield the same pairs")
    return Verdict(
        "determinism",
        Status.FAIL,
        f"two fresh walks differ at item #{offset}",
        (
            f"first walk:  {_show(walk.pairs[offset:])}",
            f"second walk: {_show(again[offset:])}",
            "cause: build_enumerator(None) must yield the same items in the same order every "
            "time — order by a unique key; no set iteration, no randomness, no 'now'",
        ),
    )


def _check_count(subject: _Subject, walk: _Walk, limit: int) -> Verdict:
    try:
        counts = _counts(subject)
    except Exception as error:  # noqa: BLE001 - the job's code: reported as a verdict
        return Verdict("count", Status.FAIL, f"counting raised {type(error).__name__}: {error}")
    if not counts:
        return Verdict(
            "count", Status.SKIP, "the job gives no count() and its enumerator no total()"
        )
    read = len(walk.pairs)
    for what, value in counts:
        if walk.complete and value != read:
            return Verdict(
                "count",
                Status.FAIL,
                f"{what} says {value:,} but the whole walk has {read:,} items — progress and "
                "ETA would be wrong",
            )
        if not walk.complete and value <= limit:
            return Verdict(
                "count",
                Status.FAIL,
                f"{what} says {value:,} but the walk has more than the {limit:,} items read",
            )
    said = ", ".join(f"{what} = {value:,}" for what, value in counts)
    if not walk.complete:
        return Verdict(
            "count", Status.SKIP, f"{said}; the walk is longer than --limit {limit:,}: not compared"
        )
    return Verdict("count", Status.OK, f"{said}, as many as the walk has")


def _counts(subject: _Subject) -> list[tuple[str, int]]:
    counts = []
    given = subject.job().count()
    if given is not None:
        counts.append(("count()", given))
    total = getattr(subject.job().build_enumerator(None), "total", None)
    found = total() if callable(total) else None
    if found is not None:
        counts.append(("the enumerator's total()", found))
    return counts


def _check_partitions(subject: _Subject, walk: _Walk, count: int | None, limit: int) -> Verdict:
    if count is None or count < 2:
        return Verdict("partitions", Status.SKIP, "give --partitions P to check a job that splits")
    if not walk.complete:
        return Verdict(
            "partitions",
            Status.SKIP,
            f"the walk is longer than --limit {limit:,}: raise --limit to check its partitions",
        )
    try:
        plan = _plan(subject, count)
        parts = [subject.read(None, len(walk.pairs) + 1, part) for part in plan]
    except EnumeratorError as error:
        return Verdict("partitions", Status.FAIL, str(error))
    problem = _cover_problem(walk, parts) or _partition_resume_problem(subject, walk, plan, parts)
    if problem is not None:
        summary, details = problem
        return Verdict("partitions", Status.FAIL, summary, details)
    sizes = ", ".join(f"{len(part):,}" for part in parts)
    return Verdict(
        "partitions",
        Status.OK,
        f"{count} partitions (sizes {sizes}) cover the {len(walk.pairs):,} items once each, "
        "and resume within their bounds",
    )


def _plan(subject: _Subject, count: int) -> list[Partition]:
    """The partitions as ``iterctl run --partitions`` makes them: bounds through the store."""
    try:
        bounds = subject.job().partition_plan(count)
        if len(bounds) != count:
            raise ValueError(f"it gave {len(bounds)} bounds for {count} partitions")
        stored = [decode_cursor(encode_cursor(b, "partition_plan")) for b in bounds]
    except Exception as error:  # the job's code: reported as a verdict
        raise EnumeratorError(
            f"partition_plan({count}) failed: {type(error).__name__}: {error}"
        ) from error
    return [Partition(index, count, bound) for index, bound in enumerate(stored)]


def _cover_problem(walk: _Walk, parts: list[list[Pair]]) -> tuple[str, tuple[str, ...]] | None:
    owner: dict[str, int] = {}
    for index, part in enumerate(parts):
        for item, cursor in part:
            position = walk.at(cursor)
            if position is None:
                return (
                    f"partition {index} yields {_show([(item, cursor)], 1)}, which the whole "
                    "walk does not have",
                    (),
                )
            text = walk.texts[position]
            if text in owner:
                return (
                    f"item #{position} (cursor {_short(cursor)}) is in partitions "
                    f"{owner[text]} and {index}: it would be done twice",
                    ("cause: partitions must not overlap — split by contiguous bounds",),
                )
            owner[text] = index
    for position, text in enumerate(walk.texts):
        if text not in owner:
            return (
                f"item #{position} (cursor {_short(walk.decoded[position])}) is in no "
                "partition: it would never be done",
                ("cause: the partitions' bounds must cover the whole walk, ends included",),
            )
    return None


def _partition_resume_problem(
    subject: _Subject, walk: _Walk, plan: list[Partition], parts: list[list[Pair]]
) -> tuple[str, tuple[str, ...]] | None:
    """Each partition, resumed from its first, middle and last cursor, yields its own rest."""
    for partition, part in zip(plan, parts, strict=True):
        for position in sorted({0, len(part) // 2, len(part) - 1} if part else set()):
            cursor = decode_cursor(encode_cursor(part[position][1], "check"))
            expected = part[position + 1 :]
            try:
                got = subject.read(cursor, len(expected) + 1, partition)
            except EnumeratorError as error:
                return str(error), ()
            offset = _first_difference(expected, got, True, walk.items_compare)
            if offset is not None:
                return (
                    f"partition {partition.index} resumed from cursor {_short(cursor)} "
                    f"diverges after {offset} items",
                    (
                        f"expected next: {_show(expected[offset:])}",
                        f"came instead:  {_show(got[offset:])}",
                    ),
                )
    return None


# -- comparing and describing ---------------------------------------------------------


def _first_difference(
    expected: list[Pair], got: list[Pair], exhaustive: bool, items_compare: bool
) -> int | None:
    """Where ``got`` first differs from ``expected``; with ``exhaustive``, an extra pair too."""
    count = min(len(expected), len(got))
    if not _same_pairs(expected[:count], got[:count], items_compare):
        pairs = zip(expected, got, strict=False)
        for offset, ((want_item, want), (item, cursor)) in enumerate(pairs):
            if cursor != want or (items_compare and not _equal(item, want_item)):
                return offset
    if len(got) < len(expected) or (exhaustive and len(got) > len(expected)):
        return min(len(got), len(expected))
    return None


def _same_pairs(expected: list[Pair], got: list[Pair], items_compare: bool) -> bool:
    """The fast path: whole lists compared in C; a False is then located pair by pair."""
    if list(map(_second, expected)) != list(map(_second, got)):
        return False
    try:
        return not items_compare or list(map(_first, expected)) == list(map(_first, got))
    except Exception:  # noqa: BLE001 - an item whose == raises: compared one by one
        return False


_first, _second = itemgetter(0), itemgetter(1)


def _cause(walk: _Walk, position: int, at: int, expected: list[Pair], got: list[Pair]) -> str:
    if not got:
        missed = f"item #{at}" if len(expected) == 1 else f"{len(expected):,} items from #{at}"
        return f"the resumed walk ends early: {missed} never done"
    if not expected:
        return (
            f"the resumed walk goes on after the fresh walk's last item (#{at - 1}): it "
            "yields items a first run never has"
        )
    item, cursor = got[0]
    if cursor == expected[0][1]:
        return (
            f"same cursor, another item ({_short(item)} instead of {_short(expected[0][0])}): "
            "build_enumerator must rebuild the same item from a cursor"
        )
    found = walk.at(cursor)
    if found is None:
        return f"it yields cursor {_short(cursor)}, which the fresh walk never yields"
    if found == position and at == position + 1:
        return (
            "it yields the item AT the cursor again (off by one): build_enumerator(cursor) "
            "must start AFTER the cursor (cursor + 1, or > rather than >=) — that item "
            "would be done twice"
        )
    if found < at:
        return f"it goes back to item #{found}: {at - found:,} item(s) would be done twice"
    skipped = f"item #{at}" if found == at + 1 else f"{found - at:,} items (#{at} to #{found - 1})"
    off_by_one = found == at + 1 and at == position + 1
    return (
        f"it skips {skipped}{' right after the cursor (off by one?)' if off_by_one else ''}: "
        "never done"
    )


def _hints(walk: _Walk, position: int, at: int) -> list[str]:
    """Likely causes that the cursors themselves show."""
    hints = []
    text = walk.texts[position]
    sharing = [n for n, other in enumerate(walk.texts) if other == text]
    if len(sharing) > 1:
        hints.append(
            f"hint: cursor {_short(walk.decoded[position])} is shared by items "
            f"{', '.join(f'#{n}' for n in sharing[:4])}: a resume cannot tell them apart "
            "(see unique)"
        )
    diverged = walk.decoded[at] if at < len(walk.decoded) else None
    moved = _outer_move(walk.decoded[position], diverged)
    if moved is not None and at > position + 1:
        hints.append(
            f"hint: it diverges after an outer level moved on (cursor[{moved}] "
            f"{_short(walk.decoded[position][moved])} -> {_short(walk.decoded[at][moved])}): "
            "an inner level kept resuming from the saved cursor, which belongs to the first "
            "outer item only; later outer items start from None (iterctl.enumerators.nested "
            "does this)"
        )
    naive = _naive_datetime(walk.decoded[position])
    if naive is not None:
        hints.append(
            f"hint: the cursor holds a datetime without a UTC offset ({naive!r}): read back "
            "in another zone it points elsewhere — keep the offset and the microseconds "
            "(isoformat() of an aware datetime), as iterctl's records() does"
        )
    return hints


def _outer_move(resumed: Cursor, diverged: Cursor) -> int | None:
    """For list cursors: the first level, short of the last, where they differ."""
    if type(resumed) is not list or type(diverged) is not list or len(resumed) != len(diverged):
        return None
    for level, (a, b) in enumerate(zip(resumed[:-1], diverged[:-1], strict=True)):
        if a != b:
            return level
    return None


def _naive_datetime(cursor: Cursor) -> str | None:
    """A string inside ``cursor`` that reads as a datetime with no UTC offset, if any."""
    if isinstance(cursor, list):
        return next(filter(None, map(_naive_datetime, cursor)), None)
    if isinstance(cursor, dict):
        return next(filter(None, map(_naive_datetime, cursor.values())), None)
    if not isinstance(cursor, str) or len(cursor) < 16 or ":" not in cursor:
        return None
    try:
        parsed = datetime.fromisoformat(cursor)
    except ValueError:
        return None
    return cursor if parsed.tzinfo is None else None


def _spread(length: int, samples: int) -> list[int]:
    """All positions when few; else the first, the last and an even spread between."""
    if length <= samples:
        return list(range(length))
    if samples == 1:
        return [0]
    return sorted({(length - 1) * n // (samples - 1) for n in range(samples)})


def _compares(item: Any) -> bool:
    """Whether items of this kind compare by value (ORM entities compare by identity)."""
    if type(item).__eq__ is object.__eq__:  # type: ignore[comparison-overlap]
        return False
    try:
        return bool(item == item)  # noqa: PLR0124 - asks whether == works at all
    except Exception:  # noqa: BLE001 - an item whose == raises does not compare
        return False


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - cannot tell: the cursors decide
        return True


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same JSON types all the way down (1, 1.0 and True are not the same)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    return bool(a == b)


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _show(pairs: Iterable[Pair], count: int = _SHOWN) -> str:
    shown = list(islice(pairs, count))
    if not shown:
        return "(the end of the walk)"
    return ", ".join(f"{_short(item, 40)} (cursor {_short(cursor, 40)})" for item, cursor in shown)


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"
