"""The pytest plugin, as an author uses it: one item per check, and the ``dativo_kit`` fixture."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import subprocess_env
from tests.kit.conftest import BROKEN


def test_a_check_per_item_and_the_fixture(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text(textwrap.dedent(f"""\
        def test_my_reader_is_compatible(dativo_kit):
            report = dativo_kit("{BROKEN}:HonestReader", perf=False)
            report.assert_level("certified")
            assert report.check("plan-deterministic").status == "pass"
        """))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "dativo.kit.pytest_plugin", "-p", "no:cacheprovider", "-rfs",
         "--dativo-impl", f"{BROKEN}:ShiftingSplitsReader", "--dativo-kind", "reader", "--dativo-report", "kit",
         "test_mine.py"],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=120,
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "2 failed" in out and "test_my_reader_is_compatible PASSED" not in out  # -q off: see the summary
    assert f"FAILED dativo-kit[{BROKEN}:ShiftingSplitsReader]::plan-deterministic" in out
    assert f"FAILED dativo-kit[{BROKEN}:ShiftingSplitsReader]::level" in out
    assert "plan-deterministic: planning dataset 'dativo_kit' twice gave different splits" in out
    assert "test_mine.py ." in out  # the author's own test, with the fixture, passed
    assert (tmp_path / "kit" / "report.md").exists()
