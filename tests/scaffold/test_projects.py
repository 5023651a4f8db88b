"""Each generated project, built against the installed Dativo by its own ``ci.sh``, runs a real job.

For every language: a reader and a writer are generated with the installed
``dativo plugin new`` outside any checkout, built and tested by their ``ci.sh`` (pytest for Python and Rust,
``go test``, ctest), then run through ``python -m dativo run job.yaml --json``: the rows arrive, a rerun reads
nothing new, and more source rows are read alone. The conformance kit (``dativo plugin test``) checks each.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from dativo.market.pack import platform_name, platform_tag
from tests.scaffold.conftest import Installed, Project, Projects

pytestmark = pytest.mark.timeout(900)  # a first build on a cold machine compiles pyo3, arrow-rs and arrow-go

READERS = ["python", "rust", "go", "cpp"]
WRITERS = ["python", "rust", "go", "cpp"]
BOTH = [(lang, "reader") for lang in READERS] + [(lang, "writer") for lang in WRITERS]
ROWS = 1000  # the readers' example job
ORDERS = 6  # rows of the writers' data/orders.csv


def ids(params: tuple[str, str]) -> str:
    return "-".join(params)


@pytest.fixture(params=BOTH, ids=ids)
def project(request: pytest.FixtureRequest, projects: Projects) -> Project:
    language, kind = request.param
    return projects.get(language, kind)


def test_ci_builds_it_against_the_installed_sdk_and_tests_it(project: Project, installed: Installed) -> None:
    site = str(next((installed.venv / "lib").glob("python3*/site-packages")) / "dativo" / "sdk")
    path, out = project.path, project.ci_output
    if project.language == "python":
        assert re.search(r"\d+ passed", out) and "failed" not in out, out
    elif project.language == "rust":
        cargo = tomllib.loads((path / "Cargo.toml").read_text())
        assert cargo["dependencies"]["dativo-plugin"]["path"] == f"{site}/rust"
        assert re.search(r"\d+ passed", out) and "failed" not in out, out
    elif project.language == "go":
        assert f"=> {site}/go" in (path / "go.mod").read_text()
        assert re.search(r"^ok\s+example.com/", out, re.M), out
        assert (path / "bin" / project.name).is_file()
    else:
        cache = (path / "build" / "CMakeCache.txt").read_text()
        assert f"DATIVO_SDK_DIR:PATH={site}/cpp" in cache
        assert "100% tests passed" in out, out
        assert (path / "build" / f"lib{project.name}.so").is_file()
        for name in ("dativo_plugin.hpp", "nanoarrow/nanoarrow.c", "nanoarrow/LICENSE.txt", "nanoarrow/NOTICE.txt",
                     "nlohmann/json.hpp", "nlohmann/COPYRIGHT", "README.md"):  # the vendored SDK, with its licenses
            assert (Path(site) / "cpp" / name).is_file(), name
        nm = shutil.which("nm")
        if nm is not None:  # hidden visibility: the C ABI is exported, nanoarrow is not
            symbols = subprocess.run([nm, "-D", "--defined-only", str(path / "build" / f"lib{project.name}.so")],
                                     capture_output=True, text=True, check=True).stdout.split()
            assert any(s.startswith("dativo_") for s in symbols)
            assert not [s for s in symbols if "Nanoarrow" in s or s.startswith("Arrow")], symbols


def test_a_job_runs_with_it_and_a_rerun_reads_nothing_new(project: Project, installed: Installed) -> None:
    first = installed.run_job(project.path)
    side = first[project.kind]
    language = {"cpp": "c++"}.get(project.language, project.language)
    assert (side["language"], side["version"]) == (language, "0.1.0")
    expected = ROWS if project.kind == "reader" else ORDERS
    assert (first["status"], first["rows_read"], first["rows_written"]) == ("succeeded", expected, expected)
    again = installed.run_job(project.path)
    assert (again["status"], again["rows_read"], again["rows_written"]) == ("succeeded", 0, 0)
    dataset = f"{project.name}_example"
    if project.kind == "reader":
        table = pq.read_table(project.path / "out" / project.name)
        assert sorted(table["id"].to_pylist()) == list(range(1, ROWS + 1))
        assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    elif project.language == "python":
        table = pq.read_table(project.path / "out" / dataset)
        assert sorted(table["id"].to_pylist()) == list(range(1, ORDERS + 1))
    else:  # CSV files
        parts = sorted((project.path / "out" / dataset).glob("[0-9]*/*.csv"))
        table = pa.concat_tables([pa_csv.read_csv(p) for p in parts])
        assert sorted(table["id"].to_pylist()) == list(range(1, ORDERS + 1))
        assert not any((project.path / "out" / dataset / "_staging").iterdir())


@pytest.mark.parametrize("language", READERS)
def test_more_source_rows_are_read_alone(language: str, projects: Projects, installed: Installed) -> None:
    project = projects.get(language, "reader")
    job = project.path / "job.yaml"
    more = project.path / "more.yaml"
    more.write_text(job.read_text().replace(f"rows: {ROWS},", "rows: 1500,"), encoding="utf-8")
    installed.run_job(project.path)  # whatever ran before: everything up to row 1000 is committed
    report = installed.run_job(project.path, "more.yaml")
    assert (report["rows_read"], report["rows_written"]) == (500, 500)
    table = pq.read_table(project.path / "out" / project.name)
    assert sorted(table["id"].to_pylist()) == list(range(1, 1501))


def test_the_conformance_kit_passes(project: Project, installed: Installed, tmp_path: Path) -> None:
    pytest.importorskip("dativo.kit", reason="the conformance kit (dativo.kit) is not in this Dativo")
    done = installed.dativo("plugin", "test", project.implementation, "--kind", project.kind,
                            "--job", "job.yaml", "--no-perf", "--json", "--report", str(tmp_path / "report"),
                            cwd=project.path, check=False)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"dativo plugin test printed no JSON report (exit {done.returncode}):\n"
                    f"{done.stdout}\n{done.stderr}")
    failed = {c["name"]: c.get("detail") or c for c in report["checks"] if c["status"] == "fail"}
    assert done.returncode == 0 and not failed, failed
    assert report["level"] == "certified", report["level"]


@pytest.mark.parametrize(("language", "kind"), [("python", "reader"), ("python", "writer"), ("rust", "writer")])
def test_a_project_packs_as_it_is(projects: Projects, installed: Installed, tmp_path: Path, language: str,
                                  kind: str) -> None:
    """The manifest's version is the build's (Python: read by hatch from the manifest; Rust: from Cargo.toml)."""
    project = projects.get(language, kind)
    uv = Path(sys.executable).with_name("uv")  # pack builds with uv (else pip, which a uv-made venv lacks)
    env = {**installed.env, "PATH": f"{uv.parent}{os.pathsep}{installed.env.get('PATH', '')}"}
    done = subprocess.run([installed.python, "-m", "dativo", "plugin", "pack", str(project.path), "--unsigned",
                           "--out", str(tmp_path)], cwd=project.path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    [folder] = tmp_path.iterdir()
    assert folder.name.endswith("-0.1.0") and (folder / "dativo-plugin.toml").is_file()
    packed = tomllib.loads((folder / "dativo-plugin.toml").read_text())
    assert (packed["version"], packed["language"]) == ("0.1.0", language)
    assert "version_from" not in packed.get("build", {})
    [wheel] = [a for a in packed["artefacts"] if a["kind"] == "wheel"]
    assert wheel["platform"] == ("any" if language == "python" else platform_name(platform_tag())), wheel
    assert any(p.suffix == ".whl" and "-0.1.0-" in p.name for p in folder.iterdir())


def test_a_cpp_project_reads_its_version_from_its_manifest(projects: Projects, installed: Installed,
                                                           tmp_path: Path) -> None:
    project = projects.get("cpp", "reader")
    copy = tmp_path / "bumped"
    shutil.copytree(project.path, copy, ignore=shutil.ignore_patterns("build", "out", ".dativo"))
    manifest = copy / "dativo-plugin.toml"
    manifest.write_text(manifest.read_text().replace('version = "0.1.0"', 'version = "0.2.0rc1"'))
    cmake = shutil.which("cmake") or "cmake"
    sdk = next((installed.venv / "lib").glob("python3*/site-packages")) / "dativo" / "sdk" / "cpp"
    for step in ([cmake, "-S", ".", "-B", "build", f"-DDATIVO_SDK_DIR={sdk}"],
                 [cmake, "--build", "build", "--target", project.name, "--parallel", "2"]):
        done = subprocess.run(step, cwd=copy, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
    info = installed.dativo("plugins", "info", f"{{lib: ./build/lib{project.name}.so}}", cwd=copy)
    assert json.loads(info.stdout)["version"] == "0.2.0rc1"


def test_a_cpp_project_says_what_packing_it_needs(projects: Projects, installed: Installed, tmp_path: Path) -> None:
    project = projects.get("cpp", "reader")
    done = installed.dativo("plugin", "pack", str(project.path), "--unsigned", "--out", str(tmp_path),
                            cwd=project.path, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "pyproject.toml does not exist" in done.stderr and "build.project" in done.stderr, done.stderr
    assert not any(tmp_path.iterdir())
