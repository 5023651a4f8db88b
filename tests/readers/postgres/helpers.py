"""Read datasets with a PostgreSQL reader the way the engine does (discover, plan, read every split)."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from dativo.api import Reader, State


def read_split(reader: Reader, split: Any, schema: pa.Schema) -> pa.Table:
    """Read one split as the engine does, checking that every batch has exactly the declared schema."""
    stream = reader.read(split)
    assert isinstance(stream, pa.RecordBatchReader)
    assert stream.schema.equals(schema), (stream.schema, schema)
    batches = list(stream)
    for batch in batches:
        assert batch.schema.equals(schema)
        batch.validate(full=True)
    return pa.Table.from_batches(batches, schema=schema)


def read_all(reader: Reader, state: State | None = None, dataset: int = 0) -> pa.Table:
    """discover → plan → read every split → one table (splits concatenated in plan order)."""
    ds = reader.discover()[dataset]
    splits = reader.plan(ds, state)
    for split in splits:
        json.dumps(dict(split.params))  # params must travel as JSON
    assert ds.schema is not None
    return pa.concat_tables([read_split(reader, s, ds.schema) for s in splits])
