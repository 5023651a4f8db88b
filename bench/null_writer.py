"""A writer that consumes every batch and keeps nothing: the read-only variants of the benchmark."""

from __future__ import annotations

import pyarrow as pa

from dativo.api import CommitInfo, Dataset, Split, State, WrittenFiles, Writer


class NullWriter(Writer):
    """Pulls the stream to the end (so the reader does all its work) and publishes nothing."""

    def write(self, split: Split, stream: pa.RecordBatchReader) -> WrittenFiles:
        """Count rows and Arrow bytes of every batch, then drop them."""
        result = WrittenFiles(dataset=split.dataset, split=split.id)
        for batch in stream:
            result.rows += batch.num_rows
            result.bytes += batch.nbytes
        return result

    def commit(self, dataset: Dataset, files: list[WrittenFiles], state: State | None, run_id: str) -> CommitInfo:
        """Nothing to publish."""
        return CommitInfo(commit_id=None, rows=sum(f.rows for f in files))
