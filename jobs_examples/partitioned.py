"""A job that splits into partitions: count to N over an ``int_range``, one part per pod.

    iterctl run jobs_examples.partitioned:PartitionedCount --job-id demo \\
        --partitions 4 --partition 0 --param count=1000

``int_range`` knows its bounds, so iterctl can split it by value into contiguous pieces
(never by modulo) and give each process its own. Run partitions 1 to 3 the same way, in
other terminals or as the pods of a Kubernetes Indexed Job (deploy/kubernetes/
indexed-job.yaml), where ``--partition`` comes from ``JOB_COMPLETION_INDEX``.
"""

from __future__ import annotations

import sys
import time

from pydantic import BaseModel, Field

from iterctl import Job
from iterctl.cursor import Cursor
from iterctl.enumerators.ranges import IntRange, int_range


class PartitionedCountParams(BaseModel):
    count: int = Field(default=100_000, ge=0, description="how many items in the whole job")
    delay: float = Field(default=0.05, ge=0, description="seconds of work per item")


class PartitionedCount(Job):
    """Items are the integers 0..count-1; the cursor is the last one done in the partition."""

    Params = PartitionedCountParams
    params: PartitionedCountParams

    def build_enumerator(self, cursor: Cursor) -> IntRange:
        # The whole walk: iterctl restricts it to this process's partition itself.
        return int_range(0, self.params.count, cursor=cursor)

    def each_iteration(self, item: int) -> None:
        time.sleep(self.params.delay)  # stands for real work: an API call, an UPDATE…

    def on_all_complete(self) -> None:
        # Runs once per job id, in whichever partition finishes last.
        print(f"all {self.params.count} items of job {self.job_id} are done", file=sys.stderr)
