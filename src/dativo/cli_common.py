"""What every ``dativo`` command shares: the consoles, common options, logging and the one way errors end a
command (a paragraph and an exit code; a traceback only with ``--debug``)."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from dativo.errors import DativoError
from dativo.secrets import RedactingFilter, shown

out = Console()
err = Console(stderr=True)
T = TypeVar("T")

JobArg = Annotated[Path, typer.Argument(help="The job YAML file.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Verbose logs, and tracebacks on errors.")]


def setup_logging(*, debug: bool, quiet: bool) -> None:
    """Log to stderr through the secret filter; ``quiet`` shows errors only (warnings still reach reports)."""
    handler = RichHandler(console=err, show_path=debug, show_time=debug, rich_tracebacks=debug)
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    if quiet and not debug:  # quiet on the terminal; warnings still reach the run report
        handler.setLevel(logging.ERROR)
    logging.getLogger("dativo").setLevel(logging.DEBUG if debug else logging.INFO)


def fail(exc: BaseException, *, debug: bool) -> int:
    """Print ``exc`` as one paragraph (the traceback with ``debug``) and return its exit code."""
    if isinstance(exc, DativoError):
        err.print(f"[bold red]Error:[/] {escape(shown(str(exc)))}", highlight=False, soft_wrap=True)
        code = exc.exit_code
    elif isinstance(exc, KeyboardInterrupt):
        what = "Terminated" if isinstance(exc, Terminated) else "Interrupted"
        err.print(f"[bold red]{what}.[/] Nothing was committed by the interrupted step.")
        code = 143 if isinstance(exc, Terminated) else 130
    else:
        err.print(
            f"[bold red]Internal error:[/] {type(exc).__name__}: {escape(shown(str(exc)))}. "
            "Rerun with --debug for the traceback, and report it.",
            highlight=False,
            soft_wrap=True,
        )
        code = 1
    if debug:  # as text, so that secrets in exception messages are redacted like everywhere else
        trace = "".join(traceback.format_exception(exc))
        err.print(escape(shown(trace)), highlight=False, soft_wrap=True, end="")
    return code


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a run stops and cleans up as on Ctrl-C."""


def guarded(fn: Callable[[], T], *, debug: bool) -> T:
    """``fn()``, or the command's end with the exit code of what it raised."""
    try:
        return fn()
    except (Exception, KeyboardInterrupt) as exc:
        raise typer.Exit(fail(exc, debug=debug)) from None
