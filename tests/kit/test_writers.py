"""The writer checks: the built-in parquet writer passes, each broken writer fails the check it breaks."""

from __future__ import annotations

from pathlib import Path

import pytest

from dativo.kit import UsageError, run_kit
from tests.kit.conftest import BROKEN


def test_the_builtin_parquet_writer_is_certified(tmp_path: Path) -> None:
    report = run_kit("parquet", kind="writer", work_dir=tmp_path)
    assert report.failures == [], [c.line for c in report.failures]
    assert report.level == "certified"
    assert report.check("write-commit").status == "pass"
    assert "read back: the same 600 row(s)" in report.check("write-commit").reason
    assert "no duplicate row" in report.check("idempotent-commit").reason
    assert "refused with SchemaMismatch" in report.check("schema-evolution").reason
    assert report.check("check-broken-config").reason.startswith("check() refused it with ConnectionFailed")
    assert [line.what for line in report.perf] == ["write"]  # it is the built-in: no line beside it
    assert not any(p.name.startswith("dativo-kit-") for p in tmp_path.iterdir())  # the kit cleans up


@pytest.mark.parametrize(
    ("plugin", "check", "says", "level"),
    [
        ("ForgetfulWriter", "idempotent-commit", "a second time returned no_op=False; the target now holds 1,200 "
         "rows for 600", None),
        ("LitteringWriter", "abort", "still exist after abort()", "compatible"),
    ],
)
def test_a_broken_writer_fails_the_check_it_breaks(plugin: str, check: str, says: str, level: str | None) -> None:
    report = run_kit(f"{BROKEN}:{plugin}", kind="writer", perf=False)
    found = report.check(check)
    assert found.status == "fail" and found.line.startswith(f"{check}: ") and says in found.line, found.line
    assert report.level == level and report.exit_code == 3


def test_a_writer_whose_target_the_kit_cannot_tell_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"\{tmp\}"):
        run_kit("tests.fixtures.plugins:MemoryWriter", kind="writer")


def test_text_targets_are_read_back_with_the_kits_types(tmp_path: Path) -> None:
    import json

    import pyarrow as pa
    import pyarrow.csv as pacsv

    from dativo.kit.writers import SCHEMA, rows, visible

    written = rows(1, 20)
    (tmp_path / "run1").mkdir()
    pacsv.write_csv(written.slice(0, 10), tmp_path / "run1" / "part-0.csv")
    lines = [{k: v if v is None or isinstance(v, int | bool | str) else str(v).replace("+00:00", "Z")
              for k, v in row.items()} for row in written.slice(10).to_pylist()]
    (tmp_path / "run1" / "part-1.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    (tmp_path / "_staging").mkdir()
    (tmp_path / "_staging" / "ignored.bin").write_bytes(b"\0")  # a writer's own folder: not what a consumer lists
    held = visible(tmp_path)
    assert held is not None
    assert held.select(SCHEMA.names).cast(SCHEMA).sort_by("id").equals(written.cast(SCHEMA))
    (tmp_path / "run1" / "part-2.orc").write_bytes(b"ORC")
    assert visible(tmp_path) is None  # a format the kit cannot read: not read back, never "0 rows"
    assert visible(tmp_path / "missing").equals(pa.table({}))
