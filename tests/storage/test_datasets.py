"""DatasetStores: a writer's stores, one per dataset, and the steps of a run file writers delegate to it."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pytest

from dativo.api import WrittenFiles
from dativo.errors import CommitFailed, ConfigError
from dativo.names import UnsafeName
from dativo.storage import DatasetStores, StoreOptions
from tests.storage.helpers import SCHEMA, commit, committed_ids, keys, listed_ids, stage


def stores(path: str, run_id: str = "r1") -> DatasetStores:
    return DatasetStores(StoreOptions(path=path), job="items", run_id=run_id, label="target.path")


def test_each_dataset_gets_its_own_store_once(tmp_path: Path) -> None:
    lake = stores(f"{tmp_path}/lake/{{dataset}}")
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(lake.get("orders"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(store) for store in seen}) == 1
    assert lake.get("customers") is not lake.get("orders")


def test_prepare_remembers_mode_and_schema_and_a_second_dataset_needs_the_placeholder(
    tmp_path: Path,
) -> None:
    one = stores(str(tmp_path / "one"))
    assert one.mode("orders") == "append" and one.schema("orders") is None
    store = one.prepare("orders", SCHEMA, "overwrite")
    assert (tmp_path / "one").is_dir() and store is one.get("orders")
    assert (one.mode("orders"), one.schema("orders")) == ("overwrite", SCHEMA)
    with pytest.raises(ConfigError, match="target.path has no {dataset} placeholder"):
        one.prepare("customers", pa.schema([]), "append")


def test_a_run_writes_commits_and_aborts_through_its_stores(tmp_path: Path) -> None:
    lake = stores(f"{tmp_path}/{{dataset}}", run_id="r1")
    lake.prepare("orders", SCHEMA, "overwrite")
    batch = pa.record_batch([pa.array([1, 2], pa.int64())], schema=SCHEMA)
    stream = pa.RecordBatchReader.from_batches(SCHEMA, [batch])
    staged = lake.write("orders", stream, name="o-{}.parquet".format, row_group_rows=1024)
    written = WrittenFiles("orders", "0", staged.files, staged.rows, staged.bytes)
    assert staged.rows == 2 and listed_ids(lake.get("orders")) == []
    done = lake.commit("orders", [written], "r1", {"state": {"w": 2}})
    assert (done.record.mode, done.record.rows, done.no_op) == ("overwrite", 2, False)
    assert done.record.extra == {"state": {"w": 2}}
    assert lake.commit("orders", [written], "r1").no_op
    assert committed_ids(lake.get("orders")) == [1, 2]


def test_abort_groups_files_by_dataset(tmp_path: Path) -> None:
    lake = stores(f"{tmp_path}/{{dataset}}")
    orders, customers = lake.get("orders"), lake.get("customers")
    commit(orders, "r0", stage(orders, "r0", [1]))
    lake.abort([WrittenFiles("orders", "0", stage(orders, "r1", [2])),
                WrittenFiles("customers", "0", stage(customers, "r1", [3]))])
    assert keys(orders) == ["000001-r0/_dativo_commit.json", "000001-r0/part-0-00000.parquet"]
    assert keys(customers) == [] and committed_ids(orders) == [1]


def test_check_opens_a_store_for_a_sample_dataset_and_writes_nothing(tmp_path: Path) -> None:
    stores(f"{tmp_path}/new/{{dataset}}").check()
    assert not (tmp_path / "new").exists()


def test_a_dataset_name_that_would_leave_the_path_is_refused_and_nothing_outside_is_touched(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    (victim / "_dativo" / "staging" / "r1").mkdir(parents=True)
    (victim / "_dativo" / "staging" / "r1" / "keep.parquet").write_text("keep")
    lake = stores(f"{tmp_path}/lake/{{dataset}}")
    orders = lake.get("orders")
    files = stage(orders, "r1", [1])
    with pytest.raises(UnsafeName, match="dataset name '../../victim'"):
        lake.get("../../victim")
    with pytest.raises(CommitFailed, match="refused to commit"):
        lake.commit("../../victim", [WrittenFiles("../../victim", "0", files)], "r1")
    with pytest.raises(UnsafeName):
        lake.abort([WrittenFiles("../../victim", "0", files)])
    assert (victim / "_dativo" / "staging" / "r1" / "keep.parquet").read_text() == "keep"
    assert not [k for k in keys(orders) if k.endswith(".parquet")]  # the real dataset's staging went all the same


def test_a_dataset_whose_folder_cannot_be_a_target_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    lake = stores(f"{tmp_path}/{{dataset}}")  # fine for most names …
    lake.get("orders")
    with pytest.raises(ConfigError, match="target.path .* cannot be a target: it is the current folder"):
        lake.get("work")  # … not for this one
