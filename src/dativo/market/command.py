"""The distribution commands: ``dativo plugin keygen|trust|pack|publish|install|verify`` and ``dativo plugins
search`` (docs/plugins/publishing.md). The work is done by the modules of :mod:`dativo.market`, imported
when a command runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from dativo.cli_common import DebugOpt, JsonOpt, guarded, out
from dativo.errors import DativoError
from dativo.secrets import shown

IndexOpt = Annotated[str | None, typer.Option(
    "--index", envvar="DATIVO_INDEX", show_default=False,
    help="The plugin index: a folder or an http(s):// URL (default: $DATIVO_INDEX, else [plugins] index in the "
    "project's dativo.toml).",
)]
LockOpt = Annotated[Path | None, typer.Option(
    "--lock", help="The lock file (default: dativo.lock of the project in the current folder).", show_default=False)]


def _index(index: str | None) -> str:
    from dativo.market.lock import project

    found = index or project(Path.cwd()).index
    if not found:
        raise DativoError("no plugin index given", hint="Pass --index DIR_OR_URL, set $DATIVO_INDEX, or set "
                          "[plugins] index in dativo.toml.")
    return found


def _lock_path(lock: Path | None) -> Path:
    from dativo.market.lock import LOCK_FILE, project

    return lock if lock is not None else project(Path.cwd()).folder / LOCK_FILE


def plugin_keygen(
    folder: Annotated[Path | None, typer.Option(
        "--out", help="Where to write publisher.key and publisher.pub (default: $XDG_CONFIG_HOME/dativo).",
        show_default=False)] = None,
    name: Annotated[str, typer.Option("--name", help="Who the key is, written beside the public key.")] = "publisher",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Make an ed25519 publisher key pair, to sign the plugins you pack."""
    from dativo.market import sign

    private, public, key = guarded(lambda: sign.generate(folder or sign.config_dir(), name, force=force), debug=debug)
    out.print(f"private key {escape(str(private))} (keep it secret)\npublic key  {escape(str(public))} "
              f"(give it to your users)\nfingerprint {key.fingerprint}", highlight=False, soft_wrap=True)


def plugin_trust(
    keyfile: Annotated[Path, typer.Argument(help="A publisher's public key file (.pub).", show_default=False)],
    debug: DebugOpt = False,
) -> None:
    """Trust a publisher's key: add it to $XDG_CONFIG_HOME/dativo/trusted_keys."""
    from dativo.market import sign

    key, target = guarded(lambda: sign.trust(keyfile), debug=debug)
    out.print(f"trusted {key.fingerprint} ({escape(key.comment)}) in {escape(str(target))}", highlight=False)


def plugin_pack(
    directory: Annotated[Path, typer.Argument(help="The plugin project (its dativo-plugin.toml).")] = Path("."),
    output: Annotated[Path | None, typer.Option("--out", help="Where the package folder goes (default DIR/dist).",
                                                show_default=False)] = None,
    key: Annotated[Path | None, typer.Option(
        "--key", help="The publisher's private key (default: publisher.key in $XDG_CONFIG_HOME/dativo, if any).",
        show_default=False)] = None,
    report: Annotated[Path | None, typer.Option(
        "--report", help="The JSON report of `dativo plugin test`: its certification level goes into the manifest.",
        show_default=False)] = None,
    unsigned: Annotated[bool, typer.Option("--unsigned", help="Do not sign, even with a key at hand.")] = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Build the plugin's wheel, SBOM and manifest with sha256 of each, signed: ready to publish."""
    from dativo.market.pack import pack

    packed = guarded(lambda: pack(directory, out=output, key=key, report=report, use_default_key=not unsigned),
                      debug=debug)
    if as_json:
        print(json.dumps({"folder": str(packed.folder), "manifest_sha256": packed.manifest.digest(),
                          "signed_by": packed.signature.key.id if packed.signature else None,
                          "artefacts": [a.model_dump() for a in packed.manifest.artefacts]}, indent=2))
        return
    signed = f"signed by {packed.signature.key.fingerprint}" if packed.signature else "[yellow]unsigned[/]"
    out.print(f"packed {escape(packed.manifest.name)} {escape(packed.manifest.version)} into "
              f"{escape(str(packed.folder))} ({signed})", highlight=False, soft_wrap=True)
    for artefact in packed.manifest.artefacts:
        out.print(f"  {escape(artefact.file)}  sha256 {artefact.sha256}  {artefact.platform}", highlight=False)


def plugin_publish(
    package: Annotated[Path, typer.Argument(help="The folder `dativo plugin pack` wrote.", show_default=False)],
    index: Annotated[Path, typer.Option("--index", help="The index folder to publish into.", show_default=False)],
    debug: DebugOpt = False,
) -> None:
    """Publish a packed plugin into an index folder (serve it with any static HTTP server)."""
    from dativo.market.index import publish

    entry, new = guarded(lambda: publish(package, index), debug=debug)
    what = "published" if new else "already published (unchanged)"
    out.print(f"{what}: {escape(entry.name)} {escape(entry.version)} in {escape(str(index))}", highlight=False)


def plugins_search(
    text: Annotated[str, typer.Argument(help="Words to find in names, descriptions, kinds, connectors.")] = "",
    index: IndexOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Find plugins in an index."""
    from dativo.market.index import Index, as_json as entry_json

    entries = guarded(lambda: Index(_index(index)).search(text), debug=debug)
    if as_json:
        print(json.dumps([entry_json(e) for e in entries], indent=2))
        return
    if not entries:
        out.print(f"no plugin matches {escape(repr(text))}", highlight=False)
    for e in entries:
        publisher = f"publisher {e.fingerprint}" if e.fingerprint else "unsigned"
        facts = [e.version, e.kind, e.language, *([f"replaces {e.replaces}"] if e.replaces else []),
                 e.certification or "not certified", publisher]  # what an index says is shown, never rendered
        line = f"[bold]{escape(shown(e.name))}[/] " + " · ".join(escape(shown(str(f))) for f in facts)
        out.print(line, soft_wrap=True, highlight=False)
        if e.description:
            out.print(f"    {escape(shown(e.description))}", soft_wrap=True, highlight=False)


def plugin_install(
    requirement: Annotated[str, typer.Argument(help="NAME or NAME==VERSION.", show_default=False)],
    index: IndexOpt = None,
    trust: Annotated[list[Path] | None, typer.Option(
        "--trust", help="A publisher's public key file to trust for this install (besides trusted_keys).")] = None,
    lock: LockOpt = None,
    allow_untrusted: Annotated[bool, typer.Option(
        "--allow-untrusted", help="Install an unsigned or untrusted package; it then runs only sandboxed.")] = False,
    allow_downgrade: Annotated[bool, typer.Option(
        "--allow-downgrade", help="Install a version older than the one dativo.lock pins.")] = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Download a plugin, verify its sha256 and signature, install it here and pin it in dativo.lock."""
    from dativo.market.install import install

    done = guarded(lambda: install(requirement, index=_index(index), lock_path=_lock_path(lock), trust=trust or [],
                                    allow_untrusted=allow_untrusted, allow_downgrade=allow_downgrade), debug=debug)
    if as_json:
        print(json.dumps({"lock": str(done.lock), **done.pin.model_dump()}, indent=2))
        return
    who = f"signed by {done.signer.fingerprint}" if done.signer else "unsigned"
    trusted = "trusted" if done.pin.trusted else "[yellow]untrusted: it runs only in the sandbox[/]"
    out.print(f"installed {escape(done.pin.name)} {escape(done.pin.version)} ({who}, {trusted}); pinned in "
              f"{escape(str(done.lock))}", highlight=False, soft_wrap=True)


def plugin_verify(lock: LockOpt = None, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Check every plugin dativo.lock pins against what is installed (exit 3 on any difference)."""
    from dativo.errors import PluginUntrusted
    from dativo.market.lock import Lock
    from dativo.market.verify import check

    path = _lock_path(lock)
    pins = guarded(lambda: Lock.read(path), debug=debug).pins
    results = []
    for pin in pins.values():
        try:
            check(pin, path)
            results.append({"name": pin.name, "version": pin.version, "status": "ok"})
        except PluginUntrusted as exc:
            results.append({"name": pin.name, "version": pin.version, "status": str(exc)})
    failed = [r for r in results if r["status"] != "ok"]
    if as_json:
        print(json.dumps({"lock": str(path), "plugins": results}, indent=2))
    else:
        out.print(f"{len(results) - len(failed)} of {len(results)} pinned plugin(s) verified against "
                  f"{escape(str(path))}", highlight=False, soft_wrap=True)
        for r in results:
            mark = "[green]ok[/]" if r["status"] == "ok" else f"[red]{escape(shown(r['status']))}[/]"
            out.print(f"  {escape(r['name'])} {escape(r['version'])}: {mark}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(3)


def register(plugin_app: typer.Typer, plugins_app: typer.Typer) -> None:
    """Add these commands to the ``dativo plugin`` and ``dativo plugins`` groups."""
    plugin_app.command("keygen")(plugin_keygen)
    plugin_app.command("trust")(plugin_trust)
    plugin_app.command("pack")(plugin_pack)
    plugin_app.command("publish")(plugin_publish)
    plugins_app.command("search")(plugins_search)
    plugin_app.command("install")(plugin_install)
    plugin_app.command("verify")(plugin_verify)
