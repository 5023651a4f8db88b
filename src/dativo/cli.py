"""The ``dativo`` command line.

Exit codes: 0 ok, 1 anything else, 2 config error, 3 plugin error, 4 commit failure, 130 interrupted
(SIGINT, Ctrl-C), 143 terminated (SIGTERM).
A user's own mistake never shows a traceback (``--debug`` shows one).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import pyarrow as pa
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from dativo import __version__
from dativo.api import API_VERSION
from dativo.config import job_schema, load_job
from dativo.errors import DativoError
from dativo.report import RunReport
from dativo.secrets import RedactingFilter, shown

app = typer.Typer(
    name="dativo",
    help="Config-driven data ingestion with pluggable readers and writers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
plugins_app = typer.Typer(help="List and inspect readers and writers.", no_args_is_help=True)
app.add_typer(plugins_app, name="plugins")
plugin_app = typer.Typer(help="Develop and run plugins.", no_args_is_help=True)
app.add_typer(plugin_app, name="plugin")

out = Console()
err = Console(stderr=True)
log = logging.getLogger("dativo")
T = TypeVar("T")

JobArg = Annotated[Path, typer.Argument(help="The job YAML file.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Verbose logs, and tracebacks on errors.")]


def _setup_logging(*, debug: bool, quiet: bool) -> None:
    handler = RichHandler(console=err, show_path=debug, show_time=debug, rich_tracebacks=debug)
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("dativo").setLevel(logging.DEBUG if debug else logging.ERROR if quiet else logging.INFO)


def _fail(exc: BaseException, *, debug: bool) -> int:
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


@contextmanager
def _interruptible(committing: Callable[[], bool]) -> Iterator[None]:
    """Stop the run on SIGINT (``KeyboardInterrupt``) or SIGTERM (:class:`Terminated`), except mid-commit.

    A signal that arrives while ``committing()`` is true is held until the commit has ended, so that a
    supervisor's SIGTERM does not turn a commit into one whose outcome is unknown; a second signal of the
    same kind is not held.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: set[int] = set()

    def stop(signum: int, frame: object) -> None:
        if committing() and signum not in held:
            held.add(signum)
            log.warning("received %s during the commit: stopping once it has ended", signal.Signals(signum).name)
            return
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if held:  # the commit ended and the run finished: it is complete, and now it stops
        log.warning("the run completed before stopping")


def _exit_now(code: int) -> None:
    """Exit without waiting for threads still inside a plugin's call (everything else is already closed)."""
    log.warning("exiting while a plugin call is still under way; nothing was committed")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _guarded(fn: Callable[[], T], *, debug: bool) -> T:
    try:
        return fn()
    except (Exception, KeyboardInterrupt) as exc:
        raise typer.Exit(_fail(exc, debug=debug)) from None


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[int], None] | None]:
    """A live line with rows and rows/s on a terminal; nothing elsewhere."""
    if not enabled or not err.is_terminal:
        yield None
        return
    from rich.live import Live

    lock = threading.Lock()
    rows = [0]
    started = time.monotonic()

    def on_rows(n: int) -> None:
        with lock:
            rows[0] += n

    def render() -> str:
        elapsed = max(time.monotonic() - started, 1e-9)
        return f"[cyan]reading[/] {rows[0]:,} rows · {rows[0] / elapsed:,.0f} rows/s · {elapsed:,.1f} s"

    with Live(render(), console=err, refresh_per_second=8, transient=True) as live:
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(0.125):
                live.update(render())

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield on_rows
        finally:
            stop.set()
            ticker.join()


def _summary(report: RunReport) -> Table:
    table = Table(title=f"dativo run · {report.job}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    side = lambda p: f"{p.implementation} ({p.language} {p.version}, {p.origin})" if p else "-"  # noqa: E731
    rows = [
        ("status", f"[green]{report.status}[/]"),
        ("rows read / written", f"{report.rows_read:,} / {report.rows_written:,}"),
        ("bytes written", f"{report.bytes_written:,}"),
        ("time", f"{report.seconds:.2f} s · {report.rows_per_s:,.0f} rows/s"),
        ("peak memory", f"{report.peak_rss_mb:,.0f} MiB"),
        ("reader", side(report.reader)),
        ("writer", side(report.writer)),
        ("fallback", f"yes: {report.fallback_reason}" if report.fallback_used else "no"),
        ("commit", ", ".join(f"{d.name} → {d.commit_id}{' (already committed)' if d.no_op else ''}"
                             for d in report.datasets) or "-"),
        ("run id", report.run_id),
    ]
    for key, value in rows:
        table.add_row(key, shown(value) if key == "status" else escape(shown(value)))
    return table


@app.command()
def run(
    job: JobArg,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, no summary; errors only.")] = False,
    debug: DebugOpt = False,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Reuse a run id: a run already committed becomes a no-op.")
    ] = None,
) -> None:
    """Run a job: read, write, and commit atomically."""
    from dativo.engine import Engine

    _setup_logging(debug=debug, quiet=quiet or as_json)
    started = time.monotonic()
    config = engine = None
    run_id = uuid.uuid4().hex if run_id is None else run_id
    try:
        config = load_job(job)
        engine = Engine(config, run_id=run_id)
        with _interruptible(lambda: engine.committing), _progress(not (quiet or as_json)) as on_rows:
            engine.on_rows = on_rows
            report = engine.run()
    except (Exception, KeyboardInterrupt) as exc:
        if as_json:
            failed = RunReport(
                job=config.name if config else job.stem,
                run_id=run_id,
                status="failed",
                error=str(exc),
                error_type=type(exc).__name__,
            ).finish(time.monotonic() - started)
            out.print_json(failed.to_json())
        code = _fail(exc, debug=debug)
        if engine is not None and engine.abandoned:  # a plugin call that ignores cancellation must not
            _exit_now(code)                           # keep the process (and its exit) waiting
        raise typer.Exit(code) from None
    if as_json:
        print(report.to_json())
    elif not quiet:
        out.print(_summary(report))


@app.command()
def maintain(
    job: JobArg,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed; change nothing.")] = False,
    orphans_older_than: Annotated[str, typer.Option(
        "--orphans-older-than", help="Delete unreferenced files older than this (at least 1h).")] = "3d",
    expire_older_than: Annotated[str, typer.Option(
        "--expire-older-than", help="Expire snapshots older than this ('never' keeps all).")] = "7d",
    retain_last: Annotated[int, typer.Option("--retain-last", help="Always keep this many newest snapshots.")] = 10,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Expire old snapshots and delete files no commit references (those of killed runs)."""
    from dativo.engine import Engine
    from dativo.maintenance import MaintenancePolicy, parse_duration

    _setup_logging(debug=debug, quiet=as_json)

    def work() -> list[Any]:
        policy = MaintenancePolicy(
            orphan_age_s=parse_duration(orphans_older_than, "--orphans-older-than"),
            snapshot_age_s=None if expire_older_than == "never"
            else parse_duration(expire_older_than, "--expire-older-than"),
            retain_last=retain_last,
        )
        return Engine(load_job(job)).maintain(policy, dry_run=dry_run)

    results = _guarded(work, debug=debug)
    if as_json:
        print(json.dumps([r.__dict__ for r in results], indent=2))
        return
    verb = "would remove" if dry_run else "removed"
    table = Table("target", "snapshots expired", "kept for the job", "orphan files", "orphan MB",
                  title=f"dativo maintain · {job}" + (" (dry run)" if dry_run else ""))
    for r in results:
        table.add_row(escape(shown(r.target)), str(len(r.expired_snapshots)), str(len(r.kept_snapshots)),
                      str(len(r.orphan_files)), f"{r.orphan_bytes / 2**20:,.1f}")
    out.print(table)
    for r in results:
        for path in r.orphan_files[:20]:
            out.print(f"[dim]{verb}[/] {escape(shown(path))}", soft_wrap=True, highlight=False)


@app.command()
def check(job: JobArg, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Validate the job file and connect to its source and target."""
    from dativo.engine import Engine

    from dativo.plugins.sandbox import status_row

    _setup_logging(debug=debug, quiet=as_json)
    rows = _guarded(lambda: Engine(load_job(job)).check(), debug=debug)
    rows.append(status_row())  # whether this machine can sandbox at all (a job that needs it failed above)
    if as_json:
        print(json.dumps([{"component": c, "implementation": i, "status": s} for c, i, s in rows]))
        return
    table = Table("component", "implementation", "status", title=f"dativo check · {job}")
    for component, implementation, status in rows:
        colour = "green" if status == "ok" else "yellow"
        table.add_row(component, escape(shown(implementation)), f"[{colour}]{escape(shown(status))}[/]")
    out.print(table)


@app.command()
def discover(job: JobArg, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """List the datasets the job's source offers, with schemas and keys."""
    from dativo.engine import Engine

    _setup_logging(debug=debug, quiet=as_json)
    datasets = _guarded(lambda: Engine(load_job(job)).discover(), debug=debug)
    if as_json:
        print(json.dumps([
            {
                "name": d.name,
                "primary_key": list(d.primary_key),
                "cursor_candidates": list(d.cursor_candidates),
                "columns": [
                    {"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in (d.schema or [])
                ],
            }
            for d in datasets
        ], indent=2))
        return
    for d in datasets:
        title = shown(f"{d.name}  (key: {', '.join(d.primary_key) or '-'})")
        table = Table("column", "type", "nullable", title=escape(title))
        for f in d.schema or []:
            table.add_row(escape(shown(f.name)), escape(shown(str(f.type))), "yes" if f.nullable else "no")
        out.print(table)


@plugins_app.command("list")
def plugins_list(as_json: JsonOpt = False) -> None:
    """Built-in and installed readers and writers, with versions and API ranges."""
    from dativo.plugins.host import PluginHost
    from dativo.registry import list_plugins

    with PluginHost() as host:  # an executable's entry point is asked for its spec, then stopped
        rows = list_plugins(host.describe)
    if as_json:
        print(json.dumps([row.__dict__ for row in rows], indent=2))
        return
    table = Table("kind", "name", "origin", "version", "language", "api", "status",
                  title=f"dativo plugins (API {API_VERSION})")
    notes = []
    for row in rows:
        status = "[green]ok[/]" if row.status == "ok" else "[yellow]unavailable[/]"
        if row.status != "ok":
            notes.append(f"{row.role} {row.name}: {row.status.removeprefix('unavailable: ')}")
        cells = (row.role, row.name, row.origin, row.version, row.language, row.api_version)
        table.add_row(*(escape(shown(str(cell))) for cell in cells), status)
    out.print(table)
    for note in notes:
        out.print(f"[yellow]•[/] {escape(shown(note))}", soft_wrap=True)


@plugins_app.command("info")
def plugins_info(
    name: Annotated[str, typer.Argument(help="A built-in name, entry point or package.module:Class.")],
    kind: Annotated[str, typer.Option("--kind", help="reader or writer.")] = "reader",
    debug: DebugOpt = False,
) -> None:
    """One implementation: where it comes from, its versions, and the JSON Schema of its options."""
    from dativo.plugins.host import PluginHost

    if kind not in ("reader", "writer"):
        raise typer.Exit(_fail(DativoError(f"--kind must be reader or writer, not {kind!r}"), debug=debug))
    with PluginHost() as host:  # a plugin process started to tell its spec is stopped again
        spec = _guarded(lambda: host.resolve(kind, name), debug=debug)  # type: ignore[arg-type]
    print(json.dumps({
        "kind": spec.role,
        "name": spec.name,
        "class": f"{spec.cls.__module__}:{spec.cls.__qualname__}",
        "origin": spec.origin,
        "version": spec.version,
        "language": spec.language,
        "api_version": spec.api_version,
        "options": spec.cls.Config.model_json_schema(),
    }, indent=2))


@plugin_app.command("serve")
def plugin_serve(
    targets: Annotated[list[str], typer.Argument(
        help="A reader and/or a writer: package.module:Class, an entry point or a built-in name.",
        show_default=False,
    )],
    listen: Annotated[str | None, typer.Option(
        "--listen", help="Flight location to listen on, e.g. grpc://127.0.0.1:0 or grpc+unix:///path "
        "(default grpc://127.0.0.1:0). When a host started it, it listens on the host's socket, "
        "$DATIVO_FLIGHT_SOCKET, whatever this says.",
    )] = None,
    role: Annotated[str | None, typer.Option("--role", help="Serve one role only: reader or writer.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="The plugin's name in its handshake.")] = None,
    stdin_eof: Annotated[bool | None, typer.Option(
        "--exit-on-stdin-eof/--no-exit-on-stdin-eof",
        help="Exit when stdin reaches EOF (default: when a host started it, i.e. DATIVO_PROTOCOL is set).",
        show_default=False,
    )] = None,
    debug: DebugOpt = False,
) -> None:
    """Serve a Python reader and/or writer out of process, over Arrow Flight (docs/plugins/protocol.md)."""
    from dativo.plugins.serve import serve

    if role not in (None, "reader", "writer"):
        raise typer.Exit(_fail(DativoError(f"--role must be reader or writer, not {role!r}"), debug=debug))
    code = serve(targets, listen=listen, role=role,  # type: ignore[arg-type]
                 name=name, exit_on_stdin_eof=stdin_eof, debug=debug)
    raise typer.Exit(code)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the job file."""
    print(json.dumps(job_schema(), indent=2))


def _version(value: bool) -> None:
    if value:
        print(f"dativo {__version__} (plugin API {API_VERSION})")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    """Config-driven data ingestion with pluggable readers and writers."""


def _memory_pool() -> None:
    """Use jemalloc where pyarrow has it: it hands freed batch memory back sooner, so RSS stays flat."""
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except (NotImplementedError, pa.ArrowNotImplementedError):  # a build without jemalloc keeps its default
        pass


def main(argv: list[str] | None = None) -> Any:
    """Console entry point."""
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        _memory_pool()
    return app(args=argv if argv is not None else sys.argv[1:], prog_name="dativo")
