"""Helpers for the Iceberg writer tests: run the writer the way the engine does, read back like a user."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyiceberg.table import Table

from dativo.api import CommitInfo, Context, Dataset, Split, WrittenFiles
from dativo.writers.iceberg import IcebergWriter
from dativo.writers.iceberg.catalog import open_catalog


def context(work_dir: Path, job: str = "t", run_id: str = "r1") -> Context:
    """The context the engine would give the writer."""
    return Context(
        job=job, run_id=run_id, plugin="iceberg", logger=logging.getLogger("t"), work_dir=str(work_dir)
    )


def write(
    writer: IcebergWriter,
    dataset: Dataset,
    data: pa.Table | Iterable[pa.RecordBatch],
    split: str = "0",
    batch_rows: int | None = None,
) -> WrittenFiles:
    """Write ``data`` as one split."""
    if isinstance(data, pa.Table):
        reader = pa.RecordBatchReader.from_batches(data.schema, data.to_batches(max_chunksize=batch_rows))
    else:
        batches = list(data)
        reader = pa.RecordBatchReader.from_batches(batches[0].schema, batches)
    return writer.write(Split(dataset.name, split), reader)


def run(
    writer: IcebergWriter,
    dataset: Dataset,
    data: pa.Table,
    run_id: str,
    mode: str = "append",
    state: dict[str, Any] | None = None,
) -> CommitInfo:
    """prepare + write one split + commit, as the engine does."""
    writer.prepare(dataset, data.schema, mode)  # type: ignore[arg-type]
    files = write(writer, dataset, data)
    return writer.commit(dataset, [files], state, run_id)


def table_of(writer: IcebergWriter, dataset: Dataset) -> Table:
    """The table as a separate client sees it (its own catalog connection)."""
    catalog = open_catalog(writer.config.catalog, writer.ctx.work_dir).catalog
    return catalog.load_table(writer.identifier(dataset.name))


def read(writer: IcebergWriter, dataset: Dataset, sort_by: str | None = "id") -> pa.Table:
    """What any Iceberg reader sees: a fresh pyiceberg scan."""
    result = table_of(writer, dataset).scan().to_arrow()
    return result.sort_by(sort_by) if sort_by and result.num_rows else result
