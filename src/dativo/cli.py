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
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from dativo import allocator, version_line
from dativo.api import Dataset
from dativo.cli_common import DebugOpt, JobArg, JsonOpt, Terminated, err, fail, guarded, out, setup_logging
from dativo.cli_plugins import plugin_app, plugins_app, sdk_app
from dativo.config import job_schema, load_job
from dativo.errors import DativoError
from dativo.market.command import register as register_distribution
from dativo.report import DatasetReport, RunReport
from dativo.secrets import shown

app = typer.Typer(
    name="dativo",
    help="Config-driven data ingestion with pluggable readers and writers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
register_distribution(plugin_app, plugins_app)
app.add_typer(plugins_app, name="plugins")
app.add_typer(plugin_app, name="plugin")
app.add_typer(sdk_app, name="sdk")

log = logging.getLogger("dativo")


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


def _paragraph(text: str) -> str:
    """The first line of a message whose detail (a plugin's stderr) the log above has shown in full."""
    first, _, rest = text.partition("\n")
    return f"{first} (its stderr is in the log above)" if rest else first


def _committed(d: DatasetReport, replaces: bool) -> str:
    """What the run committed for one dataset: a new commit, none (no new rows), or an earlier run's."""
    if d.no_op:
        return f"{d.name} → {d.commit_id} (already committed)"
    if d.commit_id is None:
        return f"{d.name}: nothing committed"
    if d.rows == 0 and d.files == 0 and not replaces:  # nothing new to add: the target stays as it was
        return f"{d.name}: unchanged (no new rows)"
    return f"{d.name} → {d.commit_id}"


def _summary(report: RunReport, mode: str = "append") -> Table:
    """The table printed after a run; ``mode`` is the job's (an ``overwrite`` commits even without rows)."""
    replaces = mode == "overwrite" or report.full_refresh
    table = Table(title=f"dativo run · {report.job}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    side = lambda p: f"{p.implementation} ({p.language} {p.version}, {p.origin})" if p else "-"  # noqa: E731
    rows = [
        ("status", f"[green]{report.status}[/]"),
        ("rows read / written", f"{report.rows_read:,} / {report.rows_written:,}"),
        ("bytes written", f"{report.bytes_written:,}"),
        ("time", f"{report.seconds:.2f} s · {report.rows_per_s:,.0f} rows/s"),
        ("peak memory", f"{report.peak_rss_mb:,.0f} MiB (buffers' budget {report.memory_budget_mb:,} MiB)"),
        ("reader", side(report.reader)),
        ("writer", side(report.writer)),
        ("fallback", f"yes: {_paragraph(report.fallback_reason or '')}" if report.fallback_used else "no"),
        ("commit", ", ".join(_committed(d, replaces) for d in report.datasets) or "-"),
        *((f"{role} counted", ", ".join(f"{name} {n:,}" for name, n in counts.items()))
          for role, counts in report.counters.items()),
        *([("nodes", "; ".join(f"{n.node}: {n.splits} splits, {n.rows:,} rows, {n.rows_per_s:,.0f} rows/s"
                               for n in report.nodes)),
           ("retries", f"{report.retries}")] if report.executor == "ray" else []),
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
    full_refresh: Annotated[bool, typer.Option(
        "--full-refresh",
        help="Read every dataset from scratch, ignoring its incremental state, and replace its target's rows "
        "(reconciles deletes and updates an incremental run cannot see).",
    )] = False,
    executor: Annotated[str | None, typer.Option(
        "--executor", help="Where the splits run: local (threads here) or ray (tasks on a Ray cluster); "
        "overrides the job's executor.type.",
    )] = None,
    address: Annotated[str | None, typer.Option(
        "--address", help="With --executor ray: the cluster (auto, host:port or ray://host:port).",
    )] = None,
) -> None:
    """Run a job: read, write, and commit atomically."""
    from dativo.engine import Engine

    setup_logging(debug=debug, quiet=quiet or as_json)
    started = time.monotonic()
    config = engine = None
    run_id = uuid.uuid4().hex if run_id is None else run_id
    try:
        config = load_job(job)
        if executor is not None or address is not None:
            try:
                config.executor = config.executor.overridden(executor, address)
            except DativoError as exc:
                raise exc.with_context(job=config.name) from None
        engine = Engine(config, run_id=run_id, full_refresh=full_refresh)
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
        code = fail(exc, debug=debug)
        if engine is not None and engine.abandoned:  # a plugin call that ignores cancellation must not
            _exit_now(code)                           # keep the process (and its exit) waiting
        raise typer.Exit(code) from None
    if as_json:
        print(report.to_json())
    elif not quiet:
        out.print(_summary(report, config.target.mode if config else "append"))


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

    setup_logging(debug=debug, quiet=as_json)

    def work() -> list[Any]:
        policy = MaintenancePolicy(
            orphan_age_s=parse_duration(orphans_older_than, "--orphans-older-than"),
            snapshot_age_s=None if expire_older_than == "never"
            else parse_duration(expire_older_than, "--expire-older-than"),
            retain_last=retain_last,
        )
        return Engine(load_job(job)).maintain(policy, dry_run=dry_run)

    results = guarded(work, debug=debug)
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

    setup_logging(debug=debug, quiet=as_json)
    rows = guarded(lambda: Engine(load_job(job)).check(), debug=debug)
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
def discover(
    job: JobArg,
    as_json: JsonOpt = False,
    columns: Annotated[bool, typer.Option("--columns/--no-columns", help="Show each dataset's columns.")] = True,
    debug: DebugOpt = False,
) -> None:
    """List the datasets the job's source offers: kinds, sizes, keys, cursor candidates and columns.

    A postgres source without tables: lists every table and view the connection can read.
    """
    from dativo.engine import Engine

    setup_logging(debug=debug, quiet=as_json)
    datasets = guarded(lambda: Engine(load_job(job)).discover(), debug=debug)
    if as_json:
        print(json.dumps([_dataset_json(d) for d in datasets], indent=2, default=str))
        return
    summary = Table("dataset", "kind", "rows (est.)", "key", "cursor candidates", "partitions",
                    title=f"{len(datasets)} dataset(s)")
    for d in datasets:
        details = d.details
        partitions = details.get("partitions") or []
        parts = f"{len(partitions)}" if partitions else ""
        if details.get("partition_of"):
            parts = f"partition of {details['partition_of']}"
        rows = "-" if d.estimated_rows is None else f"~{d.estimated_rows:,}"
        candidates = ", ".join(f"{c} (cursor)" if c == d.cursor else c for c in d.cursor_candidates)
        summary.add_row(*(escape(shown(str(v))) for v in (
            d.name, details.get("kind", ""), rows, ", ".join(d.primary_key) or "-", candidates or "-", parts)))
    out.print(summary)
    if not columns:
        return
    for d in datasets:
        types = d.details.get("source_types") or {}
        title = shown(f"{d.name}  (key: {', '.join(d.primary_key) or '-'})")
        table = Table("column", "type", "source type", "nullable", title=escape(title))
        for f in d.schema or []:
            table.add_row(escape(shown(f.name)), escape(shown(str(f.type))),
                          escape(shown(str(types.get(f.name, "")))), "yes" if f.nullable else "no")
        out.print(table)


def _dataset_json(d: Dataset) -> dict[str, Any]:
    types = d.details.get("source_types") or {}
    return {
        "name": d.name,
        "kind": d.details.get("kind"),
        "estimated_rows": d.estimated_rows,
        "primary_key": list(d.primary_key),
        "cursor_candidates": list(d.cursor_candidates),
        "cursor": d.cursor,
        "details": {k: v for k, v in d.details.items() if k != "source_types"},
        "columns": [
            {"name": f.name, "type": str(f.type), "source_type": types.get(f.name), "nullable": f.nullable}
            for f in (d.schema or [])
        ],
    }


@app.command()
def schema(
    manifest: Annotated[bool, typer.Option("--manifest", help="Print the schema of dativo-plugin.toml instead.")] = False,
) -> None:
    """Print the JSON Schema of the job file (or of a plugin's manifest)."""
    from dativo.market.manifest import schema as manifest_schema

    print(json.dumps(manifest_schema() if manifest else job_schema(), indent=2))


def _version(value: bool) -> None:
    if value:
        print(version_line())
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    """Config-driven data ingestion with pluggable readers and writers."""


def main(argv: list[str] | None = None) -> Any:
    """Console entry point."""
    allocator.tune()
    return app(args=argv if argv is not None else sys.argv[1:], prog_name="dativo")
