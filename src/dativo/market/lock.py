"""``dativo.lock`` and ``dativo.toml``: what a project pins, and its plugin settings.

``dativo plugin install`` writes a pin per plugin into ``dativo.lock`` (in the current folder, or
``--lock PATH``); a job uses the lock and the ``dativo.toml`` of its *project folder*: the nearest folder,
from the job file's own upwards, that holds either file. Both are TOML::

    # dativo.lock
    lock = 1

    [[plugin]]
    name = "acme-readers"
    version = "1.0.0"
    kind = "reader"
    entry_point = "acme_orders"
    artefact = "acme_readers-1.0.0-py3-none-any.whl"
    artefact_sha256 = "…"          # the wheel that was installed
    files_sha256 = "…"             # what it installed (dativo.market.wheels.files_digest): checked at every load
    manifest_sha256 = "…"          # the signed manifest's canonical sha256
    publisher = "ed25519:…"        # the key that signed it ("" when unsigned)
    trusted = true                 # whether that key was trusted when it was installed
    index = "http://…"

    # dativo.toml
    [plugins]
    index = "https://plugins.example.com/"     # the default --index
    [plugins.policy]
    unsigned = "sandbox"                       # sandbox | refuse | allow
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from packaging.utils import canonicalize_name
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dativo.config import describe_validation_error
from dativo.errors import ConfigError
from dativo.market.manifest import dump_toml

LOCK_FILE = "dativo.lock"
PROJECT_FILE = "dativo.toml"
Policy = Literal["sandbox", "refuse", "allow"]
DEFAULT_POLICY: Policy = "sandbox"
_HEADER = (
    "# dativo.lock: the plugins this project pins, written by `dativo plugin install`.\n"
    "# Every load of a pinned plugin checks its installed files against files_sha256 first; do not edit.\n"
)


class Pin(BaseModel):
    """One plugin pinned by the lock."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    kind: Literal["reader", "writer"]
    entry_point: str | None = None
    artefact: str
    artefact_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    files_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    manifest_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    publisher: str = ""
    trusted: bool = False
    index: str = ""
    certification: str = ""

    @property
    def key(self) -> str:
        return canonicalize_name(self.name)


class _LockFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lock: Literal[1] = 1
    plugin: list[Pin] = Field(default_factory=list)


@dataclass
class Lock:
    """A ``dativo.lock`` (possibly not written yet)."""

    path: Path
    pins: dict[str, Pin] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Lock:
        """The lock at ``path`` (empty when the file does not exist).

        Raises:
            ConfigError: It is not a valid lock.
        """
        if not path.is_file():
            return cls(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            parsed = _LockFile.model_validate(data)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}", hint="Restore it, or delete it and install again.") from None
        except ValidationError as exc:
            raise ConfigError(f"{path} is invalid: {describe_validation_error(exc, _LockFile)}",
                              hint="Restore it from version control, or delete it and install again.") from None
        return cls(path, {pin.key: pin for pin in parsed.plugin})

    def get(self, name: str) -> Pin | None:
        return self.pins.get(canonicalize_name(name))

    def pin(self, pin: Pin) -> None:
        self.pins[pin.key] = pin

    def write(self) -> None:
        """Write the lock atomically."""
        document = {"lock": 1, "plugin": [p.model_dump() for _, p in sorted(self.pins.items())]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_text(_HEADER + "\n" + dump_toml(document), encoding="utf-8")
        os.replace(temporary, self.path)


class _PolicyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unsigned: Policy | None = None


class _PluginsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: str | None = None
    policy: _PolicyConfig = Field(default_factory=_PolicyConfig)


class _ProjectFile(BaseModel):
    model_config = ConfigDict(extra="allow")
    plugins: _PluginsConfig = Field(default_factory=_PluginsConfig)


@dataclass(frozen=True)
class Project:
    """The project folder of a job (or of the current folder): its lock and its ``dativo.toml`` settings.

    Attributes:
        folder: The folder the files were found in (the start folder when neither exists).
        lock: Its ``dativo.lock``.
        policy: ``plugins.policy.unsigned`` of its ``dativo.toml`` (``None``: not set).
        index: ``plugins.index`` of its ``dativo.toml``.
    """

    folder: Path
    lock: Lock
    policy: Policy | None = None
    index: str | None = None


def project_folder(start: Path) -> Path:
    """The nearest folder from ``start`` upwards that holds ``dativo.lock`` or ``dativo.toml`` (else ``start``)."""
    start = start.absolute()
    for folder in (start, *start.parents):
        if (folder / LOCK_FILE).is_file() or (folder / PROJECT_FILE).is_file():
            return folder
    return start


def project(start: Path, *, lock: Path | None = None) -> Project:
    """The project of the folder ``start`` (a job file's folder), with ``lock`` instead of its own if given.

    Raises:
        ConfigError: ``dativo.toml`` or the lock is invalid.
    """
    folder = project_folder(start)
    settings = _ProjectFile()
    file = folder / PROJECT_FILE
    if file.is_file():
        try:
            settings = _ProjectFile.model_validate(tomllib.loads(file.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {file}: {exc}", hint="Fix its syntax.") from None
        except ValidationError as exc:
            raise ConfigError(f"{file} is invalid: {describe_validation_error(exc, _ProjectFile)}",
                              hint="[plugins] takes index and policy.unsigned (sandbox, refuse or allow).") from None
    pins = Lock.read(lock if lock is not None else folder / LOCK_FILE)
    return Project(folder, pins, settings.plugins.policy.unsigned, settings.plugins.index)
