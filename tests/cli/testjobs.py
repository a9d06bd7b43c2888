"""Jobs that the CLI tests run through the real ``iterctl`` process.

This file is copied into each test's working directory and imported from there as
``testjobs``, the way a user's job module is. Each job writes what it did to a log file
(``--param log=PATH``), so a test can wait for observable progress instead of sleeping.
"""

from __future__ import annotations

import os
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
