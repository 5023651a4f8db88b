"""A complete custom reader: synthetic orders, in batches, with its own options."""

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from dativo.api import Reader, Split


class OrdersReader(Reader):
    """Generates ``rows`` orders in batches of ``batch_size``."""

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")  # a misspelt option is an error, not a silent default

        rows: int = Field(100_000, ge=0, description="How many orders to generate.")
        batch_size: int = Field(65_536, ge=1, description="Orders per record batch.")

    schema = pa.schema([("id", pa.int64()), ("amount", pa.float64())])
    version = "1.0.0"

    def read(self, split: Split):
        for start in range(0, self.config.rows, self.config.batch_size):
            ids = pa.array(range(start, min(start + self.config.batch_size, self.config.rows)), pa.int64())
            yield pa.record_batch([ids, pa.compute.multiply(ids, 0.5)], schema=self.schema)
