"""Wheels, read and written reproducibly, and the digest of the files a wheel installs.

A wheel written here is the same bytes every time for the same content: entries in a fixed order (the
``.dist-info`` folder last, its ``RECORD`` at the very end), one timestamp (``SOURCE_DATE_EPOCH``, else
2020-02-02), modes 0644 or 0755 only, and a ``RECORD`` computed afresh.

:func:`files_digest` is what ``dativo.lock`` pins and every load checks: the sha256 of the sorted lines
``<path in site-packages>\\t<sha256>`` of every file the wheel installs into site-packages, without what an
installer writes or rewrites (``RECORD``, ``INSTALLER``, ``REQUESTED``, ``direct_url.json``, scripts, bytecode)
and without the ``.dist-info`` files that change nothing at run time (licenses). ``METADATA``, ``WHEEL``,
``entry_points.txt`` and ``dativo-plugin.toml`` count: an entry point decides what gets imported.
"""

from __future__ import annotations

import base64
import email.parser
import hashlib
import io
import os
import re
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

from packaging.utils import canonicalize_name

from dativo.errors import PluginUntrusted

COUNTED_DIST_INFO = frozenset({"METADATA", "WHEEL", "entry_points.txt", "dativo-plugin.toml"})
"""The ``.dist-info`` files :func:`files_digest` counts."""
DEFAULT_EPOCH = 1580601600  # 2020-02-02, as hatchling uses
MAX_ENTRY_BYTES = 1 << 30
_FILENAME = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-(?P<build>\d[^-]*))?-(?P<tag>[^-]+-[^-]+-[^-]+)\.whl$"
)


def sha256(data: bytes) -> str:
    """The hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def record_hash(data: bytes) -> str:
    """A RECORD file's hash field: ``sha256=<urlsafe base64, no padding>``."""
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def installed_path(entry: str) -> str | None:
    """Where a wheel entry (or a RECORD path) lands in site-packages, if :func:`files_digest` counts it."""
    if entry.startswith(("/", "..")) or "__pycache__/" in entry or entry.endswith(".pyc"):
        return None
    first, _, rest = entry.partition("/")
    if first.endswith(".data"):
        kind, _, inner = rest.partition("/")
        return inner if kind in ("purelib", "platlib") and inner else None
    if first.endswith(".dist-info"):
        return entry if rest in COUNTED_DIST_INFO else None
    return entry


def digest_of(hashes: Iterable[tuple[str, str]]) -> str:
    """The digest of ``(path, sha256)`` pairs, in path order."""
    lines = "".join(f"{path}\t{digest}\n" for path, digest in sorted(hashes))
    return sha256(lines.encode())


def epoch() -> int:
    """The timestamp of every entry: ``SOURCE_DATE_EPOCH`` when it is set (and after 1980), else 2020-02-02."""
    try:
        value = int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_EPOCH))
    except ValueError:
        value = DEFAULT_EPOCH
    return max(value, 315532800)


@dataclass
class Wheel:
    """A wheel's content, in memory.

    Attributes:
        name: The distribution part of the file name (``acme_readers``).
        version: Its version.
        tag: ``python-abi-platform`` (``py3-none-any``).
        entries: Every file but ``RECORD``, by path.
        modes: The permission bits of each entry (0o644 or 0o755).
    """

    name: str
    version: str
    tag: str
    entries: dict[str, bytes] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)

    @property
    def dist_info(self) -> str:
        return f"{self.name}-{self.version}.dist-info"

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.tag}.whl"

    @property
    def project(self) -> str:
        """The normalised distribution name (``acme-readers``)."""
        return canonicalize_name(self.metadata().get("Name", self.name))

    def metadata(self) -> Message:
        return email.parser.Parser().parsestr(self.entries[f"{self.dist_info}/METADATA"].decode("utf-8"))

    def entry_points(self) -> dict[str, dict[str, str]]:
        """``entry_points.txt`` as ``{group: {name: value}}``."""
        text = self.entries.get(f"{self.dist_info}/entry_points.txt", b"").decode("utf-8")
        groups: dict[str, dict[str, str]] = {}
        current: dict[str, str] | None = None
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                current = groups.setdefault(line[1:-1].strip(), {})
            elif current is not None and "=" in line:
                key, _, value = line.partition("=")
                current[key.strip()] = value.strip()
        return groups

    def add(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.entries[path] = data
        self.modes[path] = mode

    def retag(self, platform: str) -> None:
        """Make this a platform wheel (``linux_x86_64``): it carries a binary for that platform."""
        python, abi, _ = self.tag.split("-")
        self.tag = f"{python}-{abi}-{platform}"
        wheel = self.entries[f"{self.dist_info}/WHEEL"].decode("utf-8").splitlines()
        lines = [line for line in wheel if not line.startswith(("Tag:", "Root-Is-Purelib:"))]
        lines += ["Root-Is-Purelib: false", f"Tag: {self.tag}"]
        self.entries[f"{self.dist_info}/WHEEL"] = ("\n".join(lines) + "\n").encode()

    def files(self) -> dict[str, str]:
        """``{path in site-packages: sha256}`` of every counted file (see :func:`installed_path`)."""
        found = {}
        for entry, data in self.entries.items():
            path = installed_path(entry)
            if path is not None:
                found[path] = sha256(data)
        return found

    def files_digest(self) -> str:
        """The digest the lock pins for this wheel (see the module's docstring)."""
        return digest_of(self.files().items())

    def record(self) -> bytes:
        lines = [f"{path},{record_hash(data)},{len(data)}" for path, data in self._ordered()]
        lines.append(f"{self.dist_info}/RECORD,,")
        return ("\n".join(lines) + "\n").encode()

    def _ordered(self) -> list[tuple[str, bytes]]:
        inside = f"{self.dist_info}/"
        return sorted(self.entries.items(), key=lambda item: (item[0].startswith(inside), item[0]))

    def to_bytes(self) -> bytes:
        """The wheel file, reproducibly (see the module's docstring)."""
        stamp = time.gmtime(epoch())[:6]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            items = [*self._ordered(), (f"{self.dist_info}/RECORD", self.record())]
            for path, data in items:
                info = zipfile.ZipInfo(path, date_time=stamp)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3
                info.external_attr = (0o100000 | self.modes.get(path, 0o644)) << 16
                archive.writestr(info, data, compresslevel=6)
        return buffer.getvalue()

    def write(self, folder: Path) -> Path:
        path = folder / self.filename
        path.write_bytes(self.to_bytes())
        return path


def read(path: Path, *, source: str | None = None) -> Wheel:
    """Read and check a wheel: a zip whose ``RECORD`` lists every entry with its right hash.

    Raises:
        PluginUntrusted: It is no wheel, or a file in it does not match its ``RECORD`` line.
    """
    where = source or str(path)
    match = _FILENAME.match(path.name)
    if match is None:
        raise PluginUntrusted(f"{where} is not named like a wheel (name-version-python-abi-platform.whl)")
    wheel = Wheel(match["name"], match["version"], match["tag"])
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if sum(i.file_size for i in infos) > MAX_ENTRY_BYTES:
                raise PluginUntrusted(f"{where} unpacks to more than 1 GiB")
            for info in infos:
                if info.is_dir():
                    continue
                mode = (info.external_attr >> 16) & 0o777
                wheel.add(info.filename, archive.read(info), 0o755 if mode & 0o111 else 0o644)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise PluginUntrusted(f"{where} is not a readable wheel: {exc}") from None
    record_path = f"{wheel.dist_info}/RECORD"
    record = wheel.entries.pop(record_path, None)
    wheel.modes.pop(record_path, None)
    if record is None or f"{wheel.dist_info}/METADATA" not in wheel.entries:
        raise PluginUntrusted(f"{where} has no {wheel.dist_info}/RECORD or METADATA: it is not a wheel")
    listed: dict[str, str] = {}
    for line in record.decode("utf-8").splitlines():
        parts = line.rsplit(",", 2)
        if len(parts) == 3 and parts[1]:
            listed[parts[0].strip('"')] = parts[1]
    for entry, data in wheel.entries.items():
        if listed.get(entry) != record_hash(data):
            raise PluginUntrusted(
                f"{where}: {entry} does not match the wheel's RECORD (the archive was changed after it was built)",
                hint="Do not install it; get the package again from its publisher.",
            )
    return wheel
