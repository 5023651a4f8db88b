"""One split's life: open, adopt the schema, resume after the watermark, prepare once, write, attribute."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pytest

from dativo.api import CommitInfo, Context, Dataset, Reader, Split, Writer, WrittenFiles
from dativo.errors import CommitStateUnknown, PluginFailed
from dativo.runs import DatasetRun, SplitRun, call
from dativo.state import WatermarkTracker

SCHEMA = pa.schema([("id", pa.int64()), ("ts", pa.int64())])


def ctx() -> Context:
    return Context(job="j", run_id="r", plugin="p", logger=logging.getLogger("test"))


class Rows(Reader):
    """Yields the ids of the split's params, ``ts`` = id; ``boom_after`` raises mid-stream."""

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        ids = list(split.params.get("ids", ()))
        for start in range(0, len(ids), 2):
            if split.params.get("boom_after") == start:
                raise KeyError("mid-stream")
            chunk = ids[start : start + 2]
            yield pa.record_batch([pa.array(chunk, pa.int64()), pa.array(chunk, pa.int64())], schema=SCHEMA)


class Collect(Writer):
    """Keeps what it was given; ``fail`` makes write raise that exception."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.prepared: list[pa.Schema] = []
        self.rows: list[int] = []
        self.fail: BaseException | None = None
        self.result: Any = None

    def prepare(self, dataset, schema, mode) -> None:
        self.prepared.append(schema)

    def write(self, split, stream) -> WrittenFiles:
        table = stream.read_all()
        if self.fail is not None:
            raise self.fail
        self.rows.extend(table.column("id").to_pylist())
        return self.result if self.result is not None else WrittenFiles(split.dataset, split.id, rows=len(table))

    def commit(self, dataset, files, state, run_id) -> CommitInfo:
        return CommitInfo(commit_id="1")


@dataclass
class Spec:
    role: str
    name: str


@dataclass
class Bound:
    spec: Spec
    instance: Any


@pytest.fixture
def reader() -> Bound:
    return Bound(Spec("reader", "rows"), Rows(Rows.Config(), ctx()))


@pytest.fixture
def writer() -> Bound:
    return Bound(Spec("writer", "collect"), Collect(Collect.Config(), ctx()))


def run_splits(run: DatasetRun, reader: Bound, writer: Bound, *params: dict) -> None:
    cancel = threading.Event()
    for i, p in enumerate(params):
        SplitRun(run, Split(run.dataset.name, str(i), p), reader, writer, mode="append", cancel=cancel)()


def test_first_batch_decides_the_schema_and_the_target_is_prepared_once(reader, writer) -> None:
    run = DatasetRun(Dataset("d"), None, None, None)
    run_splits(run, reader, writer, {"ids": []}, {"ids": [1, 2, 3]}, {"ids": [4]})
    assert run.schema == SCHEMA
    assert writer.instance.prepared == [SCHEMA]
    assert sorted(writer.instance.rows) == [1, 2, 3, 4]
    assert run.rows_read == 4 and len(run.written) == 2  # the empty first split wrote nothing


def test_resumes_after_the_previous_watermark(reader, writer) -> None:
    tracker = WatermarkTracker("ts", ("id",))
    first = DatasetRun(Dataset("d", SCHEMA), SCHEMA, None, tracker)
    run_splits(first, reader, writer, {"ids": [1, 2, 3]})
    state = first.new_state()
    writer.instance.rows.clear()
    second = DatasetRun(Dataset("d", SCHEMA), SCHEMA, state, WatermarkTracker("ts", ("id",)))
    run_splits(second, reader, writer, {"ids": [2, 3, 4, 5]})
    assert writer.instance.rows == [4, 5]
    assert second.new_state() != state


def test_a_failure_inside_the_stream_is_the_readers_even_when_the_writer_raises(reader, writer) -> None:
    run = DatasetRun(Dataset("d", SCHEMA), SCHEMA, None, None)
    with pytest.raises(PluginFailed) as caught:
        run_splits(run, reader, writer, {"ids": [1, 2, 3, 4], "boom_after": 2})
    assert (caught.value.role, caught.value.stage, caught.value.plugin) == ("reader", "read", "rows")
    assert "KeyError" in str(caught.value)


def test_a_writer_failure_is_the_writers_and_the_caught_error_is_not_changed(reader, writer) -> None:
    original = PluginFailed("disk on fire")
    writer.instance.fail = original
    run = DatasetRun(Dataset("d", SCHEMA), SCHEMA, None, None)
    with pytest.raises(PluginFailed) as caught:
        run_splits(run, reader, writer, {"ids": [1]})
    assert (caught.value.role, caught.value.stage, caught.value.plugin) == ("writer", "write", "collect")
    assert (original.role, original.stage, original.plugin) == ("", "", None)

    writer.instance.fail = ValueError("bad value")
    with pytest.raises(PluginFailed, match="write\\(\\) raised ValueError: bad value") as caught:
        run_splits(run, reader, writer, {"ids": [1]})
    assert caught.value.role == "writer" and isinstance(caught.value.__cause__, ValueError)


def test_write_must_return_written_files(reader, writer) -> None:
    writer.instance.result = ["not", "files"]
    with pytest.raises(PluginFailed, match="must return dativo.api.WrittenFiles") as caught:
        run_splits(DatasetRun(Dataset("d", SCHEMA), SCHEMA, None, None), reader, writer, {"ids": [1]})
    assert caught.value.role == "writer"


def test_call_translates_by_stage(writer) -> None:
    def boom() -> None:
        raise OSError("gone")

    with pytest.raises(PluginFailed) as caught:
        call(writer, "check", boom)
    assert (caught.value.role, caught.value.stage) == ("writer", "check")
    with pytest.raises(CommitStateUnknown):
        call(writer, "commit", boom)
