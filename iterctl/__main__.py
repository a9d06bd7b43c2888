"""``python -m iterctl``: the same as the ``iterctl`` command."""

from iterctl.entry import main

main()
