"""Built-in ``parquet`` writer: a directory of Parquet files that changes atomically, one run at a time.

Layout of a target directory::

    out/orders/
      000001-<run id>/part-0-00000.parquet     one folder per committed run
      000001-<run id>/_dativo_commit.json      what the run committed: rows, files, schema, state
      _dativo/staging/<run id>/                files written but not yet committed

Readers that list the directory (pyarrow, DuckDB, Spark, pandas) skip names starting with ``_`` or ``.``,
so staged files are invisible. The commit is one ``rename`` of the staging folder into place. An
``overwrite`` builds the new directory beside the old one and swaps the two in one atomic
``renameat2(RENAME_EXCHANGE)``. A kill at any moment leaves the old content or the whole new one.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from dativo.api import CommitInfo, Dataset, Mode, Split, State, WrittenFiles, Writer
from dativo.errors import CommitFailed, ConfigError, ConnectionFailed, SchemaMismatch
from dativo.streams import schema_difference

MARKER = "_dativo_commit.json"
_BATCH = re.compile(r"^(\d{6,})-([0-9A-Za-z_\-]+)$")
_STALE_STAGING_S = 3600


class ParquetWriterConfig(BaseModel):
    """Options of the ``parquet`` writer."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="Target directory; `{dataset}` is replaced by the dataset name.")
    compression: str = Field("zstd", description="Parquet codec: zstd, snappy, gzip, lz4, brotli or none.")
    compression_level: int | None = Field(None, description="Codec level (zstd: 1-22).")
    target_file_size_mb: int = Field(256, ge=1, description="Start a new file past this size.")
    row_group_rows: int = Field(1 << 20, ge=1024, description="Rows per Parquet row group at most.")


def _dataset_dir(template: str, dataset: str) -> Path:
    text = template.removeprefix("file://")
    return Path(os.path.expanduser(text.replace("{dataset}", dataset))).absolute()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def exchange(a: Path, b: Path) -> None:
    """Atomically swap two directories (Linux ``renameat2``); two renames where that is unavailable."""
    renameat2 = getattr(_libc, "renameat2", None)
    if renameat2 is not None:
        at_fdcwd = -100
        if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
        errno = ctypes.get_errno()
        if errno not in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: fall back below
            raise OSError(errno, os.strerror(errno), str(a))
    parked = b.with_name(b.name + ".dativo-old")
    os.rename(b, parked)
    os.rename(a, b)
    os.rename(parked, a)


class ParquetWriter(Writer):
    """Writes a directory of Parquet files; ``append`` and ``overwrite`` commit atomically."""

    Config: ClassVar[type[BaseModel]] = ParquetWriterConfig
    config: ParquetWriterConfig

    def __init__(self, config: ParquetWriterConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self._lock = threading.Lock()
        self._modes: dict[str, Mode] = {}
        self._schemas: dict[str, pa.Schema] = {}

    # --- helpers --------------------------------------------------------------------------------------

    def _dir(self, dataset: str) -> Path:
        return _dataset_dir(self.config.path, dataset)

    def _staging(self, dataset: str) -> Path:
        return self._dir(dataset) / "_dativo" / "staging" / self.ctx.run_id

    def _batches(self, directory: Path) -> list[tuple[int, str, Path]]:
        """Committed run folders, newest first."""
        if not directory.is_dir():
            return []
        found = []
        for entry in directory.iterdir():
            match = _BATCH.match(entry.name)
            if match and entry.is_dir() and (entry / MARKER).exists():
                found.append((int(match[1]), match[2], entry))
        return sorted(found, reverse=True)

    @staticmethod
    def _marker(batch: Path) -> dict[str, Any]:
        return json.loads((batch / MARKER).read_text())

    # --- contract -------------------------------------------------------------------------------------

    def check(self) -> None:
        """The target's parent folder must exist or be creatable, and be writable."""
        probe = self._dir("dataset").parent if "{dataset}" in self.config.path else self._dir("x")
        while not probe.exists():
            probe = probe.parent
        if not os.access(probe, os.W_OK):
            raise ConnectionFailed(
                f"target.path {self.config.path!r}: folder {probe} is not writable",
                hint="Choose a writable target.path or fix the folder's permissions.",
            )

    def state(self, dataset: Dataset) -> State | None:
        """The state of the newest committed run of this job."""
        for _, _, batch in self._batches(self._dir(dataset.name)):
            marker = self._marker(batch)
            if marker.get("job") == self.ctx.job:
                return marker.get("state")
        return None

    def prepare(self, dataset: Dataset, schema: pa.Schema, mode: Mode) -> None:
        """Create the folder; on append, require the schema of the existing files."""
        if mode == "merge":
            raise ConfigError(
                "target.mode merge is not supported by the parquet writer",
                hint="Use append or overwrite, or an iceberg target for merge.",
            )
        with self._lock:
            self._modes[dataset.name] = mode
            self._schemas[dataset.name] = schema
            if len(self._modes) > 1 and "{dataset}" not in self.config.path:
                raise ConfigError(
                    "the source produces several datasets but target.path has no {dataset} placeholder",
                    hint="Write e.g. path: out/{dataset}.",
                )
        directory = self._dir(dataset.name)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConnectionFailed(
                f"cannot create target folder {directory}: {exc.strerror}",
                hint="Choose a writable target.path.",
            ) from None
        self._sweep(directory)
        if mode == "append":
            # the schema that matters is the data files': a run that committed no file constrains nothing
            markers = (self._marker(batch) for _, _, batch in self._batches(directory))
            encoded = next((m.get("schema") for m in markers if m.get("files")), None)
            existing = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(encoded))) if encoded else pa.schema([])
            difference = schema_difference(existing, schema)
            if difference and len(existing) and len(schema):
                raise SchemaMismatch(
                    f"target {directory} holds data with another schema: {difference}",
                    hint="Use mode: overwrite to replace it, or an iceberg target, which evolves schemas.",
                )

    def _sweep(self, directory: Path) -> None:
        """Remove what interrupted runs left behind (never anything a reader can see)."""
        for leftover in directory.parent.glob(f".{directory.name}.dativo-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        staging = directory / "_dativo" / "staging"
        if staging.is_dir():
            for entry in staging.iterdir():
                if entry.name != self.ctx.run_id and time.time() - entry.stat().st_mtime > _STALE_STAGING_S:
                    shutil.rmtree(entry, ignore_errors=True)

    def write(self, split: Split, stream: pa.RecordBatchReader) -> WrittenFiles:
        """Stream batches into staged Parquet files, rolling over at ``target_file_size_mb``."""
        staging = self._staging(split.dataset)
        staging.mkdir(parents=True, exist_ok=True)
        limit = self.config.target_file_size_mb << 20
        result = WrittenFiles(dataset=split.dataset, split=split.id)
        sink: pa.NativeFile | None = None
        writer: pq.ParquetWriter | None = None
        pending: list[pa.RecordBatch] = []
        pending_rows = 0

        def flush() -> None:
            nonlocal sink, writer, pending, pending_rows
            if not pending:
                return
            if writer is None:
                name = staging / f"part-{split.id}-{len(result.files):05d}.parquet"
                sink = pa.OSFile(str(name), "wb")
                writer = pq.ParquetWriter(
                    sink,
                    stream.schema,
                    compression=self.config.compression,
                    compression_level=self.config.compression_level,
                )
                result.files.append(str(name))
            writer.write_table(pa.Table.from_batches(pending, schema=stream.schema))
            pending, pending_rows = [], 0
            if sink is not None and sink.tell() >= limit:
                close()

        def close() -> None:
            nonlocal sink, writer
            if writer is not None:
                writer.close()
                assert sink is not None
                sink.close()
                result.bytes += os.path.getsize(result.files[-1])
            sink, writer = None, None

        try:
            for batch in stream:
                pending.append(batch)
                pending_rows += batch.num_rows
                result.rows += batch.num_rows
                if pending_rows >= self.config.row_group_rows:
                    flush()
            flush()
        finally:
            close()
        return result

    def commit(self, dataset: Dataset, files: list[WrittenFiles], state: State | None, run_id: str) -> CommitInfo:
        """Publish the staged files as one run folder, in one rename (append) or exchange (overwrite)."""
        directory = self._dir(dataset.name)
        directory.mkdir(parents=True, exist_ok=True)
        batches = self._batches(directory)
        for _, committed_run, batch in batches:
            if committed_run == run_id:
                return CommitInfo(commit_id=batch.name, rows=0, no_op=True)
        mode = self._modes.get(dataset.name, "append")
        seq = (batches[0][0] + 1) if batches else 1
        name = f"{seq:06d}-{run_id}"
        staging = self._staging(dataset.name)
        staging.mkdir(parents=True, exist_ok=True)
        listed = {Path(f).name for w in files for f in w.files}
        for entry in staging.iterdir():
            if entry.name not in listed:
                entry.unlink()
        schema = self._schemas.get(dataset.name)
        marker = {
            "format": 1,
            "job": self.ctx.job,
            "run_id": run_id,
            "seq": seq,
            "mode": mode,
            "rows": sum(w.rows for w in files),
            "files": sorted(listed),
            "schema": base64.b64encode(schema.serialize().to_pybytes()).decode() if schema is not None else "",
            "state": state,
            "committed_at": time.time(),
        }
        marker_path = staging / MARKER
        with open(marker_path, "w") as handle:
            json.dump(marker, handle)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            if mode == "overwrite":
                self._swap_in(directory, staging, name)
            else:
                os.rename(staging, directory / name)
                _fsync_dir(directory)
        except OSError as exc:
            raise CommitFailed(
                f"could not publish into {directory}: {exc.strerror}",
                hint="Check the target folder; nothing was published.",
            ) from None
        return CommitInfo(commit_id=name, rows=marker["rows"])

    def _swap_in(self, directory: Path, staging: Path, name: str) -> None:
        fresh = directory.parent / f".{directory.name}.dativo-{self.ctx.run_id}"
        shutil.rmtree(fresh, ignore_errors=True)
        (fresh / "_dativo").mkdir(parents=True)
        os.rename(staging, fresh / name)
        _fsync_dir(fresh)
        exchange(fresh, directory)
        _fsync_dir(directory.parent)
        shutil.rmtree(fresh, ignore_errors=True)

    def abort(self, files: list[WrittenFiles]) -> None:
        """Delete staged files of this run."""
        for written in files:
            for file in written.files:
                Path(file).unlink(missing_ok=True)
        for dataset in {w.dataset for w in files}:
            shutil.rmtree(self._staging(dataset), ignore_errors=True)
