"""``python -m dativo``: the command line, for when the ``dativo`` script is not on PATH (plugin processes)."""

from dativo.cli import main

main()
