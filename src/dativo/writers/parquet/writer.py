"""The :class:`ParquetWriter` plugin: streaming writes, state, the schema check and ``abort``.

Where the files go and how a run is published atomically is the storage block's
(:class:`dativo.storage.DatasetStores`, protocol in :mod:`dativo.storage.store`); this module decides
what a parquet target holds: plain Parquet files with Dativo's encoding choices, one commit per run that
carries the schema and the incremental state.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel

from dativo.api import CommitInfo, Dataset, Mode, Split, State, WrittenFiles, Writer
from dativo.errors import ConfigError, SchemaMismatch
from dativo.state import same_state
from dativo.storage import CommitRecord, DatasetStores, Store
from dativo.streams import schema_difference
from dativo.writers.encoding import parquet_options
from dativo.writers.parquet.config import ParquetWriterConfig
from dativo.writers.parquet.layout import committed_schema, record_extra


_UNREAD: Any = object()


def job_state(records: list[CommitRecord], job: str) -> State | None:
    """The state of ``job``'s newest commit among ``records`` (newest first)."""
    return next((r.extra.get("state") for r in records if r.job == job), None)


class ParquetWriter(Writer):
    """Writes a folder of Parquet files, local or on S3; ``append`` and ``overwrite`` commit atomically."""

    Config: ClassVar[type[BaseModel]] = ParquetWriterConfig
    config: ParquetWriterConfig

    def __init__(self, config: ParquetWriterConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self._stores = DatasetStores(
            config, job=ctx.job, run_id=ctx.run_id, label="target.path", logger=ctx.logger
        )
        self._started: dict[str, State | None] = {}  # the state this run started from, per dataset
        self._lock = threading.Lock()

    def _target(self, dataset: str) -> Store:
        return self._stores.get(dataset)

    # --- contract -------------------------------------------------------------------------------------

    def check(self) -> None:
        """Local: the target's folder must exist or be creatable, and be writable. S3: the bucket must exist
        and the credentials must allow writing under the target's prefix."""
        self._stores.check()

    def state(self, dataset: Dataset) -> State | None:
        """The state of the newest committed run of this job; this run's commit checks it is still that."""
        target = self._target(dataset.name)
        with target.errors("read the commits"):
            records = target.records()
        state = job_state(records, self.ctx.job)
        with self._lock:
            self._started[dataset.name] = state
        return state

    def prepare(self, dataset: Dataset, schema: pa.Schema, mode: Mode) -> None:
        """Create the folder; on append, require the schema of the existing files."""
        if mode == "merge":
            raise ConfigError(
                "target.mode merge is not supported by the parquet writer",
                hint="Use append or overwrite, or an iceberg target for merge.",
            )
        target = self._stores.prepare(dataset.name, schema, mode)
        if mode == "append":
            with target.errors("read the commits"):
                existing = committed_schema(target.live()) or pa.schema([])
            difference = schema_difference(existing, schema)
            if difference and len(existing) and len(schema):
                raise SchemaMismatch(
                    f"target {target.location} holds data with another schema: {difference}",
                    hint="Use mode: overwrite to replace it, or an iceberg target, which evolves schemas.",
                )

    def write(self, split: Split, stream: pa.RecordBatchReader) -> WrittenFiles:
        """Stream batches into staged Parquet files, rolling over at ``target_file_size_mb``."""
        config = self.config
        options = {"compression": config.compression, "compression_level": config.compression_level}
        staged = self._stores.write(split.dataset, stream, name=f"part-{split.id}-{{:05d}}.parquet".format,
                                    row_group_rows=config.row_group_rows,
                                    row_group_mb=config.row_group_size_mb,
                                    options={**options, **parquet_options(stream.schema)})
        return WrittenFiles(split.dataset, split.id, staged.files, staged.rows, staged.bytes)

    def commit(self, dataset: Dataset, files: list[WrittenFiles], state: State | None, run_id: str) -> CommitInfo:
        """Publish the staged files as one run folder (:mod:`dativo.storage.store` says how, per storage)."""
        extra = record_extra(self._stores.schema(dataset.name), state)
        with self._lock:
            started = self._started.pop(dataset.name, _UNREAD)
        job = self.ctx.job

        def unchanged(records: list[CommitRecord]) -> str | None:  # a compare-and-swap on the state
            if started is _UNREAD or same_state(job_state(records, job), started):
                return None
            return (f"another run of job '{job}' committed dataset '{dataset.name}' after this run started, "
                    "so this run's rows may repeat its rows (run the job again: it continues from there)")

        done = self._stores.commit(dataset.name, files, run_id, extra, precondition=unchanged)
        return CommitInfo(commit_id=done.commit_id, rows=done.rows, no_op=done.no_op)

    def abort(self, files: list[WrittenFiles]) -> None:
        """Delete this run's staging (only what it staged: a file named outside it is refused)."""
        self._stores.abort(files)

    def close(self) -> None:
        """Release the run's leases on its staging folders."""
        self._stores.close()


__all__ = ["ParquetWriter", "ParquetWriterConfig"]
