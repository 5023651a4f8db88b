"""What the tests of the Postgres reader plugins share: a table of every scalar type, and how to compare.

``rust_postgres`` and ``go_postgres`` must read exactly what the built-in ``postgres`` reader reads; both
test modules build the same table and compare with the same rules.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from dativo.api import Reader
from tests.readers.postgres.helpers import read_all

_TYPES_DDL = """
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE DOMAIN price AS numeric(10, 2);
CREATE TABLE everything (
    id     bigint PRIMARY KEY,
    i2     smallint,
    i4     integer NOT NULL,
    i8     bigint,
    f4     real,
    f8     double precision,
    dec    numeric(12, 2),
    big    numeric(38, 0),
    tiny   numeric(38, 38),
    neg    numeric(3, -2),
    free   numeric,
    dprice price,
    txt    text,
    vc     varchar(10),
    ch     char(3),
    nm     name,
    bin    bytea,
    flag   boolean,
    d      date,
    ts     timestamp,
    tstz   timestamptz,
    t      time,
    iv     interval,
    u      uuid,
    j      json,
    jb     jsonb,
    mood   mood,
    ip     inet,
    o      oid,
    c1     "char"
);
INSERT INTO everything VALUES (
    1, -32768, 2147483647, -9223372036854775808, 1.5, -2.5e300,
    -1234567890.12, -99999999999999999999999999999999999999, 0.99999999999999999999999999999999999999,
    -12300, 123456789.123456789, 3.14,
    'héllo 😀 漢字', 'ab', 'x', 'nm', '\\x00ff', true,
    '0001-01-01', '0001-01-01 00:00:00.000001', '1900-01-01 00:00:00+00', '23:59:59.999999',
    '1 year 2 mons -3 days 04:05:06.000007', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    '{"a": [1,  2]}', '{"b": null, "a": [1, 2]}', 'happy', '192.168.0.1/24', 4000000000, 'c'
), (
    2, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
), (
    3, 32767, -1, 9223372036854775807, 'NaN', '-Infinity',
    -0.01, 99999999999999999999999999999999999999, -0.00000000000000000000000000000000000001,
    99900, -0.000000001, -99999999.99,
    '', '', '', '', '\\x', false,
    '4713-01-01 BC', '1900-01-01 00:00:00', '0044-03-15 12:00:00+00 BC', '00:00:00',
    '-178000000 years', '00000000-0000-0000-0000-000000000000',
    '[]', '{}', 'sad', '::1', 0, ' '
), (
    4, 0, 0, 0, 'Infinity', 'NaN',
    0, 0, 0, 0, 1.50000000000, 0,
    repeat('ü', 5000), 'ten chars!', 'abc', repeat('n', 63), decode(repeat('ab', 100000), 'hex'), NULL,
    '1999-12-31', '2000-01-01 00:00:00', '1970-01-01 00:00:00+00', '12:34:56.789',
    '0 seconds', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
    'null', 'null', NULL, '10.0.0.0/8', 1, 'x'
);
-- Volume: several batches per split, NULLs scattered through every nullable column.
INSERT INTO everything
SELECT g,
       CASE WHEN g % 7 = 0 THEN NULL ELSE (g % 32767)::smallint END,
       g::integer,
       CASE WHEN g % 5 = 0 THEN NULL ELSE g::bigint * 1000003 END,
       CASE WHEN g % 11 = 0 THEN NULL ELSE g / 7.0 END,
       CASE WHEN g % 13 = 0 THEN NULL ELSE g / 3.0 END,
       CASE WHEN g % 3 = 0 THEN NULL ELSE (g * 1.01 - 500000)::numeric(12, 2) END,
       CASE WHEN g % 4 = 0 THEN NULL ELSE (g::numeric * 1e30) END,
       CASE WHEN g % 6 = 0 THEN NULL ELSE (1.0 / g)::numeric(38, 38) END,
       CASE WHEN g % 8 = 0 THEN NULL ELSE round((g % 999)::numeric, -2) END,
       CASE WHEN g % 9 = 0 THEN NULL ELSE (g / 8.0)::numeric END,
       CASE WHEN g % 10 = 0 THEN NULL ELSE (g % 1000 - 500) / 4.0 END,
       CASE WHEN g % 2 = 0 THEN NULL ELSE 'row ' || g || ' ✓' END,
       CASE WHEN g % 3 = 1 THEN NULL ELSE left(md5(g::text), 10) END,
       CASE WHEN g % 4 = 1 THEN NULL ELSE chr(65 + g % 26) END,
       CASE WHEN g % 5 = 1 THEN NULL ELSE 'n' || g END,
       CASE WHEN g % 6 = 1 THEN NULL ELSE decode(md5(g::text), 'hex') END,
       CASE WHEN g % 7 = 1 THEN NULL ELSE g % 2 = 0 END,
       CASE WHEN g % 8 = 1 THEN NULL ELSE date '1800-01-01' + g END,
       CASE WHEN g % 9 = 1 THEN NULL ELSE timestamp '1890-06-01' + g * interval '37 minutes 1.5 seconds' END,
       CASE WHEN g % 10 = 1 THEN NULL ELSE timestamptz '2020-01-01Z' - g * interval '3600.000001 s' END,
       CASE WHEN g % 11 = 1 THEN NULL ELSE time '00:00' + g * interval '1 second' END,
       CASE WHEN g % 12 = 1 THEN NULL ELSE make_interval(0, g % 13, 0, g % 40, 0, 0, g / 1000.0) END,
       CASE WHEN g % 13 = 1 THEN NULL ELSE md5(g::text)::uuid END,
       CASE WHEN g % 14 = 1 THEN NULL ELSE json_build_object('g', g) END,
       CASE WHEN g % 15 = 1 THEN NULL ELSE jsonb_build_object('g', g, 'ü', true) END,
       CASE WHEN g % 16 = 1 THEN NULL ELSE (CASE WHEN g % 2 = 0 THEN 'sad' ELSE 'happy' END)::mood END,
       CASE WHEN g % 17 = 1 THEN NULL ELSE ('10.0.' || (g % 256) || '.1')::inet END,
       CASE WHEN g % 18 = 1 THEN NULL ELSE g::oid END,
       CASE WHEN g % 19 = 1 THEN NULL ELSE chr(97 + g % 26)::"char" END
FROM generate_series(10, {last}) AS g;
ANALYZE everything;
"""


def types_ddl(rows: int) -> str:
    """The DDL of table ``everything``: every scalar type, with edge values, NULLs, and ``rows`` more rows."""
    return _TYPES_DDL.replace("{last}", str(rows + 9))


def read_sorted(reader: Reader, state: dict | None = None) -> pa.Table:
    """Every row the reader gives (all splits), sorted by ``id``."""
    table = read_all(reader, state)
    return table.sort_by("id") if table.num_rows else table


def same_values(left: pa.ChunkedArray, right: pa.ChunkedArray) -> bool:
    """Equal values, NaN included (``right`` is cast to ``left``'s type first)."""
    if right.type != left.type:
        right = right.cast(left.type)
    if pa.types.is_floating(left.type):  # NaN equals nothing: compare it as a value
        left, right = (pc.if_else(pc.is_nan(c), pa.scalar(-1e-300, c.type), c) for c in (left, right))
    return bool(left.equals(right))


def assert_same(plugin: pa.Table, builtin: pa.Table) -> None:
    """Same schema (types, nullability) and the same values, row for row."""
    assert plugin.schema.equals(builtin.schema), (plugin.schema, builtin.schema)
    assert plugin.num_rows == builtin.num_rows
    for name in builtin.column_names:
        left, right = plugin.column(name), builtin.column(name)
        assert same_values(left, right), f"column {name} differs: {left.to_pylist()[:5]} vs {right.to_pylist()[:5]}"
