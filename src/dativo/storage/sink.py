"""A split's batches streamed into staged Parquet files, optionally with Parquet modular encryption."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from dativo.storage.store import Store

if TYPE_CHECKING:
    import pyarrow.parquet.encryption as pe

    Encryption = pe.FileEncryptionProperties | Callable[[pa.Schema], pe.FileEncryptionProperties]


@dataclass
class StagedFiles:
    """What :meth:`ParquetSink.write` staged.

    Attributes:
        files: URIs of the staged files, in the order they were written.
        rows: Rows in those files.
        bytes: Bytes in those files.
    """

    files: list[str] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0


ROW_GROUP_MB = 64
"""Default bound of the batches a sink holds before it writes them as a row group (MiB)."""


class ParquetSink:
    """Writes one stream into staged Parquet files of one run, starting a new file past a size.

    The sink holds batches until they make a row group; a row group is written once it has
    ``row_group_rows`` rows *or* ``row_group_mb`` MiB, so the memory a stream costs stays bounded whatever
    the size of its batches (a batch larger than the bound is written as a row group of its own).

    Args:
        store: Where the files are staged.
        run_id: The run whose staging receives them.
        name: The name of the ``n``-th file (0, 1, 2 …), e.g. ``lambda n: f"part-{split}-{n:05d}.parquet"``.
        file_size_mb: Start a new file once one holds this many MiB.
        row_group_rows: Rows per row group at most.
        row_group_mb: Bytes (MiB, of Arrow data) per row group at most.
        options: More keyword arguments of ``pyarrow.parquet.ParquetWriter`` (``compression``,
            ``use_dictionary`` …).
        encryption: Parquet modular encryption: ``FileEncryptionProperties`` for every file, or a function
            of the schema called once per file, so that each file gets fresh data keys. ``None``: plaintext.
    """

    def __init__(
        self,
        store: Store,
        run_id: str,
        *,
        name: Callable[[int], str],
        file_size_mb: int = 256,
        row_group_rows: int = 1 << 20,
        row_group_mb: int = ROW_GROUP_MB,
        options: Mapping[str, Any] | None = None,
        encryption: Encryption | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.name = name
        self.file_size = file_size_mb << 20
        self.row_group_rows = row_group_rows
        self.row_group_bytes = row_group_mb << 20
        self.options = dict(options or {})
        self.encryption = encryption
        self._sink: pa.NativeFile | None = None
        self._writer: pq.ParquetWriter | None = None

    def write(self, stream: pa.RecordBatchReader) -> StagedFiles:
        """Stage every batch of ``stream``; one sink writes one stream.

        Args:
            stream: The batches, all of ``stream.schema``.

        Returns:
            The staged files.

        Raises:
            OSError: The storage failed (see :meth:`Store.errors`). After any failure, or a cancellation
                raised by the stream, the files this sink staged are deleted.
        """
        staged = StagedFiles()
        pending: list[pa.RecordBatch] = []
        pending_rows = pending_bytes = 0
        try:
            for batch in stream:
                pending.append(batch)
                pending_rows += batch.num_rows
                pending_bytes += batch.nbytes
                staged.rows += batch.num_rows
                if pending_rows >= self.row_group_rows or pending_bytes >= self.row_group_bytes:
                    self._flush(stream.schema, pending, staged)
                    pending, pending_rows, pending_bytes = [], 0, 0
            self._flush(stream.schema, pending, staged)
            self._close(staged)
        except BaseException:
            pending.clear()
            self._discard(staged)
            raise
        return staged

    def _discard(self, staged: StagedFiles) -> None:
        """Close the open file and delete every file this sink staged (after a failure)."""
        try:
            self._close(staged)
        except Exception:  # noqa: BLE001 - the original failure is the one to report
            pass
        try:
            self.store.remove_staged(self.run_id, staged.files)
        except Exception:  # noqa: BLE001 - the run's abort, or the next run's sweep, deletes them
            pass

    def _flush(self, schema: pa.Schema, pending: list[pa.RecordBatch], staged: StagedFiles) -> None:
        if not pending:
            return
        if self._writer is None:
            self._sink, uri = self.store.create(self.run_id, self.name(len(staged.files)))
            staged.files.append(uri)
            encryption = self.encryption(schema) if callable(self.encryption) else self.encryption
            self._writer = pq.ParquetWriter(
                self._sink, schema, encryption_properties=encryption, **self.options
            )
        table = pa.Table.from_batches(pending, schema=schema)
        self._writer.write_table(table, row_group_size=self.row_group_rows)
        if self._sink is not None and self._sink.tell() >= self.file_size:
            self._close(staged)

    def _close(self, staged: StagedFiles) -> None:
        writer, sink = self._writer, self._sink
        self._writer, self._sink = None, None
        if sink is None:
            return
        try:
            if writer is not None:
                writer.close()
                staged.bytes += sink.tell()
        finally:
            sink.close()


__all__ = ["ROW_GROUP_MB", "ParquetSink", "StagedFiles"]
