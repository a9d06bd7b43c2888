"""iterctl: long batch jobs that stop between two items and resume after the last one done.

The public API: subclass :class:`Job`, then run it with ``iterctl run module:Class``.
"""

from iterctl.errors import ExitCode, IterctlError, UsageError
from iterctl.job import Job
from iterctl.stopping import StopToken

__all__ = ["ExitCode", "IterctlError", "Job", "StopToken", "UsageError"]
__version__ = "0.1.0"
