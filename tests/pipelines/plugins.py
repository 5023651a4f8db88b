"""Plugins the pipeline tests name by dotted path (``tests.pipelines.plugins:Class``)."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
from pydantic import BaseModel

from dativo.api import ArrowStream, Context, Split
from dativo.readers.postgres import PostgresConfig, PostgresPythonReader


class FailingOptions(BaseModel):
    """When the reader breaks."""

    fail_split: str = "1"
    fail_after_batches: int = 1


class FailingPostgresReader(PostgresPythonReader):
    """``postgres-python`` that raises in split ``fail_split`` after ``fail_after_batches`` batches.

    The other splits read to the end, so the writer has written (uncommitted) files when the run fails.
    """

    Config = FailingOptions  # type: ignore[assignment]
    version = "0.0.1"

    def __init__(self, config: FailingOptions, ctx: Context) -> None:
        self.options = config
        super().__init__(PostgresConfig.model_validate(dict(ctx.settings)), ctx)

    def read(self, split: Split) -> ArrowStream:
        """The split's batches; the chosen split fails part-way."""
        stream = super().read(split)
        assert isinstance(stream, pa.RecordBatchReader)
        if split.id != self.options.fail_split:
            return stream

        def batches() -> Iterator[pa.RecordBatch]:
            for i, batch in enumerate(stream):
                if i >= self.options.fail_after_batches:
                    raise RuntimeError(f"injected failure after {i} batches of split {split.id}")
                yield batch

        return pa.RecordBatchReader.from_batches(stream.schema, batches())
