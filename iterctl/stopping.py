"""Why a run should stop: the stop token, and the only signal handlers in iterctl.

The runner never touches :mod:`signal`. It reads :attr:`StopToken.pending` once per item (one
attribute load, so the per-item cost stays near a plain loop) and asks for the reason only
when something is pending. Signals, the ``--max-runtime`` deadline and the checkpoint and
progress timers all raise the same flag.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from math import inf
from types import FrameType

#: How long any wait for the store may last (a lock another process holds, a server that
#: does not answer): then the command gives up with exit 69. A stop signal ends it sooner.
STORE_WAIT_SECONDS = 30.0


class StopNow(BaseException):
    """Raised by a second SIGINT to stop in the middle of an item.

    It derives from BaseException so that a job's ``except Exception`` cannot swallow it.
    It is raised only while the job's own code runs (:attr:`StopToken.interruptible`),
    never inside a store write, so a store is never left half-written by it.
    """


class StopWaiting(BaseException):
    """A stop signal ended a wait for the store (see :func:`interruptible_wait`).

    Nothing was changed by the interrupted call: the command exits 75, resumable.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


#: How many waits for the store a stop signal may end now (the main thread's, nested).
_waits = 0


class StopToken:
    """Flags raised from outside the loop (signal handlers, the ticker thread).

    Setting attributes is all a signal handler may safely do: taking a lock or logging
    inside a handler can deadlock the main thread it interrupted.
    """

    def __init__(self) -> None:
        #: Something needs the loop's attention: a stop, a checkpoint or a progress line.
        self.pending = False
        #: Why the run must stop ("SIGTERM", "SIGINT", "max-runtime", ...), None to go on.
        self.reason: str | None = None
        self.checkpoint_due = False
        self.progress_due = False
        #: The runner's hold should be checked (its database session may have dropped).
        self.hold_check_due = False
        #: True while the job's own code runs: only then may a second SIGINT raise StopNow.
        self.interruptible = False

    @contextmanager
    def shielded(self) -> Iterator[None]:
        """iterctl's own work inside a run (a checkpoint): a second SIGINT cannot cut it."""
        was, self.interruptible = self.interruptible, False
        try:
            yield
        finally:
            self.interruptible = was

    @contextmanager
    def interrupting(self) -> Iterator[None]:
        """The job's own code: a second SIGINT stops it at once (:class:`StopNow`)."""
        was, self.interruptible = self.interruptible, True
        try:
            yield
        finally:
            self.interruptible = was

    @property
    def requested(self) -> bool:
        """True once a stop has been asked for."""
        return self.reason is not None

    def request(self, reason: str) -> None:
        """Ask the run to stop after the current item; the first reason given wins."""
        if self.reason is None:
            self.reason = reason
        self.pending = True

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on a stop; True if a stop was requested.

        Enumerators that pause (throttling, backoff) use it so a stop is not delayed by
        their sleep. It polls rather than waiting on an Event because an Event cannot be
        set safely from a signal handler.
        """
        deadline = time.monotonic() + seconds
        while self.reason is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(remaining, 0.05))
        return self.reason is not None


@contextmanager
def interruptible_wait() -> Iterator[None]:
    """Within the block (a wait that has changed nothing yet), a stop signal raises
    :class:`StopWaiting` at once instead of only raising the token's flag."""
    global _waits  # noqa: PLW0603 - signals are process-wide; so is this count
    _waits += 1
    try:
        yield
    finally:
        _waits -= 1


def _notify_nobody(_message: str) -> None:
    pass


#: Where a long wait says what it waits for (the CLI points it at stderr).
wait_notice: list[Callable[[str], None]] = [_notify_nobody]


def wait_until(
    attempt: Callable[[], bool],
    *,
    what: str,
    holder: Callable[[], str],
    timeout: float | None = None,
) -> None:
    """Call ``attempt`` until it returns True, for at most ``timeout`` seconds.

    After a second it says once what it waits for and who holds it; a stop signal ends
    the wait (:class:`StopWaiting`); at the deadline it gives up with exit 69.
    """
    from iterctl.errors import StoreUnavailableError

    limit = STORE_WAIT_SECONDS if timeout is None else timeout
    # The first try is no wait: a stop signal then only raises the flag, as anywhere else,
    # so the run's own stop (its final checkpoint) is not cut short by it.
    if attempt():
        return
    start = time.monotonic()
    told = False
    with interruptible_wait():
        while not attempt():
            waited = time.monotonic() - start
            if waited >= limit:
                raise StoreUnavailableError(
                    f"gave up after {limit:g} s waiting for {what}, held by {holder()} — "
                    "if that process is stuck (stopped, frozen), end it; nothing was changed"
                )
            if not told and waited >= 1:
                told = True
                wait_notice[0](
                    f"waiting for {what}, held by {holder()} (up to {limit:g} s; "
                    "SIGTERM or Ctrl-C stops the wait)"
                )
            time.sleep(0.02)


def _on_stop_signal(token: StopToken, signum: int) -> None:
    """What every stop signal does: record the reason; end a wait for the store."""
    name = signal.Signals(signum).name
    token.request(name)
    if _waits:
        raise StopWaiting(name)


def catch_early_signals() -> StopToken:
    """Record SIGTERM/SIGINT from the first moment of the process, before slow imports.

    Without it, a pod stopped while Python still imports typer and SQLAlchemy would die of
    the signal (exit 143, counted as a failure) instead of exiting 75. The token it
    returns is handed to :func:`signals_stop` once the command runs.
    """
    token = StopToken()

    def early_signal(signum: int, _frame: FrameType | None) -> None:
        _on_stop_signal(token, signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, early_signal)
    return token


@contextmanager
def signals_stop(token: StopToken, *, restore: bool = True) -> Iterator[None]:
    """Route SIGTERM and SIGINT to ``token`` for the duration of the block.

    The first SIGTERM or SIGINT asks for a stop after the current item. A second SIGINT
    (an impatient Ctrl-C) raises :class:`StopNow` in the main thread at once, if the job's
    code is running; inside iterctl's own work (a checkpoint, the hold's release) the run is
    stopping already and the store must not be cut mid-write, so it is let be. With
    ``restore=False`` (a process about to exit) later signals are ignored rather than
    handed back to Python's defaults, so one more Ctrl-C cannot turn a clean exit 75
    into a KeyboardInterrupt.
    """

    def first_signal(signum: int, _frame: FrameType | None) -> None:
        # From now on SIGINT means "stop now", as in rq and most CLIs.
        signal.signal(signal.SIGINT, second_sigint)
        _on_stop_signal(token, signum)

    def second_sigint(signum: int, _frame: FrameType | None) -> None:
        if token.interruptible:
            # Once: a third Ctrl-C must not break the final checkpoint the second started.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            token.interruptible = False
            raise StopNow
        _on_stop_signal(token, signum)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, first_signal)
    if token.requested:  # a signal came before this block (see catch_early_signals)
        signal.signal(signal.SIGINT, second_sigint)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if restore else signal.SIG_IGN)


#: The first checkpoint of a run comes at most this many seconds after its start.
FIRST_CHECKPOINT_SECONDS = 1.0


class Ticker:
    """A daemon thread that raises the token's flags on time.

    Reading the clock per item would cost more than the rest of the loop, so time is
    watched here instead and the loop only sees a flag.
    """

    def __init__(
        self,
        token: StopToken,
        *,
        checkpoint_interval: float,
        progress_interval: float,
        max_runtime: float | None,
        hold_check_interval: float = inf,
    ) -> None:
        self._token = token
        self._hold_check_interval = hold_check_interval
        self._checkpoint_interval = checkpoint_interval
        self._progress_interval = progress_interval
        self._deadline = None if max_runtime is None else time.monotonic() + max_runtime
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="iterctl-ticker", daemon=True)

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        now = time.monotonic()
        # Interval 0 means "after every item": the runner does that itself, not the timer.
        # The first one comes within a second, so that `status` shows the total, progress
        # and a rate soon after a start rather than one whole interval later.
        first = min(self._checkpoint_interval, FIRST_CHECKPOINT_SECONDS)
        next_checkpoint = now + first if self._checkpoint_interval > 0 else inf
        next_progress = now + self._progress_interval
        next_hold_check = now + self._hold_check_interval
        token = self._token
        while True:
            wake = min(next_checkpoint, next_progress, next_hold_check)
            if self._deadline is not None:
                wake = min(wake, self._deadline)
            if self._stopped.wait(max(0.0, wake - time.monotonic())):
                return
            now = time.monotonic()
            if self._deadline is not None and now >= self._deadline:
                token.request("max-runtime")
                self._deadline = None
            if now >= next_checkpoint:
                token.checkpoint_due = True
                next_checkpoint = now + self._checkpoint_interval
            if now >= next_progress:
                token.progress_due = True
                next_progress = now + self._progress_interval
            if now >= next_hold_check:
                token.hold_check_due = True
                next_hold_check = now + self._hold_check_interval
            # Set last: the loop clears `pending` before it reads the other flags.
            token.pending = True


#: A byte no signal has: written by :class:`SignalWatcher` itself to wake its thread to end.
_WAKE_TO_END = 0


class SignalWatcher:
    """A thread that says what each stop signal means the moment it arrives.

    A signal handler may only set flags, and Python runs it only between two bytecodes of
    the main thread, which may be deep in a ten-second item. So this thread does the
    talking instead: Python's C-level handler writes each signal's number to the wakeup fd
    (:func:`signal.set_wakeup_fd`) at once, and the thread reads it and calls
    ``on_signal(name, now=…, again=…)``: ``now`` for a second SIGINT (the run stops at once),
    ``again`` for a signal that finds a stop already under way.
    """

    def __init__(self, token: StopToken, on_signal: Callable[..., None]) -> None:
        self._token = token
        self._on_signal = on_signal
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)  # the C handler must never block
        self._previous_fd = -1
        self._stops_seen = 0
        self._stopping_now = False
        self._thread = threading.Thread(target=self._run, name="iterctl-signals", daemon=True)

    def __enter__(self) -> SignalWatcher:
        # A signal caught before this block (see catch_early_signals) is said now; any
        # later one reaches the wakeup fd.
        early = self._token.reason
        try:
            self._previous_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        except ValueError:  # not the main thread (iterctl embedded): nothing to watch
            self._close_fds()
            return self
        if early is not None:
            self._stops_seen = 1
            self._tell(early, now=False, again=False)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if not self._thread.is_alive():
            return
        signal.set_wakeup_fd(self._previous_fd)
        os.write(self._write_fd, bytes([_WAKE_TO_END]))
        self._thread.join()
        self._close_fds()

    def _run(self) -> None:
        while True:
            for signum in os.read(self._read_fd, 64):
                if signum == _WAKE_TO_END:
                    return
                if signum in (signal.SIGTERM, signal.SIGINT):
                    self._say(signal.Signals(signum))

    def _say(self, sig: signal.Signals) -> None:
        # The same rule as signals_stop's handlers: after a first stop signal, the next
        # SIGINT stops at once; later ones are ignored there (and never reach this fd).
        self._stops_seen += 1
        now = self._stops_seen > 1 and sig is signal.SIGINT and not self._stopping_now
        self._stopping_now = self._stopping_now or now
        self._tell(sig.name, now=now, again=self._stops_seen > 1 and not now)

    def _tell(self, name: str, *, now: bool, again: bool) -> None:
        # stderr gone (a closed pipe): the stop itself goes on regardless.
        with suppress(OSError):
            self._on_signal(name, now=now, again=again)

    def _close_fds(self) -> None:
        os.close(self._read_fd)
        os.close(self._write_fd)
