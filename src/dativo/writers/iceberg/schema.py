"""Arrow schemas to Iceberg schemas, and the evolution of an existing table.

How each Arrow type lands in Iceberg. Every mapping is lossless: a value read back from the table is
the value the reader produced (up to the representation noted).

================================  ===============================  ========================================
Arrow (what a reader produces)    Iceberg                          Notes
================================  ===============================  ========================================
bool                              boolean
int8, int16, int32                int
uint8, uint16                     int                              widened, every value fits
int64                             long
uint32                            long                             widened, every value fits
uint64                            decimal(20, 0)                   no Iceberg integer holds 2**64 - 1
float16, float32                  float                            float16 widened
float64                           double
decimal32/64/128/256 (p <= 38)    decimal(p, s)                    p > 38 is refused
string, large_string, *_view      string
binary, large_binary, *_view      binary
fixed_size_binary(n)              fixed(n)
date32, date64                    date                             date64 must hold whole days
time32, time64                    time (microseconds)              ns must be whole microseconds
timestamp[s|ms|us|ns]             timestamp (microseconds)         ns must be whole microseconds
timestamp[..., tz=ANY]            timestamptz (microseconds)       the instant is kept, the zone name is
                                                                   not (Iceberg stores UTC instants)
extension arrow.uuid (pa.uuid())  uuid                             read back as pa.uuid()
extension arrow.json              string                           the JSON text
extension arrow.bool8             boolean
dictionary<K, V>                  the type of V                    decoded on write
month_day_nano_interval           struct<months: int, days: int,   Iceberg has no interval type; the three
                                  nanoseconds: long>               components are kept as they are, so
                                                                   '1 mon' stays distinct from '30 days'
                                                                   (PostgreSQL semantics)
list, large_list, list views,     list<element>                    element nullability kept
fixed_size_list
struct<...>                       struct<...>
map<K, V>                         map<K, V>
================================  ===============================  ========================================

Refused with a :class:`~dativo.errors.SchemaMismatch` naming the column: ``null`` (a column with no type),
``duration``, the other interval types, unions, run-end encoded arrays and unknown extension types (for
example ADBC's ``arrow.opaque`` numeric: cast it to ``decimal128(p, s)`` in the reader).

Evolution of an existing table (:func:`plan_evolution`): new columns are added as optional; a column may
be widened (int -> long, float -> double, decimal(p, s) -> decimal(p', s) with p' > p); narrower incoming
data is cast up on write. Anything else (a changed type, timestamp vs timestamptz, a required column the
data lacks) is a :class:`~dativo.errors.SchemaMismatch` that names the column, the table's type and the
incoming type. Required (NOT NULL) columns stay required: NULLs arriving in them fail the write.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa
from pyiceberg.schema import Schema, assign_fresh_schema_ids
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FixedType,
    FloatType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    MapType,
    NestedField,
    PrimitiveType,
    StringType,
    StructType,
    TimestampType,
    TimestamptzType,
    TimeType,
    UUIDType,
)

from dativo.errors import SchemaMismatch

INTERVAL_FIELDS = (("months", IntegerType()), ("days", IntegerType()), ("nanoseconds", LongType()))
"""The struct a ``month_day_nano_interval`` is stored as."""

_EXTENSIONS: dict[str, IcebergType] = {"arrow.json": StringType(), "arrow.bool8": BooleanType()}


def _mismatch(path: str, message: str, hint: str | None = None, stage: str = "prepare") -> SchemaMismatch:
    return SchemaMismatch(f"column '{path}': {message}", role="writer", stage=stage, hint=hint)


def interval_struct(next_id: Callable[[], int]) -> StructType:
    """The Iceberg struct for ``month_day_nano_interval`` (optional components)."""
    return StructType(*(NestedField(next_id(), name, t, required=False) for name, t in INTERVAL_FIELDS))


def is_interval_struct(t: IcebergType) -> bool:
    """True if ``t`` is the struct that stores intervals."""
    return isinstance(t, StructType) and [(f.name, f.field_type) for f in t.fields] == list(INTERVAL_FIELDS)


def iceberg_type(dt: pa.DataType, path: str, next_id: Callable[[], int]) -> IcebergType:
    """The Iceberg type an Arrow type is stored as (see the module table).

    Raises:
        SchemaMismatch: If the type has no lossless Iceberg representation.
    """
    if pa.types.is_dictionary(dt):
        return iceberg_type(dt.value_type, path, next_id)
    if isinstance(dt, pa.BaseExtensionType):
        name = dt.extension_name
        if isinstance(dt, pa.UuidType) or name == "arrow.uuid":
            return UUIDType()
        if name in _EXTENSIONS:
            return _EXTENSIONS[name]
        raise _mismatch(
            path,
            f"Arrow extension type '{name}' ({dt}) has no Iceberg type",
            "Cast it to a standard Arrow type in the reader (for example decimal128(p, s) for numeric)",
        )
    if pa.types.is_boolean(dt):
        return BooleanType()
    if pa.types.is_integer(dt):
        signed = pa.types.is_signed_integer(dt)
        if dt.bit_width <= 16 or (signed and dt.bit_width == 32):
            return IntegerType()
        if signed or dt.bit_width == 32:
            return LongType()
        return DecimalType(20, 0)
    if pa.types.is_float16(dt) or pa.types.is_float32(dt):
        return FloatType()
    if pa.types.is_float64(dt):
        return DoubleType()
    if pa.types.is_decimal(dt):
        if dt.precision > 38:
            raise _mismatch(
                path, f"{dt} has precision {dt.precision}; Iceberg decimals hold at most 38 digits"
            )
        return DecimalType(dt.precision, dt.scale)
    if pa.types.is_string(dt) or pa.types.is_large_string(dt) or pa.types.is_string_view(dt):
        return StringType()
    if pa.types.is_binary(dt) or pa.types.is_large_binary(dt) or pa.types.is_binary_view(dt):
        return BinaryType()
    if pa.types.is_fixed_size_binary(dt):
        return FixedType(dt.byte_width)
    if pa.types.is_date(dt):
        return DateType()
    if pa.types.is_time(dt):
        return TimeType()
    if pa.types.is_timestamp(dt):
        return TimestamptzType() if dt.tz else TimestampType()
    if dt == pa.month_day_nano_interval():
        return interval_struct(next_id)
    if (
        pa.types.is_list(dt)
        or pa.types.is_large_list(dt)
        or pa.types.is_fixed_size_list(dt)
        or pa.types.is_list_view(dt)
        or pa.types.is_large_list_view(dt)
    ):
        element_id = next_id()
        element = iceberg_type(dt.value_type, f"{path}.element", next_id)
        return ListType(element_id, element, element_required=not dt.value_field.nullable)
    if pa.types.is_struct(dt):
        return StructType(
            *(_field(dt.field(i), f"{path}.{dt.field(i).name}", next_id) for i in range(dt.num_fields))
        )
    if pa.types.is_map(dt):
        key_id, value_id = next_id(), next_id()
        key = iceberg_type(dt.key_type, f"{path}.key", next_id)
        value = iceberg_type(dt.item_type, f"{path}.value", next_id)
        return MapType(key_id, key, value_id, value, value_required=not dt.item_field.nullable)
    if pa.types.is_null(dt):
        raise _mismatch(
            path,
            "has Arrow type null (no values, no type); Iceberg needs a concrete type",
            "Cast the column to a concrete type in the reader",
        )
    raise _mismatch(path, f"Arrow type {dt} has no lossless Iceberg type")


def _field(f: pa.Field, path: str, next_id: Callable[[], int], required: bool | None = None) -> NestedField:
    field_id = next_id()
    return NestedField(
        field_id,
        f.name,
        iceberg_type(f.type, path, next_id),
        required=(not f.nullable) if required is None else required,
    )


def to_iceberg_schema(schema: pa.Schema, primary_key: tuple[str, ...] = ()) -> Schema:
    """Convert an Arrow schema to an Iceberg schema with fresh ids (1, 2, …).

    Primary-key columns become required identifier fields when they are primitive, so engines that
    upsert by ``identifier-field-ids`` (Spark, Flink) see the key.

    Raises:
        SchemaMismatch: Naming the first column whose type cannot be stored.
    """
    counter = itertools.count(1)
    next_id = counter.__next__
    names = set(schema.names)
    if len(names) != len(schema.names):
        dupes = sorted({n for n in schema.names if schema.names.count(n) > 1})
        raise _mismatch(dupes[0], "appears more than once in the incoming schema")
    fields = []
    for f in schema:
        fields.append(_field(f, f.name, next_id, required=True if f.name in primary_key else None))
    identifier_ids = [
        f.field_id for f in fields if f.name in primary_key and isinstance(f.field_type, PrimitiveType)
    ]
    return Schema(*fields, identifier_field_ids=identifier_ids)


def type_name(t: IcebergType) -> str:
    """Iceberg's own spelling of a type, for messages."""
    return str(t)


def _widens(narrow: PrimitiveType, wide: PrimitiveType) -> bool:
    """True if the Iceberg spec allows promoting ``narrow`` to ``wide``."""
    if isinstance(narrow, IntegerType) and isinstance(wide, LongType):
        return True
    if isinstance(narrow, FloatType) and isinstance(wide, DoubleType):
        return True
    if isinstance(narrow, DecimalType) and isinstance(wide, DecimalType):
        return narrow.scale == wide.scale and narrow.precision <= wide.precision
    return False


@dataclass(frozen=True)
class Evolution:
    """What :func:`plan_evolution` found.

    Attributes:
        union: The schema to pass to ``update_schema().union_by_name`` (table requiredness kept, new
            fields optional), or ``None`` when the table already accepts the data as it is.
        added: Dotted names of the columns to add.
        widened: ``(column, from, to)`` for each promoted column.
    """

    union: Schema | None
    added: tuple[str, ...] = ()
    widened: tuple[tuple[str, str, str], ...] = ()


def plan_evolution(table: Schema, incoming: Schema) -> Evolution:
    """Check ``incoming`` against an existing table schema and plan the evolution it needs.

    Raises:
        SchemaMismatch: On an incompatible type, or a required table column that the data lacks.
    """
    added: list[str] = []
    widened: list[tuple[str, str, str]] = []
    counter = itertools.count(1)

    def reconcile(existing: IcebergType, new: IcebergType, path: str) -> IcebergType:
        if isinstance(existing, PrimitiveType) and isinstance(new, PrimitiveType):
            if existing == new or _widens(new, existing):
                return existing
            if _widens(existing, new):
                widened.append((path, type_name(existing), type_name(new)))
                return new
            raise _incompatible(path, existing, new)
        if isinstance(existing, StructType) and isinstance(new, StructType):
            return StructType(*reconcile_fields(existing.fields, new.fields, path))
        if isinstance(existing, ListType) and isinstance(new, ListType):
            element = reconcile(existing.element_type, new.element_type, f"{path}.element")
            return ListType(next(counter), element, element_required=existing.element_required)
        if isinstance(existing, MapType) and isinstance(new, MapType):
            key = reconcile(existing.key_type, new.key_type, f"{path}.key")
            value = reconcile(existing.value_type, new.value_type, f"{path}.value")
            return MapType(next(counter), key, next(counter), value, value_required=existing.value_required)
        raise _incompatible(path, existing, new)

    def reconcile_fields(
        existing: tuple[NestedField, ...], new: tuple[NestedField, ...], prefix: str
    ) -> Iterator[NestedField]:
        by_name = {f.name: f for f in new}
        for f in existing:
            path = f"{prefix}.{f.name}" if prefix else f.name
            if f.name not in by_name:
                if f.required:
                    raise _mismatch(
                        path,
                        f"the table requires it (NOT NULL {type_name(f.field_type)}) but the incoming data "
                        "has no such column",
                        "Select the column in the source, or make it optional in the table",
                    )
                continue
            yield NestedField(
                next(counter),
                f.name,
                reconcile(f.field_type, by_name[f.name].field_type, path),
                required=f.required,
            )
        known = {f.name for f in existing}
        for f in new:
            if f.name not in known:
                added.append(f"{prefix}.{f.name}" if prefix else f.name)
                fresh = assign_fresh_schema_ids(f.field_type, next_id=counter.__next__)
                yield NestedField(next(counter), f.name, fresh, required=False)

    fields = list(reconcile_fields(table.fields, incoming.fields, ""))
    if not added and not widened:
        return Evolution(None)
    return Evolution(Schema(*fields), tuple(added), tuple(widened))


def _incompatible(path: str, existing: IcebergType, new: IcebergType) -> SchemaMismatch:
    return _mismatch(
        path,
        f"the table has type {type_name(existing)}, the incoming data has {type_name(new)}; "
        "Iceberg cannot evolve one into the other",
        "Cast the column in the source to the table's type, or write to a new table",
    )


__all__ = [
    "INTERVAL_FIELDS",
    "Evolution",
    "iceberg_type",
    "interval_struct",
    "is_interval_struct",
    "plan_evolution",
    "to_iceberg_schema",
]
