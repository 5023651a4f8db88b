"""The by-hand walkthrough of docs/plugins/rust.md, file for file as the page gives it, built and run.

The files (``Cargo.toml``, ``src/lib.rs``, ``python/counter/__init__.py``, ``pyproject.toml``) and the job are
taken from the page's numbered steps; only the SDK path is pointed at the installed Dativo's, as the page
says to. The reader is built against the installed SDK, listed, and run by the installed ``dativo``.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.scaffold.conftest import Installed, tool

pytestmark = pytest.mark.timeout(900)

GUIDE = REPO / "docs" / "plugins" / "rust.md"
STEP = re.compile(r"^\*\*(\d+)\. (?:`([^`]+)`)?[^\n]*\n(?:(?!^\*\*\d).)*?^```\w*\n(.*?)^```", re.M | re.S)


def steps() -> dict[str, str]:
    """Each numbered step's first code block, by the file it names (``job`` for the job of step 6)."""
    found = {}
    for number, name, code in STEP.findall(GUIDE.read_text(encoding="utf-8")):
        found[name or f"step {number}"] = code
    return found


def test_the_guide_names_every_file_of_the_project() -> None:
    assert {"Cargo.toml", "src/lib.rs", "python/counter/__init__.py", "pyproject.toml"} <= set(steps())


def test_the_rust_walkthrough_builds_and_runs(installed: Installed, tmp_path: Path) -> None:
    uv = tool("uv")
    tool("cargo")
    files = steps()
    sdk = next((installed.venv / "lib").glob("python3*/site-packages")) / "dativo" / "sdk" / "rust"
    project = tmp_path / "counter"
    for name in ("Cargo.toml", "src/lib.rs", "python/counter/__init__.py", "pyproject.toml"):
        text = files[name].replace("/path/to/site-packages/dativo/sdk/rust", str(sdk))
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text, encoding="utf-8")
    done = subprocess.run([uv, "pip", "install", "--quiet", "--python", installed.python, str(project)],
                          env=installed.env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr

    info = installed.dativo("plugins", "info", "count", "--kind", "reader", cwd=tmp_path)
    options = json.loads(info.stdout)["options"]
    assert options["properties"]["rows"]["description"] == "How many numbers to count."
    assert options["properties"]["rows"]["default"] == 1_000_000

    job = tmp_path / "job.yaml"
    job.write_text(files["step 6"], encoding="utf-8")
    report = json.loads(installed.dativo("run", "job.yaml", "--json", cwd=tmp_path).stdout)
    assert (report["status"], report["rows_written"]) == ("succeeded", 1_000_000)
    assert (report["reader"]["language"], report["reader"]["implementation"]) == ("rust", "count")

    job.write_text(files["step 6"].replace("{rows: 1000000}", "{rowz: 10}"), encoding="utf-8")
    refused = installed.dativo("run", "job.yaml", cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "rowz" in refused.stderr and "rows" in refused.stderr, refused.stderr
