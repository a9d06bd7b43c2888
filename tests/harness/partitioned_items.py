"""The job the Indexed Job simulation runs: items 0 .. total-1 over an ``int_range``, split
into partitions by iterctl, each partition logging its items to a file of its own.

Params (strings, as from ``--param``; the same for every partition, as they must be):

- ``total``: items 0 .. total-1, for the whole job;
- ``delay``: seconds each item sleeps (default 0);
- ``logs``: a folder; partition I appends ``<item>`` lines to ``part-I.log`` there,
  flushed at once so the harness sees each completed item and a SIGKILL loses none, and
  ``on_all_complete`` appends ``<I>`` to ``all-complete``.

The harness copies this file into each pod's working directory, as the image does with
jobs_examples/.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import IO, Any

from iterctl import Job
from iterctl.cursor import Cursor
from iterctl.enumerators.ranges import IntRange, int_range


class PartitionedItems(Job):
    """Items 0 .. total-1; iterctl restricts the range to this process's partition."""

    _log: IO[str] | None = None

    def build_enumerator(self, cursor: Cursor) -> IntRange:
        return int_range(0, int(self.params["total"]), cursor=cursor)

    def each_iteration(self, item: Any) -> None:
        time.sleep(float(self.params.get("delay", "0")))
        if self._log is None:
            self._log = (Path(self.params["logs"]) / f"part-{self._index()}.log").open("a")
        self._log.write(f"{item}\n")
        self._log.flush()

    def on_all_complete(self) -> None:
        with (Path(self.params["logs"]) / "all-complete").open("a") as done:
            done.write(f"{self._index()}\n")

    def on_shutdown(self) -> None:
        if self._log is not None:
            self._log.close()

    def _index(self) -> int:
        return 0 if self.partition is None else self.partition.index
