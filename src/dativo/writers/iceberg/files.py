"""Streaming Parquet data files for an Iceberg table, and the ``DataFile`` entries that describe them.

:class:`DataFileWriter` takes conformed batches one at a time. Each partition has one open file;
batches are buffered up to ``row_group_bytes`` (Arrow bytes, summed over all open files) and then
written as a row group, and a file is closed and a new one started once it reaches
``target_file_bytes`` on disk. Memory is therefore bounded by the row-group buffer plus the open
files' write buffers, whatever the size of the split. Statistics come from the Parquet footers, with
pyiceberg's own helpers, so the manifests carry the same metrics pyiceberg writes itself.
"""

from __future__ import annotations

import re
import uuid
from collections import OrderedDict
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import (
    MetricModeTypes,
    MetricsMode,
    StatisticsCollector,
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.partitioning import PartitionKey
from pyiceberg.table.locations import load_location_provider
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.typedef import Record

from dativo.writers.encoding import parquet_options
from dativo.writers.iceberg import partitioning

MAX_OPEN_FILES = 32
"""Open files per :class:`DataFileWriter`; beyond that the least recently used one is closed."""


@dataclass
class WriteOptions:
    """How data files are written."""

    target_file_bytes: int
    row_group_bytes: int
    compression: str = "zstd"
    compression_level: int | None = None


@dataclass
class _OpenFile:
    path: str
    partition_key: PartitionKey | None
    stream: Any
    writer: pq.ParquetWriter
    buffer: list[pa.RecordBatch] = field(default_factory=list)
    buffered: int = 0


class DataFileWriter:
    """Writes one split's batches to new data files of one table. Not shared between threads.

    Args:
        metadata: The table's metadata at ``prepare`` time (schema, spec, location, properties).
        io: The table's FileIO.
        options: File size, row group size and compression.
        prefix: Start of every file name (unique per split and attempt).
    """

    def __init__(self, metadata: TableMetadata, io: FileIO, options: WriteOptions, prefix: str) -> None:
        self.metadata = metadata
        self.schema = metadata.schema()
        self.spec = metadata.spec()
        self.io = io
        self.options = options
        self.prefix = re.sub(r"[^A-Za-z0-9_.-]", "_", prefix)
        self._locations = load_location_provider(metadata.location, metadata.properties)
        self._stats_plan = compute_statistics_plan(self.schema, metadata.properties)
        self._id_mapping = parquet_path_to_id_mapping(self.schema)
        self._open: OrderedDict[tuple[Any, ...], _OpenFile] = OrderedDict()
        self._buffered = 0
        self._sequence = 0
        self.data_files: list[DataFile] = []
        self.paths: list[str] = []
        self.rows = 0
        self.bytes = 0

    def write(self, batch: pa.RecordBatch) -> None:
        """Add one conformed batch (see :func:`~dativo.writers.iceberg.conform.conform_batch`)."""
        if batch.num_rows == 0:
            return
        if self.spec.is_unpartitioned():
            self._append((), None, batch)
        else:
            for key, partition_key, rows in partitioning.split(batch, self.spec, self.schema):
                self._append(key, partition_key, rows)
        while self._buffered > self.options.row_group_bytes and self._open:
            key = max(self._open, key=lambda k: self._open[k].buffered)
            self._flush(key)

    def close(self) -> list[DataFile]:
        """Flush and close every open file; return the ``DataFile`` entries of all files written."""
        for key in list(self._open):
            self._close(key)
        return self.data_files

    def abort(self) -> None:
        """Close what is open and delete every file this writer created."""
        for open_file in self._open.values():
            try:
                open_file.writer.close()
                open_file.stream.close()
            except Exception:  # best effort: the file is deleted next
                pass
            self.paths.append(open_file.path)
        self._open.clear()
        for path in self.paths:
            with suppress(FileNotFoundError):
                self.io.delete(path)

    def _append(
        self, key: tuple[Any, ...], partition_key: PartitionKey | None, batch: pa.RecordBatch
    ) -> None:
        open_file = self._open.get(key)
        if open_file is None:
            if len(self._open) >= MAX_OPEN_FILES:
                self._close(next(iter(self._open)))
            open_file = self._open[key] = self._new_file(partition_key, batch.schema)
        else:
            self._open.move_to_end(key)
        open_file.buffer.append(batch)
        open_file.buffered += batch.nbytes
        self._buffered += batch.nbytes
        if open_file.buffered >= self.options.row_group_bytes:
            self._flush(key)

    def _new_file(self, partition_key: PartitionKey | None, schema: pa.Schema) -> _OpenFile:
        name = f"{self.prefix}-{self._sequence:05d}.parquet"
        self._sequence += 1
        path = self._locations.new_data_location(name, partition_key)
        stream = self.io.new_output(path).create(overwrite=True)
        try:
            writer = pq.ParquetWriter(
                stream,
                schema,
                compression=self.options.compression,
                compression_level=self.options.compression_level,
                store_decimal_as_integer=True,
                **parquet_options(schema),
            )
        except Exception:
            stream.close()
            raise
        return _OpenFile(path, partition_key, stream, writer)

    def _flush(self, key: tuple[Any, ...]) -> None:
        """Write the buffer of one open file as a row group; roll the file once it is big enough."""
        open_file = self._open[key]
        self._write_buffer(open_file)
        if open_file.stream.tell() >= self.options.target_file_bytes:
            self._close(key)

    def _write_buffer(self, open_file: _OpenFile) -> None:
        if not open_file.buffer:
            return
        table = pa.Table.from_batches(open_file.buffer)
        open_file.writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self._buffered -= open_file.buffered
        open_file.buffer.clear()
        open_file.buffered = 0

    def _close(self, key: tuple[Any, ...]) -> None:
        open_file = self._open.pop(key)
        self.paths.append(open_file.path)  # from here on, abort() deletes it whatever happens next
        self._write_buffer(open_file)
        open_file.writer.close()
        size = open_file.stream.tell()
        open_file.stream.close()
        parquet_metadata = open_file.writer.writer.metadata
        statistics = data_file_statistics_from_parquet_metadata(
            parquet_metadata=parquet_metadata,
            stats_columns=_bounds_python_can_hold(parquet_metadata, self._stats_plan, self._id_mapping),
            parquet_column_mapping=self._id_mapping,
        )
        data_file = DataFile.from_args(
            content=DataFileContent.DATA,
            file_path=open_file.path,
            file_format=FileFormat.PARQUET,
            partition=open_file.partition_key.partition if open_file.partition_key else Record(),
            file_size_in_bytes=size,
            sort_order_id=None,
            spec_id=self.metadata.default_spec_id,
            equality_ids=None,
            key_metadata=None,
            **statistics.to_serialized_dict(),
        )
        self.data_files.append(data_file)
        self.rows += data_file.record_count
        self.bytes += size


_COUNTS = MetricsMode(MetricModeTypes.COUNTS)
_NO_BOUNDS = (MetricModeTypes.NONE, MetricModeTypes.COUNTS)


def _bounds_python_can_hold(
    metadata: pq.FileMetaData, plan: dict[int, StatisticsCollector], mapping: dict[str, int]
) -> dict[int, StatisticsCollector]:
    """``plan`` with counts-only metrics for columns whose min/max Python cannot represent.

    pyiceberg turns Parquet min/max into Python values, and ``datetime`` stops at year 1: a BC date or
    timestamp (which PostgreSQL has) would fail the whole file. Such columns keep their value and NULL
    counts but get no bounds, so scans simply never prune on them.
    """
    plan = dict(plan)
    for r in range(metadata.num_row_groups):
        row_group = metadata.row_group(r)
        for pos in range(row_group.num_columns):
            column = row_group.column(pos)
            field_id = mapping[column.path_in_schema]
            if plan[field_id].mode.type in _NO_BOUNDS or not column.is_stats_set:
                continue
            try:
                column.statistics.min, column.statistics.max  # noqa: B018  (converts, or raises)
            except (OverflowError, ValueError, pa.ArrowNotImplementedError):
                plan[field_id] = replace(plan[field_id], mode=_COUNTS)
    return plan


def new_prefix(split_id: str) -> str:
    """A unique file-name prefix for one ``write`` call."""
    return f"{uuid.uuid4()}-{split_id}"


__all__ = ["MAX_OPEN_FILES", "DataFileWriter", "WriteOptions", "new_prefix"]
