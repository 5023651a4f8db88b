"""Whatever a reader returns becomes one checked Arrow stream, or a clear error blamed on the reader."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from dativo.errors import PluginFailed, SchemaMismatch
from dativo.state import Watermark, WatermarkTracker
from dativo.streams import Cancelled, GuardedStream, Prefetch, describe, schema_difference

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string())])


def batches(n: int, size: int = 2) -> list[pa.RecordBatch]:
    return [
        pa.record_batch([pa.array(range(i * size, (i + 1) * size), pa.int64()),
                         pa.array([f"n{j}" for j in range(i * size, (i + 1) * size)])], schema=SCHEMA)
        for i in range(n)
    ]


class CStream:
    """Only ``__arrow_c_stream__``, like a native plugin's stream."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        return self.table.__arrow_c_stream__(requested_schema)


@pytest.mark.parametrize(
    "make",
    [
        lambda: batches(3),
        lambda: iter(batches(3)),
        lambda: (b for b in batches(3)),
        lambda: pa.Table.from_batches(batches(3)),
        lambda: pa.RecordBatchReader.from_batches(SCHEMA, batches(3)),
        lambda: CStream(pa.Table.from_batches(batches(3))),
    ],
    ids=["list", "iterator", "generator", "table", "record-batch-reader", "c-stream"],
)
@pytest.mark.parametrize("prefetch", [0, 4])
def test_every_kind_of_arrow_output_is_accepted(make, prefetch: int) -> None:
    counted: list[int] = []
    guard = GuardedStream("0", "items", SCHEMA, on_rows=counted.append, prefetch=prefetch)
    table = guard.open(make()).read_all()
    assert table.schema == SCHEMA
    assert table.column("id").to_pylist() == list(range(6))
    assert guard.rows == 6 and sum(counted) == 6
    assert guard.error is None


def test_a_single_record_batch_is_accepted() -> None:
    assert GuardedStream("0", "items", SCHEMA).open(batches(1)[0]).read_all().num_rows == 2


def test_without_a_declared_schema_the_first_batch_decides() -> None:
    guard = GuardedStream("0", "items", None)
    reader = guard.open(iter(batches(2)))
    assert guard.schema == SCHEMA and reader.schema == SCHEMA
    assert reader.read_all().num_rows == 4


def test_empty_output_without_a_schema_has_no_columns() -> None:
    guard = GuardedStream("0", "items", None)
    assert guard.open(iter(())).read_all().num_rows == 0
    assert guard.schema == pa.schema([])


def test_declared_stream_schema_is_checked_before_any_batch() -> None:
    other = pa.schema([("id", pa.int32()), ("name", pa.string())])
    guard = GuardedStream("s1", "orders", SCHEMA)
    with pytest.raises(SchemaMismatch, match="dataset 'orders' split 's1': column 'id' should be int64 but is int32"):
        guard.open(pa.table({"id": pa.array([1], pa.int32()), "name": ["x"]}, schema=other))
    assert isinstance(guard.error, SchemaMismatch)
    assert (guard.error.role, guard.error.stage) == ("reader", "read")


def test_batch_with_another_schema_mid_stream() -> None:
    bad = pa.record_batch({"id": pa.array([1]), "label": ["x"]})
    guard = GuardedStream("0", "items", SCHEMA, prefetch=0)
    reader = guard.open(iter([*batches(1), bad]))
    assert reader.read_next_batch().num_rows == 2
    with pytest.raises(SchemaMismatch, match="missing column\\(s\\) 'name'; unexpected column\\(s\\) 'label'"):
        reader.read_next_batch()
    assert isinstance(guard.error, SchemaMismatch)


def test_nulls_in_a_not_null_column() -> None:
    strict = pa.schema([pa.field("id", pa.int64(), nullable=False)])
    guard = GuardedStream("0", "items", strict)
    with pytest.raises(SchemaMismatch, match="column 'id' is declared NOT NULL but has 1 null value"):
        guard.open([pa.record_batch({"id": pa.array([1, None], pa.int64())})]).read_all()


def test_batches_take_the_declared_field_metadata_and_nullability() -> None:
    declared = pa.schema([pa.field("id", pa.int64(), nullable=False, metadata={"doc": "key"})])
    out = GuardedStream("0", "items", declared).open([pa.record_batch({"id": pa.array([1], pa.int64())})]).read_all()
    assert out.schema.equals(declared, check_metadata=True)


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (None, "read() returned NoneType, which is not Arrow data"),
        ("id,name", "read() returned str, which is not Arrow data"),
        ({"id": [1]}, "read() returned dict, which is not Arrow data"),
        (42, "read() returned int, which is not Arrow data"),
        ([{"id": 1}], "read() yielded dict, not a pyarrow.RecordBatch"),
        ([pa.table({"id": [1]})], "read() yielded pyarrow.lib.Table, not a pyarrow.RecordBatch"),
    ],
)
def test_output_that_is_not_arrow(output: Any, message: str) -> None:
    guard = GuardedStream("2", "items", SCHEMA)
    with pytest.raises(PluginFailed) as caught:
        guard.open(output).read_all()
    assert f"read() of dataset 'items' split '2' failed: TypeError: {message}" in str(caught.value)
    assert caught.value.role == "reader" and guard.error is caught.value


def test_reader_exception_mid_stream_is_recorded_as_the_readers() -> None:
    def failing() -> Iterator[pa.RecordBatch]:
        yield batches(1)[0]
        raise ConnectionResetError("peer went away")

    guard = GuardedStream("0", "items", SCHEMA)
    with pytest.raises(PluginFailed, match="failed: ConnectionResetError: peer went away"):
        guard.open(failing()).read_all()
    assert isinstance(guard.error.__cause__, ConnectionResetError)


def test_rows_at_or_before_the_watermark_are_dropped_and_the_rest_tracked() -> None:
    tracker = WatermarkTracker("id", ())
    guard = GuardedStream("0", "items", SCHEMA, after=Watermark("id", 2), tracker=tracker)
    out = guard.open(batches(3)).read_all()
    assert out.column("id").to_pylist() == [3, 4, 5]
    assert guard.rows == 3
    assert tracker.watermark() == Watermark("id", 5)


def test_cancel_stops_the_stream() -> None:
    cancel = threading.Event()

    def endless() -> Iterator[pa.RecordBatch]:
        while True:
            yield batches(1)[0]

    reader = GuardedStream("0", "items", SCHEMA, cancel=cancel, prefetch=2).open(endless())
    reader.read_next_batch()
    cancel.set()
    with pytest.raises(Cancelled):
        for _ in range(10):
            reader.read_next_batch()


def test_prefetch_is_bounded() -> None:
    pulled = []

    def counting() -> Iterator[pa.RecordBatch]:
        for b in batches(100, size=1):
            pulled.append(1)
            yield b

    reader = GuardedStream("0", "items", SCHEMA, prefetch=3).open(counting())
    reader.read_next_batch()
    threading.Event().wait(0.3)
    assert len(pulled) <= 1 + 3 + 1  # the batch read, a full queue, one waiting to be queued
    assert reader.read_all().num_rows == 99


@pytest.mark.parametrize(
    ("got", "difference"),
    [
        (SCHEMA, None),
        (pa.schema([("id", pa.int64())]), "missing column(s) 'name'"),
        (SCHEMA.append(pa.field("x", pa.bool_())), "unexpected column(s) 'x'"),
        (pa.schema([("name", pa.string()), ("id", pa.int64())]),
         "columns are in a different order: expected ['id', 'name'], got ['name', 'id']"),
        (pa.schema([("id", pa.int64()), ("name", pa.large_string())]), "column 'name' should be string but is large_string"),
    ],
)
def test_schema_difference(got: pa.Schema, difference: str | None) -> None:
    assert schema_difference(SCHEMA, got) == difference


def test_describe() -> None:
    assert describe(None) == "NoneType"
    assert describe(pa.table({})) == "pyarrow.lib.Table"


def test_close_returns_only_once_the_read_ahead_thread_has_left_the_reader() -> None:
    inside, leave, left = threading.Event(), threading.Event(), []

    def source() -> Iterator[pa.RecordBatch]:
        yield from batches(1)
        inside.set()
        leave.wait(5)  # a slow read, as a database's next batch
        left.append(True)
        yield from batches(1)

    guard = GuardedStream("0", "d", SCHEMA, prefetch=1)
    stream = guard.open(source())
    stream.read_next_batch()  # the writer took one batch, then failed
    assert inside.wait(5)
    threading.Timer(0.2, leave.set).start()
    assert guard.close(timeout=5)  # only now may the reader be closed
    assert left == [True]


def test_close_says_when_the_thread_is_still_inside() -> None:
    release = threading.Event()

    def stuck() -> Iterator[pa.RecordBatch]:
        yield from batches(1)
        release.wait(10)
        yield from batches(1)

    guard = GuardedStream("0", "d", SCHEMA, prefetch=1)
    guard.open(stuck()).read_next_batch()
    try:
        assert guard.close(timeout=0.2) is False
    finally:
        release.set()
    assert guard.close(timeout=5)


def test_malformed_batches_and_huge_schemas_are_the_readers_fault() -> None:
    offsets = pa.py_buffer(pa.array([0, 4096, 8], pa.int32()).buffers()[1].to_pybytes())
    bad = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(b"abcdefgh")])
    schema = pa.schema([("s", pa.string())])
    with pytest.raises(PluginFailed, match="malformed batch") as caught:
        GuardedStream("0", "d", schema).open([pa.record_batch([bad], schema=schema)]).read_all()
    assert caught.value.role == "reader"
    trusted = GuardedStream("0", "d", schema, validate=False)  # the built-ins are not checked twice
    assert trusted.validate is False
    wide = pa.schema([(f"c{i}", pa.int8()) for i in range(10_001)])
    with pytest.raises(PluginFailed, match="10,001 columns"):
        GuardedStream("0", "d", wide).open(pa.RecordBatchReader.from_batches(wide, []))
    deep: pa.DataType = pa.int8()
    for _ in range(70):
        deep = pa.list_(deep)
    nested = pa.schema([("n", deep)])
    with pytest.raises(PluginFailed, match="nested more than 64"):
        GuardedStream("0", "d", nested).open(pa.RecordBatchReader.from_batches(nested, []))


def _pulled_ahead(max_bytes: int | None) -> tuple[int, list[int]]:
    """How many 1 MiB batches a read-ahead of depth 3 pulls from its source while nobody consumes; then
    consume everything, and return what was pulled and the row counts read (the stream stays whole)."""
    pulled: list[int] = []
    settled = threading.Event()

    def source() -> Iterator[pa.RecordBatch]:
        for i in range(6):
            pulled.append(i)
            if len(pulled) == (2 if max_bytes else 4):
                settled.set()  # the pump now holds this batch and waits for room (or the queue is full)
            yield pa.record_batch({"v": pa.array([i] * (1 << 17), pa.int64())})  # 1 MiB

    ahead = Prefetch(source(), 3, threading.Event(), max_bytes=max_bytes)
    assert settled.wait(10)
    deadline = threading.Event()
    deadline.wait(0.3)  # room for the pump to pull one batch too many, if it would
    before = len(pulled)
    rows = [batch.num_rows for batch in ahead]
    return before, rows


def test_read_ahead_stops_at_its_byte_bound_and_still_passes_every_batch() -> None:
    before, rows = _pulled_ahead(max_bytes=1 << 20)  # room for one batch: one queued, one waiting
    assert before == 2 and rows == [1 << 17] * 6
    before, rows = _pulled_ahead(max_bytes=None)  # depth alone: three queued, one waiting
    assert before == 4 and rows == [1 << 17] * 6


def test_a_batch_larger_than_the_bound_still_goes_through() -> None:
    big = pa.record_batch({"v": pa.array(range(1 << 18), pa.int64())})  # 2 MiB against a 1 KiB bound
    assert [b.num_rows for b in Prefetch(iter([big, big]), 2, threading.Event(), max_bytes=1024)] == [1 << 18] * 2
