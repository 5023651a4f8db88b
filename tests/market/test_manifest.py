"""``dativo-plugin.toml``: every example plugin has a valid one, the schema is published, the signed bytes are
canonical."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from dativo.errors import ConfigError
from dativo.market.manifest import Manifest, load, parse
from tests.conftest import Result

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "plugins"
PLUGIN_DIRS = sorted(p for p in EXAMPLES.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))

MINIMAL = """
name = "acme-readers"
version = "1.0"
kind = "reader"
language = "python"
[start]
entry_point = "acme_orders"
"""


def test_every_example_plugin_has_a_manifest() -> None:
    assert len(PLUGIN_DIRS) >= 7
    missing = [p.name for p in PLUGIN_DIRS if not (p / "dativo-plugin.toml").is_file()]
    assert not missing, f"example plugins without dativo-plugin.toml: {missing}"


@pytest.mark.parametrize("folder", PLUGIN_DIRS, ids=lambda p: p.name)
def test_each_example_manifest_is_valid_and_agrees_with_its_project(folder: Path) -> None:
    manifest = load(folder)
    project_dir = folder / manifest.build.project
    project = tomllib.loads((project_dir / "pyproject.toml").read_text())["project"]
    assert manifest.key == project["name"].lower().replace("_", "-")
    if "version" in project:  # the manifest's version is the single source of truth: the project agrees
        assert project["version"] == manifest.version
    if manifest.start.entry_point:
        group = f"dativo.{manifest.kind}s"
        assert manifest.start.entry_point in project["entry-points"][group]
    assert manifest.supports("1.1.0")
    assert manifest.artefacts == []  # pack fills them in


def test_schema_command_prints_the_manifest_schema(cli: Callable[..., Result]) -> None:
    result = cli("schema", "--manifest")
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert {"name", "version", "kind", "language", "start", "capabilities", "certification", "artefacts"} <= set(
        schema["properties"]
    )
    assert set(schema["required"]) == {"name", "version", "kind", "language", "start"}
    assert {"network", "read_paths", "write_paths", "secrets", "memory_mb"} <= set(
        schema["$defs"]["Capabilities"]["properties"]
    )
    job = json.loads(cli("schema").stdout)  # the job file's schema is still the default
    assert "source" in job["properties"] and "plugins" in job["properties"]


def test_toml_round_trip_and_canonical_bytes_ignore_formatting() -> None:
    manifest = parse(MINIMAL)
    assert manifest.version == "1.0"
    assert parse(manifest.to_toml()) == manifest
    reformatted = parse("# a comment\n" + MINIMAL.replace('"acme-readers"', "'acme-readers'  # the name"))
    assert reformatted.canonical() == manifest.canonical()
    changed = parse(MINIMAL.replace("[start]", 'description = "x"\n[start]'))
    assert changed.digest() != manifest.digest()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace('"reader"', '"readr"'), "kind: must be 'reader' or 'writer'"),
        (lambda t: t.replace('version = "1.0"', 'version = "one"'), "not a PEP 440 version"),
        (lambda t: t.replace('entry_point = "acme_orders"', 'command = ["../../bin/sh"]'), "relative path inside"),
        (lambda t: t.replace("[start]\nentry_point", "[start]\nentry_pont"), "did you mean 'entry_point'"),
        (lambda t: t + '[capabilities]\nnetwork = ["every host"]\n', "neither host:port nor unix:"),
        (lambda t: t + "[capabilities]\nsecrets = ['not a name']\n", "capabilities.secrets"),
        (lambda t: t.replace("kind =", "api = 'one or two'\nkind ="), "not a version range"),
    ],
)
def test_invalid_manifests_say_what_to_fix(change: Callable[[str], str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(change(MINIMAL), source="dativo-plugin.toml")
    assert message in str(caught.value), str(caught.value)
    assert "dativo schema --manifest" in str(caught.value)


def test_a_missing_manifest_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read .*dativo-plugin.toml"):
        load(tmp_path)


def test_the_model_is_the_schema() -> None:
    assert Manifest.model_json_schema()["additionalProperties"] is False


@pytest.mark.parametrize(("file", "text"), [
    ("Cargo.toml", '[package]\nname = "acme"\nversion = "2.3.4"\n'),
    ("pyproject.toml", '[project]\nname = "acme-readers"\nversion = "2.3.4"\n'),
    ("VERSION", "2.3.4\n"),
])
def test_the_version_can_live_in_the_build_file(tmp_path: Path, file: str, text: str) -> None:
    (tmp_path / file).write_text(text)
    manifest = MINIMAL.replace('version = "1.0"\n', "") + f'[build]\nversion_from = "{file}"\n'
    (tmp_path / "dativo-plugin.toml").write_text(manifest)
    assert load(tmp_path).version == "2.3.4"


@pytest.mark.parametrize(("version_from", "files", "message"), [
    ("Cargo.toml", {"Cargo.toml": '[package]\nname = "acme"\n'}, r"has no \[package\] version"),
    ("VERSION", {}, "cannot read the version from"),
    ("../VERSION", {}, "relative path inside the package"),
    ("VERSION", {"VERSION": "not a version"}, "PEP 440"),
])
def test_a_bad_version_source_says_what_to_fix(tmp_path: Path, version_from: str, files: dict[str, str],
                                               message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    manifest = MINIMAL.replace('version = "1.0"\n', "") + f'[build]\nversion_from = "{version_from}"\n'
    (tmp_path / "dativo-plugin.toml").write_text(manifest)
    with pytest.raises(ConfigError, match=message):
        load(tmp_path)


def test_a_version_in_two_places_is_refused(tmp_path: Path) -> None:
    (tmp_path / "VERSION").write_text("1.0")
    (tmp_path / "dativo-plugin.toml").write_text(MINIMAL + '[build]\nversion_from = "VERSION"\n')
    with pytest.raises(ConfigError, match="both version and build.version_from"):
        load(tmp_path)
