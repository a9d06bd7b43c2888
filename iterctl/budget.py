"""The failure budget (``--max-failures``): how many items may fail and be passed over.

The budget is given to each run (flag or ``ITERCTL_MAX_FAILURES``); it is not kept with the
job id. It is compared with the failures the job id (or the partition) has recorded across
all its runs: a resume with a larger budget carries on past the run that exhausted a smaller
one, and a resume with a budget already spent fails at its next failure. A percentage is of
the job's total (the partition's, for a partition), rounded down, so it needs a known total.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from iterctl.errors import UsageError

_COUNT = re.compile(r"\d+")
_PERCENT = re.compile(r"(\d+(?:\.\d*)?|\.\d+)%")

_HOW = "give a count of items (0, 25) or a percentage of the total (0.5%)"


@dataclass(frozen=True)
class FailureBudget:
    """At most ``count`` failed items, or ``percent`` % of the total; 0 fails at the first."""

    count: int = 0
    percent: float | None = None

    @classmethod
    def parse(cls, text: str) -> FailureBudget:
        """``"10"`` or ``"0.5%"``; anything else is a usage error (exit 2)."""
        value = text.strip()
        if _COUNT.fullmatch(value):
            return cls(int(value))
        matched = _PERCENT.fullmatch(value)
        if matched and float(matched.group(1)) <= 100:
            return cls(0, float(matched.group(1)))
        raise UsageError(f"--max-failures {text!r} is not a budget — {_HOW}, at most 100%")

    def allowed(self, total: int | None, job_name: str) -> int:
        """How many items may fail in all, given the job's total."""
        if self.percent is None:
            return self.count
        if total is None:
            raise UsageError(
                f"--max-failures {self} needs the number of items, and {job_name} does not "
                "say it — define count() on the job, or give a count instead of a percentage"
            )
        return math.floor(total * self.percent / 100)

    def __str__(self) -> str:
        return str(self.count) if self.percent is None else f"{self.percent:g}%"
