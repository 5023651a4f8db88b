"""Incremental state: watermarks that round-trip exactly, and a tracker that breaks ties by key."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from dativo.state import Watermark, WatermarkTracker
from dativo.streams import after_mask

UTC = dt.timezone.utc
OSLO_SUMMER = dt.timezone(dt.timedelta(hours=2))


@pytest.mark.parametrize(
    ("arrow_type", "value", "text"),
    [
        (pa.timestamp("us", tz="UTC"), dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC), "2024-01-02 03:04:05.123456Z"),
        (pa.timestamp("us", tz="Europe/Oslo"), dt.datetime(2024, 7, 2, 5, 4, 5, tzinfo=OSLO_SUMMER),
         "2024-07-02 05:04:05.000000+0200"),
        (pa.timestamp("s", tz="+05:30"), dt.datetime(2024, 7, 2, 3, 4, 5, tzinfo=UTC), "2024-07-02 08:34:05+0530"),
        (pa.timestamp("ms"), dt.datetime(2024, 1, 2, 3, 4, 5, 123000), "2024-01-02 03:04:05.123"),
        (pa.decimal128(12, 2), Decimal("12345.67"), "12345.67"),
        (pa.decimal128(38, 10), Decimal("-1.0000000001"), "-1.0000000001"),
        (pa.date32(), dt.date(2024, 2, 29), "2024-02-29"),
        (pa.int64(), 2**62 + 1, "4611686018427387905"),
        (pa.int32(), -5, "-5"),
        (pa.string(), 'Bø 😀 "quoted", comma', 'Bø 😀 "quoted", comma'),
        (pa.large_string(), "z", "z"),
    ],
)
def test_watermark_round_trip(arrow_type: pa.DataType, value: Any, text: str) -> None:
    schema = pa.schema([("c", arrow_type), ("id", pa.int64()), ("k", arrow_type)])
    mark = Watermark("c", value, ("id", "k"), (7, value))
    state = mark.to_state(schema)
    assert state == {"cursor": {"column": "c", "value": text, "key_columns": ["id", "k"], "key": ["7", text]}}
    state = json.loads(json.dumps(state))  # what a writer stores
    back = Watermark.from_state(state, schema)
    assert back == mark
    assert type(back.value) is type(value)  # noqa: E721
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        assert back.value.utcoffset() is not None


def test_timezone_of_the_column_is_kept() -> None:
    schema = pa.schema([("c", pa.timestamp("us", tz="Europe/Oslo"))])
    back = Watermark.from_state(Watermark("c", dt.datetime(2024, 1, 1, tzinfo=UTC)).to_state(schema), schema)
    assert back is not None
    assert back.value == dt.datetime(2024, 1, 1, tzinfo=UTC)
    assert back.value.utcoffset() == dt.timedelta(hours=1)


def test_nanosecond_timestamps_are_tracked_exactly() -> None:
    ns = pa.timestamp("ns", tz="UTC")
    batch = pa.record_batch({"ts": pa.array([1_000_000_001, 5, 1_000_000_000], ns), "id": [1, 2, 3]})
    tracker = WatermarkTracker("ts", ("id",))
    tracker.observe(batch)
    mark = tracker.watermark()
    assert mark is not None
    state = mark.to_state(batch.schema)
    assert state["cursor"]["value"] == "1970-01-01 00:00:01.000000001Z"
    back = Watermark.from_state(state, batch.schema)
    assert back == mark
    assert after_mask(batch, back).to_pylist() == [False, False, False]
    later = pa.record_batch({"ts": pa.array([1_000_000_002, 1_000_000_001], ns), "id": [1, 2]})
    assert after_mask(later, back).to_pylist() == [True, True]


def test_no_state_means_no_watermark() -> None:
    schema = pa.schema([("c", pa.int64())])
    assert Watermark.from_state(None, schema) is None
    assert Watermark.from_state({}, schema) is None
    assert Watermark.from_state({"cursor": {"column": "c", "value": None}}, schema) is None


# --- the tracker -------------------------------------------------------------------------------------


def batch(rows: list[tuple[Any, Any]]) -> pa.RecordBatch:
    cursor, key = zip(*rows)
    return pa.record_batch({"ts": pa.array(cursor, pa.int64()), "id": pa.array(key, pa.int64())})


def test_tracker_takes_the_greatest_key_among_rows_with_the_greatest_cursor() -> None:
    tracker = WatermarkTracker("ts", ("id",))
    assert tracker.watermark() is None
    tracker.observe(batch([(5, 9), (7, 1), (7, 3), (6, 99), (7, 2)]))
    assert tracker.watermark() == Watermark("ts", 7, ("id",), (3,))
    tracker.observe(batch([(7, 2), (4, 100)]))
    assert tracker.watermark() == Watermark("ts", 7, ("id",), (3,))
    tracker.observe(batch([(7, 4)]))
    assert tracker.watermark() == Watermark("ts", 7, ("id",), (4,))
    tracker.observe(batch([(8, 0)]))
    assert tracker.watermark() == Watermark("ts", 8, ("id",), (0,))


def test_tracker_with_a_composite_key() -> None:
    table = pa.record_batch({"ts": [1, 2, 2, 2], "a": [9, 1, 2, 2], "b": ["z", "x", "b", "c"]})
    tracker = WatermarkTracker("ts", ("a", "b"))
    assert tracker.batch_max(table) == (2, 2, "c")


def test_tracker_ignores_null_cursors() -> None:
    tracker = WatermarkTracker("ts", ("id",))
    tracker.observe(pa.record_batch({"ts": pa.array([None, None], pa.int64()), "id": [1, 2]}))
    assert tracker.watermark() is None
    tracker.observe(pa.record_batch({"ts": pa.array([None, 3], pa.int64()), "id": [10, 2]}))
    assert tracker.watermark() == Watermark("ts", 3, ("id",), (2,))


def test_tracker_without_a_key() -> None:
    tracker = WatermarkTracker("ts", ())
    tracker.observe(batch([(3, 1), (2, 9)]))
    assert tracker.watermark() == Watermark("ts", 3, (), ())


def test_merging_split_trackers_keeps_the_greatest() -> None:
    total = WatermarkTracker("ts", ("id",))
    for rows in ([(5, 1)], [(7, 1)], [(7, 2)], [(6, 50)]):
        split = WatermarkTracker("ts", ("id",))
        split.observe(batch(rows))
        total.merge(split)
    total.merge(WatermarkTracker("ts", ("id",)))  # a split that saw nothing
    assert total.watermark() == Watermark("ts", 7, ("id",), (2,))


def test_rows_after_a_watermark_use_the_key_to_break_ties() -> None:
    rows = batch([(5, 1), (5, 2), (5, 3), (4, 9), (6, 0)])
    mark = Watermark("ts", 5, ("id",), (2,))
    assert after_mask(rows, mark).to_pylist() == [False, False, True, False, True]
    assert after_mask(rows, Watermark("ts", 5)).to_pylist() == [False, False, False, False, True]
    with_nulls = pa.record_batch({"ts": pa.array([None, 6], pa.int64()), "id": [1, 1]})
    assert after_mask(with_nulls, mark).to_pylist() == [False, True]
