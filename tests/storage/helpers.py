"""Helpers of the storage tests: staging, committing and reading a store the way writers and readers do."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from dativo.storage import LocalStore, ParquetSink, S3Store, Store

SCHEMA = pa.schema([("id", pa.int64())])


def reopen(store: Store) -> Store:
    """A second store on the same folder, as another process would open it."""
    if isinstance(store, S3Store):
        return S3Store(store.location, store.settings)
    return LocalStore(store.root)


def stage(store: Store, run_id: str, *ids: list[int], split: str = "0") -> list[str]:
    """Stage one Parquet file per list of ids; returns their URIs."""
    files = []
    for n, chunk in enumerate(ids):
        sink = ParquetSink(store, run_id, name=lambda i, n=n: f"part-{split}-{n:05d}.parquet")
        batch = pa.record_batch([pa.array(chunk, pa.int64())], schema=SCHEMA)
        files += sink.write(pa.RecordBatchReader.from_batches(SCHEMA, [batch])).files
    return files


def commit(store: Store, run_id: str, files: list[str], mode: str = "append", **extra: object) -> int:
    """Commit ``files`` for run ``run_id``; returns the slot taken."""
    done = store.commit(job="items", run_id=run_id, mode=mode, files=files, rows=0, extra=extra)
    return done.record.seq


def committed_ids(store: Store) -> list[int]:
    """What a reader going through the records sees."""
    files = store.committed_files()
    if not files:
        return []
    table = pads.dataset(files, format="parquet", filesystem=store.fs).to_table()
    return sorted(table.column("id").to_pylist())


def listed_ids(store: Store) -> list[int]:
    """What a reader that lists the folder sees (pyarrow, DuckDB, Spark skip ``_`` and ``.`` names)."""
    if store.fs.get_file_info(store.root).type == pafs.FileType.NotFound:
        return []
    dataset = pads.dataset(store.root, format="parquet", filesystem=store.fs)
    return sorted(dataset.to_table().column("id").to_pylist()) if dataset.files else []


def keys(store: Store) -> list[str]:
    """Every file under the folder, relative to it."""
    infos = store.list_files(store.root, recursive=True)
    return sorted(info.path.removeprefix(store.root + "/") for info in infos)


class RefusingLog:
    """A store's file system, except that every PUT of a commit-log object fails (and reads too, if asked)."""

    def __init__(self, fs: Any, *, reads_fail: bool = False) -> None:
        self.fs = fs
        self.reads_fail = reads_fail

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fs, name)

    def open_output_stream(self, path: str, *args: Any, **kwargs: Any) -> Any:
        if "/_dativo/log/" in path:
            raise OSError("AWS Error ACCESS_DENIED during PutObject operation")
        return self.fs.open_output_stream(path, *args, **kwargs)

    def open_input_stream(self, path: str, *args: Any, **kwargs: Any) -> Any:
        if self.reads_fail:
            raise OSError("AWS Error NETWORK_CONNECTION during GetObject operation")
        return self.fs.open_input_stream(path, *args, **kwargs)
