"""Exit codes (CONTRACT §3) and the errors that carry them.

Every error iterctl raises for a person to read derives from :class:`IterctlError` and
knows its exit code, so the CLI has one ``except`` that prints one line and exits.
"""

from __future__ import annotations

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


class UsageError(IterctlError):
    """Bad invocation or input (exit 2): a bad option, import path, parameter or job id."""

    exit_code = ExitCode.USAGE


class NoStoreError(UsageError):
    """A command that only reads found no store where it looked (exit 2)."""


class InvalidCursorError(UsageError):
    """An enumerator yielded a cursor that is not a JSON value, or not an (item, cursor) pair."""


class StoreUnavailableError(IterctlError):
    """The store cannot be reached or opened (exit 69); nothing was changed."""

    exit_code = ExitCode.STORE_UNAVAILABLE


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
