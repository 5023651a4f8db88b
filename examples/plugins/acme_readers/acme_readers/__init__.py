"""A complete custom reader: synthetic orders, in batches, with its own options."""

import pyarrow as pa
from pydantic import BaseModel

from dativo.api import Reader, Split


class OrdersReader(Reader):
    """Generates ``rows`` orders in batches of ``batch_size``."""

    class Config(BaseModel):
        rows: int = 100_000
        batch_size: int = 65_536

    schema = pa.schema([("id", pa.int64()), ("amount", pa.float64())])
    version = "1.0.0"

    def read(self, split: Split):
        for start in range(0, self.config.rows, self.config.batch_size):
            ids = pa.array(range(start, min(start + self.config.batch_size, self.config.rows)), pa.int64())
            yield pa.record_batch([ids, pa.compute.multiply(ids, 0.5)], schema=self.schema)
