"""Type mapping: every supported PostgreSQL type, NULLs, edge values; both readers must agree exactly."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal

import pyarrow as pa
import pytest

from dativo.errors import ConfigError, PluginFailed
from dativo.readers.postgres import PostgresPythonReader, PostgresReader
from tests.fixtures.postgres import PgSchema
from tests.readers.postgres.helpers import read_all

UTC = dt.UTC

ALL_TYPES_DDL = """
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN price AS numeric(10, 2);
CREATE TABLE everything (
    id      integer PRIMARY KEY,
    i2      smallint,
    i4      integer NOT NULL,
    i8      bigint,
    f4      real,
    f8      double precision,
    dec     numeric(12, 2),
    big     numeric(38, 0),
    neg     numeric(3, -2),
    free    numeric,
    txt     text,
    vc      varchar(10),
    ch      char(3),
    bin     bytea,
    flag    boolean,
    d       date,
    bc      date,
    t       time,
    ts      timestamp,
    tstz    timestamptz,
    iv      interval,
    u       uuid,
    j       json,
    jb      jsonb,
    ints    integer[],
    texts   text[],
    decs    numeric(5, 2)[],
    uuids   uuid[],
    dates   date[],
    mood    mood,
    moods   mood[],
    dom     posint,
    dprice  price,
    ip      inet,
    net     cidr,
    mac     macaddr,
    cash    money,
    bits    bit(3),
    vbits   varbit,
    tsv     tsvector,
    pt      point,
    rng     int4range,
    ttz     timetz,
    o       oid,
    c1      "char",
    nm      name,
    ips     inet[],
    js      jsonb[]
);
INSERT INTO everything VALUES (
    1, -32768, 2147483647, -9223372036854775808, 1.5, -2.5e300,
    -1234567890.12, -99999999999999999999999999999999999999, 12345, 123456789.123456789,
    'héllo 😀 漢字', 'ab', 'x', '\\x00ff', true,
    '0001-01-01', '4713-01-01 BC', '23:59:59.999999',
    '0001-01-01 00:00:00.000001', '2024-03-01 00:00:00+02',
    '1 year 2 mons -3 days 04:05:06.000007', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    '{"a": [1,  2]}', '{"b": null, "a": [1, 2]}',
    '{1,NULL,3}', '{"x",NULL,"😀"}', '{1.5,NULL,-999.99}',
    '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}', '{3000-06-15,NULL}',
    'happy', '{sad,NULL,happy}', 5, 3.14,
    '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', 12.34, '101', '1101',
    'fat cat', '(1.5,-2)', '[1,5)', '12:00:00+02', 4000000000, 'c', 'nm',
    '{10.0.0.1,NULL}', ARRAY['{"k": 1}'::jsonb, NULL]
), (
    2, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
), (
    3, 32767, -1, 9223372036854775807, 'NaN', '-Infinity',
    0, 0, 0, -0.000000001,
    '', '', '', '\\x', false,
    '9999-12-31', '0044-03-15 BC', '00:00:00',
    '3000-06-15 12:00:00', '1900-01-01 00:00:00+00',
    '0 seconds', '00000000-0000-0000-0000-000000000000',
    '[]', '{}',
    '{}', '{NULL}', '{}', '{}', '{}',
    'sad', '{}', 1, -0.01,
    '::1', '::/0', '00:00:00:00:00:00', -0.5, '000', '',
    '', '(0,0)', 'empty', '00:00:00+00', 0, ' ', '',
    '{}', '{}'
);
"""

EXPECTED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int32(), nullable=False),
        ("i2", pa.int16()),
        pa.field("i4", pa.int32(), nullable=False),
        ("i8", pa.int64()),
        ("f4", pa.float32()),
        ("f8", pa.float64()),
        ("dec", pa.decimal128(12, 2)),
        ("big", pa.decimal128(38, 0)),
        ("neg", pa.decimal128(5, 0)),
        ("free", pa.decimal128(38, 9)),
        ("txt", pa.string()),
        ("vc", pa.string()),
        ("ch", pa.string()),
        ("bin", pa.binary()),
        ("flag", pa.bool_()),
        ("d", pa.date32()),
        ("bc", pa.date32()),
        ("t", pa.time64("us")),
        ("ts", pa.timestamp("us")),
        ("tstz", pa.timestamp("us", tz="UTC")),
        ("iv", pa.month_day_nano_interval()),
        ("u", pa.uuid()),
        ("j", pa.string()),
        ("jb", pa.string()),
        ("ints", pa.list_(pa.int32())),
        ("texts", pa.list_(pa.string())),
        ("decs", pa.list_(pa.decimal128(5, 2))),
        ("uuids", pa.list_(pa.uuid())),
        ("dates", pa.list_(pa.date32())),
        ("mood", pa.string()),
        ("moods", pa.list_(pa.string())),
        ("dom", pa.int32()),
        ("dprice", pa.decimal128(10, 2)),
        ("ip", pa.string()),
        ("net", pa.string()),
        ("mac", pa.string()),
        ("cash", pa.string()),
        ("bits", pa.string()),
        ("vbits", pa.string()),
        ("tsv", pa.string()),
        ("pt", pa.string()),
        ("rng", pa.string()),
        ("ttz", pa.string()),
        ("o", pa.int64()),
        ("c1", pa.string()),
        ("nm", pa.string()),
        ("ips", pa.list_(pa.string())),
        ("js", pa.list_(pa.string())),
    ]
)

U = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
ROW_1 = {
    "id": 1,
    "i2": -32768,
    "i4": 2147483647,
    "i8": -9223372036854775808,
    "f4": 1.5,
    "f8": -2.5e300,
    "dec": Decimal("-1234567890.12"),
    "big": Decimal("-99999999999999999999999999999999999999"),
    "neg": Decimal("12300"),
    "free": Decimal("123456789.123456789"),
    "txt": "héllo 😀 漢字",
    "vc": "ab",
    "ch": "x  ",
    "bin": b"\x00\xff",
    "flag": True,
    "d": dt.date(1, 1, 1),
    "t": dt.time(23, 59, 59, 999999),
    "ts": dt.datetime(1, 1, 1, 0, 0, 0, 1),
    "tstz": dt.datetime(2024, 2, 29, 22, 0, tzinfo=UTC),
    "iv": pa.MonthDayNano([14, -3, (4 * 3600 + 5 * 60 + 6) * 10**9 + 7000]),
    "u": U,
    "j": '{"a": [1,  2]}',
    "jb": '{"a": [1, 2], "b": null}',
    "ints": [1, None, 3],
    "texts": ["x", None, "😀"],
    "decs": [Decimal("1.50"), None, Decimal("-999.99")],
    "uuids": [U, None],
    "dates": [dt.date(3000, 6, 15), None],
    "mood": "happy",
    "moods": ["sad", None, "happy"],
    "dom": 5,
    "dprice": Decimal("3.14"),
    "ip": "192.168.0.1/24",
    "net": "10.0.0.0/8",
    "mac": "08:00:2b:01:02:03",
    "cash": "$12.34",
    "bits": "101",
    "vbits": "1101",
    "tsv": "'cat' 'fat'",
    "pt": "(1.5,-2)",
    "rng": "[1,5)",
    "ttz": "12:00:00+02",
    "o": 4000000000,
    "c1": "c",
    "nm": "nm",
    "ips": ["10.0.0.1/32", None],
    "js": ['{"k": 1}', None],
}
ROW_3 = {
    "id": 3,
    "i2": 32767,
    "i4": -1,
    "i8": 9223372036854775807,
    "f8": -math.inf,
    "dec": Decimal("0.00"),
    "big": Decimal("0"),
    "neg": Decimal("0"),
    "free": Decimal("-1E-9"),
    "txt": "",
    "vc": "",
    "ch": "   ",
    "bin": b"",
    "flag": False,
    "d": dt.date(9999, 12, 31),
    "t": dt.time(0, 0),
    "ts": dt.datetime(3000, 6, 15, 12, 0),
    "tstz": dt.datetime(1900, 1, 1, tzinfo=UTC),
    "iv": pa.MonthDayNano([0, 0, 0]),
    "u": uuid.UUID(int=0),
    "j": "[]",
    "jb": "{}",
    "ints": [],
    "texts": [None],
    "decs": [],
    "uuids": [],
    "dates": [],
    "mood": "sad",
    "moods": [],
    "dom": 1,
    "dprice": Decimal("-0.01"),
    "ip": "::1/128",
    "net": "::/0",
    "mac": "00:00:00:00:00:00",
    "cash": "-$0.50",
    "bits": "000",
    "vbits": "",
    "tsv": "",
    "pt": "(0,0)",
    "rng": "empty",
    "ttz": "00:00:00+00",
    "o": 0,
    "c1": " ",
    "nm": "",
    "ips": [],
    "js": [],
}


@pytest.fixture
def everything(pg_schema: PgSchema) -> PgSchema:
    pg_schema.execute(ALL_TYPES_DDL)
    return pg_schema


def test_every_type_maps_losslessly(everything: PgSchema, reader_cls, make_reader) -> None:
    reader = make_reader(reader_cls, everything.dsn, tables=[everything.table("everything")])
    [dataset] = reader.discover()
    assert dataset.schema == EXPECTED_SCHEMA
    table = read_all(reader).sort_by("id")
    assert table.schema == EXPECTED_SCHEMA
    assert table.num_rows == 3

    # BC dates have no Python form: compare day numbers (1970-01-01 = 0), as PostgreSQL computes them:
    # SELECT '4713-01-01 BC'::date - '1970-01-01'::date  -> -2440550
    assert table["bc"].cast(pa.int32()).to_pylist() == [-2440550, None, -735160]
    rows = table.drop_columns(["bc"]).to_pylist()

    assert rows[0] == ROW_1
    assert rows[1] == {"id": 2, "i4": 0} | {k: None for k in ROW_1 if k not in ("id", "i4")}
    assert math.isnan(rows[2].pop("f4"))
    assert rows[2] == ROW_3


def test_both_readers_produce_identical_tables(everything: PgSchema, make_reader) -> None:
    tables = [
        read_all(make_reader(cls, everything.dsn, tables=[everything.table("everything")]))
        for cls in (PostgresReader, PostgresPythonReader)
    ]
    assert tables[0].schema == tables[1].schema == EXPECTED_SCHEMA
    for name in EXPECTED_SCHEMA.names:
        first, second = tables[0][name], tables[1][name]
        if pa.types.is_floating(first.type):  # NaN != NaN for equals(); compare the printed values
            assert [repr(v) for v in first.to_pylist()] == [repr(v) for v in second.to_pylist()], name
        else:
            assert first.equals(second), name


def test_empty_table_gives_zero_rows_with_the_schema(pg_schema: PgSchema, reader_cls, make_reader) -> None:
    pg_schema.execute("CREATE TABLE empty (id bigint PRIMARY KEY, amount numeric(9, 3), tags text[])")
    reader = make_reader(reader_cls, pg_schema.dsn, tables=[pg_schema.table("empty")], parallelism=4)
    table = read_all(reader)
    assert table.num_rows == 0
    assert table.schema == pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            ("amount", pa.decimal128(9, 3)),
            ("tags", pa.list_(pa.string())),
        ]
    )


@pytest.mark.parametrize(
    ("option", "arrow_type", "expected"),
    [
        (
            "decimal(38,20)",
            pa.decimal128(38, 20),
            [Decimal("1.00000000000000000001"), Decimal("-12345.5"), None],
        ),
        ("string", pa.string(), ["1.00000000000000000001", "-12345.5", None]),
        ("float64", pa.float64(), [1.0, -12345.5, None]),
    ],
)
def test_unconstrained_numeric_follows_the_option(
    pg_schema: PgSchema, reader_cls, make_reader, option: str, arrow_type: pa.DataType, expected: list
) -> None:
    pg_schema.execute("CREATE TABLE n (id int PRIMARY KEY, v numeric)")
    pg_schema.execute("INSERT INTO n VALUES (1, 1.00000000000000000001), (2, -12345.5), (3, NULL)")
    reader = make_reader(reader_cls, pg_schema.dsn, tables=[pg_schema.table("n")], numeric=option)
    table = read_all(reader).sort_by("id")
    assert table.schema.field("v").type == arrow_type
    assert table["v"].to_pylist() == expected


def test_numeric_that_does_not_fit_is_an_error_not_a_rounding(
    pg_schema: PgSchema, reader_cls, make_reader
) -> None:
    pg_schema.execute("CREATE TABLE n (id int PRIMARY KEY, v numeric)")
    pg_schema.execute("INSERT INTO n VALUES (1, 1.00000000000000000001)")
    reader = make_reader(reader_cls, pg_schema.dsn, tables=[pg_schema.table("n")])  # default decimal(38,9)
    with pytest.raises(PluginFailed) as caught:
        read_all(reader)
    message = str(caught.value)
    assert "Column v of" in message and "decimal128(38, 9)" in message and "numeric" in message


@pytest.mark.parametrize("special", ["NaN", "Infinity", "-Infinity"])
def test_numeric_nan_and_infinity(pg_schema: PgSchema, reader_cls, make_reader, special: str) -> None:
    pg_schema.execute("CREATE TABLE n (id int PRIMARY KEY, v numeric)")
    pg_schema.execute("INSERT INTO n VALUES (1, %s::numeric)", (special,))
    with pytest.raises(PluginFailed, match=r"Column v of .* does not fit"):
        read_all(make_reader(reader_cls, pg_schema.dsn, tables=[pg_schema.table("n")]))
    as_text = read_all(
        make_reader(reader_cls, pg_schema.dsn, tables=[pg_schema.table("n")], numeric="string")
    )
    assert as_text["v"].to_pylist() == [special]
    as_float = read_all(
        make_reader(reader_cls, pg_schema.dsn, tables=[pg_schema.table("n")], numeric="float64")
    )
    assert str(as_float["v"][0].as_py()) == {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}[special]


@pytest.mark.parametrize(
    ("ddl", "value", "column_message"),
    [
        (
            "ts timestamp",
            "'infinity'",
            "column v holds a date or timestamp that Arrow cannot represent: infinity",
        ),
        (
            "ts timestamptz",
            "'-infinity'",
            "column v holds a date or timestamp that Arrow cannot represent: -infinity",
        ),
        ("d date", "'infinity'", "column v holds a date or timestamp that Arrow cannot represent: infinity"),
        ("ds date[]", "'{2020-01-01,infinity}'", "column v holds a date or timestamp"),
        ("a int[]", "'{{1,2},{3,4}}'", "column v holds a multi-dimensional array"),
    ],
)
def test_values_arrow_cannot_hold_stop_the_read(
    pg_schema: PgSchema, reader_cls, make_reader, ddl: str, value: str, column_message: str
) -> None:
    type_name = ddl.split(" ", 1)[1]
    pg_schema.execute(f"CREATE TABLE x (id int PRIMARY KEY, v {type_name})")
    pg_schema.execute(f"INSERT INTO x VALUES (1, NULL), (2, {value})")
    reader = make_reader(reader_cls, pg_schema.dsn, tables=[pg_schema.table("x")])
    with pytest.raises(PluginFailed) as caught:
        read_all(reader)
    assert column_message in str(caught.value)
    assert caught.value.stage == "read"


def test_pseudo_type_is_refused_naming_the_column(pg_dsn: str, reader_cls, make_reader) -> None:
    reader = make_reader(reader_cls, pg_dsn, query="SELECT 1 AS id, ROW(1, 'a') AS pair")
    with pytest.raises(
        ConfigError, match=r"Column pair of query has type record, which has no Arrow mapping"
    ):
        reader.discover()
