"""Every example job runs as documented, so the docs never rot."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import Result, subprocess_env

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


@pytest.fixture
def demo_dir() -> Iterator[Path]:
    """A scratch folder for ``make demo``'s server, catalog and warehouse (reachable by pgserver's user)."""
    folder = Path(tempfile.mkdtemp(prefix="dativo-demo-"))
    folder.chmod(0o755)  # as root, pgserver runs postgres as the user 'pgserver'
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def demo(folder: Path) -> tuple[str, str]:
    """What ``make demo`` (``examples/demo.py``) prints on stdout and in its log, 200 columns wide."""
    done = subprocess.run([sys.executable, str(EXAMPLES / "demo.py")], capture_output=True, text=True,
                          env=subprocess_env(DATIVO_DEMO_DIR=str(folder), COLUMNS="200"), timeout=600,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, done.stderr


def test_make_demo_twice(demo_dir: Path) -> None:
    first, log = demo(demo_dir)
    assert "(merge, first load): 100,000 rows in 1 new file(s)" in log and "replaced" not in log
    assert "docs/plugins/python.md" in first.splitlines()[-1]  # where to go next
    again, log = demo(demo_dir)
    assert "dataset 'public.customers': no new rows and no new state: nothing committed, table " \
           "shop.customers unchanged" in log
    assert "1 earlier file(s) rewritten without the rows this run updates" in log
    commit = next(line for line in again.splitlines() if line.startswith("│ commit"))
    assert "public.customers: unchanged (no new rows)" in commit and "public.orders → " in commit
    for output in (first, again):
        start = output.index("the first 5 orders by id")
        rows = [line for line in output[start:].splitlines() if line.startswith("│ ")][:5]
        ids = [line.split("│")[1].strip() for line in rows]
        assert ids == ["1", "2", "3", "4", "5"], output[start:]
