"""The Job base class: what a job author writes (CONTRACT §1)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from iterctl.cursor import Cursor
from iterctl.errors import UsageError
from iterctl.retrying import DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP
from iterctl.stopping import StopToken

if TYPE_CHECKING:
    from sqlalchemy import Connection


@dataclass(frozen=True)
class Partition:
    """Which part of a partitioned job this process runs (``--partitions N``)."""

    index: int
    count: int
    #: This partition's bounds, as the job's stored plan gave them (a JSON value).
    bounds: Cursor


class Job:
    """A batch job as an enumerator plus an action on one item.

    Subclass it, implement :meth:`build_enumerator` and :meth:`each_iteration`, and run it
    with ``iterctl run module:Class``::

        class Backfill(Job):
            def build_enumerator(self, cursor):
                start = 0 if cursor is None else cursor + 1
                return ((n, n) for n in range(start, 1000))   # (item, cursor) pairs

            def each_iteration(self, item):
                print(item)

    Parameters arrive as ``self.params``: a ``dict[str, str]`` of ``--param KEY=VALUE``
    pairs, or, when the class sets :attr:`Params` to a pydantic model, an instance of it.
    """

    #: Optional parameter model (a pydantic ``BaseModel`` subclass): ``--param`` values are
    #: validated and typed through it, and ``self.params`` is an instance of it.
    Params: ClassVar[type[Any] | None] = None

    #: Exceptions that mean "try this item again" (CONTRACT §1); none by default.
    retry_on: tuple[type[Exception], ...] = ()
    #: Tries an item gets in all, the first included, when it raises one of ``retry_on``.
    max_attempts: int = 1
    #: Seconds of backoff before the second try; doubled for each later one, never more
    #: than ``retry_backoff_cap``; each wait is drawn at random below that (full jitter).
    retry_backoff: float = DEFAULT_BACKOFF_BASE
    retry_backoff_cap: float = DEFAULT_BACKOFF_CAP

    def __init__(
        self,
        params: Any = None,
        *,
        job_id: str = "",
        stop_token: StopToken | None = None,
        partition: Partition | None = None,
        store_location: str = "",
    ) -> None:
        self.params: Any = {} if params is None else params
        #: The id this run works under; useful in logs and for idempotency keys.
        self.job_id = job_id
        #: Raised when the run should stop; enumerators that sleep should ``wait`` on it.
        self.stop_token = stop_token if stop_token is not None else StopToken()
        #: Set when the job runs as one of several partitions; None otherwise.
        self.partition = partition
        #: The run's ``--store`` (a SQLAlchemy URL, or a .json path); "" outside a run.
        self.store_location = store_location
        # The open transaction of a coupled run (see `transaction`); set by the runner.
        self._transaction: Connection | None = None

    # -- what every job implements ------------------------------------------------------

    def build_enumerator(self, cursor: Cursor) -> Iterable[tuple[Any, Cursor]]:
        """Return ``(item, cursor)`` pairs starting AFTER ``cursor`` (None on the first run)."""
        raise NotImplementedError(
            f"{type(self).__name__} must define build_enumerator(self, cursor) returning "
            "(item, cursor) pairs, like this: return ((n, n) for n in range(start, stop))"
        )

    def each_iteration(self, item: Any) -> None:
        """Process one item. Once it returns, the item's cursor is the job's progress."""
        raise NotImplementedError(f"{type(self).__name__} must define each_iteration(self, item)")

    # -- checkpoint-coupled writes ------------------------------------------------------

    @property
    def coupled_writes(self) -> bool:
        """True: the job's database writes go through :attr:`transaction` and commit in the
        transaction of each checkpoint, exactly once even after SIGKILL (CONTRACT §1).

        Set ``coupled_writes = True`` on the class, or define this property to decide at run
        time (when ``self.store_location`` is the database the job writes to, say). Needs
        an SQL store, the database the job writes to.
        """
        return False

    @property
    def transaction(self) -> Connection:
        """The SQLAlchemy Connection inside the open checkpoint transaction.

        Valid from the first item to the last checkpoint (``each_iteration``,
        ``on_checkpoint``, ``on_complete``) of a job whose :attr:`coupled_writes` is True.
        Write through it and never commit or roll back: iterctl commits it with the cursor
        at each checkpoint; an item that raises has its own writes rolled back.
        """
        if self._transaction is None:
            raise UsageError(
                f"{type(self).__name__}.transaction is open only from the first item to the "
                "last checkpoint of a job with coupled_writes = True — set it on the class, "
                "and use self.transaction in each_iteration, on_checkpoint or on_complete"
            )
        return self._transaction

    # -- optional ----------------------------------------------------------------------

    def count(self) -> int | None:
        """How many items the whole job has, for progress and ETA; None when unknown."""
        return None

    def on_start(self) -> None:
        """Called once, before the first item of the first run of this job id."""

    def on_resume(self) -> None:
        """Called before the first item of every later run of this job id."""

    def on_checkpoint(self) -> None:
        """Called right before every checkpoint is saved, in its transaction for a job with
        coupled writes: flush buffered writes (bulk inserts, an outbox) here. If it raises,
        the checkpoint is not saved: the cursor stays where the last one left it."""

    def on_shutdown(self) -> None:
        """Called at every stop of a process, whatever the reason, after the last checkpoint."""

    def on_complete(self) -> None:
        """Called once, after the last item, before the job is marked succeeded."""

    def on_error(self, error: BaseException) -> None:
        """Called when the job's code raised ``error``; the job is then marked failed."""

    def on_all_complete(self) -> None:
        """Called once per job id, by the process whose success completes the whole job:
        the last partition to finish (or the only one). At most once, even if it raises."""

    # -- partitions ---------------------------------------------------------------------

    def partition_plan(self, count: int) -> list[Cursor]:
        """The bounds of each of ``count`` partitions, computed once when the job starts.

        By default the enumerator splits itself: ``build_enumerator(None)`` must return an
        object with ``split(count)`` (the bounds) and ``within(bounds)`` (the enumerator
        restricted to them), as iterctl's builders do. Override this to split a custom
        enumerator; ``build_enumerator`` then reads ``self.partition.bounds`` itself.
        """
        enumerator = self.build_enumerator(None)
        split = getattr(enumerator, "split", None)
        if not callable(split) or not callable(getattr(enumerator, "within", None)):
            raise UsageError(
                f"{type(self).__name__} cannot be split into partitions: its enumerator has "
                "no split()/within() — build it with an iterctl builder, or define "
                "partition_plan(count) and read self.partition.bounds in build_enumerator"
            )
        bounds: list[Cursor] = split(count)
        return bounds

    @classmethod
    def splits_itself(cls) -> bool:
        """True when the job overrides :meth:`partition_plan` and so applies its own bounds."""
        return cls.partition_plan is not Job.partition_plan
