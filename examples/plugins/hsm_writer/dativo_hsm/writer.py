"""The ``hsm_encrypted`` writer: Parquet files encrypted on the client, data keys wrapped by an HSM.

Every byte this writer sends to the target is either ciphertext (pages, footer, the commit's state and
schema) or bookkeeping that carries no data value (file names, row counts, run ids); see the README's
threat model. It is built on the public ``dativo.api`` only, with its own small commit protocol
(:mod:`dativo_hsm.store`).
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
import threading
import time
import uuid
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from dativo.api import (
    CommitFailed,
    CommitInfo,
    CommitStateUnknown,
    ConfigError,
    ConnectionFailed,
    Context,
    Dataset,
    Mode,
    SchemaMismatch,
    Split,
    State,
    Writer,
    WrittenFiles,
)
from pydantic import BaseModel, ConfigDict, Field

from dativo_hsm.crypto import encryption_properties
from dativo_hsm.hsm import HsmSettings, Keyring
from dativo_hsm.store import Location, Record, Store


class HsmWriterConfig(Location, HsmSettings):
    """Options of the ``hsm_encrypted`` writer (``target.writer.options``)."""

    model_config = ConfigDict(extra="forbid")

    columns: list[str] | None = Field(
        None, description="Top-level columns to encrypt; omit to encrypt every column."
    )
    plaintext_footer: bool = Field(
        False,
        description="Leave the Parquet footer readable by any reader (schema, row counts, statistics of "
        "unencrypted columns); encrypted columns stay unreadable.",
    )
    allow_extractable_key: bool = Field(
        False, description="Accept a key-encryption key that the HSM would let out (not recommended)."
    )
    compression: str = Field("zstd", description="Parquet codec (applied before encryption).")
    target_file_size_mb: int = Field(256, ge=1, description="Start a new file past this size.")
    row_group_rows: int = Field(262_144, ge=1024, description="Rows per row group at most.")


def _aad(job: str, run_id: str, seq: int) -> bytes:
    """Binds a sealed blob to its commit: it cannot be swapped into another record unnoticed."""
    return f"dativo-hsm/1\0{job}\0{run_id}\0{seq}".encode()


class HsmEncryptedWriter(Writer):
    """Writes Parquet files encrypted with Parquet modular encryption (AES-GCM), keys wrapped by an HSM."""

    Config: ClassVar[type[BaseModel]] = HsmWriterConfig
    config: HsmWriterConfig
    version = "1.0.0"
    allow_fallback = False  # the built-in writers would store plaintext

    def __init__(self, config: HsmWriterConfig, ctx: Context) -> None:
        super().__init__(config, ctx)
        if ctx.settings:
            # Connector keys beside `type` mean the job's target type is a built-in one (parquet …), whose
            # plaintext writer `fallback: default` could switch to. Refuse: every option belongs in options.
            raise ConfigError(
                f"target has connector keys ({', '.join(sorted(ctx.settings))}) beside type; the "
                "hsm_encrypted writer takes all its settings from target.writer.options",
                hint="Write target.type: hsm_encrypted and move these keys into target.writer.options, so no "
                "built-in writer can ever stand in for it and write plaintext.",
            )
        self.keyring = Keyring(config, allow_extractable_key=config.allow_extractable_key)
        self._lock = threading.Lock()
        self._stores: dict[str, Store] = {}
        self._modes: dict[str, Mode] = {}
        self._schemas: dict[str, pa.Schema] = {}
        self._nonce = uuid.uuid4().hex[:8]

    def _store(self, dataset: str) -> Store:
        with self._lock:
            store = self._stores.get(dataset)
            if store is None:
                store = Store(self.config.path.replace("{dataset}", dataset.replace("/", "_")), self.config.s3)
                self._stores[dataset] = store
            return store

    def _io(self, store: Store, doing: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except OSError as exc:
            raise ConnectionFailed(
                f"{store.location}: cannot {doing}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                hint="Check the path, the bucket and the credentials' permissions.",
            ) from None

    # --- contract ------------------------------------------------------------------------------------

    def check(self) -> None:
        """Log in to the HSM and find the key; check that the target can be listed (S3) or created."""
        self.keyring.open()
        store = self._store("dataset")
        if store.remote:
            bucket = store.root.split("/", 1)[0]
            info = self._io(store, "reach the bucket", store.fs.get_file_info, bucket)
            if info.type != pafs.FileType.Directory:
                raise ConnectionFailed(f"bucket '{bucket}' does not exist", hint="Create it, or fix path.")
            self._io(store, "list the target", store.records)
        else:
            probe = store.root
            while not os.path.exists(probe):
                probe = os.path.dirname(probe)
            if not os.access(probe, os.W_OK):
                raise ConnectionFailed(f"folder {probe} is not writable", hint="Choose a writable path.")

    def state(self, dataset: Dataset) -> State | None:
        """The state sealed into the newest commit of this job (unsealed by the HSM)."""
        store = self._store(dataset.name)
        for record in self._io(store, "read the commit log", store.records):
            if record.get("job") == self.ctx.job:
                return self._unseal(record).get("state")
        return None

    def _unseal(self, record: Record) -> dict[str, Any]:
        aad = _aad(record["job"], record["run_id"], int(record["seq"]))
        return json.loads(self.keyring.unseal(record["sealed"], aad))

    def prepare(self, dataset: Dataset, schema: pa.Schema, mode: Mode) -> None:
        """Check mode and columns, finish interrupted publications; on append, require the same schema."""
        if mode == "merge":
            raise ConfigError("target.mode merge is not supported by hsm_encrypted",
                              hint="Use append or overwrite.")
        unknown = sorted(set(self.config.columns or ()) - set(schema.names)) if len(schema) else []
        if unknown:
            raise ConfigError(
                f"target.writer.options.columns names {', '.join(unknown)}, not in dataset '{dataset.name}'",
                hint=f"Columns: {', '.join(schema.names)}.",
            )
        with self._lock:
            self._modes[dataset.name] = mode
            self._schemas[dataset.name] = schema
            if len(self._modes) > 1 and "{dataset}" not in self.config.path:
                raise ConfigError("the source produces several datasets but path has no {dataset} placeholder",
                                  hint="Write e.g. path: s3://bucket/raw/{dataset}.")
        store = self._store(dataset.name)
        records = self._io(store, "read the commit log", store.records)
        self._io(store, "tidy the target", store.tidy, self.ctx.run_id, records)
        if mode == "append" and len(schema):
            for record in store.live(records):
                if record.get("files"):
                    encoded = self._unseal(record).get("schema")
                    existing = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(encoded))) if encoded else None
                    if existing is not None and not existing.equals(schema):
                        raise SchemaMismatch(
                            f"{store.location} holds data with another schema",
                            hint="Use mode: overwrite to replace it.",
                        )
                    break

    def write(self, split: Split, stream: pa.RecordBatchReader) -> WrittenFiles:
        """Encrypt the split's batches into staged files, each with fresh data keys."""
        store = self._store(split.dataset)
        result = WrittenFiles(dataset=split.dataset, split=split.id)
        limit = self.config.target_file_size_mb << 20
        sink: Any = None
        writer: pq.ParquetWriter | None = None
        pending: list[pa.RecordBatch] = []

        def flush() -> None:
            nonlocal sink, writer, pending
            if not pending:
                return
            if writer is None:
                path = store.new_file(self.ctx.run_id, split.id, len(result.files), self._nonce)
                result.files.append(path)
                sink = store.fs.open_output_stream(path)
                properties = encryption_properties(
                    self.keyring, stream.schema, self.config.columns, plaintext_footer=self.config.plaintext_footer
                )
                writer = pq.ParquetWriter(sink, stream.schema, compression=self.config.compression,
                                          encryption_properties=properties)
            writer.write_table(pa.Table.from_batches(pending, schema=stream.schema),
                               row_group_size=self.config.row_group_rows)
            pending = []
            if sink.tell() >= limit:
                close()

        def close() -> None:
            nonlocal sink, writer
            if writer is not None:
                writer.close()
                result.bytes += sink.tell()
                sink.close()
            sink, writer = None, None

        try:
            buffered = 0
            for batch in stream:
                pending.append(batch)
                buffered += batch.num_rows
                result.rows += batch.num_rows
                if buffered >= self.config.row_group_rows:
                    flush()
                    buffered = 0
            flush()
            close()
        except OSError as exc:
            raise ConnectionFailed(f"{store.location}: cannot write a data file: {exc}",
                                   hint="Check the target's storage.") from None
        finally:
            if writer is not None:  # failed part-way: close what is open; abort() deletes the files
                try:
                    close()
                except Exception:  # noqa: BLE001 - the original failure is the one to report
                    pass
        return result

    def commit(self, dataset: Dataset, files: list[WrittenFiles], state: State | None, run_id: str) -> CommitInfo:
        """Create the run's log object (the commit point), then move its files into the run's folder."""
        store = self._store(dataset.name)
        try:
            records = store.records()
        except OSError as exc:
            raise CommitFailed(f"{store.location}: cannot read the commit log: {exc}",
                               hint="Nothing was published; rerun the job.") from None
        for record in records:
            if record.get("run_id") == run_id:
                return CommitInfo(commit_id=record["folder"], no_op=True)
        seq = int(records[0]["seq"]) + 1 if records else 1
        schema = self._schemas.get(dataset.name)
        secret = {
            "state": state,
            "schema": base64.b64encode(schema.serialize().to_pybytes()).decode() if schema is not None else None,
        }
        record: Record = {
            "format": 1,
            "job": self.ctx.job,
            "run_id": run_id,
            "seq": seq,
            "folder": f"{seq:06d}-{run_id}",
            "mode": self._modes.get(dataset.name, "append"),
            "rows": sum(w.rows for w in files),
            "files": sorted(posixpath.basename(f) for w in files for f in w.files),
            "committed_at": time.time(),
            "sealed": self.keyring.seal(json.dumps(secret).encode(), _aad(self.ctx.job, run_id, seq)),
        }
        if any(posixpath.dirname(f) != store.staging(run_id) for w in files for f in w.files):
            raise CommitFailed("files to commit are not in this run's staging",
                               hint="Rerun the job; nothing was published.")
        try:
            store.append_log(record)
        except FileExistsError:
            raise CommitFailed(f"{store.location}: commit {seq} was taken by another run",
                               hint="Run one job per target at a time; rerun. Nothing was published.") from None
        except OSError as exc:
            try:
                landed = store.landed(record)
            except OSError:
                raise CommitStateUnknown(
                    f"{store.location}: writing commit {seq} failed ({exc}) and its outcome cannot be read",
                    hint=f"Rerun with --run-id {run_id} once the store answers: a committed run is a no-op.",
                ) from None
            if not landed:
                raise CommitFailed(f"{store.location}: cannot write commit {seq}: {exc}",
                                   hint="Check the store's write permission; nothing was published.") from None
        try:
            store.roll_forward(record)
            if record["mode"] == "overwrite":
                store.drop_superseded(store.records())
        except OSError as exc:  # committed already: readers find staged files, the next run moves them
            self.ctx.logger.warning("%s: run %s is committed but its files are still staged (%s)",
                                    store.location, run_id, exc)
        return CommitInfo(commit_id=record["folder"], rows=record["rows"])

    def abort(self, files: list[WrittenFiles]) -> None:
        """Delete the staged files this run wrote."""
        for written in files:
            store = self._store(written.dataset)
            store.delete(list(written.files))

    def close(self) -> None:
        """Leave the HSM session."""
        self.keyring.close()


__all__ = ["HsmEncryptedWriter", "HsmWriterConfig"]
