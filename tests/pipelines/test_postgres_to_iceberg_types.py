"""PostgreSQL -> Iceberg through the CLI: every mapped type arrives row for row, on local disk and on S3.

The expected values are computed by PostgreSQL and loaded by a plain psycopg connection (its default
loaders, not Dativo's); values Python cannot hold (BC dates and timestamps) and intervals (which Python
would fold) are compared as numbers PostgreSQL computes itself.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from tests.fixtures.postgres import PgSchema
from tests.fixtures.s3 import S3Server
from tests.pipelines.conftest import Lake, RunJob, postgres_job

TEXT = "héllo 😀 漢字 مرحبا שלום e\u0301 👨\u200d👩\u200d👧 \u200f"

DDL = r"""
CREATE TYPE mood AS ENUM ('sad', 'happy', '😀 joy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN price AS numeric(10, 2);
CREATE TABLE everything (
    id     integer PRIMARY KEY,
    i2     smallint,
    i4     integer,
    i8     bigint,
    f4     real,
    f8     double precision,
    dec    numeric(12, 2),
    big    numeric(38, 0),
    free   numeric,
    txt    text,
    vc     varchar(12),
    ch     char(5),
    bin    bytea,
    flag   boolean,
    d      date,
    bc     date,
    t      time,
    ts     timestamp,
    bcts   timestamp,
    tstz   timestamptz,
    iv     interval,
    u      uuid,
    j      json,
    jb     jsonb,
    ints   integer[],
    texts  text[],
    decs   numeric(6, 2)[],
    dates  date[],
    tss    timestamptz[],
    uuids  uuid[],
    mood   mood,
    moods  mood[],
    dom    posint,
    dprice price,
    ip     inet,
    cash   money,
    mac    macaddr,
    rng    int4range,
    bits   varbit,
    nn     text NOT NULL
);
INSERT INTO everything VALUES (
    1, -32768, 2147483647, -9223372036854775808, 1.5, -2.5e300,
    -1234567890.12, -99999999999999999999999999999999999999, 123456789.123456789,
    '{text}', 'Zoë 山田 🚀', 'ü', '\x00ff10', true,
    '0001-01-01', '4713-01-01 BC', '23:59:59.999999',
    '0001-01-01 00:00:00.000001', '0044-03-15 12:30:00 BC', '2024-03-01 00:00:00+02',
    '1 year 2 mons -3 days 04:05:06.000007', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    '{"a": [1,  2], "ü": "😀"}', '{"b": null, "a": [1, 2], "🔑": "値"}',
    '{1,NULL,3}', '{"x",NULL,"😀","مرحبا"}', '{1.5,NULL,-9999.99}', '{0001-01-01,NULL,9999-12-31}',
    '{"2024-01-01 00:00:00+00",NULL}', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}',
    '😀 joy', '{sad,NULL,"😀 joy"}', 5, 3.14,
    '192.168.0.1/24', 12.34, '08:00:2b:01:02:03', '[1,5)', B'1101', 'not null ✓'
), (
    2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, ''
), (
    3, 32767, -2147483648, 9223372036854775807, 'NaN', '-Infinity',
    0, 0, -0.0000000001,
    '', '', '', '\x', false,
    '9999-12-31', '0044-03-15 BC', '00:00:00',
    '9999-12-31 23:59:59.999999', '4713-01-01 00:00:00 BC', '1900-01-01 00:00:00+00',
    '-1 mons -04:00:00', '00000000-0000-0000-0000-000000000000',
    '[]', '{}',
    '{}', '{NULL}', '{}', '{}', '{}', '{}',
    'sad', '{}', 1, -0.01,
    '::1', -0.5, '00:00:00:00:00:00', 'empty', B'', ' '
);
INSERT INTO everything (id, i2, i4, i8, f4, f8, dec, free, txt, vc, ch, bin, flag, d, t, ts, tstz, iv, u,
                        jb, ints, texts, mood, dom, nn)
SELECT g, (g % 300)::smallint, g * 1000, g::bigint * 1000000000000, g / 4.0, g / 3.0, g * 1.25, g / 8.0,
       CASE WHEN g % 5 = 0 THEN NULL ELSE repeat('字', g % 7) || g END,
       CASE WHEN g % 6 = 0 THEN NULL ELSE 'v' || g END,
       CASE WHEN g % 7 = 0 THEN NULL ELSE (g % 100)::text END,
       CASE WHEN g % 8 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END,
       CASE WHEN g % 3 = 0 THEN NULL ELSE g % 2 = 0 END,
       date '1900-01-01' + g * 97,
       time '00:00' + g * interval '17 seconds',
       timestamp '1999-12-31 23:00' + g * interval '1 hour 1 microsecond',
       timestamptz '2024-06-01 00:00+00' - g * interval '1 day',
       CASE WHEN g % 4 = 0 THEN NULL ELSE g * interval '1 mon 1 day 1 second' END,
       md5(g::text)::uuid,
       jsonb_build_object('g', g, 'name', 'عدد ' || g),
       CASE WHEN g % 9 = 0 THEN NULL ELSE ARRAY[g, NULL, -g] END,
       ARRAY['t' || g, NULL],
       (ARRAY['sad', 'happy', '😀 joy']::mood[])[1 + g % 3],
       g,
       'row ' || g
FROM generate_series(4, 250) AS g;
"""

# Column -> the SELECT item whose psycopg value must equal what Iceberg returns.
EXPECTED_SQL = {
    "f4": "f4::float8",  # the float32 value itself, widened exactly
    "bc": "bc - DATE '1970-01-01'",  # days since the epoch (Python dates stop at year 1)
    "bcts": "(EXTRACT(EPOCH FROM bcts) * 1000000)::bigint",  # µs since the epoch
    "iv": """CASE WHEN iv IS NOT NULL THEN json_build_object(
                 'months', (EXTRACT(YEAR FROM iv) * 12 + EXTRACT(MONTH FROM iv))::int,
                 'days', EXTRACT(DAY FROM iv)::int,
                 'nanoseconds', ((EXTRACT(HOUR FROM iv) * 3600 + EXTRACT(MINUTE FROM iv) * 60
                                  + EXTRACT(SECOND FROM iv)) * 1000000000)::bigint) END""",
    "j": "j::text",
    "jb": "jb::text",
    "mood": "mood::text",
    "moods": "moods::text[]",
    "ip": "ip::text",
    "cash": "cash::text",
    "mac": "mac::text",
    "rng": "rng::text",
    "bits": "bits::text",
}
AS_NUMBER = {"bc": pa.int32(), "bcts": pa.int64()}  # Iceberg side of the columns compared as numbers


def expected_rows(schema: PgSchema, numeric: str) -> dict[str, list[Any]]:
    """Every column of ``everything`` by id, as PostgreSQL computes it and psycopg loads it."""
    columns = [r[0] for r in schema.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'everything'::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum"
    )]
    sql = dict(EXPECTED_SQL, free="free::text" if numeric == "string" else "free")
    items = ", ".join(f"{sql.get(c, c)} AS {c}" for c in columns)
    with psycopg.connect(schema.dsn, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema.name}")
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute("SET lc_monetary TO 'C'")
        cursor = conn.execute(f"SELECT {items} FROM everything ORDER BY id")
        rows = cursor.fetchall()
    return {c: [row[i] for row in rows] for i, c in enumerate(columns)}


def iceberg_columns(table: pa.Table) -> dict[str, list[Any]]:
    """Every column of the table read back, BC dates and timestamps as epoch numbers."""
    out = {}
    for name in table.column_names:
        column = table[name]
        if name in AS_NUMBER:
            column = column.cast(AS_NUMBER[name])
        values = column.to_pylist()
        out[name] = [_uuid(v) for v in values] if name in ("u", "uuids") else values
    return out


def _uuid(value: Any) -> Any:
    """UUIDs as ``uuid.UUID``, whether pyiceberg returns them as objects or 16 bytes."""
    if isinstance(value, list):
        return [_uuid(v) for v in value]
    return uuid.UUID(bytes=value) if isinstance(value, bytes) else value


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN (and the float type of a value does not matter)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


EXPECTED_TYPES = {
    "id": "int",
    "i2": "int",
    "i8": "long",
    "f4": "float",
    "f8": "double",
    "dec": "decimal(12, 2)",
    "big": "decimal(38, 0)",
    "bin": "binary",
    "d": "date",
    "t": "time",
    "ts": "timestamp",
    "tstz": "timestamptz",
    "u": "uuid",
    "j": "string",
    "dprice": "decimal(10, 2)",
    "dom": "int",
}


@pytest.mark.parametrize("reader", ["postgres", "postgres-python"])
@pytest.mark.parametrize("storage", ["local", "s3"])
def test_every_type_round_trips_row_for_row(
    request: pytest.FixtureRequest, storage: str, reader: str, pg_schema: PgSchema, run_job: RunJob
) -> None:
    lake: Lake = request.getfixturevalue(f"{storage}_lake")
    numeric = "decimal(38,10)" if storage == "local" else "string"  # both documented options, both stores
    pg_schema.execute(DDL.replace("{text}", TEXT))
    job = postgres_job(
        lake.target("everything", mode="overwrite"),
        tables=[pg_schema.table("everything")],
        reader=reader,
        parallelism=3,
        min_split_bytes=1,  # a small table, split as parallelism says
        numeric=numeric,
        batch_rows=64,  # postgres-python: several batches per split
        batch_size_bytes=8192,  # postgres (ADBC): several batches per split
    )

    outcome = run_job(job, env={"PG_DSN": pg_schema.dsn, **lake.env}).ok()

    report = outcome.report
    assert report["reader"]["implementation"] == reader and report["fallback_used"] is False
    assert report["rows_read"] == report["rows_written"] == 250
    [dataset] = report["datasets"]
    assert dataset["splits"] == 3 and dataset["rows"] == 250

    table = lake.table("everything")
    types = {f.name: str(f.field_type) for f in table.schema().fields}
    assert types | EXPECTED_TYPES == types, {k: types[k] for k in EXPECTED_TYPES}
    assert types["free"] == ("decimal(38, 10)" if numeric != "string" else "string")
    assert types["iv"].startswith("struct<") and types["ints"] == "list<int>"
    assert table.schema().find_field("nn").required and table.schema().find_field("id").required

    expected = expected_rows(pg_schema, numeric)
    actual = iceberg_columns(lake.read("everything"))
    assert sorted(actual) == sorted(expected)
    assert actual["id"] == list(range(1, 251))
    mismatched = {
        name: [(expected["id"][i], e, a) for i, (e, a) in enumerate(zip(expected[name], actual[name], strict=True))
               if not same(e, a)][:3]
        for name in expected
    }
    assert {k: v for k, v in mismatched.items() if v} == {}

    # The spot checks a reader of this test can verify by eye.
    row1 = {name: values[0] for name, values in actual.items()}
    assert row1["txt"] == TEXT and row1["ch"] == "ü    " and row1["bin"] == b"\x00\xff\x10"
    assert row1["bc"] == -2440550  # SELECT '4713-01-01 BC'::date - '1970-01-01'::date
    assert row1["iv"] == {"months": 14, "days": -3, "nanoseconds": 14_706_000_007_000}
    assert row1["moods"] == ["sad", None, "😀 joy"] and row1["cash"] == "$12.34"
    assert all(values[1] is None for name, values in actual.items() if name not in ("id", "nn"))

    if storage == "s3":
        bucket = lake.warehouse.removeprefix("s3://").split("/", 1)[0]
        assert table.location().startswith(f"{lake.warehouse}/raw/everything")
        s3_server: S3Server = request.getfixturevalue("s3_server")
        files = s3_server.filesystem().get_file_info(pafs.FileSelector(f"{bucket}/wh", recursive=True))
        assert any(f.path.endswith(".parquet") for f in files)
        for secret in (s3_server.access_key, s3_server.secret_key):
            assert secret not in outcome.output
