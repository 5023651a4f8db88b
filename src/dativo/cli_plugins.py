"""``dativo plugins …`` (list, info, search), ``dativo plugin …`` (serve, test, new and the distribution
commands of :mod:`dativo.market.command`) and ``dativo sdk …``: what plugin users and authors run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from dativo.api import API_VERSION
from dativo.cli_common import DebugOpt, JsonOpt, fail, guarded, out
from dativo.errors import DativoError
from dativo.kit.command import plugin_test
from dativo.secrets import shown

plugins_app = typer.Typer(help="List and inspect readers and writers.", no_args_is_help=True)
plugin_app = typer.Typer(help="Develop and run plugins.", no_args_is_help=True)
sdk_app = typer.Typer(help="The plugin SDKs shipped with Dativo (Go, Rust, C/C++).", no_args_is_help=True)


@plugins_app.command("list")
def plugins_list(as_json: JsonOpt = False) -> None:
    """Built-in and installed readers and writers: versions, API ranges, publisher, certification, lock."""
    from dativo.plugins.host import PluginHost
    from dativo.registry import list_plugins

    with PluginHost() as host:  # an executable's entry point is asked for its spec, then stopped
        rows = list_plugins(host.describe, host.gate.before_load)  # a pinned plugin is verified before import
        provenance = {(r.role, r.name): host.gate.provenance(r.role, r.name) for r in rows}  # type: ignore[arg-type]
    if as_json:
        print(json.dumps([{**row.__dict__, **provenance[(row.role, row.name)].__dict__} for row in rows], indent=2))
        return
    title = f"dativo plugins (API {API_VERSION})"
    table = Table("kind", "name", "origin", "version", "language", "api", "status", title=title,
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title_justify="left")
    for column in table.columns:
        column.no_wrap = True  # nothing is cut: a table too wide for the terminal becomes lines
    notes, lines, trust = [], [], []
    for row in rows:
        status = "[green]ok[/]" if row.status == "ok" else "[yellow]unavailable[/]"
        if row.status != "ok":
            notes.append(f"{row.role} {row.name}: {row.status.removeprefix('unavailable: ')}")
        cells = [escape(shown(str(cell))) for cell in
                 (row.role, row.name, row.origin, row.version, row.language, row.api_version)]
        table.add_row(*cells, status)
        lines.append(f"{cells[0]} [bold]{cells[1]}[/] · {cells[2]} {cells[3]} · {cells[4]} · api {cells[5]} · "
                     f"{status}")
        known = provenance[(row.role, row.name)]
        if known.pinned or known.distribution and known.trust:  # a packed plugin: source, publisher, level, lock
            lock = ("pinned, verified" if known.verified == "yes" else "pinned, NOT verified") if known.pinned \
                else "not pinned"
            trust.append(f"{row.role} {row.name}: {known.source} · publisher {known.publisher or 'unsigned'} · "
                         f"{known.certification or 'not certified'} · {lock} · {known.trust}")
            if known.verified.startswith("no: ") and row.status == "ok":
                notes.append(f"{row.role} {row.name}: {known.verified.removeprefix('no: ')}")
    if Measurement.get(out, out.options.update_width(10_000), table).maximum <= out.width:
        out.print(table)
    else:
        out.print(title)
        for line in lines:
            out.print(line, soft_wrap=True, highlight=False)
    for line in trust:
        out.print(escape(shown(line)), soft_wrap=True, highlight=False)
    for note in notes:
        out.print(f"[yellow]•[/] {escape(shown(note))}", soft_wrap=True)


@plugins_app.command("info")
def plugins_info(
    name: Annotated[str, typer.Argument(
        help="What a job's implementation: accepts: a built-in name, an entry point, package.module:Class, a "
        "library path (./libreader.so), or a mapping such as '{command: [./reader]}'.")],
    kind: Annotated[str, typer.Option("--kind", help="reader or writer.")] = "reader",
    debug: DebugOpt = False,
) -> None:
    """One implementation: where it comes from, its versions, and the JSON Schema of its options."""
    from dativo.config import parse_implementation
    from dativo.plugins.host import PluginHost

    if kind not in ("reader", "writer"):
        raise typer.Exit(fail(DativoError(f"--kind must be reader or writer, not {kind!r}"), debug=debug))
    implementation = guarded(lambda: parse_implementation(name), debug=debug)
    with PluginHost(beside=Path.cwd()) as host:  # a plugin process started to tell its spec is stopped again
        spec = guarded(lambda: host.resolve(kind, implementation), debug=debug)  # type: ignore[arg-type]
    print(json.dumps({
        "kind": spec.role,
        "name": spec.name,
        "class": f"{spec.cls.__module__}:{spec.cls.__qualname__}",
        "description": spec.description,
        "origin": spec.origin,
        "distribution": "built-in" if spec.builtin else spec.distribution or None,
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
        raise typer.Exit(fail(DativoError(f"--role must be reader or writer, not {role!r}"), debug=debug))
    code = serve(targets, listen=listen, role=role,  # type: ignore[arg-type]
                 name=name, exit_on_stdin_eof=stdin_eof, debug=debug)
    raise typer.Exit(code)


plugin_app.command("test")(plugin_test)  # the conformance kit: dativo.kit.command


@plugin_app.command("new")
def plugin_new(
    name: Annotated[str, typer.Argument(help="The plugin's name: lowercase letters, digits and '_'.",
                                        show_default=False)],
    lang: Annotated[str, typer.Option("--lang", help="python, rust, go or cpp.", show_default=False)],
    kind: Annotated[str, typer.Option("--kind", help="reader or writer.")] = "reader",
    directory: Annotated[Path | None, typer.Option(
        "--dir", help="The new project's folder (default: ./NAME); it must not exist, or be empty.")] = None,
    debug: DebugOpt = False,
) -> None:
    """Create a plugin project that builds against the SDKs of this Dativo, with tests, a job and ci.sh."""
    from dativo.scaffold import new_plugin

    project = guarded(lambda: new_plugin(name, lang, kind, directory), debug=debug)
    out.print(f"Created the {escape(lang)} {escape(kind)} [bold]{escape(name)}[/] in {escape(str(project.path))} "
              f"({len(project.files)} files). Next:", highlight=False, soft_wrap=True)
    for step in project.next_steps():
        out.print(f"  {escape(step)}", highlight=False, soft_wrap=True)


@sdk_app.command("path")
def sdk_path(
    lang: Annotated[str, typer.Argument(help="go, rust or cpp.", show_default=False)],
    debug: DebugOpt = False,
) -> None:
    """Print the folder of an SDK inside this installation (go.mod replace, Cargo path, -I include path)."""
    from dativo.scaffold import sdk_path as locate_sdk

    print(guarded(lambda: locate_sdk(lang), debug=debug))
