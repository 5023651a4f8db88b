"""Built-in ``parquet`` writer: a folder of Parquet files, locally or on S3, that changes one whole run at a time.

Layout of a target (a local folder or an ``s3://bucket/prefix``)::

    out/orders/
      000001-<run id>/part-0-00000.parquet     one folder per committed run
      000001-<run id>/_dativo_commit.json      the run's record: job, rows, files, schema, state
      _dativo/staging/<run id>/                files written but not yet committed
      _dativo/log/00000000000000000001.json    S3 only: the commit log, one object per commit

Readers that list the folder (pyarrow, DuckDB, Spark, pandas) skip names starting with ``_`` or ``.``, so
staged files and Dativo's bookkeeping are invisible to them. :func:`read_committed` reads exactly the
committed files through the same records Dativo itself uses.

**Local folders.** The commit is one ``rename`` of the staging folder into place. An ``overwrite`` builds the
new folder beside the old one and swaps the two in one atomic ``renameat2(RENAME_EXCHANGE)``. A kill at any
moment leaves the old content or the whole new one, for every kind of reader.

**S3.** Object stores cannot rename, so the commit point is one PUT of the next commit-log object, which
names the run's files; see :mod:`dativo.writers.parquet_s3`. Readers that go through the log
(:func:`read_committed`, the writer's own state and run-id checks) see a run entirely or not at all.
Readers that list the prefix see a run's folder appear file by file just after its commit (and, after an
overwrite, old and new folders side by side for a moment); they never see files of a run that did not
commit.

Both sides share everything but publication (:class:`Target`): streaming writes, the run record, state,
run-id idempotency, the schema check and ``abort``.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import json
import os
import posixpath
import re
import shutil
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dativo.api import CommitInfo, Dataset, Mode, Split, State, WrittenFiles, Writer
from dativo.errors import CommitFailed, ConfigError, ConnectionFailed, SchemaMismatch
from dativo.storage.s3 import S3Settings
from dativo.writers.encoding import parquet_options
from dativo.streams import schema_difference

if TYPE_CHECKING:
    import logging

MARKER = "_dativo_commit.json"
_BATCH = re.compile(r"^(\d{6,})-([0-9A-Za-z_\-]+)$")
_STALE_STAGING_S = 3600
_MAX_S3_FILE_MB = 4096  # a server-side copy (CopyObject) takes at most 5 GiB

Record = dict[str, Any]
"""What one commit says: ``job``, ``run_id``, ``seq``, ``folder``, ``mode``, ``rows``, ``files``, ``schema``,
``state``, ``committed_at``. Stored as the run folder's marker (and, on S3, as its commit-log object)."""


class ParquetWriterConfig(BaseModel):
    """Options of the ``parquet`` writer."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        description="Target folder, local or 's3://bucket/prefix'; `{dataset}` is replaced by the dataset name."
    )
    s3: S3Settings | None = Field(
        None, description="How to reach the object store of an s3:// path (endpoint, credentials, region …)."
    )
    compression: str = Field("zstd", description="Parquet codec: zstd, snappy, gzip, lz4, brotli or none.")
    compression_level: int | None = Field(None, description="Codec level (zstd: 1-22).")
    target_file_size_mb: int = Field(256, ge=1, description="Start a new file past this size.")
    row_group_rows: int = Field(1 << 20, ge=1024, description="Rows per Parquet row group at most.")

    @model_validator(mode="after")
    def _storage_fits_path(self) -> ParquetWriterConfig:
        scheme = self.path.split("://", 1)[0] if "://" in self.path else ""
        if scheme not in ("", "file", "s3"):
            raise ValueError(f"path {self.path!r}: expected a local folder, a file:// URL or an s3:// URL")
        if scheme == "s3":
            if not self.path[len("s3://") :].split("/", 1)[0]:
                raise ValueError(f"path {self.path!r} names no bucket; write s3://bucket/prefix")
            if self.target_file_size_mb > _MAX_S3_FILE_MB:
                raise ValueError(
                    f"target_file_size_mb must be at most {_MAX_S3_FILE_MB} on S3: committed files are "
                    "published by server-side copy, which is limited to 5 GiB per object"
                )
        elif self.s3 is not None:
            raise ValueError("s3 settings need an s3:// path")
        return self


# --- where a target lives -------------------------------------------------------------------------------


class Target(ABC):
    """One dataset's folder, and how a run gets published there.

    Attributes:
        fs: The file system holding the folder (paths are plain, without a scheme).
        location: The folder as a user writes it, for messages.
    """

    fs: pafs.FileSystem
    location: str

    @abstractmethod
    def staged_path(self, run_id: str, name: str) -> str:
        """The file-system path of staged file ``name`` of run ``run_id``."""

    @abstractmethod
    def uri(self, path: str) -> str:
        """How a file-system path appears in :class:`WrittenFiles` (a local path or ``s3://`` URL)."""

    @abstractmethod
    def path(self, uri: str) -> str:
        """The inverse of :meth:`uri`."""

    def create(self, run_id: str, name: str) -> tuple[pa.NativeFile, str]:
        """Open a new staged file for writing; returns the stream and its URI."""
        path = self.staged_path(run_id, name)
        return self.fs.open_output_stream(path), self.uri(path)

    @abstractmethod
    def records(self) -> list[Record]:
        """Every commit known to the target, newest first (state and run-id idempotency come from here)."""

    @abstractmethod
    def live(self) -> list[tuple[Record, list[str]]]:
        """The commits whose files make up the table now, newest first, with those files' paths."""

    @abstractmethod
    def prepare(self, run_id: str) -> None:
        """Make the target ready for run ``run_id``; clean up what interrupted runs left behind."""

    @abstractmethod
    def publish(self, record: Record, staging_run_id: str) -> str:
        """Publish the staged files of ``staging_run_id`` named in ``record``, atomically.

        Returns:
            The commit id (the run folder's name).

        Raises:
            CommitFailed: Nothing was published.
            CommitStateUnknown: The outcome is unknown.
        """

    @abstractmethod
    def discard(self, run_id: str) -> None:
        """Delete everything staged by ``run_id``."""

    def storage_error(self, exc: OSError, doing: str) -> Exception:
        """The error to raise when the storage fails while ``doing`` something (default: ``exc`` itself)."""
        return exc


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


class LocalTarget(Target):
    """A local folder: the staging folder is renamed into place, or exchanged with the old folder."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.fs = pafs.LocalFileSystem()
        self.location = str(directory)

    def _staging(self, run_id: str) -> Path:
        return self.directory / "_dativo" / "staging" / run_id

    def staged_path(self, run_id: str, name: str) -> str:
        return str(self._staging(run_id) / name)

    def uri(self, path: str) -> str:
        return path

    def path(self, uri: str) -> str:
        return uri

    def create(self, run_id: str, name: str) -> tuple[pa.NativeFile, str]:
        self._staging(run_id).mkdir(parents=True, exist_ok=True)
        path = self.staged_path(run_id, name)
        return pa.OSFile(path, "wb"), path

    def _batches(self) -> list[tuple[int, str, Path]]:
        """Committed run folders, newest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for entry in self.directory.iterdir():
            match = _BATCH.match(entry.name)
            if match and entry.is_dir() and (entry / MARKER).exists():
                found.append((int(match[1]), match[2], entry))
        return sorted(found, reverse=True)

    def records(self) -> list[Record]:
        records = []
        for seq, run_id, batch in self._batches():
            record = json.loads((batch / MARKER).read_text())
            records.append({**record, "seq": seq, "run_id": record.get("run_id", run_id), "folder": batch.name})
        return records

    def live(self) -> list[tuple[Record, list[str]]]:
        return [(r, [str(self.directory / r["folder"] / f) for f in r.get("files", [])]) for r in self.records()]

    def prepare(self, run_id: str) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConnectionFailed(
                f"cannot create target folder {self.directory}: {exc.strerror}",
                hint="Choose a writable target.path.",
            ) from None
        for leftover in self.directory.parent.glob(f".{self.directory.name}.dativo-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        staging = self.directory / "_dativo" / "staging"
        if staging.is_dir():
            for entry in staging.iterdir():
                if entry.name != run_id and time.time() - entry.stat().st_mtime > _STALE_STAGING_S:
                    shutil.rmtree(entry, ignore_errors=True)

    def publish(self, record: Record, staging_run_id: str) -> str:
        """One ``rename`` of the staging folder (append) or one directory exchange (overwrite)."""
        directory = self.directory
        directory.mkdir(parents=True, exist_ok=True)
        staging = self._staging(staging_run_id)
        staging.mkdir(parents=True, exist_ok=True)
        for entry in staging.iterdir():
            if entry.name not in record["files"]:
                entry.unlink()
        with open(staging / MARKER, "w") as handle:
            json.dump(record, handle)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            if record["mode"] == "overwrite":
                self._swap_in(staging, record["folder"], staging_run_id)
            else:
                os.rename(staging, directory / record["folder"])
                _fsync_dir(directory)
        except OSError as exc:
            raise CommitFailed(
                f"could not publish into {directory}: {exc.strerror}",
                hint="Check the target folder; nothing was published.",
            ) from None
        return str(record["folder"])

    def _swap_in(self, staging: Path, name: str, run_id: str) -> None:
        directory = self.directory
        fresh = directory.parent / f".{directory.name}.dativo-{run_id}"
        shutil.rmtree(fresh, ignore_errors=True)
        (fresh / "_dativo").mkdir(parents=True)
        os.rename(staging, fresh / name)
        _fsync_dir(fresh)
        exchange(fresh, directory)
        _fsync_dir(directory.parent)
        shutil.rmtree(fresh, ignore_errors=True)

    def discard(self, run_id: str) -> None:
        shutil.rmtree(self._staging(run_id), ignore_errors=True)


def open_target(
    path: str, s3: S3Settings | Mapping[str, Any] | None = None, logger: logging.Logger | None = None
) -> Target:
    """The :class:`Target` of one dataset folder (``path`` without a ``{dataset}`` placeholder)."""
    if path.startswith("s3://"):
        from dativo.writers.parquet_s3 import S3Target

        settings = s3 if isinstance(s3, S3Settings) else S3Settings.model_validate(dict(s3 or {}))
        return S3Target(path, settings, logger=logger)
    if s3 is not None:
        raise ValueError("s3 settings need an s3:// path")
    return LocalTarget(_dataset_dir(path, ""))


def _encode_schema(schema: pa.Schema | None) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode() if schema is not None else ""


def _decode_schema(encoded: str | None) -> pa.Schema | None:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(encoded))) if encoded else None


def _committed_schema(live: list[tuple[Record, list[str]]]) -> pa.Schema | None:
    """The schema of the newest live commit that has files (a run without files constrains nothing)."""
    return _decode_schema(next((r.get("schema") for r, _ in live if r.get("files")), None))


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
    """
    if "{dataset}" in path:
        raise ValueError(f"path {path!r}: replace {{dataset}} with the dataset's name")
    target = open_target(path, s3)
    try:
        live = target.live()
    except OSError as exc:
        raise target.storage_error(exc, "read the commits") from None
    files = [file for _, paths in reversed(live) for file in paths]
    return pads.dataset(files, schema=_committed_schema(live) or pa.schema([]), format="parquet",
                        filesystem=target.fs)


# --- the writer -----------------------------------------------------------------------------------------


class ParquetWriter(Writer):
    """Writes a folder of Parquet files, local or on S3; ``append`` and ``overwrite`` commit atomically."""

    Config: ClassVar[type[BaseModel]] = ParquetWriterConfig
    config: ParquetWriterConfig

    def __init__(self, config: ParquetWriterConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self._lock = threading.Lock()
        self._modes: dict[str, Mode] = {}
        self._schemas: dict[str, pa.Schema] = {}
        self._targets: dict[str, Target] = {}

    @property
    def _remote(self) -> bool:
        return self.config.path.startswith("s3://")

    def _target(self, dataset: str) -> Target:
        with self._lock:
            target = self._targets.get(dataset)
            if target is None:
                if self._remote:
                    path = self.config.path.replace("{dataset}", dataset)
                    target = open_target(path, self.config.s3 or S3Settings(), self.ctx.logger)
                else:
                    target = LocalTarget(_dataset_dir(self.config.path, dataset))
                self._targets[dataset] = target
            return target

    # --- contract -------------------------------------------------------------------------------------

    def check(self) -> None:
        """Local: the target's parent folder must exist or be creatable, and be writable. S3: the bucket
        must exist and the credentials must allow writing under the target's prefix."""
        if self._remote:
            from dativo.writers.parquet_s3 import check_s3

            check_s3(self.config.path, self.config.s3 or S3Settings())
            return
        template = self.config.path
        probe = _dataset_dir(template, "dataset").parent if "{dataset}" in template else _dataset_dir(template, "x")
        while not probe.exists():
            probe = probe.parent
        if not os.access(probe, os.W_OK):
            raise ConnectionFailed(
                f"target.path {self.config.path!r}: folder {probe} is not writable",
                hint="Choose a writable target.path or fix the folder's permissions.",
            )

    def state(self, dataset: Dataset) -> State | None:
        """The state of the newest committed run of this job."""
        target = self._target(dataset.name)
        for record in self._read(target, target.records, "read the commits"):
            if record.get("job") == self.ctx.job:
                return record.get("state")
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
        target = self._target(dataset.name)
        self._read(target, lambda: target.prepare(self.ctx.run_id), "prepare the target")
        if mode == "append":
            existing = _committed_schema(self._read(target, target.live, "read the commits")) or pa.schema([])
            difference = schema_difference(existing, schema)
            if difference and len(existing) and len(schema):
                raise SchemaMismatch(
                    f"target {target.location} holds data with another schema: {difference}",
                    hint="Use mode: overwrite to replace it, or an iceberg target, which evolves schemas.",
                )

    @staticmethod
    def _read(target: Target, fn: Any, doing: str) -> Any:
        try:
            return fn()
        except OSError as exc:
            raise target.storage_error(exc, doing) from None

    def write(self, split: Split, stream: pa.RecordBatchReader) -> WrittenFiles:
        """Stream batches into staged Parquet files, rolling over at ``target_file_size_mb``."""
        target = self._target(split.dataset)
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
                sink, uri = target.create(self.ctx.run_id, f"part-{split.id}-{len(result.files):05d}.parquet")
                result.files.append(uri)
                writer = pq.ParquetWriter(
                    sink,
                    stream.schema,
                    compression=self.config.compression,
                    compression_level=self.config.compression_level,
                    **parquet_options(stream.schema),
                )
            writer.write_table(pa.Table.from_batches(pending, schema=stream.schema))
            pending, pending_rows = [], 0
            if sink is not None and sink.tell() >= limit:
                close()

        def close() -> None:
            nonlocal sink, writer
            if writer is not None and sink is not None:
                writer.close()
                result.bytes += sink.tell()
                sink.close()
            sink, writer = None, None

        try:
            for batch in stream:
                pending.append(batch)
                pending_rows += batch.num_rows
                result.rows += batch.num_rows
                if pending_rows >= self.config.row_group_rows:
                    flush()
            flush()
            close()
        except OSError as exc:
            raise target.storage_error(exc, "write a data file") from None
        finally:
            if writer is not None:  # failed part-way: finish the file anyway, abort() deletes the staging
                try:
                    close()
                except Exception:  # noqa: BLE001 - the original failure is the one to report
                    pass
        return result

    def commit(self, dataset: Dataset, files: list[WrittenFiles], state: State | None, run_id: str) -> CommitInfo:
        """Publish the staged files as one run folder (see the module docstring for how, per storage)."""
        target = self._target(dataset.name)
        try:
            records = self._read(target, target.records, "read the commits")
        except ConnectionFailed as exc:
            raise CommitFailed(exc.message, hint="Nothing was published; rerun the job.") from None
        for record in records:
            if record.get("run_id") == run_id:
                return CommitInfo(commit_id=record["folder"], rows=0, no_op=True)
        seq = int(records[0]["seq"]) + 1 if records else 1
        record: Record = {
            "format": 1,
            "job": self.ctx.job,
            "run_id": run_id,
            "seq": seq,
            "folder": f"{seq:06d}-{run_id}",
            "mode": self._modes.get(dataset.name, "append"),
            "rows": sum(w.rows for w in files),
            "files": sorted({posixpath.basename(f) for w in files for f in w.files}),
            "schema": _encode_schema(self._schemas.get(dataset.name)),
            "state": state,
            "committed_at": time.time(),
        }
        commit_id = target.publish(record, self.ctx.run_id)
        return CommitInfo(commit_id=commit_id, rows=record["rows"])

    def abort(self, files: list[WrittenFiles]) -> None:
        """Delete staged files of this run."""
        for written in files:
            target = self._target(written.dataset)
            for file in written.files:
                try:
                    target.fs.delete_file(target.path(file))
                except FileNotFoundError:
                    pass
        for dataset in {w.dataset for w in files}:
            self._target(dataset).discard(self.ctx.run_id)


__all__ = ["MARKER", "LocalTarget", "ParquetWriter", "ParquetWriterConfig", "Target", "exchange", "read_committed"]
