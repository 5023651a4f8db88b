"""``--sandbox``: the sandboxed subset of the checks, in a real bubblewrap sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from dativo.kit import run_kit
from dativo.plugins import bwrap
from tests.fixtures.required import unavailable


@pytest.fixture(autouse=True)
def _bubblewrap() -> None:
    status = bwrap.probe()
    if not status.ok:
        unavailable(f"no working bubblewrap: {status.reason}")


def test_the_csv_reader_is_sandbox_safe(workdir: Path) -> None:
    job = workdir / "job.yaml"  # the sandbox starts in its own folder: the path is absolute
    job.write_text(f"version: 1\nname: orders\nsource: {{type: csv, path: {workdir / 'data' / 'orders.csv'}}}\n"
                   "target: {type: parquet, path: out}\n")
    report = run_kit("csv", job=job, sandbox=True, against="default", perf=False)
    assert report.failures == [], [c.line for c in report.failures]
    assert report.level == "sandbox-safe"
    assert [c.name for c in report.checks if c.group == "sandbox"] == [
        "sandbox-load", "sandbox-discover", "sandbox-plan", "sandbox-read"]
    assert str(workdir / "data" / "orders.csv") in report.check("sandbox-load").reason  # bound read-only
    assert report.check("sandbox-read").reason == "the same 3 row(s) as unsandboxed"
    assert any("subset" in note for note in report.notes)


def test_the_parquet_writer_commits_from_the_sandbox(tmp_path: Path) -> None:
    report = run_kit("parquet", kind="writer", sandbox=True, perf=False, work_dir=tmp_path)
    assert report.check("sandbox-write-commit").status == "pass", report.check("sandbox-write-commit").line
    assert report.level == "sandbox-safe"
