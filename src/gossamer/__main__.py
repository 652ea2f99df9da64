"""``python -m gossamer``: the command line, as the ``gossamer`` script."""

from gossamer.cli import main

main()
