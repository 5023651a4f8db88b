"""Tests never vanish under CI: a missing tool or server fails the tests that need it ($CI set), skips them
elsewhere; the sandbox's fail-closed tests run on every machine, bubblewrap or not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.conftest import REPO, subprocess_env

FAIL_CLOSED = [  # need no working sandbox: they check how Dativo refuses to run without one
    "test_no_bubblewrap_fails_closed_even_with_fallback",
    "test_a_bwrap_that_cannot_create_namespaces_fails_closed",
    "test_native_libraries_are_refused",
]
NEEDS_A_SANDBOX = "test_host_files_outside_read_paths_are_invisible"


def outcomes(tests: list[str], *, ci: bool, tmp_path: Path, **env: str) -> dict[str, str]:
    """``test name -> passed | failed | skipped | error`` of a pytest session over ``tests``."""
    variables = subprocess_env(**env)
    variables.pop("CI", None)
    if ci:
        variables["CI"] = "true"
    report = tmp_path / f"report-{ci}.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *tests],
        cwd=REPO, env=variables, capture_output=True, text=True, timeout=600, check=False,
    )
    assert report.exists(), done.stdout + done.stderr
    result = {}
    for case in ElementTree.parse(report).iter("testcase"):
        tags = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        result[case.get("name", "")] = tags[0] if tags else "passed"
    return result


@pytest.fixture
def broken_bwrap(tmp_path: Path) -> dict[str, str]:
    """``PATH`` with a bwrap first that cannot create namespaces (as in a locked-down container)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    fake = folder / "bwrap"
    fake.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'bubblewrap 0.8.0' && exit 0\n"
                    "echo 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.mark.parametrize("ci", [False, True], ids=["elsewhere", "under CI"])
def test_without_a_working_sandbox(broken_bwrap: dict[str, str], tmp_path: Path, ci: bool) -> None:
    tests = [f"tests/plugins/test_sandbox.py::{name}" for name in [*FAIL_CLOSED, NEEDS_A_SANDBOX]]
    result = outcomes(tests, ci=ci, tmp_path=tmp_path, **broken_bwrap)
    assert {name: result.get(name) for name in FAIL_CLOSED} == dict.fromkeys(FAIL_CLOSED, "passed"), result
    assert result.get(NEEDS_A_SANDBOX) == ("error" if ci else "skipped"), result


@pytest.mark.parametrize("ci", [False, True], ids=["elsewhere", "under CI"])
def test_without_pgserver(tmp_path: Path, ci: bool) -> None:
    """``pgserver`` is not importable and no DATIVO_TEST_PG_DSN is set: the Postgres tests cannot run."""
    missing = tmp_path / "site"
    (missing / "pgserver").mkdir(parents=True)
    (missing / "pgserver" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'pgserver'\", name='pgserver')\n"
    )
    test = "tests/pipelines/test_postgres_to_iceberg.py::test_a_missing_table_is_a_config_error"
    env = {"PYTHONPATH": os.pathsep.join([str(missing), str(REPO)]), "DATIVO_TEST_PG_DSN": ""}
    result = outcomes([test], ci=ci, tmp_path=tmp_path, **env)
    assert result == {"test_a_missing_table_is_a_config_error": "error" if ci else "skipped"}
