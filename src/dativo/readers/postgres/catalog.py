"""Catalog introspection and the PostgreSQL → Arrow type mapping.

The mapping is decided here, once, from ``pg_catalog``; both readers then produce exactly the schema of
:attr:`Relation.schema`. Types with a native Arrow counterpart are read as is. Types without one are cast
to ``text`` in the SELECT list (so nothing arrives as opaque driver bytes), and pseudo-types are refused.

=====================================  ============================================================
PostgreSQL                             Arrow
=====================================  ============================================================
smallint / integer / bigint            int16 / int32 / int64
real / double precision                float32 / float64
numeric(p,s), p <= 38                  decimal128(p,s) (negative scale: decimal128(p-s,0))
numeric, or p > 38                     the ``numeric`` option: decimal128(P,S) | string | float64
text, varchar, char(n), name           string (char(n) keeps its blank padding)
bytea / boolean                        binary / bool
date / time                            date32 / time64[us]
timestamp / timestamptz                timestamp[us] / timestamp[us, tz=UTC]
interval                               month_day_nano_interval (months, days and µs kept apart)
uuid                                   the ``arrow.uuid`` extension type (``pa.uuid()``)
oid                                    int64 (oid is unsigned 32-bit)
json, jsonb, enums, "char", and any     string, via ``::text`` (jsonb in its normalised text form)
other type (inet, money, xml, bit,
ranges, composites, tsvector …)
arrays of any of these                 list<element> (one dimension; NULL elements kept)
domains                                their base type (with the domain's typmod)
pseudo-types (record, anyarray …)      refused with an error naming the column
=====================================  ============================================================

Text casts use PostgreSQL's ``::text``, which for ``inet`` always includes the netmask (``10.0.0.1/32``);
``money`` is printed with ``lc_monetary = C`` and ranges of timestamptz in UTC (see ``SESSION_SETTINGS``).
``time '24:00:00'`` arrives as 86 400 000 000 µs, which PostgreSQL allows and Arrow's validation does not.

``date`` and ``timestamp`` values Arrow cannot hold (``infinity``, and timestamps after year 294246) and
multi-dimensional arrays stop the read with an error naming the column: see :mod:`.sql`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa

from dativo.api import Dataset
from dativo.errors import ConfigError
from dativo.readers.postgres.config import NumericPolicy
from dativo.readers.postgres.sql import quote_ident
from dativo.readers.postgres.tables import KINDS, Listed, Selected, partitions_of

# Built-in type oids (stable since forever; see pg_type.dat).
_NATIVE: dict[int, tuple[pa.DataType, str]] = {
    16: (pa.bool_(), "bool"),
    17: (pa.binary(), "bytea"),
    19: (pa.string(), "name"),
    20: (pa.int64(), "int8"),
    21: (pa.int16(), "int2"),
    23: (pa.int32(), "int4"),
    25: (pa.string(), "text"),
    700: (pa.float32(), "float4"),
    701: (pa.float64(), "float8"),
    1042: (pa.string(), "bpchar"),
    1043: (pa.string(), "varchar"),
    1082: (pa.date32(), "date"),
    1083: (pa.time64("us"), "time"),
    1114: (pa.timestamp("us"), "timestamp"),
    1184: (pa.timestamp("us", tz="UTC"), "timestamptz"),
    1186: (pa.month_day_nano_interval(), "interval"),
    2950: (pa.uuid(), "uuid"),
}
_NUMERIC = 1700
_OID = 26
_INTEGER_OIDS = (20, 21, 23)

# Exclusive bounds of the values the drivers can turn into Arrow without overflow: ADBC shifts PostgreSQL's
# 2000-01-01 epoch to 1970-01-01 in 32-bit days / 64-bit microseconds, which wraps near the maximum.
_BOUNDS: dict[int, tuple[str, str]] = {
    1082: ("-infinity", "5874000-01-01"),
    1114: ("-infinity", "294247-01-01"),
    1184: ("-infinity", "294247-01-01 00:00:00+00"),
}


@dataclass(frozen=True)
class Column:
    """One output column: its Arrow field and how the SELECT list produces it.

    Attributes:
        name: Column name.
        pg_type: The declared type as PostgreSQL prints it (for messages).
        field: The Arrow field both readers produce.
        cast: SQL type the SELECT list casts the column to (``text``, ``text[]``, ``float8`` …), or ``None``.
        sql_type: SQL type of the selected value after ``cast`` (used by the value guards).
        array: Whether the column is an array (guarded against more than one dimension).
        bounds: Exclusive lower and upper literals a date/timestamp value must lie between, if any.
    """

    name: str
    pg_type: str
    field: pa.Field
    cast: str | None = None
    sql_type: str = ""
    array: bool = False
    bounds: tuple[str, str] | None = None


@dataclass(frozen=True)
class Relation:
    """A table or query, resolved against the catalog.

    Attributes:
        name: Dataset name (``schema.table``, or ``query``).
        source: The SQL ``FROM`` item (a quoted table name, or the query as a subquery).
        columns: Output columns in order.
        primary_key: Primary-key columns in key order (the declared key, or the one ``tables:`` gives; empty
            for queries and tables without one).
        table: ``(schema, table)`` for relations, ``None`` for a query (key-range splits need a relation).
        kind: What it is (``table``, ``partitioned table``, ``view`` … or ``query``).
        cursor: The incremental cursor ``tables:`` gives this relation, if any.
        listed: The catalog's listing of the relation (estimates, sizes, partition parent), if a relation.
        partitions: ``schema.table`` of its direct partitions, for a partitioned table.
    """

    name: str
    source: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    table: tuple[str, str] | None = None
    kind: str = "query"
    cursor: str | None = None
    listed: Listed | None = None
    partitions: tuple[str, ...] = ()

    @property
    def schema(self) -> pa.Schema:
        """The exact Arrow schema of every batch read from this relation."""
        return pa.schema([c.field for c in self.columns])

    @property
    def cursor_candidates(self) -> tuple[str, ...]:
        """Columns usable as an incremental cursor: integers, dates and timestamps."""
        return tuple(
            c.name
            for c in self.columns
            if pa.types.is_integer(c.field.type)
            or pa.types.is_date(c.field.type)
            or pa.types.is_timestamp(c.field.type)
        )

    @property
    def range_key(self) -> str | None:
        """The first key column if it is an integer: splits cut its range (a composite key's too)."""
        if self.table is None or not self.primary_key:
            return None
        key = self.primary_key[0]
        column = next(c for c in self.columns if c.name == key)
        return key if pa.types.is_integer(column.field.type) else None

    @property
    def has_pages(self) -> bool:
        """Whether rows have a physical address (``ctid``) that page-range splits can cut."""
        return self.listed is not None and self.listed.kind in ("r", "p", "m")

    def dataset(self) -> Dataset:
        """This relation as the :class:`dativo.api.Dataset` that ``discover`` returns."""
        details: dict[str, Any] = {"kind": self.kind}
        if self.listed is not None:
            if self.listed.partition_of:
                details["partition_of"] = self.listed.partition_of
            if self.listed.size_bytes is not None:
                details["size_bytes"] = self.listed.size_bytes
        if self.partitions:
            details["partitions"] = list(self.partitions)
        details["source_types"] = {c.name: c.pg_type for c in self.columns}
        return Dataset(
            name=self.name,
            schema=self.schema,
            primary_key=self.primary_key,
            cursor_candidates=self.cursor_candidates,
            cursor=self.cursor,
            estimated_rows=self.listed.estimated_rows if self.listed else None,
            details=details,
        )


@dataclass(frozen=True)
class _PgType:
    oid: int
    name: str
    typtype: str
    category: str
    basetype: int
    typmod: int
    elem: int


@dataclass(frozen=True)
class _Mapped:
    arrow: pa.DataType
    cast: str | None
    sql_type: str
    bounds: tuple[str, str] | None = None


class UnmappableType(ConfigError):
    """A column's type has no Arrow mapping (a pseudo-type such as ``record`` or ``anyarray``)."""


_TYPES_SQL = """
WITH RECURSIVE t(oid) AS (
    SELECT unnest(%s::oid[])
  UNION
    SELECT x.oid FROM pg_catalog.pg_type p JOIN t ON p.oid = t.oid
    CROSS JOIN LATERAL (VALUES (p.typbasetype), (p.typelem)) AS x(oid)
    WHERE x.oid <> 0
)
SELECT p.oid, p.typname, p.typtype, p.typcategory, p.typbasetype, p.typtypmod, p.typelem
FROM pg_catalog.pg_type p WHERE p.oid IN (SELECT oid FROM t)
"""


def _load_types(conn: psycopg.Connection, oids: Iterable[int]) -> dict[int, _PgType]:
    rows = conn.execute(_TYPES_SQL, (sorted(set(oids)),)).fetchall()
    return {row[0]: _PgType(*row) for row in rows}


def _numeric(typmod: int, policy: NumericPolicy) -> _Mapped:
    if typmod >= 4:
        precision = ((typmod - 4) >> 16) & 0xFFFF
        scale = (((typmod - 4) & 0x7FF) ^ 1024) - 1024  # 11-bit signed since PostgreSQL 15
        if scale < 0:  # numeric(3,-2) holds multiples of 100 up to 99900
            precision, scale = precision - scale, 0
        precision = max(precision, scale)  # numeric(2,4) holds 0.00xx
        if precision <= 38:
            return _Mapped(pa.decimal128(precision, scale), None, "numeric")
    if policy.kind == "string":
        return _Mapped(pa.string(), "text", "text")
    if policy.kind == "float64":
        return _Mapped(pa.float64(), "float8", "float8")
    return _Mapped(pa.decimal128(policy.precision, policy.scale), None, "numeric")


def _resolve_domain(oid: int, typmod: int, types: dict[int, _PgType]) -> tuple[int, int]:
    while types[oid].typtype == "d":
        typmod = typmod if typmod >= 0 else types[oid].typmod
        oid = types[oid].basetype
    return oid, typmod


def _scalar(oid: int, typmod: int, types: dict[int, _PgType], policy: NumericPolicy) -> _Mapped | None:
    oid, typmod = _resolve_domain(oid, typmod, types)
    if oid in _NATIVE:
        arrow, name = _NATIVE[oid]
        return _Mapped(arrow, None, name, _BOUNDS.get(oid))
    if oid == _NUMERIC:
        return _numeric(typmod, policy)
    if oid == _OID:
        return _Mapped(pa.int64(), "int8", "int8")
    if types[oid].typtype == "p":
        return None
    # json, jsonb, enums, "char", network types, money, bit strings, geometry, ranges, composites …
    return _Mapped(pa.string(), "text", "text")


def map_column(
    name: str,
    oid: int,
    typmod: int,
    not_null: bool,
    pg_type: str,
    types: dict[int, _PgType],
    policy: NumericPolicy,
    dataset: str,
) -> Column:
    """Decide the Arrow field and SELECT expression of one column.

    Raises:
        UnmappableType: For pseudo-types (``record``, ``anyarray`` …).
    """
    base, base_typmod = _resolve_domain(oid, typmod, types)
    info = types[base]
    is_array = info.category == "A" and info.elem != 0
    mapped = _scalar(info.elem if is_array else base, base_typmod, types, policy)
    if mapped is None:
        raise UnmappableType(
            f"Column {name} of {dataset} has type {pg_type}, which has no Arrow mapping",
            hint=f"Read it through a 'query:' that casts it to a concrete type ({quote_ident(name)}::text).",
        )
    if not is_array:
        return Column(
            name,
            pg_type,
            pa.field(name, mapped.arrow, nullable=not not_null),
            mapped.cast,
            mapped.sql_type,
            bounds=mapped.bounds,
        )
    return Column(
        name,
        pg_type,
        pa.field(name, pa.list_(pa.field("item", mapped.arrow)), nullable=not not_null),
        f"{mapped.cast}[]" if mapped.cast else None,
        f"{mapped.sql_type}[]",
        array=True,
        bounds=mapped.bounds,
    )


_COLUMNS_SQL = """
SELECT a.attname, a.atttypid, a.atttypmod, a.attnotnull, pg_catalog.format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_PRIMARY_KEY_SQL = """
SELECT a.attname
FROM pg_catalog.pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %s AND i.indisprimary
ORDER BY k.ord
"""


def table_relation(conn: psycopg.Connection, selected: Selected, policy: NumericPolicy) -> Relation:
    """Describe one relation ``tables:`` selects, with the settings its entries give it.

    Raises:
        ConfigError: If the entry's ``cursor`` or ``primary_key`` names no column of the relation.
        UnmappableType: If a column has a pseudo-type.
    """
    listed, settings = selected.listed, selected.settings
    dataset = listed.dataset
    attributes = conn.execute(_COLUMNS_SQL, (listed.oid,)).fetchall()
    declared = tuple(r[0] for r in conn.execute(_PRIMARY_KEY_SQL, (listed.oid,)).fetchall())
    types = _load_types(conn, (a[1] for a in attributes))
    columns = tuple(
        map_column(attname, typid, typmod, notnull, pg_type, types, policy, dataset)
        for attname, typid, typmod, notnull, pg_type in attributes
    )
    names = [c.name for c in columns]
    unknown = [c for c in [settings.cursor, *(settings.primary_key or ())] if c is not None and c not in names]
    if unknown:
        raise ConfigError(
            f"source.tables gives {dataset} the column(s) {', '.join(map(repr, unknown))}, which it does not have",
            hint=f"Its columns: {', '.join(names)}.",
        )
    source = f"{quote_ident(listed.schema)}.{quote_ident(listed.name)}"
    return Relation(
        dataset,
        source,
        columns,
        tuple(settings.primary_key or declared),
        (listed.schema, listed.name),
        kind=KINDS[listed.kind],
        cursor=settings.cursor,
        listed=listed,
        partitions=partitions_of(conn, listed.oid) if listed.kind == "p" else (),
    )


def query_relation(conn: psycopg.Connection, query: str, policy: NumericPolicy) -> Relation:
    """Describe ``query:`` without running it (``LIMIT 0``); every column is nullable.

    Raises:
        ConfigError: If the query does not compile, or returns two columns with the same name.
        UnmappableType: If a column has a pseudo-type.
    """
    source = f"({query}) AS q"
    try:
        with conn.transaction():
            cursor = conn.execute(f"SELECT * FROM {source} LIMIT 0")
            result = cursor.pgresult
            assert result is not None
            names = [column.name for column in cursor.description or ()]
            described = [(name, result.ftype(i), result.fmod(i)) for i, name in enumerate(names)]
            types = _load_types(conn, (d[1] for d in described))
            formatted = conn.execute(
                "SELECT pg_catalog.format_type(t, m) FROM unnest(%s::oid[], %s::int4[]) "
                "WITH ORDINALITY AS u(t, m, o) ORDER BY o",
                ([d[1] for d in described], [d[2] for d in described]),
            ).fetchall()
    except psycopg.Error as exc:
        raise ConfigError(
            f"source.query cannot be run: {' '.join(str(exc).split())}",
            hint="Run it in psql to check it; it must be a single SELECT (no trailing statements).",
        ) from None
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(
            f"source.query returns several columns named {', '.join(duplicates)}",
            hint="Give every output column a distinct name with AS.",
        )
    columns = tuple(
        map_column(fname, typid, typmod, False, pg_type, types, policy, "query")
        for (fname, typid, typmod), (pg_type,) in zip(described, formatted, strict=False)
    )
    return Relation("query", source, columns)


__all__ = ["Column", "Relation", "UnmappableType", "map_column", "query_relation", "table_relation"]
