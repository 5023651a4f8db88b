"""The ``hsm_encrypted`` writer: Parquet files encrypted on the client, data keys wrapped by an HSM.

Every byte this writer sends to the target is either ciphertext (pages, footer, the commit's state and
schema) or bookkeeping that carries no data value (file names, row counts, run ids); see the README's
threat model. It is built on the public ``dativo.api`` only: the storage block there stages the files,
writes them with pyarrow's Parquet modular encryption and commits them atomically
(:class:`dativo.api.DatasetStores`); this module adds the HSM's keys and the sealed state.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.parquet.encryption as pe
from dativo.api import (
    CommitInfo,
    CommitRecord,
    ConfigError,
    Context,
    Dataset,
    DatasetStores,
    Mode,
    SchemaMismatch,
    Split,
    State,
    StoreOptions,
    Writer,
    WrittenFiles,
)
from pydantic import BaseModel, ConfigDict, Field

from dativo_hsm.crypto import encryption_properties
from dativo_hsm.hsm import HsmSettings, Keyring


class HsmWriterConfig(StoreOptions, HsmSettings):
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
        self._stores = DatasetStores(
            config, job=ctx.job, run_id=ctx.run_id, label="target.writer.options.path", logger=ctx.logger
        )
        self._nonce = uuid.uuid4().hex[:8]  # file names of two attempts of one run id never clash

    # --- contract ------------------------------------------------------------------------------------

    def check(self) -> None:
        """Log in to the HSM and find the key; check that the target can be written."""
        self.keyring.open()
        self._stores.check()

    def state(self, dataset: Dataset) -> State | None:
        """The state sealed into the newest commit of this job (unsealed by the HSM)."""
        store = self._stores.get(dataset.name)
        with store.errors("read the commit log"):
            records = store.records()
        for record in records:
            if record.job == self.ctx.job:
                return self._unseal(record).get("state")
        return None

    def _unseal(self, record: CommitRecord) -> dict[str, Any]:
        aad = _aad(record.job, record.run_id, record.seq)
        return json.loads(self.keyring.unseal(record.extra["sealed"], aad))

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
        store = self._stores.prepare(dataset.name, schema, mode)
        if mode != "append" or not len(schema):
            return
        with store.errors("read the commit log"):
            newest = next((record for record, _ in store.live() if record.files), None)
        encoded = self._unseal(newest).get("schema") if newest is not None else None
        existing = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(encoded))) if encoded else None
        if existing is not None and not existing.equals(schema):
            raise SchemaMismatch(f"{store.location} holds data with another schema",
                                 hint="Use mode: overwrite to replace it.")

    def write(self, split: Split, stream: pa.RecordBatchReader) -> WrittenFiles:
        """Encrypt the split's batches into staged files, each with fresh data keys."""
        config = self.config
        name = f"part-{split.id}-{{:05d}}-{self._nonce}.parquet".format

        def fresh_keys(schema: pa.Schema) -> pe.FileEncryptionProperties:  # called once per file
            return encryption_properties(self.keyring, schema, config.columns,
                                         plaintext_footer=config.plaintext_footer)

        staged = self._stores.write(split.dataset, stream, name=name, row_group_rows=config.row_group_rows,
                                    options={"compression": config.compression}, encryption=fresh_keys)
        return WrittenFiles(split.dataset, split.id, staged.files, staged.rows, staged.bytes)

    def commit(self, dataset: Dataset, files: list[WrittenFiles], state: State | None, run_id: str) -> CommitInfo:
        """Commit the run through the storage block; its state and schema are sealed into the record."""
        schema = self._stores.schema(dataset.name)
        encoded = base64.b64encode(schema.serialize().to_pybytes()).decode() if schema is not None else None
        secret = json.dumps({"state": state, "schema": encoded}).encode()

        def sealed(seq: int) -> dict[str, Any]:  # bound to the slot the commit takes
            return {"sealed": self.keyring.seal(secret, _aad(self.ctx.job, run_id, seq))}

        done = self._stores.commit(dataset.name, files, run_id, sealed)
        return CommitInfo(commit_id=done.commit_id, rows=done.rows, no_op=done.no_op)

    def abort(self, files: list[WrittenFiles]) -> None:
        """Delete the staged files this run wrote."""
        self._stores.abort(files)

    def close(self) -> None:
        """Leave the HSM session; release the run's leases on its staging folders."""
        self._stores.close()
        self.keyring.close()


__all__ = ["HsmEncryptedWriter", "HsmWriterConfig"]
