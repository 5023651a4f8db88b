"""A few synthetic orders; with ``peek``, it first reads that file (to test the sandbox's capabilities).

When ``DATIVO_TEST_IMPORT_MARKER`` names a file, importing this package appends a line to it: the tests
prove with it that a refused plugin was never imported.
"""

import os
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from dativo.api import Reader, Split

if os.environ.get("DATIVO_TEST_IMPORT_MARKER"):
    with Path(os.environ["DATIVO_TEST_IMPORT_MARKER"]).open("a") as marker:
        marker.write(f"imported by {os.getpid()}\n")


class OrdersDemoReader(Reader):
    """``rows`` orders, ids from 1."""

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        rows: int = 3
        peek: str | None = None

    schema = pa.schema([("id", pa.int64()), ("amount", pa.float64())])

    def read(self, split: Split):
        if self.config.peek:
            Path(self.config.peek).read_bytes()
        ids = pa.array(range(1, self.config.rows + 1), pa.int64())
        yield pa.record_batch([ids, pa.compute.multiply(ids, 1.5)], schema=self.schema)
