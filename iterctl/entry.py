"""The ``iterctl`` console script: catch stop signals first, then load the CLI.

Importing the CLI (typer, rich) takes a noticeable fraction of a second; a SIGTERM in
that window must still end in a clean, resumable exit 75, so the signal handlers go in
before anything heavy is imported.
"""

from __future__ import annotations

from iterctl.stopping import catch_early_signals

#: typing.TYPE_CHECKING without importing typing: every millisecond before the handlers
#: go in is a window in which SIGTERM kills the process (exit 143) instead of exit 75.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn


def main() -> NoReturn:
    token = catch_early_signals()
    from iterctl.cli import main as cli_main

    cli_main(token)
