"""``python -m iterctl``: the same as the ``iterctl`` command."""

from iterctl.cli import main

main()
