"""``partition_by`` expressions, partition specs, and splitting batches by partition.

Expressions follow Iceberg's transform names: ``region`` or ``identity(region)``, ``year(ts)``,
``month(ts)``, ``day(ts)``, ``hour(ts)``, ``bucket(16, id)``, ``truncate(4, name)``, ``void(col)``.
Partition fields are named like Spark names them: ``ts_day``, ``id_bucket_16``, ``name_trunc_4``.

Partition values are computed with Arrow compute; ``bucket`` and ``truncate`` on decimals use
``pyiceberg-core`` when it is installed and pyiceberg's reference functions value by value otherwise
(correct, but slower: install ``pyiceberg[pyiceberg-core]`` for large bucketed tables).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.partitioning import PartitionField, PartitionFieldValue, PartitionKey, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import (
    BucketTransform,
    DayTransform,
    HourTransform,
    IdentityTransform,
    MonthTransform,
    Transform,
    TruncateTransform,
    VoidTransform,
    YearTransform,
)
from pyiceberg.types import (
    DateType,
    IcebergType,
    IntegerType,
    LongType,
    StringType,
    TimestampType,
    TimestamptzType,
)

from dativo.errors import ConfigError

_EXPR = re.compile(
    r"^\s*(?:(?P<fn>[a-z_]+)\s*\(\s*(?:(?P<arg>\d+)\s*,\s*)?(?P<col>[^(),]+?)\s*\)|(?P<bare>[^(),]+?))\s*$"
)
_UNARY = {
    "identity": IdentityTransform,
    "year": YearTransform,
    "years": YearTransform,
    "month": MonthTransform,
    "months": MonthTransform,
    "day": DayTransform,
    "days": DayTransform,
    "hour": HourTransform,
    "hours": HourTransform,
    "void": VoidTransform,
}
_HAS_CORE = importlib.util.find_spec("pyiceberg_core") is not None
_MICROS_PER_HOUR = 3_600_000_000
_MICROS_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class PartitionExpr:
    """One parsed ``partition_by`` entry."""

    column: str
    transform: Transform[Any, Any]
    name: str


def parse(expr: str) -> PartitionExpr:
    """Parse one ``partition_by`` entry.

    Raises:
        ConfigError: If the expression is not a known transform.
    """
    match = _EXPR.match(expr)
    hint = "Use a column name or identity|year|month|day|hour(col), bucket(N, col), truncate(W, col)"
    if not match:
        raise ConfigError(f"target.partition_by: cannot parse {expr!r}", hint=hint)
    if match["bare"]:
        column = match["bare"]
        return PartitionExpr(column, IdentityTransform(), column)
    fn, arg, column = match["fn"], match["arg"], match["col"]
    if fn in _UNARY and arg is None:
        transform = _UNARY[fn]()
        suffix = {"identity": ""}.get(fn, f"_{fn.rstrip('s')}")
        return PartitionExpr(column, transform, f"{column}{suffix}")
    if fn == "bucket" and arg is not None and int(arg) > 0:
        return PartitionExpr(column, BucketTransform(int(arg)), f"{column}_bucket_{arg}")
    if fn == "truncate" and arg is not None and int(arg) > 0:
        return PartitionExpr(column, TruncateTransform(int(arg)), f"{column}_trunc_{arg}")
    raise ConfigError(f"target.partition_by: unknown or malformed transform {expr!r}", hint=hint)


def build_spec(schema: Schema, partition_by: list[str]) -> PartitionSpec:
    """The partition spec for ``partition_by`` over ``schema`` (field ids from 1000, as Iceberg does).

    Raises:
        ConfigError: If a column is missing or its type cannot take the transform.
    """
    fields = []
    for i, expr in enumerate(map(parse, partition_by)):
        try:
            source = schema.find_field(expr.column)
        except ValueError:
            raise ConfigError(
                f"target.partition_by: column '{expr.column}' is not in the table's schema",
                hint=f"Columns: {', '.join(schema.column_names)}",
            ) from None
        if not expr.transform.can_transform(source.field_type):
            raise ConfigError(
                f"target.partition_by: {expr.transform} cannot apply to column '{expr.column}' "
                f"of type {source.field_type}"
            )
        fields.append(PartitionField(source.field_id, 1000 + i, expr.transform, expr.name))
    return PartitionSpec(*fields)


def same_spec(spec: PartitionSpec, schema: Schema, partition_by: list[str]) -> bool:
    """True if ``spec`` partitions ``schema`` exactly as ``partition_by`` asks."""
    wanted = [(schema.find_field(e.column).field_id, str(e.transform)) for e in map(parse, partition_by)]
    return wanted == [(f.source_id, str(f.transform)) for f in spec.fields]


def describe(spec: PartitionSpec, schema: Schema) -> str:
    """``[day(created_at), bucket[16](id)]`` style, for messages."""
    if spec.is_unpartitioned():
        return "[] (unpartitioned)"
    return (
        "[" + ", ".join(f"{f.transform}({schema.find_column_name(f.source_id)})" for f in spec.fields) + "]"
    )


def _floor_div(values: pa.Array, divisor: int) -> pa.Array:
    quotient = pc.divide(values, divisor)
    inexact_negative = pc.and_(pc.less(values, 0), pc.not_equal(pc.multiply(quotient, divisor), values))
    return pc.if_else(inexact_negative, pc.subtract(quotient, 1), quotient)


def _python_transform(transform: Transform[Any, Any], source: IcebergType, values: pa.Array) -> pa.Array:
    fn = transform.transform(source)
    if isinstance(source, (TimestampType, TimestamptzType)):
        values = values.cast(pa.int64())
    elif isinstance(source, DateType):
        values = values.cast(pa.int32())
    result = [fn(v) for v in values.to_pylist()]
    if isinstance(transform, TruncateTransform):
        return pa.array(result, type=values.type)
    return pa.array(result, type=pa.int32())


def partition_values(transform: Transform[Any, Any], source: IcebergType, values: pa.Array) -> pa.Array:
    """Apply a partition transform to a column (conformed to the table's Arrow types)."""
    if isinstance(transform, IdentityTransform):
        return values
    if isinstance(transform, VoidTransform):
        return pa.nulls(len(values), type=pa.int32())
    if _HAS_CORE:
        return transform.pyarrow_transform(source)(values)
    if isinstance(transform, (YearTransform, MonthTransform)) and isinstance(
        source, (DateType, TimestampType, TimestamptzType)
    ):
        years = pc.subtract(pc.year(values), 1970)
        if isinstance(transform, YearTransform):
            return years.cast(pa.int32())
        return pc.add(pc.multiply(years, 12), pc.subtract(pc.month(values), 1)).cast(pa.int32())
    if isinstance(transform, DayTransform) and isinstance(source, DateType):
        return values.cast(pa.int32())
    if isinstance(transform, (DayTransform, HourTransform)) and isinstance(
        source, (TimestampType, TimestamptzType)
    ):
        unit = _MICROS_PER_DAY if isinstance(transform, DayTransform) else _MICROS_PER_HOUR
        return _floor_div(values.cast(pa.int64()), unit).cast(pa.int32())
    if isinstance(transform, TruncateTransform) and isinstance(source, (IntegerType, LongType)):
        width = transform.width
        remainder = pc.subtract(values, pc.multiply(_floor_div(values, width), width))
        return pc.subtract(values, remainder)
    if isinstance(transform, TruncateTransform) and isinstance(source, StringType):
        return pc.utf8_slice_codeunits(values, 0, transform.width)
    return _python_transform(transform, source, values)


def _column(batch: pa.RecordBatch, name: str) -> pa.Array:
    """A top-level column, or a struct field given as a dotted path."""
    if name in batch.schema.names:
        return batch.column(name)
    head, *rest = name.split(".")
    return pc.struct_field(batch.column(head), rest)


def split(
    batch: pa.RecordBatch, spec: PartitionSpec, schema: Schema
) -> Iterator[tuple[tuple[Any, ...], PartitionKey, pa.RecordBatch]]:
    """Split a conformed batch into one batch per partition.

    Yields:
        ``(hashable key, PartitionKey, rows of that partition)``; rows keep their relative order.
    """
    columns = {}
    for i, field in enumerate(spec.fields):
        source = schema.find_field(field.source_id)
        column = _column(batch, schema.find_column_name(field.source_id) or source.name)
        values = partition_values(field.transform, source.field_type, column)
        if isinstance(values.type, pa.BaseExtensionType):  # uuid: group by its 16 bytes
            values = values.storage
        columns[f"p{i}"] = values
    keys = pa.table(columns)
    if all(pc.count_distinct(c, mode="all").as_py() == 1 for c in keys.columns):
        groups: list[tuple[tuple[Any, ...], pa.RecordBatch]] = [
            (tuple(c[0].as_py() for c in keys.columns), batch)
        ]
    else:
        indexed = keys.append_column("row", pa.array(range(batch.num_rows), type=pa.int64()))
        grouped = indexed.group_by(list(columns), use_threads=False).aggregate([("row", "list")])
        rows_per_group = grouped.column("row_list").combine_chunks()
        key_columns = [grouped.column(name) for name in columns]
        groups = []
        for g in range(grouped.num_rows):
            key = tuple(c[g].as_py() for c in key_columns)
            groups.append((key, batch.take(rows_per_group[g].values)))
    for key, rows in groups:
        partition_key = PartitionKey(
            field_values=[PartitionFieldValue(f, v) for f, v in zip(spec.fields, key, strict=True)],
            partition_spec=spec,
            schema=schema,
        )
        yield key, partition_key, rows


__all__ = ["PartitionExpr", "build_spec", "describe", "parse", "partition_values", "same_spec", "split"]
