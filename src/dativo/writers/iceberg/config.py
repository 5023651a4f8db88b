"""Options of the ``iceberg`` writer: the target section's keys, with per-dataset table settings."""

from __future__ import annotations

import fnmatch
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from dativo.names import name_problem, printable
from dativo.writers.iceberg.catalog import CatalogConfig

MiB = 1024 * 1024



def _safe_table_name(value: str) -> str:
    # table and namespace become folders of the warehouse: "../x" must not lead out of it
    if (problem := name_problem(value)) is not None:
        raise ValueError(f"{printable(value)} cannot name a table or namespace: {problem}")
    return value


def _safe_namespace(value: str) -> str:
    for part in value.split("."):
        if part:
            _safe_table_name(part)
    return value


TableName = Annotated[str, AfterValidator(_safe_table_name)]
"""A table name that stays inside the warehouse."""
Namespace = Annotated[str, AfterValidator(_safe_namespace)]
"""A namespace (dots separate levels) whose levels stay inside the warehouse."""


class IcebergDatasetSettings(BaseModel):
    """Settings of the tables some datasets go to; unset keys take the target section's values."""

    model_config = ConfigDict(extra="forbid")

    table: TableName | None = Field(default=None, description="Table name for these datasets.")
    namespace: Namespace | None = Field(default=None, description="Namespace of their table; dots separate levels.")
    partition_by: list[str] | None = Field(
        default=None, description="Partition fields of their table when it is new (as target.partition_by)."
    )


class IcebergWriterConfig(BaseModel):
    """Options of the ``iceberg`` writer: the target section's connector keys plus ``writer.options``."""

    model_config = ConfigDict(extra="forbid")

    catalog: CatalogConfig | None = Field(
        default=None,
        description="The Iceberg catalog; omitted: an embedded SQLite catalog and local warehouse in the "
        "job's work directory.",
    )
    namespace: Namespace = Field(default="default", description="Namespace of the table; dots separate levels.")
    table: TableName | None = Field(
        default=None,
        description="Table name; defaults to the dataset name's last part (public.orders -> orders).",
    )
    partition_by: list[str] = Field(
        default_factory=list,
        description="Partition fields of a new table: 'col', 'day(ts)', 'month(ts)', 'year(ts)', 'hour(ts)', "
        "'bucket(16, id)', 'truncate(4, name)'. An existing table must already be partitioned this way.",
    )
    target_file_size_bytes: int = Field(
        default=256 * MiB, ge=1, description="A data file is closed once it reaches this size on disk."
    )
    row_group_size_bytes: int | None = Field(
        default=None,
        ge=1,
        description="Arrow bytes buffered (per write, across partitions) before they are written as a row "
        "group; bounds the memory of each split (raise it for fewer, larger row groups). By default an "
        "eighth of each split's share of the job's memory_mb, 1-16 MiB.",
    )
    compression: Literal["zstd", "snappy", "gzip", "lz4", "brotli", "none"] = Field(
        default="zstd", description="Parquet compression codec."
    )
    compression_level: int | None = Field(
        default=None, description="Codec level; the codec's default if unset."
    )
    table_properties: dict[str, str] = Field(
        default_factory=dict, description="Iceberg table properties set when the writer creates a table."
    )
    datasets: dict[str, IcebergDatasetSettings] = Field(
        default_factory=dict,
        description="Per-dataset table settings, keyed by dataset name or glob (public.payment, sales.*): "
        "table, namespace, partition_by. An exact name comes first, then the first glob that matches; "
        "the section's own table, namespace and partition_by are the defaults.",
    )

    def settings_for(self, dataset_name: str) -> tuple[tuple[str, ...], list[str]]:
        """``((namespace…, table), partition_by)`` of a dataset's table."""
        own = self.datasets.get(dataset_name) or next(
            (v for k, v in self.datasets.items() if fnmatch.fnmatchcase(dataset_name, k)), None
        ) or IcebergDatasetSettings()
        table = own.table or self.table or dataset_name.rsplit(".", 1)[-1]
        namespace = own.namespace if own.namespace is not None else self.namespace
        partition_by = own.partition_by if own.partition_by is not None else self.partition_by
        return (*[p for p in namespace.split(".") if p], table), partition_by


__all__ = ["IcebergDatasetSettings", "IcebergWriterConfig", "MiB"]
