"""Partitioned tables: files respect the spec, and the vectorised transforms match Iceberg's reference."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pyarrow as pa
import pytest
from pyiceberg.expressions import EqualTo
from pyiceberg.transforms import (
    BucketTransform,
    DayTransform,
    HourTransform,
    MonthTransform,
    TruncateTransform,
    YearTransform,
)
from pyiceberg.types import DateType, DecimalType, LongType, StringType, TimestampType, TimestamptzType

from dativo.api import Dataset
from dativo.writers.iceberg import partitioning
from tests.writers.iceberg.conftest import MakeWriter
from tests.writers.iceberg.helpers import read, run, table_of, write

UTC = dt.UTC
SALES = Dataset("public.sales", primary_key=("id",))


def sales() -> pa.Table:
    times = [
        dt.datetime(2024, 1, 1, 10, tzinfo=UTC),
        dt.datetime(2024, 1, 1, 23, 59, tzinfo=UTC),
        dt.datetime(2024, 1, 2, 0, 0, tzinfo=UTC),
        dt.datetime(1969, 12, 31, 23, tzinfo=UTC),
        None,
    ]
    return pa.table(
        {
            "id": pa.array(range(5), pa.int64()),
            "region": pa.array(["eu", "us", "eu", None, "eu"]),
            "created_at": pa.array(times, pa.timestamp("us", tz="UTC")),
        }
    )


def test_partitioned_files_follow_the_spec(make_writer: MakeWriter) -> None:
    writer = make_writer(partition_by=["day(created_at)", "region"])
    writer.prepare(SALES, sales().schema, "append")
    files = write(writer, SALES, sales(), batch_rows=2)
    writer.commit(SALES, [files], None, "r1")

    table = table_of(writer, SALES)
    assert [(f.name, str(f.transform)) for f in table.spec().fields] == [
        ("created_at_day", "day"),
        ("region", "identity"),
    ]
    by_partition: dict[tuple[object, object], int] = {}
    for data_file in files.extra["data_files"]:
        key = (data_file.partition[0], data_file.partition[1])
        by_partition[key] = by_partition.get(key, 0) + data_file.record_count
    assert by_partition == {
        (19723, "eu"): 1,
        (19723, "us"): 1,
        (19724, "eu"): 1,
        (-1, None): 1,
        (None, "eu"): 1,
    }
    assert any("created_at_day=2024-01-01/region=eu" in f for f in files.files)
    assert read(writer, SALES).column("id").to_pylist() == [0, 1, 2, 3, 4]
    pruned = table.scan(row_filter=EqualTo("region", "us")).plan_files()
    assert [t.file.record_count for t in pruned] == [1]


def test_bucket_and_truncate_partitions(make_writer: MakeWriter) -> None:
    writer = make_writer(partition_by=["bucket(4, id)", "truncate(1, region)"])
    run(writer, SALES, sales(), "r1")

    table = table_of(writer, SALES)
    for task in table.scan().plan_files():
        bucket, prefix = task.file.partition[0], task.file.partition[1]
        assert 0 <= bucket < 4 and prefix in ("e", "u", None)
    assert read(writer, SALES).num_rows == 5


def test_merge_into_a_partitioned_table(make_writer: MakeWriter) -> None:
    writer = make_writer(partition_by=["region"])
    run(writer, SALES, sales(), "r1")
    update = sales().slice(0, 2).set_column(1, "region", pa.array(["us", "us"]))

    run(writer, SALES, update, "r2", mode="merge")

    result = read(writer, SALES)
    assert result.column("id").to_pylist() == [0, 1, 2, 3, 4]
    assert result.column("region").to_pylist() == ["us", "us", "eu", None, "eu"]


MICROS = [
    -86_400_000_001,
    -3_600_000_000,
    -1,
    0,
    1,
    3_599_999_999,
    86_400_000_000,
    1_700_000_000_123_456,
    None,
]
DAYS = [-36525, -1, 0, 1, 19_723, None]


@pytest.mark.parametrize(
    "transform", [YearTransform(), MonthTransform(), DayTransform(), HourTransform(), BucketTransform(7)]
)
@pytest.mark.parametrize("source", [TimestampType(), TimestamptzType()])
def test_timestamp_transforms_match_iceberg(transform, source) -> None:
    tz = "UTC" if isinstance(source, TimestamptzType) else None
    values = pa.array(MICROS, pa.int64()).cast(pa.timestamp("us", tz=tz))
    reference = transform.transform(source)

    got = partitioning.partition_values(transform, source, values).to_pylist()

    assert got == [reference(v) if v is not None else None for v in MICROS]


@pytest.mark.parametrize("transform", [YearTransform(), MonthTransform(), DayTransform(), BucketTransform(3)])
def test_date_transforms_match_iceberg(transform) -> None:
    values = pa.array(DAYS, pa.int32()).cast(pa.date32())
    reference = transform.transform(DateType())

    got = partitioning.partition_values(transform, DateType(), values).to_pylist()

    assert got == [reference(v) if v is not None else None for v in DAYS]


@pytest.mark.parametrize(
    ("transform", "source", "values", "arrow_type"),
    [
        (TruncateTransform(10), LongType(), [-11, -10, -1, 0, 9, 10, None], pa.int64()),
        (TruncateTransform(2), StringType(), ["héllo", "a", "", None, "😀😀😀"], pa.string()),
        (
            TruncateTransform(50),
            DecimalType(9, 2),
            [Decimal("12.29"), Decimal("-0.01"), None],
            pa.decimal128(9, 2),
        ),
        (BucketTransform(16), StringType(), ["iceberg", "", None], pa.string()),
        (BucketTransform(16), LongType(), [34, 0, -1, None], pa.int64()),
    ],
)
def test_value_transforms_match_iceberg(transform, source, values, arrow_type) -> None:
    reference = transform.transform(source)

    got = partitioning.partition_values(transform, source, pa.array(values, arrow_type)).to_pylist()

    assert got == [reference(v) for v in values]


def test_identity_partitions_on_uuid_and_nested_fields(make_writer: MakeWriter) -> None:
    ids = [uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=1)]
    data = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "u": pa.ExtensionArray.from_storage(pa.uuid(), pa.array([i.bytes for i in ids], pa.binary(16))),
            "geo": pa.array([{"country": "fr"}, {"country": "de"}, {"country": "fr"}]),
        }
    )
    dataset = Dataset("public.nested", primary_key=("id",))
    writer = make_writer(partition_by=["u", "geo.country"])

    run(writer, dataset, data, "r1")

    assert len(table_of(writer, dataset).scan().plan_files()) == 2
    assert read(writer, dataset).column("u").to_pylist() == ids
