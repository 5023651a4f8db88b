"""ParquetSink: a stream into staged Parquet files, rolled over by size, with the encryption hook."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe
import pytest

from dativo.storage import LocalStore, ParquetSink, Store
from tests.storage.helpers import commit, committed_ids, keys, listed_ids

SCHEMA = pa.schema([("id", pa.int64()), ("secret", pa.string())])
MASTER_KEYS = {"footer": os.urandom(32), "columns": os.urandom(32)}
WRAPPED: list[bytes] = []
"""Every data key the KMS was asked to wrap."""


class XorKms(pe.KmsClient):
    """A key management service held in memory: data keys are wrapped by XOR with a master key."""

    def wrap_key(self, key_bytes: bytes, master_key_identifier: str) -> str:
        WRAPPED.append(bytes(key_bytes))
        master = MASTER_KEYS[master_key_identifier]
        return base64.b64encode(bytes(b ^ m for b, m in zip(key_bytes, master, strict=False))).decode()

    def unwrap_key(self, wrapped_key: str, master_key_identifier: str) -> bytes:
        master = MASTER_KEYS[master_key_identifier]
        return bytes(b ^ m for b, m in zip(base64.b64decode(wrapped_key), master, strict=False))


FACTORY = pe.CryptoFactory(lambda _config: XorKms())


def encryption(schema: pa.Schema) -> pe.FileEncryptionProperties:
    """Fresh properties, hence fresh data keys, for one file."""
    config = pe.EncryptionConfiguration(footer_key="footer", column_keys={"columns": ["secret"]},
                                        double_wrapping=False, internal_key_material=True)
    return FACTORY.file_encryption_properties(pe.KmsConnectionConfig(), config)


def decryption() -> pe.FileDecryptionProperties:
    return FACTORY.file_decryption_properties(pe.KmsConnectionConfig(), pe.DecryptionConfiguration())


def batches(count: int, rows: int = 1024) -> Iterator[pa.RecordBatch]:
    for n in range(count):
        ids = range(n * rows, (n + 1) * rows)
        yield pa.record_batch([pa.array(ids, pa.int64()), pa.array([os.urandom(64).hex() for _ in ids])],
                              schema=SCHEMA)


def sink(store: Store, **options: object) -> ParquetSink:
    name = "part-{:05d}.parquet".format
    return ParquetSink(store, "r1", name=name, **options)  # type: ignore[arg-type]


def test_files_roll_over_past_the_size_and_row_groups_stay_bounded(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "items")
    writer = sink(store, file_size_mb=1, row_group_rows=2048, options={"compression": "none"})
    staged = writer.write(pa.RecordBatchReader.from_batches(SCHEMA, batches(12)))
    assert len(staged.files) > 1 and staged.rows == 12 * 1024
    assert staged.files[0].endswith("_dativo/staging/r1/part-00000.parquet")
    assert staged.bytes == sum(os.path.getsize(f) for f in staged.files)
    for file in staged.files:
        metadata = pq.ParquetFile(file).metadata
        assert all(metadata.row_group(i).num_rows <= 2048 for i in range(metadata.num_row_groups))
    commit(store, "r1", staged.files)
    assert committed_ids(store) == list(range(12 * 1024))


def test_the_encryption_hook_gives_every_file_its_own_keys(store: Store) -> None:
    calls: list[pa.Schema] = []
    WRAPPED.clear()

    def per_file(schema: pa.Schema) -> pe.FileEncryptionProperties:
        calls.append(schema)
        return encryption(schema)

    writer = sink(store, file_size_mb=1, row_group_rows=1024, encryption=per_file,
                  options={"compression": "none"})
    staged = writer.write(pa.RecordBatchReader.from_batches(SCHEMA, batches(24)))
    assert len(staged.files) > 1 and calls == [SCHEMA] * len(staged.files)
    assert len(WRAPPED) == len(set(WRAPPED)) == 2 * len(staged.files)  # a footer and a column key per file
    commit(store, "r1", staged.files)
    for file in store.committed_files():
        with store.fs.open_input_file(file) as handle:
            with pytest.raises(OSError, match="(?i)encrypt|decrypt"):
                pq.read_table(handle)  # no keys, no data: the footer is encrypted too
        with store.fs.open_input_file(file) as handle:
            table = pq.read_table(handle, decryption_properties=decryption())
        assert table.schema == SCHEMA
    with pytest.raises(OSError):
        listed_ids(store)  # a reader without the keys sees nothing either


def test_fixed_encryption_properties_apply_to_every_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "items")
    stream = pa.RecordBatchReader.from_batches(SCHEMA, batches(2))
    staged = sink(store, encryption=encryption(SCHEMA)).write(stream)
    (file,) = staged.files
    assert pq.read_table(file, decryption_properties=decryption()).num_rows == 2048
    with pytest.raises(OSError):
        pq.read_table(file)


def test_a_stream_failing_part_way_deletes_what_it_staged(store: Store) -> None:
    """No abort is needed (the engine calls none when no split finished): the failed write cleans up."""

    def failing() -> Iterator[pa.RecordBatch]:
        yield from batches(12)  # more than a file's worth: the first file is closed, on S3 too
        raise OSError("the source went away")

    staged_before = []

    class Watching(ParquetSink):
        def _flush(self, *args: object, **kwargs: object) -> None:
            super()._flush(*args, **kwargs)  # type: ignore[arg-type]
            staged_before[:] = [k for k in keys(store) if k.endswith(".parquet")]

    writer = Watching(store, "r1", name="part-{:05d}.parquet".format, file_size_mb=1, row_group_rows=1024,
                      options={"compression": "none"})
    with pytest.raises(OSError, match="the source went away"):
        writer.write(pa.RecordBatchReader.from_batches(SCHEMA, failing()))
    assert staged_before  # files were staged before the failure …
    assert not [k for k in keys(store) if k.endswith(".parquet")]  # … and are gone
    store.abort("r1", [])
    assert keys(store) == []


def test_row_groups_are_bounded_by_bytes_whatever_the_batches(tmp_path: Path) -> None:
    """Few rows, many bytes: a sink bounded by rows alone would hold every batch in memory."""
    store = LocalStore(tmp_path / "items")
    wide = pa.schema([("id", pa.int64()), ("blob", pa.binary())])

    def fat(count: int) -> Iterator[pa.RecordBatch]:
        for n in range(count):
            yield pa.record_batch([pa.array([n, n], pa.int64()), pa.array([bytes(300_000)] * 2)], schema=wide)

    writer = ParquetSink(store, "r1", name="part-{:05d}.parquet".format, row_group_rows=1 << 20,
                         row_group_mb=1)
    (file,) = writer.write(pa.RecordBatchReader.from_batches(wide, fat(20))).files
    metadata = pq.ParquetFile(file).metadata
    assert metadata.num_rows == 40 and metadata.num_row_groups == 10  # 2 batches (1.2 MB) per row group
