"""``dativo plugin install NAME[==VERSION]``: download from an index, verify, install, pin in ``dativo.lock``.

In this order, and nothing is installed unless every step passes:

1. the index entry (the newest version, or the one asked for); a version older than the lock's pin is a
   downgrade, refused unless ``--allow-downgrade``;
2. every file downloaded and checked against the sha256 and size ``index.json`` gives;
3. the manifest: the plugin and version asked for, the signature valid over its canonical bytes and made by a
   trusted publisher key (``trusted_keys`` or ``--trust``) — an unsigned package or an untrusted key is
   refused unless ``--allow-untrusted``, and is then pinned as untrusted (the trust policy sandboxes it);
4. the wheel: the sha256 the *signed* manifest gives, a ``RECORD`` that matches every entry, the manifest
   inside it equal to the signed one, an API range that includes this Dativo's;
5. installed into this environment (``uv pip install``, else ``pip install``; a wheel runs no code when it is
   installed), then hashed as installed (:mod:`dativo.market.verify`);
6. pinned: name, version, the wheel's and the installed files' digests, the manifest's, the publisher key.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from dativo.api import API_VERSION
from dativo.errors import ConfigError, PluginFailed, PluginIncompatible, PluginUntrusted
from dativo.market import sign, wheels
from dativo.market.index import Entry, Index, files_of
from dativo.market.lock import Lock, Pin
from dativo.market.manifest import MANIFEST_FILE, Manifest, parse
from dativo.market.pack import find_uv, platform_name, platform_tag
from dativo.market.sign import PublicKey, Signature
from dativo.market.verify import files_digest, installed


@dataclass(frozen=True)
class Installation:
    """What ``install`` did."""

    pin: Pin
    manifest: Manifest
    signer: PublicKey | None
    lock: Path


def requirement(text: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME==VERSION``.

    Raises:
        ConfigError: Anything else.
    """
    match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._\-]*)\s*(?:==\s*([^\s=]+))?\s*", text)
    if match is None:
        raise ConfigError(f"'{text}' is not NAME or NAME==VERSION", hint="e.g. dativo plugin install acme-readers==1.0.0")
    version = match.group(2)
    if version is not None:
        try:
            version = str(Version(version))
        except InvalidVersion:
            raise ConfigError(f"'{version}' is not a version", hint="e.g. acme-readers==1.0.0") from None
    return match.group(1), version


def _installer(python: str) -> list[list[str]]:
    """The commands that install a wheel into ``python``'s environment (with ``{wheel}`` and ``{name}``)."""
    uv = find_uv()
    if uv is not None:
        return [[uv, "pip", "install", "--quiet", "--python", python, "--reinstall-package", "{name}", "{wheel}"]]
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    return [[*pip, "--force-reinstall", "--no-deps", "{wheel}"], [*pip, "{wheel}"]]


def _download(index: Index, entry: Entry, into: Path) -> dict[str, Path]:
    """Every file of ``entry``, each checked against the digest and size ``index.json`` gives."""
    found = {}
    for described in files_of(entry):
        data = index.read(described.file)
        digest = wheels.sha256(data)
        if digest != described.sha256 or len(data) != described.size:
            raise PluginUntrusted(
                f"index {index.where}: {described.file} does not match its entry in index.json (sha256 {digest}, "
                f"the index says {described.sha256}); nothing was installed",
                plugin=entry.name,
                hint="The index or a file in it was changed, or the download was corrupted: do not use it; tell "
                "the index's owner.",
            )
        path = into / Path(described.file).name
        path.write_bytes(data)
        found[Path(described.file).name] = path
    return found


def _signer(manifest: Manifest, files: dict[str, Path], entry: Entry,
            trusted: list[PublicKey]) -> tuple[PublicKey | None, bool]:
    sig_name = MANIFEST_FILE + sign.SIGNATURE_SUFFIX
    if entry.signature is None or sig_name not in files:
        return None, False
    signature = Signature.from_json(files[sig_name].read_bytes(), source=f"{entry.name} {entry.version}: {sig_name}")
    key = sign.check(manifest, signature, source=f"{entry.name} {entry.version}'s manifest")
    return key, sign.is_trusted(key, trusted)


def install(
    text: str,
    *,
    index: str,
    lock_path: Path,
    trust: list[Path] | tuple[Path, ...] = (),
    allow_untrusted: bool = False,
    allow_downgrade: bool = False,
    python: str | None = None,
) -> Installation:
    """Install a plugin from an index (see the module's docstring).

    Args:
        text: ``NAME`` or ``NAME==VERSION``.
        index: The index: a folder or an ``http(s)://`` URL.
        lock_path: The ``dativo.lock`` to pin it in.
        trust: Public key files trusted besides the user's ``trusted_keys``.
        allow_untrusted: Install an unsigned package or one signed by an untrusted key (pinned as untrusted).
        allow_downgrade: Install a version older than the one the lock pins.
        python: The environment's interpreter (default: this one).

    Raises:
        PluginUntrusted: A digest, the signature, the publisher or the version is not acceptable; nothing
            was installed.
        PluginNotFound: The index has no such plugin or version.
        PluginIncompatible: The plugin does not support this Dativo's API.
        PluginFailed: The installer failed.
    """
    name, version = requirement(text)
    lock = Lock.read(lock_path)
    source = Index(index)
    entry = source.find(name, version)
    pinned = lock.get(name)
    if pinned is not None and Version(entry.version) < Version(pinned.version) and not allow_downgrade:
        raise PluginUntrusted(
            f"{lock_path} pins {pinned.name} {pinned.version}; installing {entry.version} would be a downgrade; "
            "nothing was installed",
            plugin=entry.name,
            hint="An older version may bring back fixed flaws: pass --allow-downgrade if you mean it.",
        )
    keys = sign.trusted_keys(list(trust))
    with tempfile.TemporaryDirectory(prefix="dativo-install-") as tmp:
        files = _download(source, entry, Path(tmp))
        manifest = parse(files[MANIFEST_FILE].read_text(encoding="utf-8"), source=f"{entry.name} {entry.version}")
        if manifest.key != canonicalize_name(entry.name) or Version(manifest.version) != Version(entry.version):
            raise PluginUntrusted(
                f"index {source.where} lists {entry.name} {entry.version}, but its manifest is {manifest.name} "
                f"{manifest.version}; nothing was installed", plugin=entry.name, hint="Tell the index's owner.",
            )
        signer, trusted = _signer(manifest, files, entry, keys)
        if not trusted and not allow_untrusted:
            if signer is None:
                what = "is not signed"
                fix = "Ask the publisher for a signed package"
            else:
                what = f"is signed by key {signer.fingerprint} ({signer.id}), which you do not trust"
                fix = "If you know that key is the publisher's, trust it (--trust KEYFILE, or `dativo plugin trust KEYFILE`)"
            raise PluginUntrusted(
                f"{entry.name} {entry.version} {what}; nothing was installed",
                plugin=entry.name,
                hint=f"{fix}, or pass --allow-untrusted to install it anyway: it is then pinned as untrusted and "
                "runs only in the sandbox with the capabilities its manifest declares (plugins.policy.unsigned).",
            )
        platform = platform_name(platform_tag())
        artefact, listed = manifest.wheel(platform), entry.wheel(platform)
        if artefact is None or listed is None or Path(listed.file).name != artefact.file:
            raise PluginIncompatible(f"{entry.name} {entry.version} has no wheel for {platform}", plugin=entry.name,
                                     hint="Ask the publisher for one, or build it from source.")
        path = files[artefact.file]
        if wheels.file_sha256(path) != artefact.sha256:
            raise PluginUntrusted(
                f"{artefact.file} does not match the signed manifest (sha256 {wheels.file_sha256(path)}, the "
                f"manifest says {artefact.sha256}); nothing was installed",
                plugin=entry.name, hint="The index's file was replaced: do not use it; tell the index's owner.",
            )
        if not manifest.supports(API_VERSION):
            raise PluginIncompatible(
                f"{entry.name} {entry.version} supports Dativo API {manifest.api}, but this Dativo provides API "
                f"{API_VERSION}; nothing was installed", plugin=entry.name,
                hint="Install a version of the plugin made for this Dativo, or upgrade Dativo.",
            )
        wheel = wheels.read(path, source=artefact.file)
        inside = wheel.entries.get(f"{wheel.dist_info}/{MANIFEST_FILE}")
        if inside is None or parse(inside.decode("utf-8")) != manifest.model_copy(update={"artefacts": []}):
            raise PluginUntrusted(f"the manifest inside {artefact.file} is not the signed manifest; nothing was "
                                  "installed", plugin=entry.name, hint="Tell the index's owner.")
        _run_installer(python or sys.executable, wheel.project, path)
    importlib.invalidate_caches()
    found = installed(manifest.name)
    expected = wheel.files_digest()
    if found is None or files_digest(found)[0] != expected:
        raise PluginFailed(f"{manifest.name} {manifest.version} was installed, but its installed files are not the "
                           "wheel's", plugin=manifest.name, hint="Check the environment's installer, then install again.")
    pin = Pin(
        name=manifest.name, version=manifest.version, kind=manifest.kind, entry_point=manifest.start.entry_point,
        artefact=artefact.file, artefact_sha256=artefact.sha256, files_sha256=expected,
        manifest_sha256=manifest.digest(), publisher=signer.id if signer else "", trusted=trusted,
        index=source.where if source.scheme == "http" else str(Path(source.base).absolute()),
        certification=manifest.certification.level if manifest.certification else "",
    )
    lock.pin(pin)
    lock.write()
    return Installation(pin, manifest, signer, lock_path)


def _run_installer(python: str, name: str, wheel: Path) -> None:
    for command in _installer(python):
        argv = [part.replace("{wheel}", str(wheel)).replace("{name}", name) for part in command]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise PluginFailed(
                f"installing {wheel.name} failed ({argv[0]} exited with status {result.returncode})",
                plugin=name, hint="See the installer's output below.", detail=(result.stderr or result.stdout)[-4000:],
            )
