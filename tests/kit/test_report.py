"""Levels, and the report as JSON and Markdown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dativo.kit.checks import Check, Checklist, Failed, Skipped
from dativo.kit.report import KitReport, level_of


def checks(*extra: Check) -> list[Check]:
    return [Check("load", "contract", "pass"), Check("discover", "contract", "pass"),
            Check("incremental-future", "contract", "skip"), Check("cancel", "fault", "pass"), *extra]


def test_the_levels() -> None:
    assert level_of(checks()) == "certified"  # nothing to diff with, no sandbox asked for
    assert level_of(checks(Check("differential", "differential", "skip", blocks=True))) == "compatible"
    assert level_of(checks(Check("abort", "fault", "fail"))) == "compatible"
    assert level_of(checks(Check("sandbox-read", "sandbox", "pass"))) == "sandbox-safe"
    assert level_of(checks(Check("sandbox-read", "sandbox", "fail"))) == "certified"
    assert level_of(checks(Check("secrets", "contract", "fail"))) is None
    assert level_of([Check("load", "contract", "fail")]) is None


def test_a_checklist_names_the_check_in_every_failure() -> None:
    listed = Checklist(secret="s3cr3tFAKE")
    with listed.check("a"):
        raise Failed("the token s3cr3tFAKE\nleaked")
    with listed.check("b"):
        raise ValueError("boom")
    with listed.check("c"):
        raise Skipped("not here", blocks=True)
    with listed.check("d") as out:
        out.reason = "fine"
    a, b, c, d = listed.checks
    assert a.line == "a: the token *** leaked"  # one line, the planted secret masked
    assert b.status == "fail" and "bare ValueError (not a DativoError): boom" in b.reason
    assert (c.status, c.blocks, d.status, d.line) == ("skip", True, "pass", "d [pass]: fine")


def test_the_report_files(tmp_path: Path) -> None:
    report = KitReport(plugin={"implementation": "x|y", "role": "reader"},
                       checks=checks(Check("schema", "contract", "fail", "column 'id' should be int64")))
    json_path, md_path = report.write(tmp_path / "r")
    data = json.loads(json_path.read_text())
    assert data["level"] is None and data["failed"] == 1 and report.exit_code == 3
    text = md_path.read_text()
    assert "# Dativo plugin certification: x\\|y" in text and "| schema | contract | ❌ fail |" in text
    with pytest.raises(AssertionError, match="schema: column 'id' should be int64"):
        report.assert_level("compatible")
    with pytest.raises(KeyError, match="no check named 'nope'"):
        report.check("nope")
