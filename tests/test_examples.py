"""Every example job runs as documented, so the docs never rot."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import Result

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def in_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A work directory holding a copy of examples/, as the README's paths expect."""
    shutil.copytree(EXAMPLES, tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_csv_to_parquet(in_copy: Path, cli: Callable[..., Result]) -> None:
    result = cli("run", "examples/jobs/csv_to_parquet.yaml", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows_written"] == 5
    table = pq.read_table(in_copy / "out" / "orders").sort_by("id")
    assert table.column("customer").to_pylist()[2] == "山田 太郎"
    assert str(table.schema.field("amount").type) == "decimal128(12, 2)"
    assert table.column("amount").null_count == 1

    again = cli("run", "examples/jobs/csv_to_parquet.yaml", "--json")  # overwrite: same content
    assert again.exit_code == 0, again.output
    assert pq.read_table(in_copy / "out" / "orders").num_rows == 5


def test_custom_reader_by_dotted_path(in_copy: Path, cli: Callable[..., Result]) -> None:
    result = cli("run", "examples/jobs/custom_reader.yaml", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["reader"]["implementation"] == "acme_readers:OrdersReader"
    assert report["reader"]["version"] == "1.0.0"
    assert report["fallback_used"] is False
    table = pq.read_table(in_copy / "out" / "acme_orders")
    assert table.num_rows == 200_000
    assert sorted(table.column("id").to_pylist()) == list(range(200_000))


def test_example_plugin_is_an_installed_entry_point(cli: Callable[..., Result]) -> None:
    result = cli("plugins", "list", "--json")
    rows = {(r["role"], r["name"]): r for r in json.loads(result.stdout)}
    assert rows[("reader", "acme_orders")]["origin"] == "entry point"
    assert rows[("reader", "acme_orders")]["status"] == "ok"
