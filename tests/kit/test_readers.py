"""The reader checks: built-in and correct readers pass, each broken reader fails the check it breaks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from dativo.kit import run_kit
from dativo.kit.runner import CHECKS
from tests.conftest import REPO
from tests.kit.conftest import BROKEN


def test_the_builtin_csv_reader_is_certified(workdir: Path) -> None:
    report = run_kit("csv", options={"path": "data/orders.csv"}, perf=False)
    assert report.failures == [], [c.line for c in report.failures]
    assert report.level == "certified"  # it *is* the built-in: there is nothing to diff it with
    assert report.exit_code == 0
    ran = [c.name for c in report.checks]
    assert [n for n in CHECKS["reader"] if n in ran] == [n for n in ran if n in CHECKS["reader"]]
    assert report.check("check-broken-config").status == "pass"  # a path that cannot exist: ConfigError
    assert report.check("read-deterministic").reason.startswith("3 row(s)")
    assert report.check("incremental-future").status == "skip"  # csv offers no cursor candidate
    assert report.check("differential").status == "skip" and not report.check("differential").blocks


def test_a_correct_custom_reader_passes_every_check() -> None:
    report = run_kit(f"{BROKEN}:HonestReader", perf=False)
    assert report.level == "certified", [c.line for c in report.checks]
    future, resumed = report.check("incremental-future"), report.check("incremental-resume")
    assert future.status == resumed.status == "pass"
    assert "exactly the 20 newer row(s)" in resumed.reason
    assert report.check("cancel").status == "pass"


@pytest.mark.parametrize(
    ("plugin", "options", "check", "says"),
    [
        ("ShiftingSplitsReader", None, "plan-deterministic", "twice gave different splits"),
        ("LyingSchemaReader", None, "schema", "column 'id' should be int64 but is int32"),
        ("StatelessReader", None, "incremental-future", "the reader ignores its state"),
        ("StatelessReader", None, "incremental-resume", "20 row(s) read that are not newer"),
        ("LeakyReader", {"token": "letmein"}, "secrets", "appears in the error of check()"),
    ],
)
def test_a_broken_reader_fails_the_check_it_breaks(plugin: str, options: dict | None, check: str, says: str) -> None:
    report = run_kit(f"{BROKEN}:{plugin}", options=options, perf=False)
    found = report.check(check)
    assert found.status == "fail", found.line
    assert found.line.startswith(f"{check}: ") and says in found.line, found.line
    assert report.level is None and report.exit_code == 3
    assert "dativoKitFake" not in report.to_json()  # the planted secret is masked in the report itself


def test_a_plugin_for_another_api_fails_to_load() -> None:
    report = run_kit("tests.fixtures.plugins:BadApi", perf=False)
    assert [c.name for c in report.checks] == ["load"] and report.exit_code == 3
    assert "supports Dativo API >=7,<8, but this Dativo provides API" in report.check("load").line


def test_an_unknown_option_that_is_accepted_fails(workdir: Path) -> None:
    report = run_kit("tests.fixtures.plugins:GoodReader", perf=False)  # Config without extra="forbid"
    assert report.check("options-enforced").status == "fail"
    assert "extra='forbid'" in report.check("options-enforced").reason


def test_an_out_of_process_reader_is_resolved_by_the_host() -> None:
    command = {"command": [sys.executable, "-m", "dativo", "plugin", "serve", f"{BROKEN}:HonestReader"],
               "env": {"PYTHONPATH": str(REPO)}}
    report = run_kit(json.dumps(command), perf=False)
    assert report.plugin["origin"] == "process"
    assert report.level == "certified", [c.line for c in report.checks]
    assert report.check("cancel").status == "pass"  # the Flight stream's thread ends with the stream
