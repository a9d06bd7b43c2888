"""The job the restart harness runs: numbered items, each logged as it completes.

Each item appends one line, ``<item> <time.monotonic()>``, to the file named by the
``log`` param and flushes it, so another process sees every completed item at once and a
SIGKILL loses none of the lines written. Params (strings, as from ``--param``):

- ``total``: items 0 .. total-1;
- ``delay``: seconds each item sleeps (default 0), so that a few thousand items take
  long enough to be interrupted many times;
- ``fail_at``: an item that raises every time it is tried (default: none).

The harness copies this file into the job's working directory, as the image does with
jobs_examples/.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import IO, Any

from iterctl import Job


class CountedItems(Job):
    """Items 0 .. total-1, logged one line each."""

    _log: IO[str] | None = None

    def build_enumerator(self, cursor: Any) -> Iterator[tuple[int, int]]:
        start = 0 if cursor is None else int(cursor) + 1
        return ((n, n) for n in range(start, int(self.params["total"])))

    def each_iteration(self, item: Any) -> None:
        if str(item) == self.params.get("fail_at"):
            raise RuntimeError(f"item {item} fails every time")
        time.sleep(float(self.params.get("delay", "0")))
        if self._log is None:
            self._log = open(self.params["log"], "a")  # noqa: SIM115 - open for the whole run
        self._log.write(f"{item} {time.monotonic()}\n")
        self._log.flush()

    def on_shutdown(self) -> None:
        if self._log is not None:
            self._log.close()
