"""``dativo plugin new`` (names, folders, what it writes) and ``dativo sdk path``, building nothing."""

from __future__ import annotations

import os
import re
import stat
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from dativo.errors import ConfigError
from dativo.market.manifest import load as load_manifest
from dativo.scaffold import KINDS, LANGUAGES, check_name, new_plugin, sdk_path
from dativo.scaffold.project import TEMPLATES
from dativo.scaffold.sdk import go_module, rust_crate
from tests.conftest import REPO, Result
from tests.scaffold.conftest import Installed, tool

COMBINATIONS = [(lang, kind) for lang in LANGUAGES for kind in KINDS]


@pytest.mark.parametrize("name", ["orders", "acme_orders2", "a"])
def test_safe_names_are_accepted(name: str) -> None:
    check_name(name)


@pytest.mark.parametrize(("name", "why"), [
    ("Orders", "safe identifier"), ("9lives", "safe identifier"), ("my-plugin", "safe identifier"),
    ("a" * 41, "safe identifier"), ("trailing_", "safe identifier"), ("two__parts", "safe identifier"),
    ("../evil", "safe identifier"), ("", "safe identifier"), ("class", "taken"), ("json", "taken"),
    ("dativo", "taken"), ("csv", "taken"), ("iceberg", "built-in connector"),
])
def test_unsafe_or_taken_names_are_refused(name: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        check_name(name)


@pytest.mark.parametrize(("language", "kind"), COMBINATIONS)
def test_every_template_renders_completely(tmp_path: Path, language: str, kind: str) -> None:
    project = new_plugin("orders_api", language, kind, tmp_path / "orders_api")
    assert project.path == tmp_path / "orders_api"
    files = {str(f) for f in project.files}
    assert {"README.md", "job.yaml", "ci.sh", ".gitignore"} <= files
    for relative in project.files:
        path = project.path / relative
        assert path.is_file()
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\{\{\s*[a-z][a-z0-9_]*\s*\}\}", text), f"{relative} has a placeholder left"
        assert "_name_" not in str(relative)
    assert os.stat(project.path / "ci.sh").st_mode & stat.S_IXUSR
    assert not any(name.startswith(".orders_api-") for name in os.listdir(tmp_path))  # no staging left behind


def test_each_language_has_one_version_in_its_build_file(tmp_path: Path) -> None:
    """The version is written once, where the language's build reads it, and the plugin reports that one."""
    py = new_plugin("p1", "python", "reader", tmp_path / "p1").path
    assert tomllib.loads((py / "pyproject.toml").read_text())["project"]["dynamic"] == ["version"]
    assert load_manifest(py).version == "0.1.0"  # the manifest holds it; hatchling reads it from there
    assert 'metadata.version("p1")' in (py / "src" / "p1" / "reader.py").read_text()
    rs = new_plugin("p2", "rust", "reader", tmp_path / "p2").path
    assert tomllib.loads((rs / "Cargo.toml").read_text())["package"]["version"] == "0.1.0"
    assert tomllib.loads((rs / "pyproject.toml").read_text())["project"]["dynamic"] == ["version"]
    go = new_plugin("p3", "go", "reader", tmp_path / "p3").path
    assert (go / "VERSION").read_text().strip() == "0.1.0"
    assert "//go:embed VERSION" in (go / "version.go").read_text()
    cpp = new_plugin("p4", "cpp", "reader", tmp_path / "p4").path
    assert load_manifest(cpp).version == "0.1.0"  # the manifest holds it; CMakeLists.txt reads it from there
    assert 'file(STRINGS "${CMAKE_CURRENT_SOURCE_DIR}/dativo-plugin.toml"' in (cpp / "CMakeLists.txt").read_text()
    for project in (py, rs, go, cpp):
        texts = [p.read_text() for p in project.rglob("*") if p.is_file() and p.name != "Cargo.lock"]
        everything = "\n".join(texts)
        versions = re.findall(r"(?<![\w.=])0\.1\.0(?![\w.])", everything.replace("(Dativo 0.1.0)", ""))
        assert len(versions) == 1, project  # the README's "(Dativo 0.1.0)" is Dativo's version


@pytest.mark.parametrize("kind", ["reader", "writer"])
def test_a_python_project_carries_a_valid_manifest(tmp_path: Path, kind: str) -> None:
    project = new_plugin("orders_api", "python", kind, tmp_path / "orders_api").path
    manifest = load_manifest(project)
    assert (manifest.name, manifest.kind, manifest.language) == ("orders_api", kind, "python")
    assert manifest.start.entry_point == "orders_api"
    version = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["hatch"]["version"]
    assert version["path"] == "dativo-plugin.toml"
    assert re.search(version["pattern"], (project / "dativo-plugin.toml").read_text())["version"] == "0.1.0"


@pytest.mark.parametrize(("language", "build_file"), [("rust", "Cargo.toml"), ("go", "VERSION")])
@pytest.mark.parametrize("kind", ["reader", "writer"])
def test_a_rust_or_go_manifest_reads_the_one_version_from_the_build_file(
        tmp_path: Path, language: str, build_file: str, kind: str) -> None:
    project = new_plugin("orders_api", language, kind, tmp_path / "orders_api").path
    text = (project / "dativo-plugin.toml").read_text()
    assert "\nversion =" not in text and f'version_from = "{build_file}"' in text  # written once, in the build
    manifest = load_manifest(project)
    assert (manifest.name, manifest.kind, manifest.language, manifest.version) == ("orders_api", kind, language,
                                                                                   "0.1.0")
    build = project / build_file
    build.write_text(build.read_text().replace("0.1.0", "0.2.0rc1", 1))
    assert load_manifest(project).version == "0.2.0rc1"


@pytest.mark.parametrize("kind", ["reader", "writer"])
def test_a_cpp_project_carries_a_valid_manifest_and_no_json_parser_of_its_own(tmp_path: Path, kind: str) -> None:
    project = new_plugin("orders_api", "cpp", kind, tmp_path / "orders_api").path
    manifest = load_manifest(project)
    assert (manifest.name, manifest.kind, manifest.language) == ("orders_api", kind, "cpp")
    assert manifest.start.library == "build/liborders_api.so"
    assert not (project / "src" / "json.hpp").exists()
    source = (project / "src" / "orders_api.cpp").read_text()
    assert '#include "dativo_plugin.hpp"' in source and "dativo_plugin_config_schema" in source
    assert "ArrowArrayView" in source if kind == "writer" else "ArrowArrayAppendInt" in source
    assert "nanoarrow/nanoarrow.c" in (project / "CMakeLists.txt").read_text()


def test_projects_point_at_the_sdks_of_this_installation(tmp_path: Path) -> None:
    go = new_plugin("g", "go", "reader", tmp_path / "g").path
    module = go_module(sdk_path("go"))
    assert module.path == "github.com/dativo-io/dativo/sdk/go"
    assert f"replace {module.path} => {sdk_path('go')}" in (go / "go.mod").read_text()
    assert (go / "go.sum").read_bytes() == (sdk_path("go") / "go.sum").read_bytes()
    assert f'import dativo "{module.path}"' in (go / "main.go").read_text()
    rs = new_plugin("r", "rust", "reader", tmp_path / "r").path
    cargo = tomllib.loads((rs / "Cargo.toml").read_text())
    crate = rust_crate(sdk_path("rust"))
    assert cargo["dependencies"][crate.name]["path"] == str(sdk_path("rust"))
    assert cargo["dependencies"]["pyo3"]["version"] == crate.dependencies["pyo3"]
    cpp = new_plugin("c", "cpp", "reader", tmp_path / "c").path
    assert f'set(DATIVO_SDK_DIR "{sdk_path("cpp")}"' in (cpp / "CMakeLists.txt").read_text()


def test_an_existing_folder_must_be_empty(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert new_plugin("x", "python", "reader", tmp_path / "empty").path == tmp_path / "empty"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an empty folder"):
        new_plugin("x", "python", "reader", tmp_path / "full")
    assert os.listdir(tmp_path / "full") == ["keep.txt"]


def test_unknown_language_and_kind_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--lang 'java'"):
        new_plugin("x", "java", "reader", tmp_path / "x")
    with pytest.raises(ConfigError, match="--kind 'sink'"):
        new_plugin("x", "python", "sink", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_templates_are_not_python_modules_of_dativo() -> None:
    """Every template file ends in .tmpl: nothing under scaffold/templates is imported or checked as code."""
    files = [p for p in TEMPLATES.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert files and all(p.suffix == ".tmpl" for p in files)


def test_the_cli_creates_a_project_and_says_what_next(cli: Callable[..., Result], tmp_path: Path) -> None:
    folder = str(tmp_path / "o")
    result = cli("plugin", "new", "orders_api", "--lang", "go", "--kind", "writer", "--dir", folder)
    assert result.exit_code == 0, result.output
    assert "Created the go writer orders_api" in result.stdout and "./ci.sh" in result.stdout
    assert (tmp_path / "o" / "writer.go").is_file()
    again = cli("plugin", "new", "orders_api", "--lang", "go", "--dir", str(tmp_path / "o"))
    assert again.exit_code == 2 and "not an empty folder" in again.stderr
    bad = cli("plugin", "new", "Bad-Name", "--lang", "python", "--dir", str(tmp_path / "b"))
    assert bad.exit_code == 2 and "not a safe identifier" in bad.stderr


def test_the_cli_prints_the_checkouts_sdks_from_an_editable_install(cli: Callable[..., Result]) -> None:
    for language, marker in (("go", "go.mod"), ("rust", "Cargo.toml"), ("cpp", "dativo_plugin.h")):
        result = cli("sdk", "path", language)
        assert result.exit_code == 0, result.output
        assert Path(result.stdout.strip()) == REPO / "sdk" / language
        assert (Path(result.stdout.strip()) / marker).is_file()
    wrong = cli("sdk", "path", "java")
    assert wrong.exit_code == 2 and "go, rust, cpp" in wrong.stderr


def test_the_wheel_carries_the_sdks_without_build_outputs(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    for language, marker in (("go", "go.mod"), ("go", "go.sum"), ("rust", "Cargo.toml"),
                             ("rust", "src/lib.rs"), ("cpp", "dativo_plugin.h")):
        assert f"dativo/sdk/{language}/{marker}" in names
    assert not [n for n in names if "/target/" in n or "__pycache__" in n or n.endswith((".so", ".pyc"))]
    assert any(n.startswith("dativo/scaffold/templates/go-reader/") for n in names)
    sdk_files = {n.removeprefix("dativo/") for n in names if n.startswith("dativo/sdk/")}
    in_checkout = {str(p.relative_to(REPO)) for p in (REPO / "sdk").rglob("*")
                   if p.is_file() and "target" not in p.relative_to(REPO).parts}
    assert sdk_files == in_checkout


def test_the_installed_cli_prints_the_sdks_inside_the_package(installed: Installed, tmp_path: Path) -> None:
    site = next((installed.venv / "lib").glob("python3*/site-packages"))
    for language in ("go", "rust", "cpp"):
        printed = installed.dativo("sdk", "path", language, cwd=tmp_path).stdout.strip()
        assert Path(printed) == site / "dativo" / "sdk" / language


@pytest.mark.parametrize("ci", ["", "true"], ids=["elsewhere", "under CI"])
def test_a_missing_toolchain_skips_elsewhere_and_fails_under_ci(
    ci: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    monkeypatch.setenv("CI", ci)
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(outcome, match="cmake is not installed"):
        tool("cmake")
