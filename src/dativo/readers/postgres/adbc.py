"""``postgres``: the fast reader, ADBC's binary ``COPY`` straight into Arrow.

The ADBC PostgreSQL driver runs each split's SELECT as ``COPY (…) TO STDOUT (FORMAT binary)`` and decodes
it in C++ into record batches of about ``batch_size_bytes``. Batches are pulled one at a time from
``fetch_record_batch()`` and conformed to the planned schema as they pass (numeric strings cast to
decimals in bulk, metadata dropped), so memory stays flat however large the table is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as adbc
import psycopg
import pyarrow as pa

from dativo.readers.postgres import sql
from dativo.readers.postgres.arrow import conform
from dativo.readers.postgres.base import PostgresReaderBase
from dativo.readers.postgres.connect import connection_failed

_BATCH_SIZE_OPTION = "adbc.postgresql.batch_size_hint_bytes"


class PostgresReader(PostgresReaderBase):
    """PostgreSQL reader built on the ADBC driver (implementation ``postgres``, the default).

    Discovery, planning, the shared snapshot and incremental selection come from the catalog through a
    psycopg coordinator connection; each split streams through its own ADBC connection.
    """

    # Errors met while streaming surface through the Arrow C stream as OSError or ArrowException.
    _driver_errors: ClassVar[tuple[type[Exception], ...]] = (
        adbc_driver_manager.Error,
        psycopg.Error,
        pa.ArrowException,
        OSError,
    )

    def check(self) -> None:
        """Connect with psycopg (catalog) and with ADBC (data): they link different libpq builds.

        Raises:
            ConnectionFailed: Either connection fails (no password in the message).
        """
        super().check()
        with self._context():
            try:
                adbc.connect(self._conninfo, autocommit=True).close()
            except adbc_driver_manager.Error as exc:
                raise connection_failed(exc, self._dsn) from None

    def _batches(self, params: Any, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        try:
            # autocommit: the driver sends no BEGIN of its own; ours below sets isolation and snapshot.
            conn = adbc.connect(self._conninfo, autocommit=True)
        except adbc_driver_manager.Error as exc:
            raise connection_failed(exc, self._dsn) from None
        opened: list[Any] = []  # cursors and the stream, closed last-opened first, then the connection

        def close() -> None:
            for resource in reversed(opened):
                resource.close()
            opened.clear()
            conn.close()

        token = self._track(close)
        try:
            setup = conn.cursor()
            opened.append(setup)
            for statement in (sql.BEGIN, *sql.snapshot_statements(params["snapshot"])):
                setup.adbc_statement.set_sql_query(statement)
                setup.adbc_statement.execute_update()
            cursor = conn.cursor()
            opened.append(cursor)
            size = self.config.batch_size_bytes or self.ctx.batch_bytes
            cursor.adbc_statement.set_options(**{_BATCH_SIZE_OPTION: str(size)})
            cursor.execute(params["sql"])
            stream = cursor.fetch_record_batch()
            opened.append(stream)
            for batch in stream:
                yield conform(batch, schema, params["dataset"])
        finally:
            self._untrack(token)
            close()
