"""Jobs for the operator's-view tests (status, history, metrics, delete).

Copied into each test's working directory beside testjobs.py and imported from there.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from iterctl import Job
from iterctl.enumerators.ranges import int_range


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as log:
        log.write(line + "\n")


class Gated(Job):
    """Items 0..count-1 (split across partitions), `delay` seconds each, one log line per
    item in `logs`/part-N.log. After its final checkpoint (in on_shutdown) it logs
    "shutdown" and waits for the file `logs`/gate, so a test can look at a finished run
    whose process is still alive. With `fail_every` N, items 7, N+7, 2N+7... raise."""

    def _log(self) -> Path:
        part = 0 if self.partition is None else self.partition.index
        return Path(self.params["logs"]) / f"part-{part}.log"

    def build_enumerator(self, cursor: int | None) -> Iterable[tuple[int, Any]]:
        return int_range(0, int(self.params["count"]), cursor=cursor)

    def each_iteration(self, item: int) -> None:
        time.sleep(float(self.params.get("delay", "0")))
        every = int(self.params.get("fail_every", "0"))
        if every and item % every == 7:
            raise ValueError(f"item {item} is one of every {every} that fail")
        _append(self._log(), f"item {item}")

    def on_shutdown(self) -> None:
        _append(self._log(), "shutdown")
        gate = Path(self.params["logs"]) / "gate"
        deadline = time.monotonic() + 30
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
