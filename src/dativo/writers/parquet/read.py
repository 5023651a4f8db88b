"""Reading a ``parquet`` target as Dativo committed it: through the records, never a directory listing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads

from dativo.storage import S3Settings, open_store
from dativo.writers.parquet.layout import committed_schema


def read_committed(path: str, *, s3: S3Settings | Mapping[str, Any] | None = None) -> pads.Dataset:
    """Open the committed content of a parquet target, and nothing else.

    Reads the commit records, not a directory listing: files of runs that are staged, aborted, or not yet
    committed are never included, and on S3 a committed run is read whole even while its files are still
    being copied into their run folder. The file set is fixed when this function returns; an overwrite or a
    publication that completes later may remove files it names (read again on ``FileNotFoundError``).

    Args:
        path: The dataset's folder: a local path, ``file://`` URL or ``s3://bucket/prefix`` (no
            ``{dataset}`` placeholder).
        s3: Endpoint and credentials for an ``s3://`` path (an :class:`S3Settings` or its dict).

    Returns:
        A ``pyarrow.dataset.Dataset`` over the committed files, oldest run first, with the committed schema.

    Raises:
        ValueError: ``path`` still has the ``{dataset}`` placeholder.
        ConnectionFailed: The storage cannot be read.
    """
    store = open_store(path, s3)
    with store.errors("read the commits"):
        live = store.live()
    files = [file for _, paths in reversed(live) for file in paths]
    schema = committed_schema(live) or pa.schema([])
    return pads.dataset(files, schema=schema, format="parquet", filesystem=store.fs)


__all__ = ["read_committed"]
