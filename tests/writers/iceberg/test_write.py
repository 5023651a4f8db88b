"""write(): streaming data files, parallel splits, invisibility before commit, abort and crash safety."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dativo.api import Dataset, Split
from dativo.errors import PluginFailed
from tests.writers.iceberg.conftest import MakeWriter
from tests.writers.iceberg.helpers import read, run, table_of, write

EVENTS = Dataset("public.events", primary_key=("id",))


def events(start: int, count: int) -> pa.Table:
    ids = pa.array(range(start, start + count), pa.int64())
    payload = [
        f"{i}:{uuid.uuid4().hex}{uuid.uuid4().hex}" for i in range(start, start + count)
    ]  # incompressible
    return pa.table({"id": ids, "payload": pa.array(payload, pa.string())})


def local(path: str) -> Path:
    return Path(urlparse(path).path)


def test_files_are_zstd_parquet_with_iceberg_field_ids(make_writer: MakeWriter) -> None:
    writer = make_writer()
    writer.prepare(EVENTS, events(0, 1).schema, "append")
    files = write(writer, EVENTS, events(0, 10))

    assert files.rows == 10 and len(files.files) == 1
    assert files.bytes == local(files.files[0]).stat().st_size
    parquet = pq.ParquetFile(local(files.files[0]))
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    assert [parquet.schema_arrow.field(n).metadata[b"PARQUET:field_id"] for n in ("id", "payload")] == [
        b"1",
        b"2",
    ]
    assert files.files[0].startswith(table_of(writer, EVENTS).location() + "/data/")


def test_a_large_split_streams_into_rolling_files(make_writer: MakeWriter) -> None:
    writer = make_writer(target_file_size_bytes=20_000, row_group_size_bytes=8_000)
    writer.prepare(EVENTS, events(0, 1).schema, "append")
    pulled: list[int] = []

    def batches() -> Iterator[pa.RecordBatch]:
        for start in range(0, 5_000, 100):
            pulled.append(start)
            yield events(start, 100).to_batches()[0]

    reader = pa.RecordBatchReader.from_batches(events(0, 1).schema, batches())
    files = writer.write(Split(EVENTS.name, "big"), reader)
    writer.commit(EVENTS, [files], None, "r1")

    assert len(pulled) == 50
    assert len(files.files) > 3
    assert sum(pq.ParquetFile(local(f)).metadata.num_row_groups for f in files.files) > len(files.files)
    data_files = files.extra["data_files"]
    assert sum(f.record_count for f in data_files) == files.rows == 5_000
    assert read(writer, EVENTS).column("id").to_pylist() == list(range(5_000))


def test_parallel_writes_from_threads_then_one_commit(make_writer: MakeWriter) -> None:
    writer = make_writer()
    writer.prepare(EVENTS, events(0, 1).schema, "append")
    results: dict[int, object] = {}
    barrier = threading.Barrier(4)

    def work(split: int) -> None:
        barrier.wait()
        try:
            results[split] = write(
                writer, EVENTS, events(split * 1000, 1000), split=str(split), batch_rows=128
            )
        except Exception as exc:  # surfaced by the assertion below
            results[split] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    written = [results[i] for i in range(4)]
    assert all(not isinstance(w, Exception) for w in written), written
    info = writer.commit(EVENTS, written, {"cursor": 3999}, "r1")  # type: ignore[arg-type]

    assert info.rows == 4000
    assert len(table_of(writer, EVENTS).snapshots()) == 1
    assert read(writer, EVENTS).column("id").to_pylist() == list(range(4000))


def test_written_files_are_invisible_until_commit(make_writer: MakeWriter) -> None:
    writer = make_writer()
    run(writer, EVENTS, events(0, 3), "r1")
    snapshot = table_of(writer, EVENTS).current_snapshot().snapshot_id

    files = write(writer, EVENTS, events(100, 5))

    assert all(local(f).exists() for f in files.files)
    assert table_of(writer, EVENTS).current_snapshot().snapshot_id == snapshot
    assert read(writer, EVENTS).column("id").to_pylist() == [0, 1, 2]


def test_abort_deletes_the_written_files(make_writer: MakeWriter) -> None:
    writer = make_writer(target_file_size_bytes=1, row_group_size_bytes=1)
    writer.prepare(EVENTS, events(0, 1).schema, "append")
    files = write(writer, EVENTS, events(0, 50), batch_rows=10)
    assert len(files.files) == 5 and all(local(f).exists() for f in files.files)

    writer.abort([files])
    writer.abort([files])  # twice is harmless

    assert not any(local(f).exists() for f in files.files)
    assert table_of(writer, EVENTS).current_snapshot() is None


def test_a_failing_stream_leaves_no_files(make_writer: MakeWriter, tmp_path: Path) -> None:
    writer = make_writer(target_file_size_bytes=1, row_group_size_bytes=1)
    writer.prepare(EVENTS, events(0, 1).schema, "append")

    def batches() -> Iterator[pa.RecordBatch]:
        yield events(0, 10).to_batches()[0]
        yield events(10, 10).to_batches()[0]
        raise RuntimeError("source went away")

    reader = pa.RecordBatchReader.from_batches(events(0, 1).schema, batches())
    with pytest.raises(RuntimeError, match="source went away"):  # the reader's error, not the writer's
        writer.write(Split(EVENTS.name, "0"), reader)

    assert list((tmp_path / "warehouse").rglob("*.parquet")) == []


def test_required_column_with_nulls_fails_the_write(make_writer: MakeWriter) -> None:
    writer = make_writer()
    writer.prepare(EVENTS, events(0, 1).schema, "append")  # the primary key becomes required
    bad = pa.table({"id": pa.array([1, None], pa.int64()), "payload": ["a", "b"]})

    with pytest.raises(PluginFailed, match=r"column 'id'.*required.*1 NULL"):
        write(writer, EVENTS, bad)


CRASH = textwrap.dedent(
    """
    import os, signal, sys
    import pyarrow as pa
    from dativo.api import Dataset
    from dativo.writers.iceberg import IcebergWriter
    from tests.writers.iceberg.helpers import context, write

    writer = IcebergWriter(IcebergWriter.Config.model_validate({"namespace": "raw"}), context(sys.argv[1]))
    data = pa.table({"id": pa.array([10, 11], pa.int64()), "payload": ["x", "y"]})
    dataset = Dataset("public.events", primary_key=("id",))
    writer.prepare(dataset, data.schema, "append")
    files = write(writer, dataset, data)
    print("\\n".join(files.files), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # dies before commit
    """
)


def test_a_kill_before_commit_leaves_the_table_unchanged(make_writer: MakeWriter, tmp_path: Path) -> None:
    writer = make_writer()
    run(writer, EVENTS, events(0, 2), "r1", state={"cursor": 1})

    crashed = subprocess.run(
        [sys.executable, "-c", CRASH, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[3],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])},
    )

    assert crashed.returncode == -9, crashed.stderr
    orphans = crashed.stdout.split()
    assert orphans and all(local(f).exists() for f in orphans)  # harmless orphans under data/
    assert read(writer, EVENTS).column("id").to_pylist() == [0, 1]
    assert writer.state(EVENTS) == {"cursor": 1}

    run(writer, EVENTS, events(2, 1), "r2", state={"cursor": 2})
    assert read(writer, EVENTS).column("id").to_pylist() == [0, 1, 2]
    assert writer.state(EVENTS) == {"cursor": 2}


def test_row_groups_are_sized_from_the_memory_budget_unless_set(make_writer: MakeWriter) -> None:
    import dataclasses

    writer = make_writer()
    writer.ctx = dataclasses.replace(writer.ctx, memory_bytes=32 << 20, parallelism=2)
    assert writer._options().row_group_bytes == 2 << 20  # an eighth of a split's 16 MiB
    writer.ctx = dataclasses.replace(writer.ctx, memory_bytes=1 << 30, parallelism=1)
    assert writer._options().row_group_bytes == 16 << 20  # the ceiling
    assert make_writer(row_group_size_bytes=12345)._options().row_group_bytes == 12345
