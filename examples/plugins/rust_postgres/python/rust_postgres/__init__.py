"""``rust_postgres``: Dativo's PostgreSQL reader with its data path in Rust.

Installing this package registers the reader under the entry point name ``rust_postgres``::

    source:
      type: postgres
      connection: {dsn: "${PG_DSN}"}
      tables: [public.orders]
      reader: {type: custom, implementation: rust_postgres, fallback: default}

:class:`RustPostgresReader` subclasses Dativo's :class:`~dativo.readers.postgres.PostgresReaderBase`, so
discovery, the type mapping, key-range splits over one exported snapshot, incremental selection and the
connector's keys are exactly those of the built-in ``postgres`` reader. Only reading a split differs: the
Rust extension (``rust_postgres._native``) runs the split's ``COPY (SELECT …) TO STDOUT (FORMAT binary)``
on a background thread and decodes the rows straight into Arrow batches of the planned schema.
"""

from __future__ import annotations

from rust_postgres.reader import RustPostgresReader, native_conninfo

__all__ = ["RustPostgresReader", "native_conninfo"]
