"""``dativo plugin test``: the table, the report files, ``--json`` and the exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Result
from tests.kit.conftest import BROKEN


def test_a_passing_reader_prints_its_level_and_writes_the_report(workdir: Path, cli: Callable[..., Result]) -> None:
    result = cli("plugin", "test", "csv", "--options", "{path: data/orders.csv}", "--report", "kit")
    assert result.exit_code == 0, result.output
    assert "plan-deterministic" in result.stdout and "level: certified" in result.stdout
    data = json.loads((workdir / "kit" / "report.json").read_text())
    assert data["level"] == "certified" and data["plugin"]["implementation"] == "csv"
    assert {c["name"]: c["status"] for c in data["checks"]}["read-deterministic"] == "pass"
    assert data["performance"][0]["rows"] == 3
    markdown = (workdir / "kit" / "report.md").read_text()
    assert "**Level: certified**" in markdown and "| read-deterministic | contract | ✅ pass |" in markdown


def test_json_and_a_failing_check(workdir: Path, cli: Callable[..., Result]) -> None:
    result = cli("plugin", "test", f"{BROKEN}:ShiftingSplitsReader", "--json", "--no-perf")
    assert result.exit_code == 3, result.output
    data = json.loads(result.stdout)
    assert data["level"] is None and data["failed"] == 1
    failed = [c for c in data["checks"] if c["status"] == "fail"]
    assert [c["name"] for c in failed] == ["plan-deterministic"]
    assert (workdir / "dativo-kit-report" / "report.json").exists()  # the default folder


def test_a_writer_by_kind(workdir: Path, cli: Callable[..., Result]) -> None:
    result = cli("plugin", "test", f"{BROKEN}:LitteringWriter", "--kind", "writer", "--no-perf")
    assert result.exit_code == 3, result.output
    assert "level: compatible" in result.stdout and "still exist after abort()" in result.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["csv", "--against", "default"], "give --job"),
        (["csv", "--against", "mine"], "--against accepts default"),
        (["no_such_reader"], "no reader named 'no_such_reader'"),
        (["csv", "--options", "[1, 2]"], "--options must be a mapping"),
        (["{bogus: 1}"], "IMPL is invalid"),
        (["csv", "--options", "{path: data/orders.csv, delimiter: ';;'}"], "delimiter"),
    ],
)
def test_usage_errors_exit_with_2(workdir: Path, cli: Callable[..., Result], args: list[str], says: str) -> None:
    result = cli("plugin", "test", *args)
    assert result.exit_code == 2, result.output
    assert says in result.stderr, result.stderr
