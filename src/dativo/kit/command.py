"""``dativo plugin test IMPL``: run the conformance kit, print the table, write the report.

Registered by :mod:`dativo.cli` in its ``plugin`` group; importing this module is cheap (the kit itself is
imported when the command runs). Exit codes: 0 when no check failed, 3 when one did, 2 for a usage or
configuration error (nothing was checked), 1 for an internal error.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from dativo.errors import DativoError
from dativo.secrets import RedactingFilter, shown

if TYPE_CHECKING:
    from dativo.kit.report import KitReport

out = Console()
err = Console(stderr=True)

DEFAULT_REPORT = Path("dativo-kit-report")
_COLOURS = {"pass": "green", "fail": "red", "skip": "yellow"}


def _logging(*, quiet: bool, debug: bool) -> None:
    handler = RichHandler(console=err, show_path=debug, show_time=debug)
    handler.addFilter(RedactingFilter())
    handler.setLevel(logging.DEBUG if debug else logging.ERROR if quiet else logging.WARNING)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("dativo").setLevel(logging.DEBUG if debug else logging.INFO)


def render(report: KitReport) -> None:
    """Print the report as rich tables on stdout."""
    p = report.plugin
    title = (f"dativo plugin test · {p.get('implementation')} ({p.get('role')}, {p.get('origin', '?')} "
             f"{p.get('version', '')})")
    table = Table("check", "group", "status", "reason", title=escape(shown(title)), title_justify="left")
    for check in report.checks:
        colour = _COLOURS[check.status]
        table.add_row(escape(check.name), check.group, f"[{colour}]{check.status}[/]", escape(shown(check.reason)))
    out.print(table)
    if report.perf:
        perf = Table("", "implementation", "pass", "rows", "rows/s", "MB/s", "peak RSS MiB", "CPU s",
                     title="performance", title_justify="left")
        for line in report.perf:
            perf.add_row(line.label, escape(shown(line.implementation)), line.what, f"{line.rows:,}",
                         f"{line.rows_per_s:,.0f}", f"{line.mb_per_s:,.1f}", f"{line.peak_rss_mb:,.0f}",
                         f"{line.cpu_s:.2f}")
        out.print(perf)
    for check in report.failures:  # whole, whatever the terminal's width: what CI logs must show
        out.print(f"[red]failed[/] {escape(shown(check.line))}", soft_wrap=True, highlight=False)
    for note in report.notes:
        out.print(f"[dim]note:[/] {escape(shown(note))}", soft_wrap=True, highlight=False)
    level = report.level
    colour = "green" if level else "red"
    out.print(f"level: [bold {colour}]{level or 'not compatible'}[/] · {len(report.failures)} failed · "
              f"{report.seconds:.1f} s")


def plugin_test(
    implementation: Annotated[str, typer.Argument(
        metavar="IMPL",
        help="What a job's implementation: accepts: a built-in name, an entry point, package.module:Class, "
        "a JSON/YAML mapping ('{lib: ./libreader.so}', '{command: [./reader]}') or the path of a .so.",
        show_default=False,
    )],
    job: Annotated[Path | None, typer.Option(
        "--job", help="Configure the plugin from this job's source (reader) or target (writer) section; a "
        "writer's location is replaced by a temporary one.")] = None,
    kind: Annotated[str | None, typer.Option(
        "--kind", help="reader or writer (default: a reader if IMPL is one, else a writer; say writer for "
        "parquet).")] = None,
    options: Annotated[str | None, typer.Option(
        "--options", help="The plugin's options as a JSON/YAML mapping (they replace the job's); a writer's "
        "location may use {tmp}.")] = None,
    against: Annotated[str | None, typer.Option(
        "--against", help="default: diff the plugin's output with the built-in's on the job (needs --job).")] = None,
    sandbox: Annotated[bool, typer.Option(
        "--sandbox", help="Also run load, discover, plan and read (a writer: a commit) inside the sandbox.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report on stdout.")] = False,
    report_dir: Annotated[Path, typer.Option(
        "--report", help="Folder for report.json and report.md.")] = DEFAULT_REPORT,
    perf: Annotated[bool, typer.Option("--perf/--no-perf", help="Measure the performance line.")] = True,
    debug: Annotated[bool, typer.Option("--debug", help="Verbose logs, and tracebacks on errors.")] = False,
) -> None:
    """The conformance kit: check a reader or writer against the plugin contract and certify it."""
    from dativo.kit.runner import run_kit

    _logging(quiet=as_json, debug=debug)
    try:
        report = run_kit(implementation, kind=kind, job=job, options=options,  # type: ignore[arg-type]
                         against=against, sandbox=sandbox, perf=perf)
    except DativoError as exc:
        err.print(f"[bold red]Error:[/] {escape(shown(str(exc)))}", highlight=False, soft_wrap=True)
        if debug:
            err.print(escape(shown("".join(traceback.format_exception(exc)))), highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except Exception as exc:
        err.print(f"[bold red]Internal error:[/] {type(exc).__name__}: {escape(shown(str(exc)))}. Rerun with "
                  "--debug for the traceback, and report it.", highlight=False, soft_wrap=True)
        if debug:
            err.print(escape(shown("".join(traceback.format_exception(exc)))), highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    json_path, md_path = report.write(report_dir)
    if as_json:
        print(report.to_json())
    else:
        render(report)
        out.print(f"[dim]report:[/] {escape(str(md_path))}, {escape(str(json_path))}", highlight=False)
    raise typer.Exit(report.exit_code)


__all__ = ["DEFAULT_REPORT", "plugin_test", "render"]
