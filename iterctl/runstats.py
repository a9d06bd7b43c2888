"""What a run has done so far, kept where the metrics endpoint and checkpoints can read it.

The runner updates a :class:`RunStats` at checkpoints and progress ticks, never per item:
the clock is read a few times a second at most. ``--metrics-port`` reads it from its own
thread; every field is a plain value, written whole, so a reader sees an old or a new
value and never half of one.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from iterctl.stores.base import JobRecord

#: "Recent" rate: over about the last this many seconds of the run.
RATE_WINDOW_SECONDS = 30.0
#: At most this many samples (checkpoints every item would add one per item).
_MAX_SAMPLES = 64


class RunStats:
    """Counts and times of one run of one job id (or partition)."""

    def __init__(self, record: JobRecord, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.job_id = record.job_id
        self.partition = record.partition
        self.processed = record.processed
        self.total = record.total
        self.failed_items = record.failed_items
        self._in_flight = 0
        #: With --concurrency: reads the dispatcher's count when the metrics are scraped.
        self.in_flight_source: Callable[[], int] | None = None
        #: Wall-clock time (Unix seconds) the run started.
        self.started_at = time.time()
        #: Monotonic time of the last saved checkpoint (None before one).
        self.checkpointed_at: float | None = None
        #: Seconds the last checkpoint's store write took.
        self.checkpoint_seconds = 0.0
        self.rate: float | None = None
        self._clock = clock
        self._start = clock()
        self._elapsed_before = record.elapsed
        self._samples: deque[tuple[float, int]] = deque(
            [(self._start, record.processed)], maxlen=_MAX_SAMPLES
        )

    @property
    def in_flight(self) -> int:
        """Items in progress now (0 or 1 for a sequential run)."""
        source = self.in_flight_source
        return self._in_flight if source is None else source()

    @in_flight.setter
    def in_flight(self, count: int) -> None:
        self._in_flight = count

    def now(self) -> float:
        return self._clock()

    def elapsed(self, now: float) -> float:
        """Running time across every run of the job id, this one up to ``now``."""
        return self._elapsed_before + (now - self._start)

    def sample(self, now: float, processed: int) -> float | None:
        """Note ``processed`` at ``now``; return the items per second over the window."""
        self.processed = processed
        samples = self._samples
        samples.append((now, processed))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW_SECONDS:
            samples.popleft()
        then, before = samples[0]
        if now > then:
            self.rate = (processed - before) / (now - then)
        return self.rate

    def checkpointed(self, started: float, ended: float) -> None:
        """A checkpoint that began at ``started`` was saved at ``ended``."""
        self.checkpointed_at = ended
        self.checkpoint_seconds = ended - started

    def checkpoint_age(self) -> float | None:
        """Seconds since the last saved checkpoint (None before one)."""
        if self.checkpointed_at is None:
            return None
        return self._clock() - self.checkpointed_at
