"""The built-in parquet writer: staged files nobody sees, then one atomic rename or exchange."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from dativo.api import CommitInfo, Context, Dataset, Split, WrittenFiles
from dativo.errors import ConfigError, ConnectionFailed, SchemaMismatch
from dativo.registry import resolve
from dativo.writers.parquet import MARKER, ParquetWriter
from tests.conftest import read_parquet_dir

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string())])
ITEMS = Dataset("items", SCHEMA)


def make_writer(path: Path | str, run_id: str, job: str = "items", **options: Any) -> ParquetWriter:
    spec = resolve("writer", "parquet")
    config = spec.build_config({"path": str(path), **options}, {}, section="target")
    return spec.cls(config, Context(job=job, run_id=run_id, plugin="parquet", logger=logging.getLogger("test")))


def rows(ids: list[int], schema: pa.Schema = SCHEMA) -> pa.RecordBatchReader:
    batch = pa.record_batch([pa.array(ids, pa.int64()), pa.array([f"n{i}" for i in ids])], schema=schema)
    return pa.RecordBatchReader.from_batches(schema, [batch])


def stage(writer: ParquetWriter, ids: list[int], mode: str = "append", dataset: Dataset = ITEMS) -> WrittenFiles:
    writer.prepare(dataset, SCHEMA, mode)  # type: ignore[arg-type]
    return writer.write(Split(dataset.name, "0"), rows(ids))


def run(target: Path | str, run_id: str, ids: list[int], mode: str = "append", state: Any = None, **kw: Any) -> CommitInfo:
    writer = make_writer(target, run_id, **kw)
    return writer.commit(ITEMS, [stage(writer, ids, mode)], state, run_id)


def folders(target: Path) -> list[str]:
    return sorted(p.name for p in target.iterdir() if not p.name.startswith("_"))


def ids_in(target: Path) -> list[int]:
    return sorted(pq.read_table(target).column("id").to_pylist())


# --- append ------------------------------------------------------------------------------------------


def test_append_adds_one_run_folder_per_commit(tmp_path: Path) -> None:
    target = tmp_path / "out" / "items"
    info = run(target, "r1", [1, 2, 3])
    assert info == CommitInfo(commit_id="000001-r1", rows=3)
    assert run(target, "r2", [4]).commit_id == "000002-r2"
    assert folders(target) == ["000001-r1", "000002-r2"]
    assert sorted(os.listdir(target / "000001-r1")) == [MARKER, "part-0-00000.parquet"]
    marker = json.loads((target / "000002-r2" / MARKER).read_text())
    assert {k: marker[k] for k in ("format", "job", "run_id", "seq", "mode", "rows", "files", "state")} == {
        "format": 1, "job": "items", "run_id": "r2", "seq": 2, "mode": "append", "rows": 1,
        "files": ["part-0-00000.parquet"], "state": None,
    }
    assert ids_in(target) == [1, 2, 3, 4]
    assert pq.read_table(target).schema == SCHEMA


def test_staged_files_are_invisible_until_the_commit(tmp_path: Path) -> None:
    target = tmp_path / "items"
    run(target, "r1", [1, 2])
    writer = make_writer(target, "r2")
    written = stage(writer, [3, 4])
    assert written.rows == 2 and written.bytes == os.path.getsize(written.files[0]) > 0
    assert Path(written.files[0]).parent == target / "_dativo" / "staging" / "r2"
    assert ids_in(target) == [1, 2]
    assert read_parquet_dir(target).num_rows == 2
    writer.commit(ITEMS, [written], None, "r2")
    assert ids_in(target) == [1, 2, 3, 4]
    assert not (target / "_dativo" / "staging" / "r2").exists()  # renamed into place, not copied


def test_abort_removes_staged_files(tmp_path: Path) -> None:
    target = tmp_path / "items"
    run(target, "r1", [1])
    writer = make_writer(target, "r2")
    written = stage(writer, [2, 3])
    assert Path(written.files[0]).exists()
    writer.abort([written])
    assert not Path(written.files[0]).exists()
    assert not (target / "_dativo" / "staging" / "r2").exists()
    assert folders(target) == ["000001-r1"] and ids_in(target) == [1]


def test_files_not_named_in_the_commit_are_not_published(tmp_path: Path) -> None:
    target = tmp_path / "items"
    writer = make_writer(target, "r1")
    kept = stage(writer, [1])
    stray = target / "_dativo" / "staging" / "r1" / "part-9-00000.parquet"
    pq.write_table(pa.table({"id": pa.array([99], pa.int64()), "name": ["stray"]}), stray)
    writer.commit(ITEMS, [kept], None, "r1")
    assert ids_in(target) == [1]
    assert sorted(os.listdir(target / "000001-r1")) == [MARKER, "part-0-00000.parquet"]


def test_commit_of_a_committed_run_is_a_no_op(tmp_path: Path) -> None:
    target = tmp_path / "items"
    run(target, "r1", [1, 2])
    assert run(target, "r1", [1, 2]) == CommitInfo(commit_id="000001-r1", rows=0, no_op=True)
    assert folders(target) == ["000001-r1"] and ids_in(target) == [1, 2]


def test_schema_change_on_append_is_a_schema_mismatch(tmp_path: Path) -> None:
    target = tmp_path / "items"
    run(target, "r1", [1])
    other = pa.schema([("id", pa.int64()), ("name", pa.large_string())])
    with pytest.raises(SchemaMismatch) as caught:
        make_writer(target, "r2").prepare(ITEMS, other, "append")
    assert f"target {target} holds data with another schema: column 'name' should be string but is large_string" in str(
        caught.value
    )
    assert "Use mode: overwrite" in str(caught.value)
    make_writer(target, "r3").prepare(ITEMS, other, "overwrite")  # overwrite may change the schema


def test_schema_change_through_the_cli_leaves_the_target_intact(workdir: Path, write_job, cli) -> None:
    job = {"version": 1, "name": "orders", "source": {"type": "csv", "path": "data/orders.csv"},
           "target": {"type": "parquet", "path": "out/orders"}}
    assert cli("run", str(write_job(yaml.safe_dump(job))), "-q").exit_code == 0
    target = workdir / "out" / "orders"
    before = read_parquet_dir(target)
    job["source"]["column_types"] = {"amount": "decimal128(12, 2)"}
    result = cli("run", str(write_job(yaml.safe_dump(job))))
    assert result.exit_code == 3
    assert "Traceback" not in result.output
    message = " ".join(result.stderr.split())
    assert "job 'orders', plugin 'parquet'" in message
    assert "column 'amount' should be double but is decimal128(12, 2)" in message
    assert read_parquet_dir(target).equals(before) and len(folders(target)) == 1


def test_an_empty_run_does_not_fix_the_schema(tmp_path: Path) -> None:
    target = tmp_path / "items"
    writer = make_writer(target, "r1")
    nulls = pa.schema([("id", pa.null()), ("name", pa.null())])
    writer.prepare(ITEMS, nulls, "append")
    writer.commit(ITEMS, [], None, "r1")
    run(target, "r2", [1])
    assert ids_in(target) == [1]
    with pytest.raises(SchemaMismatch, match="column 'name' should be string but is int64"):
        make_writer(target, "r3").prepare(ITEMS, pa.schema([("id", pa.int64()), ("name", pa.int64())]), "append")


# --- overwrite ---------------------------------------------------------------------------------------


def test_overwrite_replaces_everything_in_one_exchange(tmp_path: Path) -> None:
    target = tmp_path / "out" / "items"
    run(target, "r1", [1, 2])
    run(target, "r2", [3])
    inode = target.stat().st_ino
    info = run(target, "r3", [7, 8, 9], mode="overwrite")
    assert info.commit_id == "000003-r3"
    assert folders(target) == ["000003-r3"]
    assert ids_in(target) == [7, 8, 9]
    assert target.stat().st_ino != inode  # a new directory was swapped in, not emptied and refilled
    assert sorted(os.listdir(target.parent)) == [".items.dativo.lock", "items"]  # no .items.dativo-* left
    assert json.loads((target / "000003-r3" / MARKER).read_text())["mode"] == "overwrite"
    run(target, "r4", [10])
    assert ids_in(target) == [7, 8, 9, 10]


def test_overwrite_of_a_new_target(tmp_path: Path) -> None:
    target = tmp_path / "new"
    run(target, "r1", [5], mode="overwrite")
    assert ids_in(target) == [5]


def test_merge_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="target.mode merge is not supported by the parquet writer"):
        make_writer(tmp_path / "items", "r1").prepare(ITEMS, SCHEMA, "merge")


# --- paths, state, files -----------------------------------------------------------------------------


def test_dataset_placeholder(tmp_path: Path) -> None:
    writer = make_writer(str(tmp_path / "lake" / "{dataset}"), "r1")
    for name, ids in (("orders", [1]), ("customers", [2, 3])):
        dataset = Dataset(name, SCHEMA)
        writer.commit(dataset, [stage(writer, ids, dataset=dataset)], None, "r1")
    assert ids_in(tmp_path / "lake" / "orders") == [1]
    assert ids_in(tmp_path / "lake" / "customers") == [2, 3]


def test_several_datasets_need_the_placeholder(tmp_path: Path) -> None:
    writer = make_writer(tmp_path / "one", "r1")
    writer.prepare(Dataset("orders"), SCHEMA, "append")
    with pytest.raises(ConfigError, match="target.path has no {dataset} placeholder"):
        writer.prepare(Dataset("customers"), SCHEMA, "append")


def test_file_urls_are_understood(tmp_path: Path) -> None:
    run(f"file://{tmp_path}/items", "r1", [1])  # type: ignore[arg-type]
    assert ids_in(tmp_path / "items") == [1]


def test_state_is_the_newest_of_this_job(tmp_path: Path) -> None:
    target = tmp_path / "items"
    assert make_writer(target, "r0").state(ITEMS) is None
    run(target, "r1", [1], state={"cursor": {"value": "1"}})
    run(target, "r2", [2], state={"cursor": {"value": "2"}})
    run(target, "r3", [3], state={"cursor": {"value": "other"}}, job="other_job")
    assert make_writer(target, "r4").state(ITEMS) == {"cursor": {"value": "2"}}
    assert make_writer(target, "r4", job="other_job").state(ITEMS) == {"cursor": {"value": "other"}}


def test_large_splits_roll_over_into_several_files(tmp_path: Path) -> None:
    target = tmp_path / "items"
    writer = make_writer(target, "r1", compression="none", target_file_size_mb=1, row_group_rows=1024)
    writer.prepare(ITEMS, SCHEMA, "append")
    batches = [
        pa.record_batch([pa.array(range(i, i + 1024), pa.int64()), pa.array([os.urandom(128).hex() for _ in range(1024)])],
                        schema=SCHEMA)
        for i in range(0, 8 * 1024, 1024)
    ]
    written = writer.write(Split("items", "0"), pa.RecordBatchReader.from_batches(SCHEMA, batches))
    assert len(written.files) > 1 and written.rows == 8 * 1024
    assert written.bytes == sum(os.path.getsize(f) for f in written.files)
    writer.commit(ITEMS, [written], None, "r1")
    assert ids_in(target) == list(range(8 * 1024))


@pytest.mark.parametrize(("codec", "stored"), [("zstd", "ZSTD"), ("snappy", "SNAPPY"), ("none", "UNCOMPRESSED")])
def test_compression(tmp_path: Path, codec: str, stored: str) -> None:
    target = tmp_path / "items"
    run(target, "r1", [1, 2], compression=codec)
    (file,) = target.glob("*/*.parquet")
    assert pq.ParquetFile(file).metadata.row_group(0).column(0).compression == stored


def test_leftovers_of_old_runs_are_swept(tmp_path: Path) -> None:
    target = tmp_path / "items"
    staging = target / "_dativo" / "staging"
    old, recent = staging / "crashed-long-ago", staging / "still-running"
    for folder in (old, recent):
        folder.mkdir(parents=True)
        (folder / "part-0-00000.parquet").write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    parked = tmp_path / ".items.dativo-crashed"
    parked.mkdir()
    run(target, "r1", [1])
    assert not old.exists() and recent.exists() and not parked.exists()


def test_check_needs_a_writable_folder(tmp_path: Path) -> None:
    make_writer(tmp_path / "does" / "not" / "exist" / "yet", "r1").check()
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(ConnectionFailed, match="is not writable"):
        make_writer(locked / "items", "r1").check()
