"""Installed plugins checked against ``dativo.lock``, without importing or starting anything of them.

The installed side of :func:`dativo.market.wheels.files_digest`: the distribution's ``RECORD`` says which
files it installed; each is hashed from disk (the hashes in ``RECORD`` are not trusted: whoever changes a file
can change ``RECORD`` too), and so is any file in the distribution's package folders that ``RECORD`` does not
list. Only metadata is read (``importlib.metadata``), never code.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

from dativo.errors import ConfigError, PluginUntrusted
from dativo.market.lock import Pin
from dativo.market.manifest import MANIFEST_FILE, Manifest, parse
from dativo.market.wheels import digest_of, file_sha256, installed_path


@dataclass(frozen=True)
class Installed:
    """An installed distribution, as its metadata describes it.

    Attributes:
        dist: The distribution.
        name: Its normalised name.
        version: Its version.
        manifest: The ``dativo-plugin.toml`` in its ``.dist-info`` (``None``: it has none, so it was not
            packed by ``dativo plugin pack``).
    """

    dist: metadata.Distribution
    name: str
    version: str
    manifest: Manifest | None

    @property
    def root(self) -> Path:
        """The folder its files are installed in (site-packages)."""
        return Path(str(self.dist.locate_file("")))


def installed(name: str) -> Installed | None:
    """The installed distribution ``name`` (``None``: not installed)."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    return describe(dist)


def describe(dist: metadata.Distribution) -> Installed:
    """``dist`` with its manifest read (an unreadable manifest is a :class:`PluginUntrusted`)."""
    name = canonicalize_name(dist.metadata["Name"] or "")
    text = dist.read_text(MANIFEST_FILE)
    manifest = None
    if text is not None:
        try:
            manifest = parse(text, source=f"{name} {dist.version}: {MANIFEST_FILE}")
        except ConfigError as exc:
            raise PluginUntrusted(exc.message, plugin=name, hint="Reinstall the plugin.") from None
    return Installed(dist, name, dist.version, manifest)


def _urlsafe(hex_digest: str) -> str:
    return base64.urlsafe_b64encode(bytes.fromhex(hex_digest)).rstrip(b"=").decode()


def files_digest(found: Installed) -> tuple[str, list[str]]:
    """The digest of what ``found`` has on disk, and what differs from its ``RECORD`` (missing, changed, added).

    Returns:
        The digest (:func:`dativo.market.wheels.files_digest` of the wheel it came from, if nothing changed),
        and one line per difference found against ``RECORD`` (may be empty even when the digest differs: a
        ``RECORD`` rewritten along with the files).
    """
    root = found.root
    hashes: dict[str, str] = {}
    problems: list[str] = []
    listed: set[str] = set()
    tops: set[str] = set()
    for entry in found.dist.files or []:
        path = installed_path(str(entry).replace("\\", "/"))
        if path is None:
            continue
        listed.add(path)
        if "/" in path and not path.split("/")[0].endswith(".dist-info"):
            tops.add(path.split("/")[0])
        file = root / path
        if not file.is_file():
            hashes[path] = "missing"
            problems.append(f"{path} is missing")
            continue
        digest = file_sha256(file)
        hashes[path] = digest
        if entry.hash is not None and entry.hash.value != _urlsafe(digest):
            problems.append(f"{path} was changed")
    for top in sorted(tops):
        for file in sorted((root / top).rglob("*")):
            relative = file.relative_to(root).as_posix()
            if file.is_file() and relative not in listed and installed_path(relative) is not None:
                hashes[relative] = file_sha256(file)
                problems.append(f"{relative} was added")
    return digest_of(hashes.items()), problems


def check(pin: Pin, lock: Path, found: Installed | None = None) -> Installed:
    """Prove that the installed ``pin.name`` is the build the lock pins.

    Args:
        pin: The lock's entry.
        lock: The lock's path (for messages).
        found: The distribution, when the caller has it already.

    Raises:
        PluginUntrusted: It is not installed, has another version, or its files are not the pinned ones.
    """
    found = found or installed(pin.name)
    reinstall = f"dativo plugin install {pin.name}=={pin.version}" + (f" --index {pin.index}" if pin.index else "")
    if found is None:
        raise PluginUntrusted(f"{lock} pins {pin.name} {pin.version}, which is not installed", plugin=pin.name,
                              hint=f"Install it: {reinstall}.")
    if Version(found.version) != Version(pin.version):
        older = Version(found.version) < Version(pin.version)
        raise PluginUntrusted(
            f"{pin.name} {found.version} is installed, but {lock} pins {pin.version}"
            f"{' (a downgrade)' if older else ''}; nothing of it was imported or started",
            plugin=pin.name,
            hint=f"Install the pinned version: {reinstall}; to move to another version on purpose, install that "
            "one with `dativo plugin install` (an older one needs --allow-downgrade), which pins it.",
        )
    digest, problems = files_digest(found)
    if digest != pin.files_sha256:
        what = "; ".join(problems[:5]) if problems else "its files are not the build that was pinned"
        raise PluginUntrusted(
            f"{pin.name} {pin.version} does not match {lock}: its installed files hash to sha256 {digest}, "
            f"the lock pins {pin.files_sha256} ({what}); nothing of it was imported or started",
            plugin=pin.name,
            hint=f"Reinstall the pinned build (it is verified again): {reinstall}. If you changed it on purpose, "
            "pack, publish and install it as a new version.",
        )
    return found
