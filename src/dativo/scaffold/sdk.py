"""Where the plugin SDKs are: inside the installed package, or in the checkout of an editable install.

A wheel of Dativo carries ``sdk/go``, ``sdk/rust`` and ``sdk/cpp`` as ``dativo/sdk/…`` (see the hatch build
configuration in ``pyproject.toml``); an editable install has them in the checkout its ``src/dativo`` is in.
Generated projects point at what :func:`sdk_path` returns, so they build without any Dativo checkout.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from dativo.errors import ConfigError, DativoError

SDK_LANGUAGES = ("go", "rust", "cpp")
"""The languages that have an SDK to build against (a Python plugin needs only ``dativo.api``)."""

_MARKERS = {"go": "go.mod", "rust": "Cargo.toml", "cpp": "dativo_plugin.h"}
_PACKAGE = Path(__file__).resolve().parents[1]
_CANDIDATES = (_PACKAGE / "sdk", _PACKAGE.parents[1] / "sdk")  # the wheel's copy, then an editable checkout's


def sdk_path(language: str) -> Path:
    """The folder of one SDK: the Go module, the Rust crate or the C header's folder.

    Args:
        language: ``go``, ``rust`` or ``cpp``.

    Returns:
        An absolute path; the wheel's own copy when there is one, else the checkout's ``sdk/<language>``.

    Raises:
        ConfigError: ``language`` has no SDK.
        DativoError: This installation carries no such SDK (a broken or partial install).
    """
    if language not in _MARKERS:
        raise ConfigError(
            f"there is no {language!r} SDK",
            hint=f"Use one of: {', '.join(SDK_LANGUAGES)} (a Python plugin needs only dativo.api).",
        )
    for root in _CANDIDATES:
        if (root / language / _MARKERS[language]).is_file():
            return root / language
    raise DativoError(
        f"this Dativo installation ({_PACKAGE}) has no {language} SDK: neither "
        f"{_CANDIDATES[0] / language} nor {_CANDIDATES[1] / language} holds {_MARKERS[language]}",
        hint="Reinstall Dativo from its wheel (pip install --force-reinstall dativo), or from a checkout.",
    )


@dataclass(frozen=True)
class GoModule:
    """What a plugin's ``go.mod`` takes from the Go SDK's: its module path, Go version and requirements."""

    path: str
    go: str
    requires: tuple[tuple[str, str, bool], ...]
    """``(module, version, indirect)`` for every requirement of the SDK."""


_REQUIRE = re.compile(r"^\s*(?:require\s+)?([^\s()]+)\s+(v[^\s]+)\s*(//\s*indirect)?\s*$")


def go_module(sdk: Path) -> GoModule:
    """Read the Go SDK's ``go.mod`` (the module path plugins import, and the versions it was tested with)."""
    module = go = ""
    requires: list[tuple[str, str, bool]] = []
    in_require = False
    for line in (sdk / "go.mod").read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if text.startswith("module "):
            module = text.split()[1]
        elif text.startswith("go "):
            go = text.split()[1]
        elif text.startswith("require ("):
            in_require = True
        elif in_require and text == ")":
            in_require = False
        elif in_require or text.startswith("require "):
            match = _REQUIRE.match(text)
            if match:
                requires.append((match[1], match[2], bool(match[3])))
    if not module or not go:
        raise DativoError(f"{sdk / 'go.mod'} names no module or no go version", hint="Reinstall Dativo.")
    return GoModule(module, go, tuple(requires))


@dataclass(frozen=True)
class RustCrate:
    """What a plugin's ``Cargo.toml`` takes from the Rust SDK's: its name and the versions it pins."""

    name: str
    dependencies: dict[str, str]
    """Version requirement of each dependency (``pyo3`` → ``=0.30.1`` …)."""


def rust_crate(sdk: Path) -> RustCrate:
    """Read the Rust SDK's ``Cargo.toml``."""
    manifest = tomllib.loads((sdk / "Cargo.toml").read_text(encoding="utf-8"))
    versions = {}
    for name, spec in manifest.get("dependencies", {}).items():
        version = spec if isinstance(spec, str) else spec.get("version")
        if version:
            versions[name] = version
    return RustCrate(manifest["package"]["name"], versions)
