"""``dativo plugin pack [DIR]``: the distributable of a plugin project, checked, reproducible and signed.

What it writes into ``OUT/<name>-<version>/`` (``OUT`` is ``DIR/dist`` unless told):

- the wheel: built by the project's own build backend (``uv build``, else ``pip wheel``), then rewritten
  reproducibly (:mod:`dativo.market.wheels`) with the manifest inside its ``.dist-info``; a project whose
  manifest lists ``build.binaries`` (a Go or C++ plugin) gets a platform wheel (``linux_x86_64``) carrying
  them, executable, so ``pip``/``uv`` install every language the same way;
- ``sbom.json``: the dependency list — name, version, license of every dependency the wheel requires and,
  for a Go binary, of every module compiled into it (read from the binary's build info);
- ``dativo-plugin.toml``: the project's manifest with the certification (``--report``, from
  ``dativo plugin test``) and ``artefacts`` — every file above with its sha256 and size;
- ``dativo-plugin.toml.sig``: the detached ed25519 signature over that manifest's canonical bytes (with
  ``--key``, else the user's ``publisher.key`` when there is one; without a key the package is unsigned).

Packing the same project twice gives the same bytes, so the same digests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from dativo.api import API_VERSION
from dativo.errors import ConfigError
from dativo.market import sign, wheels
from dativo.market.manifest import MANIFEST_FILE, Artefact, Certification, Manifest, load
from dativo.market.sign import SIGNATURE_SUFFIX, Signature

SBOM_FILE = "sbom.json"
LEVELS = ("compatible", "certified", "sandbox-safe")


@dataclass(frozen=True)
class Packed:
    """What ``pack`` wrote.

    Attributes:
        folder: ``OUT/<name>-<version>``.
        manifest: The published manifest (with artefacts).
        wheel: The wheel's path.
        signature: The signature, or ``None`` for an unsigned package.
    """

    folder: Path
    manifest: Manifest
    wheel: Path
    signature: Signature | None


def platform_tag() -> str:
    """This machine's wheel platform tag (``linux_x86_64``)."""
    return re.sub(r"[-.]", "_", sysconfig.get_platform())


def platform_name(tag: str) -> str:
    """A manifest's platform for a wheel tag's platform part: ``any``, or ``linux-x86_64``."""
    return "any" if tag == "any" else tag.replace("_", "-", 1)


def find_uv() -> str | None:
    """The ``uv`` beside this Python or on ``PATH`` (``None``: builds and installs use pip)."""
    for candidate in (Path(sys.executable).with_name("uv"), shutil.which("uv")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return None


def build_wheel(project: Path, into: Path) -> Path:
    """Build ``project``'s wheel with its own build backend, in an isolated environment.

    Raises:
        ConfigError: The build failed (its output is in the message's detail).
    """
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(wheels.epoch())}
    uv = find_uv()
    if uv is not None:
        argv = [uv, "build", "--wheel", "--quiet", "--out-dir", str(into), str(project)]
    else:
        argv = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(into), str(project)]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    built = sorted(into.glob("*.whl"))
    if result.returncode != 0 or len(built) != 1:
        raise ConfigError(
            f"building the wheel of {project} failed ({' '.join(argv[:3])} exited with status {result.returncode})",
            hint="Fix the build (run the command by hand to see it), then pack again.",
            detail=(result.stderr or result.stdout)[-4000:],
        )
    return built[0]


def _pyproject(project: Path) -> dict[str, Any]:
    file = project / "pyproject.toml"
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError:
        raise ConfigError(f"{file} does not exist", hint="Set build.project in dativo-plugin.toml to the folder "
                          "of the plugin's Python project (its pyproject.toml).") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file} is not valid TOML: {exc}") from None


def _check_versions(manifest: Manifest, pyproject: dict[str, Any], where: Path) -> None:
    project = pyproject.get("project", {})
    declared = project.get("version")
    if declared is not None and Version(str(declared)) != Version(manifest.version):
        raise ConfigError(
            f"{where}/pyproject.toml says version {declared}, dativo-plugin.toml says {manifest.version}",
            plugin=manifest.name,
            hint="The manifest's version is the single source of truth: write the same in pyproject.toml, or let "
            'the build read it (hatchling: dynamic = ["version"] and [tool.hatch.version] path = '
            '"dativo-plugin.toml", pattern = "(?m)^version = \\"(?P<version>[^\\"]+)\\"").',
        )
    name = project.get("name")
    if name is not None and canonicalize_name(str(name)) != manifest.key:
        raise ConfigError(f"{where}/pyproject.toml names the project {name}, dativo-plugin.toml {manifest.name}",
                          plugin=manifest.name, hint="Give both the same name.")


def certification(report: Path, manifest: Manifest) -> Certification:
    """The certification of a ``dativo plugin test`` JSON report: its level and the report's sha256.

    Args:
        report: ``report.json``, or the folder ``dativo plugin test --report`` wrote it into.

    Raises:
        ConfigError: The file is not such a report, or it certifies another plugin.
    """
    if report.is_dir():
        report = report / "report.json"
    try:
        data = report.read_bytes()
        parsed = json.loads(data)
    except OSError as exc:
        raise ConfigError(f"cannot read the test report {report}: {exc.strerror or exc}",
                          hint="Run `dativo plugin test --json` and save its output.") from None
    except ValueError:
        raise ConfigError(f"{report} is not JSON", hint="Give the report of `dativo plugin test --json`.") from None
    level = parsed.get("level") if isinstance(parsed, dict) else None
    if level is None and isinstance(parsed, dict) and isinstance(parsed.get("certification"), dict):
        level = parsed["certification"].get("level")
    if level not in LEVELS:
        raise ConfigError(
            f"{report} gives no certification level (found {level!r}; one of {', '.join(LEVELS)} expected)",
            plugin=manifest.name, hint="A plugin that passed no level is packed without --report.",
        )
    plugin = parsed.get("plugin") if isinstance(parsed.get("plugin"), dict) else {}
    tested = str(plugin.get("implementation") or "")
    other_name = bool(manifest.start.entry_point and tested and ":" not in tested and tested != manifest.start.entry_point)
    other_version = plugin.get("origin") == "entry point" and str(plugin.get("version")) != manifest.version
    if other_name or other_version:
        raise ConfigError(f"{report} certifies {tested} {plugin.get('version', '')}, not {manifest.name} "
                          f"{manifest.version} (entry point {manifest.start.entry_point})", plugin=manifest.name,
                          hint="Run `dativo plugin test` on this plugin, at this version, and give its report.")
    kit = parsed.get("kit") if isinstance(parsed.get("kit"), dict) else {}
    version = kit.get("dativo") if isinstance(kit.get("dativo"), str) else None
    return Certification(level=level, report_sha256=wheels.sha256(data), dativo=version)


def _check_wheel(wheel: wheels.Wheel, manifest: Manifest) -> None:
    if wheel.project != manifest.key or Version(wheel.version) != Version(manifest.version):
        raise ConfigError(
            f"the build made {wheel.filename}, but dativo-plugin.toml describes {manifest.name} {manifest.version}",
            plugin=manifest.name, hint="Give pyproject.toml the manifest's name and version.",
        )
    start = manifest.start
    if start.entry_point is not None:
        group = f"dativo.{manifest.kind}s"
        if start.entry_point not in wheel.entry_points().get(group, {}):
            raise ConfigError(
                f"the wheel registers no entry point '{start.entry_point}' in {group}, which the manifest's "
                "start.entry_point names",
                plugin=manifest.name,
                hint=f'Add it to pyproject.toml: [project.entry-points."{group}"] {start.entry_point} = "pkg:Class".',
            )
    inside = [p for p in (start.library, *(start.command or [])[:1]) if p]
    for path in [*inside, *manifest.build.binaries]:
        if path not in wheel.entries:
            raise ConfigError(
                f"the wheel does not carry {path}, which dativo-plugin.toml names",
                plugin=manifest.name,
                hint="Build it first (e.g. `make plugins`), and ship it in the wheel (hatchling: "
                "[tool.hatch.build.targets.wheel] artifacts).",
            )


def pack(
    directory: Path,
    *,
    out: Path | None = None,
    key: Path | None = None,
    report: Path | None = None,
    use_default_key: bool = True,
) -> Packed:
    """Pack the plugin project in ``directory`` (see the module's docstring).

    Args:
        directory: The project: its ``dativo-plugin.toml`` is there.
        out: Where the package folder goes (default ``directory/dist``).
        key: The publisher's private key; ``None``: ``publisher.key`` in the user's config folder if it
            exists (and ``use_default_key``), else the package is unsigned.
        report: The JSON report of ``dativo plugin test``: its level is recorded in the manifest.

    Raises:
        ConfigError: The manifest, the project or its build is wrong (the message says how to fix it).
    """
    directory = directory.resolve()
    source = load(directory / MANIFEST_FILE)
    # the version was read from build.version_from (if named): the packed manifest carries it, not the file
    source = source.model_copy(update={"artefacts": [],
                                       "build": source.build.model_copy(update={"version_from": None})})
    if not source.supports(API_VERSION):
        raise ConfigError(f"dativo-plugin.toml declares API {source.api}, but this Dativo provides API {API_VERSION}",
                          plugin=source.name, hint="Declare the API range the plugin is written for.")
    if report is not None:
        source = source.model_copy(update={"certification": certification(report, source)})
    project = (directory / source.build.project).resolve()
    _check_versions(source, _pyproject(project), project)
    for binary in source.build.binaries:
        if not (project / binary).is_file():
            raise ConfigError(f"{project / binary} does not exist: build it before packing",
                              plugin=source.name, hint="Build the binary (e.g. `make plugins`), then pack again.")
    private = None
    if key is None and use_default_key and (sign.config_dir() / sign.PRIVATE_KEY_FILE).is_file():
        key = sign.config_dir() / sign.PRIVATE_KEY_FILE
    if key is not None:
        private = sign.load_private(key)

    with tempfile.TemporaryDirectory(prefix="dativo-pack-") as tmp:
        wheel = wheels.read(build_wheel(project, Path(tmp)))
    _check_wheel(wheel, source)
    platform = platform_name(wheel.tag.split("-")[2])  # a compiled build (maturin) tags its own platform
    if source.build.binaries:
        wheel.retag(platform_tag())
        platform = platform_name(platform_tag())
        for binary in source.build.binaries:
            wheel.modes[binary] = 0o755
    wheel.add(f"{wheel.dist_info}/{MANIFEST_FILE}", source.to_toml().encode())

    folder = (out or directory / "dist").resolve() / f"{source.key}-{source.version}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    wheel_path = wheel.write(folder)
    sbom = sbom_json(wheel, source, project)
    (folder / SBOM_FILE).write_bytes(sbom)
    artefacts = [
        Artefact(file=wheel_path.name, kind="wheel", platform=platform, sha256=wheels.file_sha256(wheel_path),
                 size=wheel_path.stat().st_size),
        Artefact(file=SBOM_FILE, kind="sbom", platform="any", sha256=wheels.sha256(sbom), size=len(sbom)),
    ]
    manifest = source.model_copy(update={"artefacts": artefacts})
    (folder / MANIFEST_FILE).write_text(manifest.to_toml(), encoding="utf-8")
    signature = None
    if private is not None:
        signature = sign.sign(manifest, private, comment=manifest.name)
        (folder / (MANIFEST_FILE + SIGNATURE_SUFFIX)).write_text(signature.to_json(), encoding="utf-8")
    return Packed(folder, manifest, wheel_path, signature)


# --- the dependency list ----------------------------------------------------------------------------------------


def sbom_json(wheel: wheels.Wheel, manifest: Manifest, project: Path) -> bytes:
    """The SBOM: the plugin, the dependencies its wheel requires, and the Go modules compiled into it."""
    components = [c for c in _python_requirements(wheel)]
    for binary in manifest.build.binaries:
        components += _go_modules(wheel.entries[binary])
    components.sort(key=lambda c: (c["ecosystem"], c["name"], c["version"]))
    document = {
        "format": "dativo-sbom/1",
        "plugin": {"name": manifest.name, "version": manifest.version, "license": manifest.license or "unknown"},
        "components": components,
    }
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def _license_of(dist: metadata.Distribution) -> str:
    meta = dist.metadata
    expression = meta.get("License-Expression")
    if expression:
        return str(expression)
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    if classifiers:
        return " OR ".join(sorted(set(classifiers)))
    text = str(meta.get("License") or "").strip()
    return text.splitlines()[0][:80] if text else "unknown"


def _python_requirements(wheel: wheels.Wheel) -> list[dict[str, str]]:
    found = []
    for line in wheel.metadata().get_all("Requires-Dist") or []:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is not None and "extra" in str(requirement.marker):
            continue
        try:
            dist = metadata.distribution(requirement.name)
            version, license_ = dist.version, _license_of(dist)
        except metadata.PackageNotFoundError:
            version, license_ = str(requirement.specifier) or "any", "unknown"
        found.append({"ecosystem": "pypi", "name": canonicalize_name(requirement.name), "version": version,
                      "license": license_, "scope": "required", "requested": str(requirement.specifier) or "any"})
    return found


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def go_build_info(binary: bytes) -> tuple[str, list[tuple[str, str]]]:
    """The Go version and the ``(module, version)`` pairs compiled into a Go ≥ 1.18 binary (``go version -m``)."""
    at = binary.find(b"\xff Go buildinf:")
    if at < 0 or len(binary) < at + 32 or not binary[at + 15] & 2:
        return "", []
    version_len, cursor = _varint(binary, at + 32)
    go_version = binary[cursor:cursor + version_len].decode("utf-8", "replace")
    info_len, cursor = _varint(binary, cursor + version_len)
    info = binary[cursor:cursor + info_len]
    text = info[16:-16].decode("utf-8", "replace") if len(info) >= 33 else ""
    modules: list[tuple[str, str]] = []
    for line in text.splitlines():
        parts = line.split("\t")
        if parts[0] == "dep" and len(parts) >= 3:
            modules.append((parts[1], parts[2]))
        elif parts[0] == "=>" and len(parts) >= 3 and modules:  # a replaced module: what was compiled in
            modules[-1] = (modules[-1][0], parts[2] if parts[1].startswith(".") else f"{parts[1]}@{parts[2]}")
    return go_version, modules


_LICENSES = (
    ("Apache-2.0", ("Apache License", "Version 2.0")),
    ("MIT", ("Permission is hereby granted, free of charge",)),
    ("BSD-3-Clause", ("Redistribution and use in source and binary forms", "Neither the name")),
    ("BSD-2-Clause", ("Redistribution and use in source and binary forms",)),
    ("MPL-2.0", ("Mozilla Public License",)),
    ("ISC", ("Permission to use, copy, modify, and/or distribute",)),
)


def _go_module_cache() -> Path:
    if os.environ.get("GOMODCACHE"):
        return Path(os.environ["GOMODCACHE"])
    gopath = os.environ.get("GOPATH", "").split(os.pathsep)[0] or str(Path.home() / "go")
    return Path(gopath) / "pkg" / "mod"


def _go_license(module: str, version: str) -> str:
    escaped = re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), module)
    folder = _go_module_cache() / f"{escaped}@{version}"
    for name in ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "COPYING", "LICENSE-APACHE", "LICENSE-MIT"):
        try:
            text = (folder / name).read_text(encoding="utf-8", errors="replace")[:6000]
        except OSError:
            continue
        for spdx, needles in _LICENSES:
            if all(n in text for n in needles):
                return spdx
        return "see LICENSE"
    return "unknown"


def _go_modules(binary: bytes) -> list[dict[str, str]]:
    go_version, modules = go_build_info(binary)
    found = [{"ecosystem": "golang", "name": path, "version": version, "license": _go_license(path, version),
              "scope": "bundled"} for path, version in modules]
    if go_version:
        found.append({"ecosystem": "golang", "name": "stdlib", "version": go_version, "license": "BSD-3-Clause",
                      "scope": "bundled"})
    return found
