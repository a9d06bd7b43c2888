"""Jobs that the CLI tests run through the real ``iterctl`` process.

This file is copied into each test's working directory and imported from there as
``testjobs``, the way a user's job module is. Each job writes what it did to a log file
(``--param log=PATH``), so a test can wait for observable progress instead of sleeping.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from iterctl import Job
from iterctl.enumerators.ranges import int_range


def _append(path: str, line: str) -> None:
    # One write per line, flushed by close: a SIGKILL can't leave half a line behind.
    with open(path, "a", encoding="utf-8") as log:
        log.write(line + "\n")


class Numbers(Job):
    """Items 0..count-1. Logs "item N" after each one. Options: delay, fail_at, fail_once."""

    def build_enumerator(self, cursor: int | None) -> Iterator[tuple[int, int]]:
        start = 0 if cursor is None else cursor + 1
        return ((n, n) for n in range(start, int(self.params.get("count", "100"))))

    def count(self) -> int:
        return int(self.params.get("count", "100"))

    def each_iteration(self, item: int) -> None:
        if str(item) == self.params.get("fail_at"):
            marker = Path(self.params["log"] + ".failed")
            if not (self.params.get("fail_once") and marker.exists()):
                marker.touch()
                raise RuntimeError(f"item {item} is broken")
        time.sleep(float(self.params.get("delay", "0")))
        _append(self.params["log"], f"item {item}")


class SlowItems(Job):
    """Logs "start N" and "end N" around a sleep of `delay` seconds per item."""

    def build_enumerator(self, cursor: int | None) -> Iterator[tuple[int, int]]:
        start = 0 if cursor is None else cursor + 1
        return ((n, n) for n in range(start, int(self.params.get("count", "10"))))

    def each_iteration(self, item: int) -> None:
        _append(self.params["log"], f"start {item}")
        time.sleep(float(self.params.get("delay", "0.5")))
        _append(self.params["log"], f"end {item}")


class Hooks(Numbers):
    """Numbers that also logs every hook call."""

    def on_start(self) -> None:
        _append(self.params["log"], "hook on_start")

    def on_resume(self) -> None:
        _append(self.params["log"], "hook on_resume")

    def on_shutdown(self) -> None:
        _append(self.params["log"], "hook on_shutdown")

    def on_complete(self) -> None:
        _append(self.params["log"], "hook on_complete")

    def on_error(self, error: BaseException) -> None:
        _append(self.params["log"], f"hook on_error {error}")


class Partitioned(Job):
    """Items 0..count-1 as an int_range that splits itself; each partition logs to its
    own file in `logs`, and on_all_complete leaves a line in `logs`/all-complete."""

    def build_enumerator(self, cursor: int | None) -> Iterable[tuple[int, Any]]:
        return int_range(0, int(self.params["count"]), cursor=cursor)

    def each_iteration(self, item: int) -> None:
        time.sleep(float(self.params.get("delay", "0")))
        part = 0 if self.partition is None else self.partition.index
        _append(f"{self.params['logs']}/part-{part}.log", f"item {item}")

    def on_all_complete(self) -> None:
        _append(f"{self.params['logs']}/all-complete", f"by partition {self.partition}")


class SplitsItself(Job):
    """A custom enumerator that splits itself: bounds are [first, end) of each partition."""

    def partition_plan(self, count: int) -> list[Any]:
        size = int(self.params["count"])
        return [[i * size // count, (i + 1) * size // count] for i in range(count)]

    def build_enumerator(self, cursor: int | None) -> Iterator[tuple[int, int]]:
        first, end = self.partition.bounds if self.partition else (0, int(self.params["count"]))
        start = first if cursor is None else cursor + 1
        return ((n, n) for n in range(start, end))

    def each_iteration(self, item: int) -> None:
        _append(self.params["log"], f"item {item}")


class SetCursor(Job):
    """Yields a cursor that is not a JSON value."""

    def build_enumerator(self, cursor: Any) -> Iterator[tuple[int, Any]]:
        return iter([(1, {1, 2})])

    def each_iteration(self, item: int) -> None:
        _append(self.params["log"], f"item {item}")


class NotPairs(Job):
    """Yields bare items instead of (item, cursor) pairs."""

    def build_enumerator(self, cursor: Any) -> Iterator[int]:  # type: ignore[override]  # wrong on purpose
        return iter([1, 2, 3])

    def each_iteration(self, item: int) -> None:
        _append(self.params["log"], f"item {item}")


class TypedParams(BaseModel):
    count: int
    ratio: float = 1.0


class Typed(Job):
    """A job with a declared parameter model."""

    Params = TypedParams
    params: TypedParams

    def build_enumerator(self, cursor: int | None) -> Iterator[tuple[int, int]]:
        start = 0 if cursor is None else cursor + 1
        return ((n, n) for n in range(start, self.params.count))

    def each_iteration(self, item: int) -> None:
        _append(os.environ["TESTJOBS_LOG"], f"item {item} ratio {self.params.ratio}")


NOT_A_JOB = 42


# -- --concurrency -----------------------------------------------------------------------


def _duration(params: dict[str, str], item: int) -> float:
    """A random duration per item (0 to `max_delay` s), the same for an item on every run."""
    rng = random.Random(item)  # noqa: S311 - test timing, not cryptography
    return rng.uniform(0, float(params.get("max_delay", "0.01")))


def _fail_here(params: dict[str, str], item: int) -> None:
    """Raise for the items listed in `fail_at` (comma-separated), once each, after a pause
    of `max_delay` (so that items dispatched after it finish first)."""
    if str(item) in params.get("fail_at", "").split(","):
        time.sleep(float(params.get("max_delay", "0.01")))
        marker = Path(f"{params['log']}.failed-{item}")
        if not marker.exists():
            marker.touch()
            raise RuntimeError(f"item {item} is broken")


class Concurrent(Job):
    """Items 0..count-1 of random duration; logs "item N" when one is done. Run it with
    --concurrency: items finish out of order. Options: count, max_delay, fail_at, block,
    block_seconds (item `block` takes that long, on its first run only)."""

    def build_enumerator(self, cursor: int | None) -> Iterator[tuple[int, int]]:
        start = 0 if cursor is None else cursor + 1
        return ((n, n) for n in range(start, int(self.params.get("count", "100"))))

    def count(self) -> int:
        return int(self.params.get("count", "100"))

    def each_iteration(self, item: int) -> None:
        marker = Path(f"{self.params['log']}.blocked")
        if str(item) == self.params.get("block") and not marker.exists():
            marker.touch()
            _append(self.params["log"], f"blocking {item}")
            time.sleep(float(self.params.get("block_seconds", "3")))
        time.sleep(_duration(self.params, item))
        _fail_here(self.params, item)  # after the work: items after it have finished by then
        _append(self.params["log"], f"item {item}")


class AsyncConcurrent(Concurrent):
    """Concurrent with `async def each_iteration` and an async iterable of string cursors
    (cursors are opaque: "k0005" sorts as text, and the runner never compares numbers)."""

    def build_enumerator(self, cursor: Any) -> Any:  # an async iterable of pairs
        start = 0 if cursor is None else int(cursor[1:]) + 1
        count = int(self.params.get("count", "100"))

        async def pairs() -> Any:
            for n in range(start, count):
                yield n, f"k{n:04d}"

        return pairs()

    async def each_iteration(self, item: int) -> None:  # type: ignore[override]  # async on purpose
        await asyncio.sleep(_duration(self.params, item))
        _fail_here(self.params, item)
        _append(self.params["log"], f"item {item}")


class Transient(Exception):
    """What Flaky's transient items raise: the job retries it."""


def _numbers_in(path: str | None) -> set[int]:
    if not path or not os.path.exists(path):
        return set()
    return {int(word) for word in Path(path).read_text().split()}


class Flaky(Job):
    """Items 0..count-1 that fail on purpose, for the --max-failures tests.

    `bad=PATH`: a file of item numbers that always raise ValueError (fix the data by
    editing it). `transient=3,9` with `flakes=K`: items that raise Transient on their first
    K tries, counted across processes in the log (retried: max_attempts 3).
    `stubborn=PATH`: a file of items that always raise Transient. `gone=PATH`: items the
    enumerator no longer yields. `backoff` (or $FLAKY_BACKOFF, which wins): the retry
    backoff base. Logs "try N" before each try and "item N" when done. Splits itself into
    partitions of [first, end).
    """

    retry_on = (Transient,)
    max_attempts = 3

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        backoff = os.environ.get("FLAKY_BACKOFF") or self.params.get("backoff", "0.001")
        self.retry_backoff = float(backoff)
        self._bad = _numbers_in(self.params.get("bad"))
        self._transient = {int(n) for n in self.params.get("transient", "").split(",") if n}
        self._stubborn = _numbers_in(self.params.get("stubborn"))

    def count(self) -> int:
        return int(self.params.get("count", "50"))

    def partition_plan(self, count: int) -> list[Any]:
        size = self.count()
        return [[i * size // count, (i + 1) * size // count] for i in range(count)]

    def build_enumerator(self, cursor: int | None) -> Iterator[tuple[int, int]]:
        first, end = self.partition.bounds if self.partition else (0, self.count())
        start = first if cursor is None else cursor + 1
        gone = _numbers_in(self.params.get("gone"))
        return ((n, n) for n in range(start, end) if n not in gone)

    def each_iteration(self, item: int) -> None:
        log = self.params["log"]
        _append(log, f"try {item}")
        if item in self._bad:
            raise ValueError(f"item {item} is bad")
        if item in self._stubborn:
            raise Transient(f"item {item} always flakes")
        if item in self._transient:
            tries = Path(log).read_text().splitlines().count(f"try {item}")
            if tries <= int(self.params.get("flakes", "1")):
                raise Transient(f"item {item} flaked on try {tries}")
        time.sleep(float(self.params.get("delay", "0")))
        _append(log, f"item {item}")


class CoupledCounter(Job):
    """Not idempotent on purpose: item N adds 1 to ``{table}_counters.hits`` of row N and
    inserts a row N into ``{table}_events``, both through ``self.transaction``. Logs "item N"
    once its writes are made (not yet committed), "run" at every start and "checkpoint" in
    ``on_checkpoint``. Options: ``fail_at``/``fail_once`` raise after item N's writes;
    ``buffer=1`` keeps the event rows in memory and inserts them in ``on_checkpoint``;
    ``fail_checkpoint=1`` makes the first ``on_checkpoint`` raise (once, with a marker);
    ``skip_fifth=1`` makes every fifth item write nothing;
    ``delay`` seconds of sleep per item."""

    coupled_writes = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buffered: list[int] = []

    def build_enumerator(self, cursor: int | None) -> Iterator[tuple[int, int]]:
        start = 0 if cursor is None else cursor + 1
        return ((n, n) for n in range(start, int(self.params.get("count", "100"))))

    def on_start(self) -> None:
        _append(self.params["log"], "run")

    def on_resume(self) -> None:
        _append(self.params["log"], "run")

    def each_iteration(self, item: int) -> None:
        from sqlalchemy import text

        table = self.params["table"]
        if item % 5 == 4 and self.params.get("skip_fifth"):
            _append(self.params["log"], f"item {item}")  # an item that writes nothing
            return
        self.transaction.execute(
            text(f"UPDATE {table}_counters SET hits = hits + 1 WHERE id = :n"), {"n": item}
        )
        if not self.params.get("buffer"):
            self.transaction.execute(
                text(f"INSERT INTO {table}_events (item) VALUES (:n)"), {"n": item}
            )
        if str(item) == self.params.get("fail_at"):
            self._fail_once(f"item {item} is broken")
        if self.params.get("buffer"):
            self.buffered.append(item)  # only once nothing more can fail
        _append(self.params["log"], f"item {item}")
        time.sleep(float(self.params.get("delay", "0")))

    def on_checkpoint(self) -> None:
        from sqlalchemy import text

        _append(self.params["log"], "checkpoint")
        if self.params.get("fail_checkpoint"):
            self._fail_once("the flush failed")
        if self.buffered:
            insert = text(f"INSERT INTO {self.params['table']}_events (item) VALUES (:n)")
            self.transaction.execute(insert, [{"n": n} for n in self.buffered])
            self.buffered.clear()

    def _fail_once(self, message: str) -> None:
        marker = Path(self.params["log"] + ".failed")
        if not (self.params.get("fail_once") and marker.exists()):
            marker.touch()
            raise RuntimeError(message)


class CustomBaseError(BaseException):
    """A BaseException that is neither SystemExit nor KeyboardInterrupt."""


_RAISABLE: dict[str, BaseException] = {
    "exit0": SystemExit(0),
    "exit3": SystemExit(3),
    "keyboard": KeyboardInterrupt(),
    "generator": GeneratorExit(),
    "custom": CustomBaseError("custom base error"),
}


class RaisesBase(Hooks):
    """Hooks that raises `raise` (a key of _RAISABLE) at item `at`."""

    def each_iteration(self, item: int) -> None:
        if str(item) == self.params.get("at"):
            raise _RAISABLE[self.params["raise"]]
        super().each_iteration(item)


class HookRaises(Hooks):
    """Hooks whose hook named by `hook` raises RuntimeError."""

    def on_error(self, error: BaseException) -> None:
        super().on_error(error)
        if self.params.get("hook") == "on_error":
            raise RuntimeError("on_error is broken too")

    def on_shutdown(self) -> None:
        super().on_shutdown()
        if self.params.get("hook") == "on_shutdown":
            raise RuntimeError("on_shutdown is broken")


class SlowStart(Numbers):
    """Numbers whose enumerator takes `build_delay` seconds to build."""

    def build_enumerator(self, cursor: int | None) -> Iterator[tuple[int, int]]:
        time.sleep(float(self.params.get("build_delay", "1")))
        return super().build_enumerator(cursor)


class BadLastCursor(Hooks):
    """Hooks whose last item's cursor is a set, not a JSON value."""

    def build_enumerator(self, cursor: Any) -> Iterator[tuple[int, Any]]:
        count = int(self.params.get("count", "50"))
        start = 0 if cursor is None else cursor + 1
        for n in range(start, count):
            yield n, (n if n < count - 1 else {n})


class Odd(Job):
    """A job that misbehaves as `odd` says: build returns None/int, count a str/negative,
    cursors of `digits` digits or nested `depth` deep, or of `size` characters."""

    def build_enumerator(self, cursor: Any) -> Any:
        odd = self.params["odd"]
        if odd == "build-none":
            return None
        if odd == "build-int":
            return 42
        if odd == "digits":
            return iter([(1, 10 ** int(self.params["digits"]))])
        if odd == "depth":
            deep: list[Any] = []
            for _ in range(int(self.params["depth"])):
                deep = [deep]
            return iter([(1, deep)])
        if odd == "size":
            return iter([(1, "x" * int(self.params["size"]))])
        return iter([(1, 1)])

    def count(self) -> Any:
        odd = self.params["odd"]
        return {"count-str": "many", "count-negative": -5}.get(odd)

    def each_iteration(self, item: int) -> None:
        if self.params["odd"] == "long-error":
            raise RuntimeError("e" * int(self.params["size"]))
        _append(self.params["log"], f"item {item}")


class CsvNumbers(Job):
    """Rows of the CSV `file` (column n); at row `rewrite_at` the job itself rewrites the
    file with 100 rows, in place (`how=truncate`) or by renaming a new file over it."""

    def build_enumerator(self, cursor: Any) -> Any:
        from iterctl.enumerators.files import csv_rows

        return csv_rows(self.params["file"], cursor=cursor)

    def each_iteration(self, row: dict[str, str]) -> None:
        if row["n"] == self.params.get("rewrite_at"):
            target = Path(self.params["file"])
            fresh = "n\n" + "".join(f"{i}\n" for i in range(100))
            if self.params.get("how") == "rename":
                temp = target.with_name("new.csv")
                temp.write_text(fresh)
                os.replace(temp, target)
            else:
                target.write_text(fresh)
        time.sleep(float(self.params.get("delay", "0")))
        _append(self.params["log"], f"item {row['n']}")


class BadRetries(Numbers):
    """Numbers with a retry_on that is not a tuple of exception types."""

    retry_on = "ValueError"  # type: ignore[assignment]
    max_attempts = 3
