"""The built-in PostgreSQL readers.

- ``postgres`` (:class:`PostgresReader`): ADBC, binary COPY straight into Arrow. The default.
- ``postgres-python`` (:class:`PostgresPythonReader`): psycopg 3 rows turned into Arrow; the baseline.

Both take :class:`PostgresConfig`, produce the same schema and values (see :mod:`.catalog` for the type
mapping), split tables with a one-column integer primary key into key ranges, read every split inside one
exported snapshot, and select rows after the committed watermark on incremental runs (see :mod:`.base`).
"""

from dativo.readers.postgres.adbc import PostgresReader
from dativo.readers.postgres.base import PostgresReaderBase
from dativo.readers.postgres.config import Connection, PostgresConfig
from dativo.readers.postgres.connect import redact_dsn
from dativo.readers.postgres.psycopg import PostgresPythonReader

__all__ = ["Connection", "PostgresConfig", "PostgresPythonReader", "PostgresReader", "PostgresReaderBase", "redact_dsn"]
