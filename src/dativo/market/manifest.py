"""``dativo-plugin.toml``: what a plugin is, how it starts, what it may touch, and the files that make it up.

A plugin project has one at its root; ``dativo plugin pack`` copies it into the wheel
(``<name>-<version>.dist-info/dativo-plugin.toml``, without ``artefacts``) and writes the published one beside
the wheel, with ``artefacts`` and their sha256 filled in: the file that is signed. Its JSON Schema is
``dativo schema --manifest``.

```toml
manifest = 1
name = "acme-readers"           # the distribution's name
version = "1.0.0"               # the single source of truth: the wheel must carry this version
kind = "reader"
language = "python"
replaces = "csv"                # the connector type it is a drop-in for (optional)
api = ">=1,<2"                  # the Dativo plugin API range it supports

[start]
entry_point = "acme_orders"     # or library = "pkg/libreader.so", command = ["pkg/bin/reader"]

[capabilities]                  # what the sandbox grants it when it is not trusted
network = []                    # "host:port" or "unix:/run/postgresql/.s.PGSQL.5432"
read_paths = []                 # relative to the job file's folder
write_paths = []
secrets = []                    # environment variable names
memory_mb = 1024
```

The signature covers :meth:`Manifest.canonical`: the model as sorted, compact JSON, so that comments and
formatting of the TOML do not matter and every value does.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dativo.config import describe_validation_error
from dativo.errors import ConfigError

MANIFEST_FILE = "dativo-plugin.toml"
"""The manifest's file name, in a project, inside a wheel's ``.dist-info`` and in a packed plugin."""
FORMAT = 1

_SHA256 = r"^[0-9a-f]{64}$"
_NAME = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_RELATIVE = re.compile(r"^(?!/)(?!.*(^|/)\.\.(/|$)).+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _inside(path: str) -> str:
    """A path inside the package: relative, without ``..``."""
    if not _RELATIVE.match(path) or "\\" in path:
        raise ValueError(f"'{path}' must be a relative path inside the package (no leading /, no ..)")
    return path


class Start(_Strict):
    """How Dativo starts the plugin once it is installed (at least one way)."""

    entry_point: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.\-]+$",
        description="Its name in the entry point group dativo.readers or dativo.writers (what jobs name).",
    )
    library: str | None = Field(
        None, description="A C ABI library (sdk/cpp/dativo_plugin.h) inside the package, e.g. pkg/libreader.so."
    )
    command: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None, min_length=1,
        description="An executable inside the package and its arguments, e.g. [\"pkg/bin/reader\"]; how the "
        "sandbox starts it without importing the package.",
    )

    @field_validator("library")
    @classmethod
    def _library_inside(cls, value: str | None) -> str | None:
        return None if value is None else _inside(value)

    @field_validator("command")
    @classmethod
    def _command_inside(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            _inside(value[0])
        return value

    @model_validator(mode="after")
    def _one_way_at_least(self) -> Start:
        if self.entry_point is None and self.library is None and self.command is None:
            raise ValueError("name at least one of entry_point, library or command")
        return self


class Capabilities(_Strict):
    """What the plugin needs; an untrusted plugin runs in the sandbox with exactly this (docs/sandbox.md)."""

    network: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="Hosts it connects to, as host:port (the sandbox cannot filter TCP: any host:port gives "
        "it the host's network), or unix:/path/to/socket (that socket file only). Empty: no network.",
    )
    read_paths: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="Files or folders it reads; relative to the job file's folder."
    )
    write_paths: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="Files or folders it writes; relative to the job file's folder."
    )
    secrets: list[Annotated[str, Field(pattern=_ENV_NAME)]] = Field(
        default_factory=list, description="Environment variables (secrets) it reads."
    )
    memory_mb: int | None = Field(None, ge=64, description="Memory it needs at most, in MiB (the sandbox's limit).")

    @field_validator("network")
    @classmethod
    def _host_or_socket(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            if not (entry.startswith("unix:/") or re.fullmatch(r"[A-Za-z0-9.\-\[\]:*]+:(\d+|\*)", entry)):
                raise ValueError(f"'{entry}' is neither host:port nor unix:/absolute/path")
        return entries


class Certification(_Strict):
    """The result of ``dativo plugin test`` (the conformance kit) the publisher ran."""

    level: Literal["compatible", "certified", "sandbox-safe"] = Field(description="The level the kit gave.")
    report_sha256: str = Field(pattern=_SHA256, description="sha256 of the kit's JSON report.")
    dativo: str | None = Field(None, description="The Dativo version that ran the kit.")


class Build(_Strict):
    """How ``dativo plugin pack`` builds the wheel."""

    project: str = Field(".", description="Folder of the Python project (pyproject.toml), relative to this file.")
    version_from: str | None = Field(
        None,
        description="In a project's manifest instead of `version`: the file of the project whose version is the "
        "plugin's, where its build reads it (Cargo.toml: [package] version; pyproject.toml: [project] version; "
        "any other file: its whole text, e.g. VERSION). `dativo plugin pack` writes the version it read.",
    )
    binaries: list[str] = Field(
        default_factory=list,
        description="Files the wheel must carry that a compiler made (relative to the project): they make the "
        "wheel platform-specific and must exist before packing (e.g. `make plugins-go`).",
    )

    @field_validator("project")
    @classmethod
    def _project_inside(cls, value: str) -> str:
        return value if value == "." else _inside(value)

    @field_validator("version_from")
    @classmethod
    def _version_file_inside(cls, value: str | None) -> str | None:
        return None if value is None else _inside(value)

    @field_validator("binaries")
    @classmethod
    def _binaries_inside(cls, value: list[str]) -> list[str]:
        return [_inside(v) for v in value]


class Artefact(_Strict):
    """One file of the packed plugin, with its digest."""

    file: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+\-]*$", description="Its file name.")
    kind: Literal["wheel", "sbom"] = Field(description="A wheel to install, or the dependency list.")
    platform: str = Field(
        "any", pattern=r"^[a-z0-9_\-]+$", description="`any`, or the platform it runs on (e.g. linux-x86_64)."
    )
    sha256: str = Field(pattern=_SHA256)
    size: int = Field(ge=0)


class Manifest(_Strict):
    """``dativo-plugin.toml``."""

    manifest: Literal[1] = Field(FORMAT, description="The manifest format version.")
    name: str = Field(pattern=_NAME, description="The distribution's name (as pip names it).")
    version: str = Field(description="The plugin's version (PEP 440): the single source of truth.")
    kind: Literal["reader", "writer"]
    language: Literal["python", "rust", "go", "cpp", "c"]
    description: str = ""
    license: str | None = Field(None, description="SPDX expression of the plugin's own license.")
    replaces: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.\-]+$", description="The connector type it is a drop-in for (csv, postgres …)."
    )
    api: str = Field(">=1,<2", description="The Dativo plugin API range it supports (PEP 440).")
    start: Start
    capabilities: Capabilities = Field(default_factory=Capabilities)
    certification: Certification | None = None
    build: Build = Field(default_factory=Build)
    artefacts: list[Artefact] = Field(
        default_factory=list, description="Written by `dativo plugin pack`: the files and their sha256."
    )

    @field_validator("version")
    @classmethod
    def _pep440(cls, value: str) -> str:
        try:
            return str(Version(value))
        except InvalidVersion:
            raise ValueError(f"'{value}' is not a PEP 440 version") from None

    @field_validator("api")
    @classmethod
    def _range(cls, value: str) -> str:
        try:
            SpecifierSet(value)
        except InvalidSpecifier:
            raise ValueError(f"'{value}' is not a version range such as '>=1,<2'") from None
        return value

    @property
    def key(self) -> str:
        """The normalised distribution name (``acme-readers``), how the index and the lock name it."""
        return canonicalize_name(self.name)

    def supports(self, api_version: str) -> bool:
        """Whether Dativo's plugin API ``api_version`` is in this plugin's range."""
        return Version(api_version) in SpecifierSet(self.api)

    def canonical(self) -> bytes:
        """The bytes a signature covers: every field, as sorted compact JSON."""
        data = self.model_dump(mode="json")
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def digest(self) -> str:
        """sha256 of :meth:`canonical`."""
        return hashlib.sha256(self.canonical()).hexdigest()

    def wheel(self, platform: str) -> Artefact | None:
        """The wheel for ``platform`` (``linux-x86_64`` …), or the platform-independent one."""
        wheels = [a for a in self.artefacts if a.kind == "wheel"]
        return next((a for a in wheels if a.platform == platform), None) or next(
            (a for a in wheels if a.platform == "any"), None
        )

    def to_toml(self) -> str:
        """The manifest as TOML (what :func:`parse` reads back to an equal model)."""
        return dump_toml(self.model_dump(mode="json", exclude_none=True))


def parse(text: str, *, source: str = MANIFEST_FILE) -> Manifest:
    """Read and validate a manifest.

    Raises:
        ConfigError: It is not TOML, or not a valid manifest (the message names each bad key).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}", hint="Fix the file's syntax.") from None
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            f"{source} is invalid: {describe_validation_error(exc, Manifest)}",
            hint="`dativo schema --manifest` prints every key of dativo-plugin.toml.",
        ) from None


def load(path: str | Path) -> Manifest:
    """Read the manifest at ``path`` (a file, or a folder holding ``dativo-plugin.toml``).

    Raises:
        ConfigError: It cannot be read, or is invalid.
    """
    file = Path(path)
    if file.is_dir():
        file = file / MANIFEST_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read {file}: {exc.strerror or exc}",
            hint="A plugin project has a dativo-plugin.toml at its root (docs/plugins/publishing.md).",
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file} is not UTF-8 text", hint="Save it as UTF-8.") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return parse(text, source=str(file))  # parse says what is wrong
    build = data.get("build")
    version_from = build.get("version_from") if isinstance(build, dict) else None
    if not isinstance(version_from, str):
        return parse(text, source=str(file))
    if "version" in data:
        raise ConfigError(f"{file} has both version and build.version_from", hint="Write the version in one "
                          f"place: remove version (it is read from {version_from}), or build.version_from.")
    try:
        source = file.parent / _inside(version_from)
    except ValueError as exc:
        raise ConfigError(f"{file}: build.version_from: {exc}", hint="Name a file of the project.") from None
    data["version"] = read_version(source)
    return parse(dump_toml(data), source=str(file))


def read_version(file: Path) -> str:
    """The version a project's build file holds: Cargo.toml's ``[package] version``, pyproject.toml's
    ``[project] version``, or the whole text of any other file (``VERSION``).

    Raises:
        ConfigError: The file cannot be read or holds no version.
    """
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the version from {file}: {getattr(exc, 'strerror', None) or exc}",
                          hint="build.version_from names a file of the project, relative to the manifest.") from None
    version: Any = text.strip()
    if file.suffix == ".toml":
        section = "package" if file.name == "Cargo.toml" else "project"
        try:
            version = tomllib.loads(text).get(section, {}).get("version")
        except (tomllib.TOMLDecodeError, AttributeError):
            version = None
        if not isinstance(version, str):
            raise ConfigError(f"{file} has no [{section}] version", hint=f"Write version = \"1.0.0\" under "
                              f"[{section}], or point build.version_from at the file that has the version.")
    return version


def schema() -> dict[str, Any]:
    """The JSON Schema of ``dativo-plugin.toml``."""
    return Manifest.model_json_schema()


# --- a small TOML writer (tomllib only reads) --------------------------------------------------------------


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON's escapes are a subset of TOML's basic strings
    if isinstance(value, list) and all(not isinstance(v, dict) for v in value):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_\-]+", key) else json.dumps(key)


def dump_toml(data: dict[str, Any]) -> str:
    """``data`` (scalars, lists, tables, arrays of tables, one level deep) as TOML text."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    arrays: list[tuple[str, list[dict[str, Any]]]] = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, dict):
            tables.append((key, value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            arrays.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, table in tables:
        lines += ["", f"[{_key(key)}]"]
        lines += [f"{_key(k)} = {_value(v)}" for k, v in table.items() if v is not None]
    for key, items in arrays:
        for item in items:
            lines += ["", f"[[{_key(key)}]]"]
            lines += [f"{_key(k)} = {_value(v)}" for k, v in item.items() if v is not None]
    return "\n".join(lines) + "\n"
