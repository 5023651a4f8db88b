"""Arrow-side conversions: bring driver output to the planned schema, in bulk, per batch.

ADBC returns most columns already in their final type; ``numeric`` comes as an ``arrow.opaque`` extension
over decimal strings, which one Arrow cast per column turns into ``decimal128``. Arrow's casts are strict:
a value that would lose a digit, overflow the precision, or is NaN/Infinity fails the cast, and that
failure becomes an error naming the column. psycopg rows are built with ``pa.array`` against the same
schema, with the same strictness.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from dativo.errors import PluginFailed


def encode_schema(schema: pa.Schema) -> str:
    """Serialise a schema to text for ``Split.params`` (which must be JSON)."""
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def decode_schema(text: str) -> pa.Schema:
    """Inverse of :func:`encode_schema`."""
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def value_error(dataset: str, field: pa.Field, exc: Exception) -> PluginFailed:
    """The error for a value that does not fit its column's Arrow type."""
    hint = None
    if pa.types.is_decimal(field.type) or (
        pa.types.is_list(field.type) and pa.types.is_decimal(field.type.value_type)
    ):
        hint = (
            "Numeric values must fit the decimal type exactly (NaN and Infinity never fit). For numeric "
            "columns declared without precision (or with more than 38 digits), set the reader option numeric "
            "to a wider 'decimal(P,S)', 'string' (exact text) or 'float64' (approximate); otherwise read the "
            "column through a 'query:' with an explicit cast such as col::text."
        )
    return PluginFailed(
        f"Column {field.name} of {dataset} holds a value that does not fit Arrow type {field.type}: {exc}",
        role="reader",
        stage="read",
        hint=hint,
    )


def _plain(array: pa.Array) -> pa.Array:
    """Replace extension types (ADBC's opaque numeric) by their storage, inside lists too."""
    if isinstance(array.type, pa.BaseExtensionType) and not isinstance(array.type, pa.UuidType):
        return _plain(array.storage)
    if pa.types.is_list(array.type):
        values = _plain(array.values)
        if values.type != array.values.type:
            return pa.ListArray.from_arrays(array.offsets, values, mask=array.is_null())
    return array


def conform(batch: pa.RecordBatch, schema: pa.Schema, dataset: str) -> pa.RecordBatch:
    """Cast an ADBC batch to ``schema``: field metadata dropped, nullability from the catalog."""
    arrays = []
    for array, field in zip(batch.columns, schema, strict=False):
        if array.type != field.type:
            try:
                array = _plain(array).cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise value_error(dataset, field, exc) from exc
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _storage_type(arrow_type: pa.DataType) -> pa.DataType:
    if isinstance(arrow_type, pa.BaseExtensionType):
        return _storage_type(arrow_type.storage_type)
    if pa.types.is_list(arrow_type):
        return pa.list_(arrow_type.value_field.with_type(_storage_type(arrow_type.value_type)))
    return arrow_type


def from_python(columns: Sequence[Sequence[Any]], schema: pa.Schema, dataset: str) -> pa.RecordBatch:
    """Build a batch from Python column values (uuid values as 16 raw bytes)."""
    arrays = []
    for values, field in zip(columns, schema, strict=False):
        storage = _storage_type(field.type)
        try:
            array = pa.array(values, type=storage)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise value_error(dataset, field, exc) from exc
        arrays.append(array.cast(field.type) if storage != field.type else array)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
