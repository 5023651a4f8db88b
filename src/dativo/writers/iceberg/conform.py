"""Bring incoming record batches into the table's schema, column by column, without Python row loops.

A batch from the reader is projected onto the current table schema: columns are matched by name and
put in table order, missing optional columns become NULLs, each value is converted to the Arrow type
that stores its Iceberg type (see :mod:`dativo.writers.iceberg.schema`), and every field carries its
Iceberg field id (``PARQUET:field_id``), the way pyiceberg writes its own files. Columns whose type
already fits are passed through untouched (``string`` stays ``string``, no copy).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.schema import Schema
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
    StringType,
    StructType,
    TimestampType,
    TimestamptzType,
    TimeType,
    UUIDType,
)

from dativo.errors import SchemaMismatch
from dativo.writers.iceberg.schema import is_interval_struct

FIELD_ID_KEY = b"PARQUET:field_id"


def _mismatch(path: str, message: str, hint: str | None = None) -> SchemaMismatch:
    return SchemaMismatch(f"column '{path}': {message}", role="writer", stage="write", hint=hint)


def _primitive_arrow(t: IcebergType, like: pa.DataType) -> pa.DataType:
    """The Arrow type that stores primitive ``t``; string/binary keep the incoming offset width."""
    if isinstance(t, StringType):
        return pa.string() if pa.types.is_string(like) else pa.large_string()
    if isinstance(t, BinaryType):
        return pa.binary() if pa.types.is_binary(like) else pa.large_binary()
    if isinstance(t, BooleanType):
        return pa.bool_()
    if isinstance(t, IntegerType):
        return pa.int32()
    if isinstance(t, LongType):
        return pa.int64()
    if isinstance(t, FloatType):
        return pa.float32()
    if isinstance(t, DoubleType):
        return pa.float64()
    if isinstance(t, DecimalType):
        return pa.decimal128(t.precision, t.scale)
    if isinstance(t, DateType):
        return pa.date32()
    if isinstance(t, TimeType):
        return pa.time64("us")
    if isinstance(t, TimestampType):
        return pa.timestamp("us")
    if isinstance(t, TimestamptzType):
        return pa.timestamp("us", tz="UTC")
    if isinstance(t, UUIDType):
        return pa.uuid()
    if isinstance(t, FixedType):
        return pa.binary(len(t))
    raise TypeError(f"unsupported Iceberg type {t}")


def _field(f: NestedField, dt: pa.DataType, name: str | None = None) -> pa.Field:
    return pa.field(
        name or f.name, dt, nullable=f.optional, metadata={FIELD_ID_KEY: str(f.field_id).encode()}
    )


def _interval_to_struct(arr: pa.Array, t: StructType) -> pa.Array:
    """``month_day_nano_interval`` -> struct<months int32, days int32, nanoseconds int64>, vectorised.

    Each value is 16 bytes (int32 months, int32 days, int64 nanoseconds, little endian); the buffer is
    viewed as int32 and int64 arrays and the components are gathered with ``take``.
    """
    n, off = len(arr), arr.offset
    data = arr.buffers()[1]
    ints = pa.Array.from_buffers(pa.int32(), 4 * (off + n), [None, data])
    longs = pa.Array.from_buffers(pa.int64(), 2 * (off + n), [None, data])
    rows = pa.array(range(off, off + n), type=pa.int64())
    months = pc.take(ints, pc.multiply(rows, 4))
    days = pc.take(ints, pc.add(pc.multiply(rows, 4), 1))
    nanos = pc.take(longs, pc.add(pc.multiply(rows, 2), 1))
    fields = [_field(f, c.type) for f, c in zip(t.fields, (months, days, nanos), strict=True)]
    mask = arr.is_null() if arr.null_count else None
    return pa.StructArray.from_arrays([months, days, nanos], fields=fields, mask=mask)


def _rebased(arr: pa.Array, child: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Offsets starting at 0 and the child values they cover (a sliced list array has neither)."""
    offsets = arr.offsets
    if (
        arr.offset == 0
        and (len(offsets) == 0 or offsets[0].as_py() == 0)
        and len(child) == offsets[-1].as_py()
    ):
        return offsets, child
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    return pc.subtract(offsets, start), child.slice(start, end - start)


def _check_required(arr: pa.Array, required: bool, path: str) -> None:
    if required and arr.null_count:
        raise _mismatch(
            path,
            f"the table declares it required (NOT NULL) but a batch has {arr.null_count} NULL value(s)",
            "Fix the source data, or make the column optional in the table",
        )


def conform_array(arr: pa.Array, t: IcebergType, path: str) -> pa.Array:
    """Convert one incoming array to the Arrow representation of Iceberg type ``t``.

    Raises:
        SchemaMismatch: If the values cannot be converted without loss.
    """
    dt = arr.type
    if pa.types.is_dictionary(dt):
        return conform_array(arr.dictionary_decode(), t, path)
    if isinstance(dt, pa.BaseExtensionType) and not isinstance(t, UUIDType):
        return conform_array(arr.storage, t, path)

    if isinstance(t, StructType):
        if dt == pa.month_day_nano_interval() and is_interval_struct(t):
            return _interval_to_struct(arr, t)
        if not pa.types.is_struct(dt):
            raise _mismatch(path, f"expected a struct for Iceberg {t}, got Arrow {dt}")
        return _conform_struct(arr, t, path)

    if isinstance(t, ListType):
        if pa.types.is_fixed_size_list(dt) or pa.types.is_list_view(dt):
            arr = arr.cast(pa.list_(dt.value_field))
        elif pa.types.is_large_list_view(dt):
            arr = arr.cast(pa.large_list(dt.value_field))
        elif not (pa.types.is_list(dt) or pa.types.is_large_list(dt)):
            raise _mismatch(path, f"expected a list for Iceberg {t}, got Arrow {dt}")
        offsets, values = _rebased(arr, arr.values)
        values = conform_array(values, t.element_type, f"{path}.element")
        element = _field(t.element_field, values.type)
        list_type = pa.large_list(element) if pa.types.is_large_list(arr.type) else pa.list_(element)
        cls = pa.LargeListArray if pa.types.is_large_list(arr.type) else pa.ListArray
        mask = arr.is_null() if arr.null_count else None
        result = cls.from_arrays(offsets, values, type=list_type, mask=mask)
        if t.element_required and values.null_count:
            _check_required(result.flatten(), True, f"{path}.element")
        return result

    if isinstance(t, MapType):
        if not pa.types.is_map(dt):
            raise _mismatch(path, f"expected a map for Iceberg {t}, got Arrow {dt}")
        offsets, keys = _rebased(arr, arr.keys)
        _, items = _rebased(arr, arr.items)
        keys = conform_array(keys, t.key_type, f"{path}.key")
        items = conform_array(items, t.value_type, f"{path}.value")
        map_type = pa.map_(_field(t.key_field, keys.type, "key"), _field(t.value_field, items.type, "value"))
        mask = arr.is_null() if arr.null_count else None
        return pa.MapArray.from_arrays(offsets, keys, items, type=map_type, mask=mask)

    target = _primitive_arrow(t, dt)
    if dt == target:
        return arr
    if isinstance(t, UUIDType) and isinstance(dt, pa.BaseExtensionType):
        return arr
    if isinstance(t, TimestamptzType) and not (pa.types.is_timestamp(dt) and dt.tz):
        raise _mismatch(path, f"the table has timestamptz, the incoming data has {dt} (no time zone)")
    if isinstance(t, TimestampType) and pa.types.is_timestamp(dt) and dt.tz:
        raise _mismatch(path, f"the table has timestamp (no time zone), the incoming data has {dt}")
    try:
        return arr.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise _mismatch(path, f"cannot store Arrow {dt} as Iceberg {t} without loss: {exc}") from exc


def _conform_struct(arr: pa.StructArray, t: StructType, path: str) -> pa.Array:
    dt = arr.type
    names = [dt.field(i).name for i in range(dt.num_fields)]
    children, fields = [], []
    for f in t.fields:
        child_path = f"{path}.{f.name}"
        if f.name in names:
            child = conform_array(arr.field(names.index(f.name)), f.field_type, child_path)
            if f.required and child.null_count:
                # a NULL struct hides its children's values: only NULLs under valid parents count
                hidden = pc.sum(pc.and_(child.is_null(), arr.is_null())).as_py() or 0
                if child.null_count > hidden:
                    _check_required(child, True, child_path)
        else:
            if f.required:
                raise _mismatch(child_path, "the table requires it but the incoming struct has no such field")
            child = pa.nulls(len(arr), type=_arrow_type(f.field_type))
        children.append(child)
        fields.append(_field(f, child.type))
    mask = arr.is_null() if arr.null_count else None
    return pa.StructArray.from_arrays(children, fields=fields, mask=mask)


def _arrow_type(t: IcebergType) -> pa.DataType:
    """The Arrow type of an all-NULL column of Iceberg type ``t`` (with field ids)."""
    if isinstance(t, StructType):
        return pa.struct([_field(f, _arrow_type(f.field_type)) for f in t.fields])
    if isinstance(t, ListType):
        return pa.large_list(_field(t.element_field, _arrow_type(t.element_type)))
    if isinstance(t, MapType):
        return pa.map_(
            _field(t.key_field, _arrow_type(t.key_type), "key"),
            _field(t.value_field, _arrow_type(t.value_type), "value"),
        )
    return _primitive_arrow(t, pa.large_string())


def conform_batch(batch: pa.RecordBatch, schema: Schema) -> pa.RecordBatch:
    """Project ``batch`` onto the table ``schema`` (order, types, NULL-filled optional columns, field ids).

    Raises:
        SchemaMismatch: Naming the column, if a value cannot be stored or a required column is missing
            or has NULLs, or the batch has a column the table does not.
    """
    known = {f.name for f in schema.fields}
    extra = [n for n in batch.schema.names if n not in known]
    if extra:
        raise _mismatch(
            extra[0],
            "is not in the table; the writer's prepare() should have added it",
            "Call prepare() with the stream's schema before write()",
        )
    arrays, fields = [], []
    for f in schema.fields:
        index = batch.schema.get_field_index(f.name)
        if index < 0:
            if f.required:
                raise _mismatch(f.name, "the table requires it (NOT NULL) but the batch has no such column")
            column = pa.nulls(batch.num_rows, type=_arrow_type(f.field_type))
        else:
            column = conform_array(batch.column(index), f.field_type, f.name)
            _check_required(column, f.required, f.name)
        arrays.append(column)
        fields.append(_field(f, column.type))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


__all__ = ["FIELD_ID_KEY", "conform_array", "conform_batch"]
