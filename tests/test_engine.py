"""The engine: plugins in, parallel splits, one commit, fallback, idempotency and incremental runs."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dativo.config import load_job
from dativo.engine import Engine
from dativo.errors import ConfigError, PluginFailed, SchemaMismatch
from dativo.report import RunReport
from dativo.writers.parquet import MARKER
from tests.conftest import read_parquet_dir

PLUGINS = "tests.fixtures.plugins"


@pytest.fixture
def engine(write_job: Callable[..., Path]) -> Callable[..., Engine]:
    """An Engine for a job text (dedented), via a real job file so messages carry line numbers."""

    def make(text: str, **kwargs: object) -> Engine:
        return Engine(load_job(write_job(text)), **kwargs)  # type: ignore[arg-type]

    return make


def custom(implementation: str, *, options: str = "{}", fallback: str = "fail", extra: str = "") -> str:
    return f"""\
        version: 1
        name: items
        source:
          type: csv
          path: data/orders.csv
          {extra}
          reader: {{type: custom, implementation: "{implementation}", fallback: {fallback}, options: {options}}}
        target: {{type: parquet, path: out/items}}
        """


def markers(target: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(target.glob(f"*/{MARKER}"))]


# --- reading -----------------------------------------------------------------------------------------


def test_parallel_splits_produce_every_row_exactly_once(workdir, engine) -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def on_rows(n: int) -> None:
        with lock:
            seen.append(n)

    job = engine(custom(f"{PLUGINS}:SplitReader", options="{rows: 99, batch_size: 7}", extra="parallelism: 4"),
                 on_rows=on_rows)
    report = job.run()
    ids = read_parquet_dir(workdir / "out" / "items").column("id").to_pylist()
    assert sorted(ids) == [base * 100 + i for base in range(4) for i in range(1, 100)]
    assert (report.rows_read, report.rows_written, report.datasets[0].splits) == (396, 396, 4)
    assert report.datasets[0].files == 4
    assert sum(seen) == 396 and len(seen) == 4 * 15


def test_c_stream_reader(workdir, engine) -> None:
    report = engine(custom(f"{PLUGINS}:CStreamReader")).run()
    assert report.rows_written == 1
    assert read_parquet_dir(workdir / "out" / "items").to_pydict() == {"id": [7], "name": ["seven"]}


def test_undeclared_reader_takes_its_schema_from_the_first_batch(workdir, engine) -> None:
    report = engine(custom(f"{PLUGINS}:UndeclaredReader")).run()
    table = read_parquet_dir(workdir / "out" / "items")
    assert table.schema == pa.schema([("id", pa.int64()), ("name", pa.string())])
    assert table.to_pydict() == {"id": [1, 2], "name": ["a", "b"]}
    assert report.rows_written == 2


def test_empty_reader_commits_an_empty_run(workdir, engine) -> None:
    report = engine(custom(f"{PLUGINS}:EmptyReader")).run()
    assert (report.status, report.rows_read, report.rows_written) == ("succeeded", 0, 0)
    (marker,) = markers(workdir / "out" / "items")
    assert (marker["rows"], marker["files"]) == (0, [])


def test_plugin_gets_its_context(workdir, engine) -> None:
    job = engine(custom(f"{PLUGINS}:ContextProbe", extra="parallelism: 3"), run_id="ctx-run",
                 work_dir=workdir / "scratch")
    job.run()
    rows = read_parquet_dir(workdir / "out" / "items").sort_by("split").to_pylist()
    assert [r["split"] for r in rows] == ["0", "1", "2"]
    assert rows[0] == {
        "job": "items", "run_id": "ctx-run", "plugin": f"{PLUGINS}:ContextProbe", "parallelism": 3,
        "settings": json.dumps({"path": "data/orders.csv"}), "work_dir": str(workdir / "scratch"),
        "memory_bytes": 256 << 20, "batch_bytes": (256 << 20) // 3 // 16,  # the default budget's share
        "dataset": "items", "split": "0",
    }


def test_the_memory_budget_sizes_batches_per_split(workdir, engine) -> None:
    text = custom(f"{PLUGINS}:ContextProbe", extra="parallelism: 2").rstrip() + "\n        memory_mb: 48\n"
    engine(text).run()
    (row, _) = read_parquet_dir(workdir / "out" / "items").to_pylist()
    assert (row["memory_bytes"], row["batch_bytes"]) == (48 << 20, 3 << 19)  # 24 MiB a split, 1.5 MiB batches
    for memory_mb, batch in ((16, 1 << 20), (4096, 8 << 20)):  # the floor and the ceiling
        engine(text.replace("memory_mb: 48", f"memory_mb: {memory_mb}").replace("out/items", f"out/{memory_mb}")).run()
        assert read_parquet_dir(workdir / "out" / str(memory_mb)).to_pylist()[0]["batch_bytes"] == batch


def test_a_memory_budget_below_the_minimum_is_refused(workdir, engine) -> None:
    with pytest.raises(ConfigError, match="memory_mb"):
        engine(custom(f"{PLUGINS}:ContextProbe").rstrip() + "\n        memory_mb: 8\n")


def test_several_datasets_go_to_their_own_folders(workdir, engine) -> None:
    report = engine(custom(f"{PLUGINS}:TwoDatasets").replace("out/items", "\"out/{dataset}\"")).run()
    assert [d.name for d in report.datasets] == ["orders", "customers"]
    assert read_parquet_dir(workdir / "out" / "orders").to_pydict() == {"id": [1, 2, 3]}
    assert read_parquet_dir(workdir / "out" / "customers").to_pydict() == {"name": ["Ann", "Bo"]}
    assert report.rows_written == 5


def test_check_and_discover(workdir, engine) -> None:
    job = engine(custom(f"{PLUGINS}:KeyedCursorReader"))
    assert job.check() == [("source", f"{PLUGINS}:KeyedCursorReader", "ok"), ("target", "parquet", "ok")]
    (dataset,) = job.discover()
    assert (dataset.name, dataset.primary_key, dataset.cursor_candidates) == ("items", ("id",), ("ts",))
    assert not (workdir / "out").exists()


# --- failures ----------------------------------------------------------------------------------------


def test_a_failing_split_stops_the_run_with_its_own_error(workdir, engine) -> None:
    job = engine(custom(f"{PLUGINS}:OneSplitFails", options="{rows: 200, batch_size: 1}", extra="parallelism: 4"))
    with pytest.raises(PluginFailed) as caught:
        job.run()
    error = caught.value
    assert "split '3' failed: RuntimeError: split 3 lost its connection" in str(error)
    assert (error.job, error.plugin, error.role, error.stage) == ("items", f"{PLUGINS}:OneSplitFails", "reader", "read")
    assert read_parquet_dir(workdir / "out" / "items").num_rows == 0
    assert markers(workdir / "out" / "items") == []


def test_schema_mismatch_names_the_column(workdir, engine) -> None:
    with pytest.raises(SchemaMismatch, match="column 'id' should be int64 but is string") as caught:
        engine(custom(f"{PLUGINS}:WrongSchema")).run()
    assert caught.value.exit_code == 3


def test_no_fallback_without_a_builtin_for_the_type(workdir, engine) -> None:
    text = custom(f"{PLUGINS}:RaisingRead", fallback="default").replace("type: csv", "type: acme")
    with pytest.raises(PluginFailed, match="read exploded"):
        engine(text).run()


def test_fallback_discards_what_the_custom_reader_wrote(workdir, engine) -> None:
    (workdir / "data" / "names.csv").write_text("id,name\n1,a\n2,b\n3,c\n")
    text = custom(f"{PLUGINS}:RaisingMidStream", fallback="default").replace("orders.csv", "names.csv")
    report = engine(text, run_id="fb").run()
    assert report.fallback_used and "connection reset mid-stream" in (report.fallback_reason or "")
    assert report.reader and report.reader.implementation == "csv"
    assert any("falling back to the built-in reader" in w for w in report.warnings)
    table = read_parquet_dir(workdir / "out" / "items")
    assert table.column("id").to_pylist() == [1, 2, 3]
    (marker,) = markers(workdir / "out" / "items")
    assert marker["files"] == ["part-0-00000.parquet"]
    assert not (workdir / "out" / "items" / "_dativo" / "staging" / "fb").exists()


def test_no_fallback_to_a_built_in_that_would_write_other_columns(workdir, engine) -> None:
    # the custom reader reads (id, name); the built-in csv reader of orders.csv has other columns
    with pytest.raises(PluginFailed, match="not falling back to the built-in reader csv: its dataset 'items' "
                                           "has columns id, customer, amount, updated_at") as caught:
        engine(custom(f"{PLUGINS}:RaisingMidStream", fallback="default")).run()
    assert "source.reader.fallback: fail" in str(caught.value)
    assert not (workdir / "out" / "items").exists() or not markers(workdir / "out" / "items")


def test_no_fallback_to_a_built_in_that_would_write_another_table(workdir, engine) -> None:
    text = custom(f"{PLUGINS}:NamedDatasetMidStreamFailure", fallback="default")
    with pytest.raises(PluginFailed, match="reads dataset.s. items where the custom reader read orders"):
        engine(text).run()


def test_the_hint_fits_a_connector_without_a_built_in(workdir, engine) -> None:
    text = custom(f"{PLUGINS}:RaisingMidStream", fallback="default").replace("type: csv", "type: acme_api")
    text = text.replace("path: data/orders.csv", "")
    with pytest.raises(PluginFailed) as caught:
        engine(text).run()
    message = str(caught.value)
    assert "'acme_api' has no built-in reader to fall back to" in message
    assert "fallback: default to use the built-in" not in message


@pytest.mark.parametrize(("writer", "falls_back"), [("FailingWriter", True), ("SealedFailingWriter", False)])
def test_a_plugin_can_forbid_fallback(workdir, engine, writer: str, falls_back: bool) -> None:
    text = custom(f"{PLUGINS}:GoodReader").replace(
        "target: {type: parquet, path: out/items}",
        f'target: {{type: parquet, path: out/items, writer: {{type: custom, implementation: "{PLUGINS}:{writer}", '
        "fallback: default}}",
    )
    if falls_back:
        assert engine(text).run().fallback_used
        return
    with pytest.raises(PluginFailed, match="disk quota exceeded"):
        engine(text).run()
    assert not (workdir / "out" / "items").exists() or not markers(workdir / "out" / "items")


def test_an_out_of_process_reader_starts_while_the_writer_loads(workdir, engine) -> None:
    from tests.plugins.fixtures_flight import served

    command = json.dumps(served("tests.plugins.fixtures_flight:Numbers", start_timeout_s=30))
    text = f"""\
        version: 1
        name: items
        source: {{type: numbers, reader: {{type: custom, implementation: {command}, fallback: fail}}}}
        target: {{type: parquet, path: out/items, writer: {{type: custom, fallback: fail,
                  implementation: "{PLUGINS}:WaitsForThePluginProcess"}}}}
        """
    report = engine(text).run()
    assert report.rows_written == 6 and report.reader.origin == "process"


def test_fallback_is_logged_as_a_warning(workdir, engine, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="dativo"):
        engine(custom(f"{PLUGINS}:RaisingCheck", fallback="default")).run()
    (record,) = [r for r in caplog.records if r.name == "dativo"]
    assert record.levelno == logging.WARNING
    assert "custom reader failed during check" in record.getMessage()


def test_incremental_cursor_must_be_a_column(workdir, engine) -> None:
    text = custom(f"{PLUGINS}:KeyedCursorReader", extra="incremental: {cursor: updated}")
    with pytest.raises(ConfigError) as caught:
        engine(text).run()
    assert "source.incremental.cursor 'updated' is not a column of dataset 'items'" in str(caught.value)
    assert "Use one of: ts;" in str(caught.value)
    assert caught.value.job == "items"


# --- idempotency -------------------------------------------------------------------------------------


def test_rerun_of_a_committed_run_is_a_no_op(workdir, engine) -> None:
    text = custom(f"{PLUGINS}:GoodReader")
    first = engine(text, run_id="run-1").run()
    second = engine(text, run_id="run-1").run()
    assert (first.datasets[0].no_op, second.datasets[0].no_op) == (False, True)
    assert second.datasets[0].commit_id == first.datasets[0].commit_id == "000001-run-1"
    assert (second.rows_written, second.bytes_written) == (0, 0)
    assert read_parquet_dir(workdir / "out" / "items").num_rows == 5
    third = engine(text, run_id="run-2").run()
    assert third.commit_id == "000002-run-2"
    assert read_parquet_dir(workdir / "out" / "items").num_rows == 10


# --- incremental -------------------------------------------------------------------------------------


INCREMENTAL = """\
    version: 1
    name: orders
    source:
      type: csv
      path: data/orders.csv
      incremental: {cursor: updated_at}
    target: {type: parquet, path: out/orders}
    """


def test_incremental_run_adds_only_new_rows(workdir, engine) -> None:
    target = workdir / "out" / "orders"
    first = engine(INCREMENTAL).run()
    assert first.rows_written == 3
    assert markers(target)[0]["state"] == {
        "cursor": {"column": "updated_at", "value": "2024-01-02 00:00:00Z", "key_columns": [], "key": []}
    }
    assert first.datasets[0].state == markers(target)[0]["state"]

    with open(workdir / "data" / "orders.csv", "a", encoding="utf-8") as f:
        f.write("4,Dee,4.00,2024-01-03T00:00:00Z\n5,Eve,5.00,2024-01-04T12:30:00Z\n")
    second = engine(INCREMENTAL).run()
    assert (second.rows_read, second.rows_written) == (2, 2)
    assert sorted(read_parquet_dir(target).column("id").to_pylist()) == [1, 2, 3, 4, 5]
    assert markers(target)[1]["state"]["cursor"]["value"] == "2024-01-04 12:30:00Z"

    third = engine(INCREMENTAL).run()
    assert third.rows_written == 0
    assert markers(target)[2]["state"] == markers(target)[1]["state"]
    assert read_parquet_dir(target).num_rows == 5


def test_incremental_state_belongs_to_the_job(workdir, engine) -> None:
    engine(INCREMENTAL).run()
    other = engine(INCREMENTAL.replace("name: orders", "name: orders_copy")).run()
    assert other.rows_written == 3


def test_incremental_ties_are_broken_by_the_primary_key(workdir, engine) -> None:
    def run(rows: str) -> RunReport:
        text = custom(f"{PLUGINS}:KeyedCursorReader", options=f"{{rows: {rows}}}", extra="incremental: {cursor: ts}")
        return engine(text).run()

    first = run("[[1, 10], [2, 10]]")
    assert first.datasets[0].state == {"cursor": {"column": "ts", "value": "10", "key_columns": ["id"], "key": ["2"]}}
    second = run("[[1, 10], [2, 10], [3, 10], [0, 9], [4, 11]]")
    assert second.rows_written == 2
    table = pq.read_table(workdir / "out" / "items").sort_by("id")
    assert table.to_pydict() == {"id": [1, 2, 3, 4], "ts": [10, 10, 10, 11]}


def test_a_plan_of_more_splits_than_a_run_takes_is_refused(workdir, engine) -> None:
    with pytest.raises(PluginFailed) as caught:
        engine(custom(f"{PLUGINS}:MillionSplits")).run()
    assert "plan() returned 100,001 splits; a run takes at most 100,000" in str(caught.value)
    assert "Plan fewer, larger splits" in (caught.value.hint or "")
    assert not (workdir / "out" / "items").exists() or not markers(workdir / "out" / "items")
