"""Rows as digests: exact values, any order; streams that can be closed early."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

import pyarrow as pa

from dativo.kit.rows import Stream, read_pass, row_digests


def test_digests_are_exact_and_order_free() -> None:
    a = pa.table({"d": pa.array([Decimal("10.50"), Decimal("1.00")], pa.decimal128(5, 2)), "f": [0.0, 1.5]})
    b = pa.table({"d": pa.array([Decimal("1.00"), Decimal("10.50")], pa.decimal128(5, 2)), "f": [1.5, 0.0]})
    assert Counter(row_digests(a)) == Counter(row_digests(b))
    scaled = pa.table({"d": pa.array([Decimal("10.5"), Decimal("1.0")], pa.decimal128(5, 1)), "f": [0.0, 1.5]})
    negative = pa.table({"d": a.column("d"), "f": [-0.0, 1.5]})
    assert Counter(row_digests(a)) != Counter(row_digests(scaled))
    assert Counter(row_digests(a)) != Counter(row_digests(negative))


def test_a_stream_closes_the_plugins_generator() -> None:
    schema = pa.schema([("n", pa.int64())])
    closed = []

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for i in range(10):
                yield pa.record_batch([pa.array([i])], schema=schema)
        finally:
            closed.append(True)

    for output in (batches(), pa.RecordBatchReader.from_batches(schema, batches())):
        stream = Stream(output)
        del output
        next(iter(stream))
        stream.close()
    assert closed == [True, True]


def test_a_pass_reports_the_first_batch_that_lies() -> None:
    declared = pa.schema([pa.field("n", pa.int64(), nullable=False)])
    good = pa.record_batch([pa.array([1], pa.int64())], schema=declared)
    nulls = pa.record_batch([pa.array([None], pa.int64())], names=["n"])
    result = read_pass(["s"], lambda split: [good, nulls], expected=declared)
    assert result.count == 2 and "declared NOT NULL but a batch has 1 null(s)" in (result.problem or "")
