"""Exit codes (CONTRACT §3) and the errors that carry them.

Every error iterctl raises for a person to read derives from :class:`IterctlError` and
knows its exit code, so the CLI has one ``except`` that prints one line and exits.
"""

from __future__ import annotations

import errno
from enum import IntEnum


class ExitCode(IntEnum):
    """The process exit codes of CONTRACT §3; Kubernetes' podFailurePolicy keys on them."""

    SUCCEEDED = 0
    #: The job's own code raised; the cursor stays at the last completed item.
    JOB_FAILED = 1
    #: Bad invocation or input: retrying cannot help, so Kubernetes should fail the Job.
    USAGE = 2
    #: The job id was cancelled: it must not be restarted.
    CANCELLED = 3
    #: EX_UNAVAILABLE from sysexits.h: the store cannot be reached or opened.
    STORE_UNAVAILABLE = 69
    #: EX_TEMPFAIL from sysexits.h: stopped before the end, resumable; restart freely.
    RESUMABLE = 75


class IterctlError(Exception):
    """Root of iterctl's errors: a message for a person plus the exit code it maps to."""

    exit_code: ExitCode = ExitCode.USAGE
    #: Lines that help a person more than they clutter (a job module's own traceback),
    #: printed above the one-line message.
    details: str = ""


class UsageError(IterctlError):
    """Bad invocation or input (exit 2): a bad option, import path, parameter or job id."""

    exit_code = ExitCode.USAGE


class NoStoreError(UsageError):
    """A command that only reads found no store where it looked (exit 2)."""


class InvalidCursorError(UsageError):
    """An enumerator yielded a cursor that is not a JSON value, or not an (item, cursor) pair."""


class StoreUnavailableError(IterctlError):
    """The store cannot be reached or opened (exit 69); nothing was changed.

    The rule between 69 and 2: exit 69 when the same command may succeed later without
    anyone changing anything (a server down or busy, a lock held, a full disk that frees
    up); exit 2 (:class:`StoreUnusableError`) when a person must change something first.
    """

    exit_code = ExitCode.STORE_UNAVAILABLE


class StoreUnusableError(UsageError):
    """The store cannot be used as it is (exit 2): a missing folder, a folder where the
    file should be, a file that is not an iterctl store or has damaged records, a
    read-only store for a command that writes, a store from a newer iterctl. Retrying
    cannot help; a person must change the store or ``--store``."""


#: OSError numbers after which the same command may succeed later, unchanged (exit 69).
_PASSING_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EFBIG,  # a file-size limit reached: as a full disk, it may pass
        errno.EDQUOT,
        errno.EIO,
        errno.EAGAIN,
        errno.EBUSY,
        errno.ETIMEDOUT,
        errno.EINTR,
        errno.ENOLCK,
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOMEM,
    }
)


def store_os_error(error: OSError, doing: str, fix: str = "") -> IterctlError:
    """``error`` met while ``doing`` something with a store file, as one line whose exit
    code follows the rule of :class:`StoreUnavailableError`."""
    reason = error.strerror or str(error)
    if error.errno in _PASSING_ERRNOS:
        return StoreUnavailableError(
            f"cannot {doing}: {reason} — nothing was changed; run the same command again "
            "once that has passed"
        )
    return StoreUnusableError(
        f"cannot {doing}: {reason} — {fix or 'check the path and its permissions'}"
    )


class JobHeldError(IterctlError):
    """Another live process runs this job id (exit 75): try again later."""

    exit_code = ExitCode.RESUMABLE


class LostHoldError(IterctlError):
    """A checkpoint was refused because another process took the job id over (exit 75)."""

    exit_code = ExitCode.RESUMABLE
    #: How a stopped run names this cause ("stopped job X (lost hold)").
    reason = "lost hold"


class LostSessionError(LostHoldError):
    """The hold's database session died (a failover, pg_terminate_backend, KILL): its lock
    and its open transaction went with it (exit 75)."""

    reason = "lost its database session"


class JobCancelledError(IterctlError):
    """The job id was cancelled (exit 3)."""

    exit_code = ExitCode.CANCELLED
