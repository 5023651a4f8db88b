"""The plugin index: a static layout any folder or HTTP server can hold, with no service of Dativo's own.

::

    index.json                                   every plugin, every version: what search shows, what install
                                                 downloads, and each file's sha256
    <name>/<version>/dativo-plugin.toml          the published (signed) manifest
    <name>/<version>/dativo-plugin.toml.sig      its signature (absent: unsigned)
    <name>/<version>/sbom.json                   the dependency list
    <name>/<version>/<wheel>.whl                 the wheel(s)

``dativo plugin publish --index DIR`` writes it (a version, once published, never changes: publishing it again
with other content is refused); ``dativo plugins search`` and ``dativo plugin install`` read it from a folder,
a ``file://`` URL or an ``http(s)://`` URL. Everything an index says is checked again on install: the files
against the sha256 in ``index.json`` and in the signed manifest, the signature against trusted keys.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dativo.errors import ConfigError, DativoError, PluginNotFound, PluginUntrusted
from dativo.market import sign, wheels
from dativo.market.manifest import MANIFEST_FILE, Manifest, load, parse
from dativo.market.sign import SIGNATURE_SUFFIX, Signature

INDEX_FILE = "index.json"
MAX_INDEX_BYTES = 16 << 20
MAX_FILE_BYTES = 1 << 30
TIMEOUT_S = 60.0
_RELATIVE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+\-]*(/[A-Za-z0-9][A-Za-z0-9._+\-]*)*$")


class IndexUnavailable(DativoError):
    """The index cannot be read."""

    exit_code = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class IndexFile(_Model):
    """A file of the index and its digest."""

    file: str = Field(pattern=_RELATIVE.pattern)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    kind: str = ""
    platform: str = "any"


class Entry(_Model):
    """One published version of a plugin."""

    name: str
    version: str
    kind: str
    language: str
    description: str = ""
    replaces: str | None = None
    certification: str | None = None
    publisher: str | None = None
    manifest: IndexFile
    signature: IndexFile | None = None
    artefacts: list[IndexFile]

    @property
    def fingerprint(self) -> str:
        """The publisher key's fingerprint (``""``: unsigned, or not a key Dativo reads)."""
        try:
            return sign.PublicKey.parse(self.publisher).fingerprint if self.publisher else ""
        except ConfigError:
            return ""

    def wheel(self, platform: str) -> IndexFile | None:
        """The wheel for ``platform``, or the platform-independent one."""
        wheels_ = [a for a in self.artefacts if a.kind == "wheel"]
        return next((a for a in wheels_ if a.platform == platform), None) or next(
            (a for a in wheels_ if a.platform == "any"), None
        )


class Document(_Model):
    """``index.json``."""

    format: int = 1
    plugins: dict[str, dict[str, Entry]] = Field(default_factory=dict)


def _location(where: str) -> tuple[str, str]:
    """``("http", url)`` or ``("file", folder)`` for a folder, a ``file://`` or an ``http(s)://`` URL."""
    parsed = urllib.parse.urlparse(where)
    if parsed.scheme in ("http", "https"):
        return "http", where.rstrip("/") + "/"
    if parsed.scheme == "file":
        return "file", urllib.parse.unquote(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:
        raise ConfigError(f"index {where}: only folders, file:// and http(s):// URLs are supported",
                          hint="Give --index a folder or an http(s):// URL.")
    return "file", where


class Index:
    """An index to read: a folder, ``file://…`` or ``http(s)://…``.

    Raises (from its methods):
        IndexUnavailable: It cannot be read.
    """

    def __init__(self, where: str | Path) -> None:
        self.where = str(where)
        self.scheme, self.base = _location(self.where)
        self._document: Document | None = None

    def read(self, relative: str, *, limit: int = MAX_FILE_BYTES) -> bytes:
        """The bytes of one file of the index (at most ``limit``)."""
        if not _RELATIVE.match(relative):
            raise PluginUntrusted(f"index {self.where} names the file '{relative}', which is not a plain relative "
                                  "path inside the index; nothing was downloaded",
                                  hint="Use another index, or tell its owner.")
        if self.scheme == "file":
            path = Path(self.base) / relative
            try:
                size = path.stat().st_size
                if size > limit:
                    raise IndexUnavailable(f"{path} is larger than {limit} bytes")
                return path.read_bytes()
            except OSError as exc:
                raise IndexUnavailable(f"cannot read {path} from index {self.where}: {exc.strerror or exc}",
                                       hint="Check --index (a folder holding index.json).") from None
        url = urllib.parse.urljoin(self.base, relative)
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # noqa: S310 (http(s) only)
                data = response.read(limit + 1)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise IndexUnavailable(f"cannot download {url}: {reason}",
                                   hint="Check --index and that the server is up.") from None
        if len(data) > limit:
            raise IndexUnavailable(f"{url} is larger than {limit} bytes")
        return data

    def document(self) -> Document:
        """``index.json``, parsed and validated (read once per :class:`Index`)."""
        if self._document is None:
            raw = self.read(INDEX_FILE, limit=MAX_INDEX_BYTES)
            try:
                self._document = Document.model_validate_json(raw)
            except ValidationError as exc:
                raise IndexUnavailable(f"index {self.where}: {INDEX_FILE} is not a Dativo index ({exc.errors()[0]['msg']})",
                                       hint="Check --index.") from None
        return self._document

    def versions(self, name: str) -> list[Entry]:
        """Every published version of ``name``, oldest first."""
        found = self.document().plugins.get(canonicalize_name(name), {})
        return sorted(found.values(), key=lambda e: Version(e.version))

    def find(self, name: str, version: str | None = None) -> Entry:
        """The entry of ``name`` at ``version`` (default: the newest).

        Raises:
            PluginNotFound: The index has no such plugin or version.
        """
        versions = self.versions(name)
        if not versions:
            known = ", ".join(sorted(self.document().plugins)) or "none"
            raise PluginNotFound(f"index {self.where} has no plugin '{name}'", plugin=name,
                                 hint=f"`dativo plugins search` finds plugins; this index has: {known}.")
        if version is None:
            return versions[-1]
        for entry in versions:
            if Version(entry.version) == Version(version):
                return entry
        raise PluginNotFound(f"index {self.where} has no version {version} of '{name}'", plugin=name,
                             hint=f"Published versions: {', '.join(e.version for e in versions)}.")

    def search(self, text: str = "") -> list[Entry]:
        """The newest version of every plugin whose name, description, kind, language or connector match."""
        needle = text.lower().strip()
        found = []
        for name in sorted(self.document().plugins):
            newest = self.versions(name)[-1]
            haystack = " ".join(filter(None, (newest.name, newest.description, newest.kind, newest.language,
                                              newest.replaces))).lower()
            if needle in haystack:
                found.append(newest)
        return found


# --- publishing -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_package(folder: Path) -> tuple[Manifest, Signature | None]:
    """A packed plugin folder, checked: every artefact matches the manifest, the signature (if any) matches it,
    and the manifest inside the wheel is the published one without its artefacts.

    Raises:
        PluginUntrusted: Anything does not match.
        ConfigError: The folder holds no packed plugin.
    """
    manifest = load(folder / MANIFEST_FILE)
    if not any(a.kind == "wheel" for a in manifest.artefacts):
        raise ConfigError(f"{folder} holds no packed plugin (its manifest lists no wheel)",
                          hint="Give the folder `dativo plugin pack` wrote (dist/<name>-<version>).")
    signature = None
    sig_path = folder / (MANIFEST_FILE + SIGNATURE_SUFFIX)
    if sig_path.is_file():
        signature = Signature.from_json(sig_path.read_bytes(), source=str(sig_path))
        sign.check(manifest, signature, source=str(folder / MANIFEST_FILE))
    for artefact in manifest.artefacts:
        path = folder / artefact.file
        if not path.is_file():
            raise PluginUntrusted(f"{path} is missing, but the manifest lists it", plugin=manifest.name,
                                  hint="Pack the plugin again.")
        found = wheels.file_sha256(path)
        if found != artefact.sha256 or path.stat().st_size != artefact.size:
            raise PluginUntrusted(
                f"{artefact.file} does not match the manifest: sha256 {found} instead of {artefact.sha256}",
                plugin=manifest.name, hint="The file was changed after packing: pack the plugin again.",
            )
        if artefact.kind == "wheel":
            wheel = wheels.read(path)
            inside = wheel.entries.get(f"{wheel.dist_info}/{MANIFEST_FILE}")
            expected = manifest.model_copy(update={"artefacts": []})
            if inside is None or parse(inside.decode("utf-8"), source=artefact.file) != expected:
                raise PluginUntrusted(f"the manifest inside {artefact.file} is not the published manifest",
                                      plugin=manifest.name, hint="Pack the plugin again.")
    return manifest, signature


def _entry(manifest: Manifest, signature: Signature | None, folder: Path, prefix: str) -> Entry:
    def described(name: str, **extra: str) -> IndexFile:
        path = folder / name
        return IndexFile(file=f"{prefix}/{name}", sha256=wheels.file_sha256(path), size=path.stat().st_size, **extra)

    return Entry(
        name=manifest.name,
        version=manifest.version,
        kind=manifest.kind,
        language=manifest.language,
        description=manifest.description,
        replaces=manifest.replaces,
        certification=manifest.certification.level if manifest.certification else None,
        publisher=signature.key.id if signature else None,
        manifest=described(MANIFEST_FILE),
        signature=described(MANIFEST_FILE + SIGNATURE_SUFFIX) if signature else None,
        artefacts=[described(a.file, kind=a.kind, platform=a.platform) for a in manifest.artefacts],
    )


def publish(package: Path, index: Path) -> tuple[Entry, bool]:
    """Publish the packed plugin in folder ``package`` into the index folder ``index``.

    Returns:
        The index entry, and whether it was new (``False``: that exact version was published already).

    Raises:
        PluginUntrusted: The package does not match its manifest or signature: nothing was published.
        ConfigError: That version is published already with other content (versions never change).
    """
    manifest, signature = check_package(package)
    index.mkdir(parents=True, exist_ok=True)
    prefix = f"{manifest.key}/{manifest.version}"
    with _locked(index):
        raw = (index / INDEX_FILE).read_bytes() if (index / INDEX_FILE).is_file() else b'{"format": 1}'
        document = Document.model_validate_json(raw)
        known = document.plugins.get(manifest.key, {}).get(manifest.version)
        if known is not None:
            sig_path = package / (MANIFEST_FILE + SIGNATURE_SUFFIX)
            signed = wheels.file_sha256(sig_path) if sig_path.is_file() else None
            same = known.manifest.sha256 == wheels.file_sha256(package / MANIFEST_FILE) and signed == (
                known.signature.sha256 if known.signature else None)
            if same:
                return known, False
            raise ConfigError(
                f"{manifest.name} {manifest.version} is published in {index} already, with other content or "
                "another signature; a published version never changes",
                plugin=manifest.name, hint="Give the plugin a new version in dativo-plugin.toml and pack it again.",
            )
        target = index / prefix
        staging = Path(tempfile.mkdtemp(prefix=".publish-", dir=index))
        try:
            names = [MANIFEST_FILE, *(a.file for a in manifest.artefacts)]
            if signature is not None:
                names.append(MANIFEST_FILE + SIGNATURE_SUFFIX)
            for name in names:
                shutil.copyfile(package / name, staging / name)
            entry = _entry(manifest, signature, staging, prefix)
            if target.exists():
                shutil.rmtree(target)  # a leftover of an interrupted publish: index.json never named it
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        plugins = {k: dict(v) for k, v in document.plugins.items()}
        plugins.setdefault(manifest.key, {})[manifest.version] = entry
        text = Document(format=1, plugins=plugins).model_dump_json(indent=2, exclude_none=True)
        temporary = index / f".{INDEX_FILE}.tmp"
        temporary.write_text(text + "\n", encoding="utf-8")
        os.replace(temporary, index / INDEX_FILE)
    return entry, True


def files_of(entry: Entry) -> Iterator[IndexFile]:
    """Every file an entry names."""
    yield entry.manifest
    if entry.signature is not None:
        yield entry.signature
    yield from entry.artefacts


def as_json(entry: Entry) -> dict[str, object]:
    """An entry for ``--json`` output."""
    return json.loads(entry.model_dump_json(exclude_none=True))
