"""The built-in ``iceberg`` writer (pyiceberg): SQL or REST catalog, local or S3 storage.

Modules: :mod:`.catalog` (catalog and FileIO), :mod:`.rest` (the REST client, SigV4 signing that covers
the body; loaded for REST catalogs only), :mod:`.schema` (Arrow to Iceberg types, evolution),
:mod:`.config` (the writer's options, per-dataset table settings), :mod:`.conform` (batches into the table schema), :mod:`.partitioning` (``partition_by``),
:mod:`.files` (streaming data files), :mod:`.commit` (the atomic commit, state and run ids),
:mod:`.writer` (the :class:`IcebergWriter` plugin).
"""

from dativo.writers.iceberg.config import IcebergWriterConfig
from dativo.writers.iceberg.writer import IcebergWriter

__all__ = ["IcebergWriter", "IcebergWriterConfig"]
