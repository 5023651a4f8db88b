"""The options of the ``parquet`` writer: where (from the storage block) and how Parquet is encoded."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from dativo.storage import ROW_GROUP_MB, StoreOptions


class ParquetWriterConfig(StoreOptions):
    """Options of the ``parquet`` writer."""

    model_config = ConfigDict(extra="forbid")

    compression: str = Field("zstd", description="Parquet codec: zstd, snappy, gzip, lz4, brotli or none.")
    compression_level: int | None = Field(None, description="Codec level (zstd: 1-22).")
    row_group_rows: int = Field(1 << 20, ge=1024, description="Rows per Parquet row group at most.")
    row_group_size_mb: int = Field(
        ROW_GROUP_MB,
        ge=1,
        description="MiB of Arrow data per row group at most: bounds a split's memory, whatever its batches.",
    )


__all__ = ["ParquetWriterConfig"]
