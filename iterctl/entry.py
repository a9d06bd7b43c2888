"""The ``iterctl`` console script: catch stop signals first, then load the CLI.

Importing the CLI (typer, rich) takes a noticeable fraction of a second; a SIGTERM in
that window must still end in a clean, resumable exit 75, so the signal handlers go in
before anything heavy is imported.
"""

from __future__ import annotations

from typing import NoReturn

from iterctl.stopping import catch_early_signals


def main() -> NoReturn:
    token = catch_early_signals()
    from iterctl.cli import main as cli_main

    cli_main(token)
