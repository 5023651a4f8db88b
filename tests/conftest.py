"""Shared fixtures: real servers come from the plugin modules in tests/fixtures."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from dativo import secrets
from dativo.cli import app

REPO = Path(__file__).resolve().parent.parent
"""The checkout: a ``dativo`` started as a subprocess finds the tests' plugins (``tests.…``) from here."""


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a ``dativo`` process a test starts: this one's, with the tests importable."""
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.s3", "tests.fixtures.softhsm"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs_no_sandbox: a fail-closed sandbox test that runs without a working bubblewrap"
    )


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh current directory with a small orders CSV in it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "orders.csv").write_text(
        "id,customer,amount,updated_at\n"
        "1,Ann,10.50,2024-01-01T00:00:00Z\n"
        "2,Bø 😀,20.00,2024-01-02T00:00:00Z\n"
        "3,,,2024-01-02T00:00:00Z\n",
        encoding="utf-8",
    )
    return tmp_path


def source_csv(workdir: Path, *columns: str, rows: int = 3) -> None:
    """Make ``data/orders.csv`` hold ``rows`` rows of ``columns``: the columns a custom reader produces, so
    the built-in csv reader may replace it (a fallback must feed the same columns)."""
    lines = [",".join(columns)] + [",".join(f"{c}{i}" if c not in ("id",) else str(i) for c in columns)
                                   for i in range(1, rows + 1)]
    (workdir / "data" / "orders.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def write_job(workdir: Path) -> Callable[[str], Path]:
    """Write a job YAML (dedented) into the work directory and return its path."""

    def write(text: str, name: str = "job.yaml") -> Path:
        path = workdir / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


class Result:
    """What a CLI invocation did."""

    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        self.output = stdout + stderr


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Run the dativo CLI in-process, as a user would from a shell."""
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        result = runner.invoke(app, list(args), env=env, catch_exceptions=False)
        return Result(result.exit_code, result.stdout, result.stderr)

    return invoke


def read_parquet_dir(path: Path) -> pa.Table:
    """What any Parquet reader sees in a target directory."""
    if not path.exists() or not any(p.suffix == ".parquet" for p in path.rglob("*") if "_dativo" not in p.parts):
        return pa.table({})
    return pq.read_table(path)


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """Secrets a test registers (some deliberately ordinary words) must not mask other tests' output."""
    with secrets._lock:
        saved = set(secrets._secrets)
    yield
    with secrets._lock:
        secrets._secrets.clear()
        secrets._secrets.update(saved)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see a developer's DATIVO_* settings other than the test server ones."""
    for key in list(os.environ):
        if key.startswith("DATIVO_") and not key.startswith("DATIVO_TEST_"):
            monkeypatch.delenv(key, raising=False)
