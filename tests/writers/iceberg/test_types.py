"""Every Arrow type a reader produces lands in Iceberg losslessly and reads back with pyiceberg."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal

import pyarrow as pa
import pytest

from dativo.api import Dataset
from dativo.errors import SchemaMismatch
from tests.writers.iceberg.conftest import MakeWriter
from tests.writers.iceberg.helpers import read, run, table_of, write

UTC = dt.UTC
U1, U2 = uuid.UUID("12345678-1234-5678-1234-567812345678"), uuid.uuid4()


def uuid_array(values: list[uuid.UUID | None]) -> pa.Array:
    storage = pa.array([v.bytes if v else None for v in values], pa.binary(16))
    return pa.ExtensionArray.from_storage(pa.uuid(), storage)


def interval(months: int, days: int, nanos: int) -> pa.MonthDayNano:
    return pa.MonthDayNano([months, days, nanos])


# column -> (input array, Iceberg type, expected values read back)
CASES: dict[str, tuple[pa.Array, str, list[object]]] = {
    "i8": (pa.array([-128, None, 127], pa.int8()), "int", [-128, None, 127]),
    "i16": (pa.array([-32768, None, 32767], pa.int16()), "int", [-32768, None, 32767]),
    "i32": (pa.array([-(2**31), None, 2**31 - 1], pa.int32()), "int", [-(2**31), None, 2**31 - 1]),
    "i64": (pa.array([-(2**63), None, 2**63 - 1], pa.int64()), "long", [-(2**63), None, 2**63 - 1]),
    "u8": (pa.array([0, None, 255], pa.uint8()), "int", [0, None, 255]),
    "u16": (pa.array([0, None, 65535], pa.uint16()), "int", [0, None, 65535]),
    "u32": (pa.array([0, None, 2**32 - 1], pa.uint32()), "long", [0, None, 2**32 - 1]),
    "u64": (
        pa.array([0, None, 2**64 - 1], pa.uint64()),
        "decimal(20, 0)",
        [Decimal(0), None, Decimal(2**64 - 1)],
    ),
    "f16": (pa.array([1.5, None, -2.0], pa.float16()), "float", [1.5, None, -2.0]),
    "f32": (pa.array([1.25, None, float("inf")], pa.float32()), "float", [1.25, None, float("inf")]),
    "f64": (pa.array([1e308, None, -0.5], pa.float64()), "double", [1e308, None, -0.5]),
    "dec": (
        pa.array([Decimal("12345.67"), None, Decimal("-0.01")], pa.decimal128(7, 2)),
        "decimal(7, 2)",
        [Decimal("12345.67"), None, Decimal("-0.01")],
    ),
    "dec38": (
        pa.array([Decimal("9" * 28 + "." + "9" * 10), None, Decimal("0")], pa.decimal128(38, 10)),
        "decimal(38, 10)",
        [Decimal("9" * 28 + "." + "9" * 10), None, Decimal("0E-10")],
    ),
    "str": (pa.array(["héllo wörld 😀", None, ""], pa.string()), "string", ["héllo wörld 😀", None, ""]),
    "lstr": (
        pa.array(["日本語", None, "x" * 1000], pa.large_string()),
        "string",
        ["日本語", None, "x" * 1000],
    ),
    "sview": (
        pa.array(["a long string view value", None, "b"], pa.string_view()),
        "string",
        ["a long string view value", None, "b"],
    ),
    "bin": (pa.array([b"\x00\xff", None, b""], pa.binary()), "binary", [b"\x00\xff", None, b""]),
    "lbin": (pa.array([b"\x01" * 100, None, b"z"], pa.large_binary()), "binary", [b"\x01" * 100, None, b"z"]),
    "bool": (pa.array([True, None, False]), "boolean", [True, None, False]),
    "date": (
        pa.array([dt.date(2024, 2, 29), None, dt.date(1, 1, 1)], pa.date32()),
        "date",
        [dt.date(2024, 2, 29), None, dt.date(1, 1, 1)],
    ),
    "time": (
        pa.array([dt.time(0, 0), None, dt.time(23, 59, 59, 999999)], pa.time64("us")),
        "time",
        [dt.time(0, 0), None, dt.time(23, 59, 59, 999999)],
    ),
    "ts": (
        pa.array(
            [dt.datetime(2024, 1, 2, 3, 4, 5, 678901), None, dt.datetime(1900, 1, 1)], pa.timestamp("us")
        ),
        "timestamp",
        [dt.datetime(2024, 1, 2, 3, 4, 5, 678901), None, dt.datetime(1900, 1, 1)],
    ),
    "tstz": (
        pa.array(
            [
                dt.datetime(2024, 1, 2, 3, 4, 5, 1, tzinfo=UTC),
                None,
                dt.datetime(1969, 12, 31, 23, 59, tzinfo=UTC),
            ],
            pa.timestamp("us", tz="UTC"),
        ),
        "timestamptz",
        [
            dt.datetime(2024, 1, 2, 3, 4, 5, 1, tzinfo=UTC),
            None,
            dt.datetime(1969, 12, 31, 23, 59, tzinfo=UTC),
        ],
    ),
    "tsparis": (
        pa.array(
            [dt.datetime(2024, 6, 1, 12, tzinfo=UTC), None, None], pa.timestamp("us", tz="Europe/Paris")
        ),
        "timestamptz",
        [dt.datetime(2024, 6, 1, 12, tzinfo=UTC), None, None],
    ),
    "ts_ms": (
        pa.array([dt.datetime(2024, 1, 1, 0, 0, 0, 123000), None, None], pa.timestamp("ms")),
        "timestamp",
        [dt.datetime(2024, 1, 1, 0, 0, 0, 123000), None, None],
    ),
    "uuid": (uuid_array([U1, None, U2]), "uuid", [U1, None, U2]),
    "ints": (pa.array([[1, None, 3], None, []], pa.list_(pa.int32())), "list<int>", [[1, None, 3], None, []]),
    "strs": (
        pa.array([["a", "ü"], [], None], pa.large_list(pa.string())),
        "list<string>",
        [["a", "ü"], [], None],
    ),
    "tss": (
        pa.array(
            [[dt.datetime(2024, 1, 1, tzinfo=UTC)], None, [None]], pa.list_(pa.timestamp("us", tz="UTC"))
        ),
        "list<timestamptz>",
        [[dt.datetime(2024, 1, 1, tzinfo=UTC)], None, [None]],
    ),
    "decs": (
        pa.array([[Decimal("1.5")], [None, Decimal("-2.25")], None], pa.list_(pa.decimal128(5, 2))),
        "list<decimal(5, 2)>",
        [[Decimal("1.50")], [None, Decimal("-2.25")], None],
    ),
    "iv": (
        pa.array([interval(1, 2, 3_000_000_000), None, interval(-14, -3, -1)], pa.month_day_nano_interval()),
        "struct<months: int, days: int, nanoseconds: long>",
        [
            {"months": 1, "days": 2, "nanoseconds": 3_000_000_000},
            None,
            {"months": -14, "days": -3, "nanoseconds": -1},
        ],
    ),
    "dict": (pa.array(["red", None, "red"]).dictionary_encode(), "string", ["red", None, "red"]),
    "json": (
        pa.ExtensionArray.from_storage(pa.json_(), pa.array(['{"a": 1}', None, "[]"])),
        "string",
        ['{"a": 1}', None, "[]"],
    ),
    "fixed": (
        pa.array([b"abcd", None, b"\x00\x00\x00\x00"], pa.binary(4)),
        "fixed[4]",
        [b"abcd", None, b"\x00\x00\x00\x00"],
    ),
    "point": (
        pa.array(
            [{"x": 1.0, "y": None}, None, {"x": None, "y": 2.0}],
            pa.struct([("x", pa.float64()), ("y", pa.float64())]),
        ),
        "struct<x: double, y: double>",
        [{"x": 1.0, "y": None}, None, {"x": None, "y": 2.0}],
    ),
    "tags": (
        pa.array([[("k", "v")], None, []], pa.map_(pa.string(), pa.string())),
        "map<string, string>",
        [[("k", "v")], None, []],
    ),
}


def test_every_reader_type_round_trips(make_writer: MakeWriter) -> None:
    data = pa.table(
        {"id": pa.array([1, 2, 3], pa.int64()), **{name: case[0] for name, case in CASES.items()}}
    )
    dataset = Dataset("public.all_types", data.schema, primary_key=("id",))
    writer = make_writer()

    run(writer, dataset, data, "r1")

    schema = table_of(writer, dataset).schema()
    assert schema.find_field("id").required
    for name, (_, iceberg_type, _) in CASES.items():
        field = schema.find_field(name)
        assert _plain(str(field.field_type)) == iceberg_type, name
        assert field.optional, name
    result = read(writer, dataset)
    for name, (_, _, expected) in CASES.items():
        assert result.column(name).to_pylist() == expected, name
    assert result.column("uuid").type == pa.uuid()


def _plain(type_text: str) -> str:
    """Iceberg's type text without field ids and optional markers, e.g. 'list<int>'."""
    return re.sub(r"\d+: ", "", type_text).replace("optional ", "").replace("required ", "")


def test_many_batches_and_sliced_arrays(make_writer: MakeWriter) -> None:
    base = pa.table(
        {
            "id": pa.array(range(1000), pa.int64()),
            "iv": pa.array(
                [interval(i, -i, i * 1000) if i % 7 else None for i in range(1000)],
                pa.month_day_nano_interval(),
            ),
            "tags": pa.array(
                [[str(i)] * (i % 3) if i % 5 else None for i in range(1000)], pa.list_(pa.string())
            ),
            "u": uuid_array([uuid.UUID(int=i) if i % 4 else None for i in range(1000)]),
        }
    )
    dataset = Dataset("public.sliced", base.schema)
    writer = make_writer()
    writer.prepare(dataset, base.schema, "append")
    batches = [base.slice(start, 97).to_batches()[0] for start in range(0, 1000, 97)]  # sliced, odd offsets
    files = write(writer, dataset, batches)
    writer.commit(dataset, [files], None, "r1")

    expected = [
        {
            **row,
            "iv": row["iv"]
            and {"months": row["iv"].months, "days": row["iv"].days, "nanoseconds": row["iv"].nanoseconds},
        }
        for row in base.to_pylist()
    ]
    assert read(writer, dataset).to_pylist() == expected


def test_nanosecond_timestamps_keep_whole_microseconds_and_refuse_loss(make_writer: MakeWriter) -> None:
    good = pa.table({"id": [1], "ts": pa.array([1_000_000_001_000], pa.timestamp("ns"))})
    dataset = Dataset("public.ns", good.schema)
    writer = make_writer()
    run(writer, dataset, good, "r1")
    assert read(writer, dataset).column("ts").to_pylist() == [dt.datetime(1970, 1, 1, 0, 16, 40, 1)]

    lossy = pa.table({"id": [2], "ts": pa.array([1_000_000_000_001], pa.timestamp("ns"))})
    with pytest.raises(SchemaMismatch, match=r"column 'ts'.*without loss"):
        write(writer, dataset, lossy)


@pytest.mark.parametrize(
    ("arrow_type", "needle"),
    [
        (pa.null(), "null"),
        (pa.duration("us"), "duration"),
        (pa.decimal256(50, 2), "precision 50"),
        (pa.dense_union([pa.field("a", pa.int32())]), "union"),
    ],
)
def test_unsupported_types_name_the_column(
    make_writer: MakeWriter, arrow_type: pa.DataType, needle: str
) -> None:
    schema = pa.schema([("id", pa.int64()), ("weird", arrow_type)])
    writer = make_writer()

    with pytest.raises(SchemaMismatch) as error:
        writer.prepare(Dataset("public.weird", schema), schema, "append")

    message = str(error.value)
    assert "column 'weird'" in message and needle in message
    assert "job 't'" in message and "plugin 'iceberg'" in message


def test_opaque_extension_type_is_refused_with_a_hint(make_writer: MakeWriter) -> None:
    opaque = pa.opaque(pa.string(), type_name="numeric", vendor_name="PostgreSQL")
    schema = pa.schema([("amount", opaque)])
    writer = make_writer()

    with pytest.raises(SchemaMismatch, match=r"column 'amount'.*arrow.opaque.*decimal128"):
        writer.prepare(Dataset("public.money", schema), schema, "append")
