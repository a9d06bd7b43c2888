"""The smallest useful job: count to N, slowly enough to watch, stop and resume.

    iterctl run jobs_examples.count:CountJob --param count=300 --param delay=0.02

Press Ctrl-C: it finishes the current item, saves the cursor and exits 75. Run the same
command with the printed ``--job-id`` (or ``iterctl resume ID``) and it carries on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from pydantic import BaseModel, Field

from iterctl import Job


class CountParams(BaseModel):
    count: int = Field(default=300, ge=0, description="how many items")
    delay: float = Field(default=0.02, ge=0, description="seconds of work per item")


class CountJob(Job):
    """Items are the integers 0..count-1; the cursor is the last one done."""

    Params = CountParams
    params: CountParams

    def build_enumerator(self, cursor: int | None) -> Iterator[tuple[int, int]]:
        start = 0 if cursor is None else cursor + 1
        return ((n, n) for n in range(start, self.params.count))

    def count(self) -> int:
        return self.params.count

    def each_iteration(self, item: int) -> None:
        time.sleep(self.params.delay)  # stands for real work: an API call, an UPDATE…
