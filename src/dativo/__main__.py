"""The ``dativo`` command (and ``python -m dativo``, for when the script is not on PATH: plugin processes).

``dativo --version`` is answered here, before the command line's modules (pyarrow, pydantic, typer) load.
"""

from __future__ import annotations

import sys
from typing import Any


def main() -> Any:
    """Console entry point: ``--version`` at once, everything else through :func:`dativo.cli.main`."""
    if sys.argv[1:] == ["--version"]:
        from dativo import version_line

        print(version_line())
        return 0
    from dativo.allocator import tune_malloc

    tune_malloc()  # before pyarrow and its threads allocate: see dativo.allocator
    from dativo.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
