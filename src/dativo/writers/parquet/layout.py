"""What the ``parquet`` writer keeps in a commit record beside the files: the schema and the state.

A record's ``extra`` holds ``schema`` (the Arrow schema, IPC-serialised, base64) and ``state`` (the run's
incremental state, JSON). The folder layout and the commit protocol are the storage block's
(:mod:`dativo.storage.store`); the Go example writer (``examples/plugins/go_parquet_writer``) writes the same.
"""

from __future__ import annotations

import base64
from typing import Any

import pyarrow as pa

from dativo.storage import CommitRecord


def encode_schema(schema: pa.Schema | None) -> str:
    """The record form of a schema (``""`` for none)."""
    return base64.b64encode(schema.serialize().to_pybytes()).decode() if schema is not None else ""


def decode_schema(encoded: str | None) -> pa.Schema | None:
    """The inverse of :func:`encode_schema`."""
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(encoded))) if encoded else None


def record_extra(schema: pa.Schema | None, state: dict[str, Any] | None) -> dict[str, Any]:
    """The writer's fields of a new record."""
    return {"schema": encode_schema(schema), "state": state}


def committed_schema(live: list[tuple[CommitRecord, list[str]]]) -> pa.Schema | None:
    """The schema of the newest live commit that has files (a run without files constrains nothing)."""
    return decode_schema(next((r.extra.get("schema") for r, _ in live if r.files), None))


__all__ = ["committed_schema", "decode_schema", "encode_schema", "record_extra"]
