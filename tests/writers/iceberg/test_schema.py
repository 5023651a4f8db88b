"""prepare(): creating a table, evolving it, and refusing what Iceberg cannot evolve."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest

from dativo.api import Dataset
from dativo.errors import ConfigError, SchemaMismatch
from tests.writers.iceberg.conftest import MakeWriter
from tests.writers.iceberg.helpers import read, run, table_of, write

USERS = Dataset("public.users", primary_key=("id",))


def users(**columns: pa.Array) -> pa.Table:
    return pa.table({"id": pa.array([1, 2], pa.int64()), **columns})


def test_table_name_namespace_and_key_come_from_dataset_and_config(make_writer: MakeWriter) -> None:
    writer = make_writer(namespace="lake.raw")
    run(writer, USERS, users(name=pa.array(["a", "b"])), "r1")

    table = table_of(writer, USERS)
    assert table.name() == ("lake", "raw", "users")
    assert table.schema().identifier_field_ids == [1]
    assert table.properties["write.parquet.compression-codec"] == "zstd"

    named = make_writer(table="people", namespace="raw", table_properties={"owner": "data-team"})
    run(named, USERS, users(name=pa.array(["a", "b"])), "r1")
    assert table_of(named, USERS).name() == ("raw", "people")
    assert table_of(named, USERS).properties["owner"] == "data-team"


def test_a_new_nullable_column_evolves_the_table(make_writer: MakeWriter) -> None:
    writer = make_writer()
    run(writer, USERS, users(name=pa.array(["a", "b"])), "r1")

    evolved = pa.table(
        {
            "id": pa.array([3], pa.int64()),
            "name": ["c"],
            "email": ["c@x.org"],
            "tags": pa.array([["x"]], pa.list_(pa.string())),
        }
    )
    run(writer, USERS, evolved, "r2")

    result = read(writer, USERS)
    assert result.column("email").to_pylist() == [None, None, "c@x.org"]
    assert result.column("tags").to_pylist() == [None, None, ["x"]]
    schema = table_of(writer, USERS).schema()
    assert schema.find_field("email").optional and schema.find_field("id").required


def test_a_new_not_null_column_is_added_as_optional(make_writer: MakeWriter) -> None:
    writer = make_writer()
    run(writer, USERS, users(), "r1")
    strict = pa.schema([pa.field("id", pa.int64()), pa.field("code", pa.string(), nullable=False)])

    run(writer, USERS, pa.table({"id": [3], "code": ["z"]}, schema=strict), "r2")

    assert table_of(writer, USERS).schema().find_field("code").optional


def test_an_optional_column_missing_from_the_data_reads_as_null(make_writer: MakeWriter) -> None:
    writer = make_writer()
    run(writer, USERS, users(name=pa.array(["a", "b"])), "r1")

    run(writer, USERS, pa.table({"id": pa.array([3], pa.int64())}), "r2")

    assert read(writer, USERS).column("name").to_pylist() == ["a", "b", None]


def test_allowed_promotions_widen_the_table(make_writer: MakeWriter) -> None:
    writer = make_writer()
    first = users(
        n=pa.array([1, 2], pa.int32()),
        f=pa.array([0.5, 1.5], pa.float32()),
        d=pa.array([Decimal("1.5"), None], pa.decimal128(5, 1)),
    )
    run(writer, USERS, first, "r1")

    wider = pa.table(
        {
            "id": pa.array([3], pa.int64()),
            "n": pa.array([2**40], pa.int64()),
            "f": pa.array([0.1], pa.float64()),
            "d": pa.array([Decimal("12345678.9")], pa.decimal128(9, 1)),
        }
    )
    run(writer, USERS, wider, "r2")
    narrower = pa.table({"id": pa.array([4], pa.int64()), "n": pa.array([7], pa.int16())})  # cast up on write
    run(writer, USERS, narrower, "r3")

    schema = table_of(writer, USERS).schema()
    assert [str(schema.find_field(c).field_type) for c in ("n", "f", "d")] == [
        "long",
        "double",
        "decimal(9, 1)",
    ]
    result = read(writer, USERS)
    assert result.column("n").to_pylist() == [1, 2, 2**40, 7]
    assert result.column("d").to_pylist() == [Decimal("1.5"), None, Decimal("12345678.9"), None]


@pytest.mark.parametrize(
    ("old", "new", "table_type", "incoming_type"),
    [
        (pa.string(), pa.int64(), "string", "long"),
        (pa.int64(), pa.int32(), None, None),  # narrower: accepted
        (pa.int64(), pa.float64(), "long", "double"),
        (pa.timestamp("us"), pa.timestamp("us", tz="UTC"), "timestamp", "timestamptz"),
        (pa.decimal128(10, 2), pa.decimal128(12, 3), "decimal(10, 2)", "decimal(12, 3)"),
        (pa.list_(pa.int32()), pa.string(), "list<", "string"),
    ],
)
def test_incompatible_changes_name_column_and_both_types(
    make_writer: MakeWriter,
    old: pa.DataType,
    new: pa.DataType,
    table_type: str | None,
    incoming_type: str | None,
) -> None:
    writer = make_writer()
    writer.prepare(USERS, pa.schema([("id", pa.int64()), ("value", old)]), "append")

    if table_type is None:
        writer.prepare(USERS, pa.schema([("id", pa.int64()), ("value", new)]), "append")
        return
    with pytest.raises(SchemaMismatch) as error:
        writer.prepare(USERS, pa.schema([("id", pa.int64()), ("value", new)]), "append")

    message = str(error.value)
    assert "column 'value'" in message
    assert (
        f"the table has type {table_type}" in message and f"the incoming data has {incoming_type}" in message
    )
    assert error.value.role == "writer" and error.value.stage == "prepare"


def test_a_required_column_missing_from_the_data_is_an_error(make_writer: MakeWriter) -> None:
    writer = make_writer()
    writer.prepare(USERS, pa.schema([("id", pa.int64()), ("name", pa.string())]), "append")

    with pytest.raises(SchemaMismatch, match=r"column 'id'.*requires it \(NOT NULL long\).*no such column"):
        writer.prepare(USERS, pa.schema([("name", pa.string())]), "append")


def test_nested_struct_fields_evolve(make_writer: MakeWriter) -> None:
    writer = make_writer()
    point = pa.struct([("x", pa.float64())])
    run(writer, USERS, users(p=pa.array([{"x": 1.0}, None], point)), "r1")

    point3 = pa.struct([("x", pa.float64()), ("z", pa.float64())])
    run(
        writer,
        USERS,
        pa.table({"id": pa.array([3], pa.int64()), "p": pa.array([{"x": 2.0, "z": 3.0}], point3)}),
        "r2",
    )

    assert read(writer, USERS).column("p").to_pylist() == [{"x": 1.0, "z": None}, None, {"x": 2.0, "z": 3.0}]


def test_write_refuses_columns_that_prepare_did_not_see(make_writer: MakeWriter) -> None:
    writer = make_writer()
    writer.prepare(USERS, pa.schema([("id", pa.int64())]), "append")

    with pytest.raises(SchemaMismatch, match=r"column 'surprise'.*not in the table"):
        write(writer, USERS, pa.table({"id": pa.array([1], pa.int64()), "surprise": [1]}))


def test_partition_by_must_match_an_existing_table(make_writer: MakeWriter) -> None:
    run(make_writer(partition_by=["id"]), USERS, users(), "r1")

    with pytest.raises(
        ConfigError, match=r"partitioned by \[identity\(id\)\].*asks for \['bucket\(4, id\)'\]"
    ):
        make_writer(partition_by=["bucket(4, id)"]).prepare(USERS, users().schema, "append")
    make_writer().prepare(USERS, users().schema, "append")  # no partition_by: the table's spec is used


@pytest.mark.parametrize("expr", ["nope(id)", "bucket(id)", "day(missing)", "day(id)", "truncate(0, id)"])
def test_bad_partition_by_is_a_config_error(make_writer: MakeWriter, expr: str) -> None:
    with pytest.raises(ConfigError, match="partition_by"):
        make_writer(partition_by=[expr]).prepare(USERS, users().schema, "append")
