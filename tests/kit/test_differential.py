"""``--against default``: a plugin and the built-in of its connector, row for row, on a real Postgres table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from dativo.kit import UsageError, run_kit
from dativo.kit.differential import compare, table_source
from tests.kit.conftest import BROKEN, ORDERS_ROWS


def test_postgres_python_and_postgres_read_the_same_rows(pg_job: Callable[[str], Path]) -> None:
    report = run_kit("postgres-python", job=pg_job("postgres-python"), against="default")
    assert report.failures == [], [c.line for c in report.failures]
    assert report.level == "certified"
    [diff] = report.differential
    assert diff.identical and diff.differences == 0 and diff.schema is None
    assert diff.rows_plugin == diff.rows_builtin == ORDERS_ROWS and diff.keyed_by == ["id"]
    assert "identical to the built-in postgres (matched by id)" in report.check("differential").reason
    assert [(p.label, p.implementation) for p in report.perf] == [("plugin", "postgres-python"),
                                                                  ("built-in", "postgres")]
    assert all(p.rows == ORDERS_ROWS and p.peak_rss_mb > 0 for p in report.perf)
    # the reader checks ran on the real table: incremental on its first cursor candidate, the DSN faked
    assert report.check("incremental-resume").status == "pass"
    assert report.check("secrets").reason.startswith("a fake secret in connection.dsn")


def test_a_reader_that_rounds_a_column_is_caught(pg_job: Callable[[str], Path]) -> None:
    implementation = f"{BROKEN}:RoundingPostgresReader"
    report = run_kit(implementation, job=pg_job(implementation), against="default", perf=False)
    check = report.check("differential")
    assert check.status == "fail" and check.line.startswith("differential: ")
    assert "column(s) amount" in check.reason
    assert "plugin amount=Decimal('3.00') vs built-in amount=Decimal('3.17')" in check.reason
    [diff] = report.differential
    assert diff.schema is None  # same types: only the values tell
    assert diff.differing == ORDERS_ROWS - sum(1 for i in range(1, ORDERS_ROWS + 1) if (i * 317) % 100 == 0)
    assert diff.samples[0].columns == ["amount"]
    assert report.level == "compatible" and report.exit_code == 3  # every contract check passes


def test_against_needs_a_job_and_a_builtin(workdir: Path) -> None:
    with pytest.raises(UsageError, match="give --job"):
        run_kit("csv", options={"path": "data/orders.csv"}, against="default")
    job = workdir / "job.yaml"
    job.write_text("version: 1\nname: j\nsource: {type: tickets, reader: {type: custom, implementation: "
                   f"'{BROKEN}:HonestReader'}}}}\ntarget: {{type: parquet, path: out}}\n")
    with pytest.raises(UsageError, match="'tickets' has no built-in reader"):
        run_kit(f"{BROKEN}:HonestReader", job=job, against="default")


def test_whole_rows_are_compared_as_multisets_without_a_key() -> None:
    ours = pa.table({"a": [1, 2, 2, 3], "b": ["x", "y", "y", "z"]})
    theirs = pa.table({"a": [3, 2, 1, 1], "b": ["z", "y", "x", "x"]})
    diff = compare("t", table_source(ours), table_source(theirs), key=[])
    assert (diff.only_plugin, diff.only_builtin) == (1, 1)  # one (2, y) too many, one (1, x) too few
    assert {s.plugin["a"] if s.plugin else s.builtin["a"] for s in diff.samples} == {"2", "1"}
    same = compare("t", table_source(ours), table_source(ours.take([3, 1, 0, 2])), key=[])
    assert same.identical


def test_types_are_compared_exactly() -> None:
    ours = pa.table({"id": pa.array([1, 2], pa.int32())})
    theirs = pa.table({"id": pa.array([1, 2], pa.int64())})
    diff = compare("t", table_source(ours), table_source(theirs), key=["id"])
    assert diff.schema == "column 'id' should be int64 but is int32" and not diff.identical


@pytest.mark.parametrize("implementation", ["rust_postgres", "go_postgres"])
def test_the_native_postgres_readers_are_drop_in_replacements(
    pg_job: Callable[[str], Path], implementation: str
) -> None:
    report = run_kit(implementation, job=pg_job(implementation), against="default", perf=False)
    [diff] = report.differential
    assert diff.identical and diff.differences == 0 and diff.schema is None, diff
    assert diff.rows_plugin == diff.rows_builtin == ORDERS_ROWS and diff.keyed_by == ["id"]
    assert report.failures == [], [c.line for c in report.failures]
    assert report.level == "certified"
