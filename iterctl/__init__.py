"""iterctl: long batch jobs that stop between two items and resume after the last one done.

The public API: subclass :class:`Job`, then run it with ``iterctl run module:Class``.

The names below load on first use (PEP 562): the ``iterctl`` command imports this package
before it can install its signal handlers, and a SIGTERM in that window must still end
in exit 75, so importing the package itself costs next to nothing.
"""

from __future__ import annotations

from importlib import import_module

#: typing.TYPE_CHECKING without importing typing (mypy knows the name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from iterctl.errors import ExitCode, IterctlError, UsageError
    from iterctl.job import Job
    from iterctl.stopping import StopToken

__all__ = ["ExitCode", "IterctlError", "Job", "StopToken", "UsageError"]
__version__ = "0.1.0"

_HOMES = {
    "ExitCode": "iterctl.errors",
    "IterctlError": "iterctl.errors",
    "UsageError": "iterctl.errors",
    "Job": "iterctl.job",
    "StopToken": "iterctl.stopping",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'iterctl' has no attribute {name!r}")
    return getattr(import_module(home), name)
