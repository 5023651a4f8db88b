"""``postgres-python``: the plain psycopg 3 baseline.

Rows come from a binary server-side cursor in chunks of ``batch_rows`` and become Arrow with ``pa.array``,
column by column, as typical Python connectors do. It is kept to measure the fast reader against, and
produces the same schema and values. A few binary loaders replace psycopg's defaults where those would
change a value: ``interval`` (a ``timedelta`` folds months into days), ``date`` and ``timestamp`` (Python's
``datetime`` stops at year 1, so BC dates would fail), ``time`` (24:00:00) and ``uuid`` (kept as bytes).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import psycopg
import pyarrow as pa
from psycopg.adapt import AdaptersMap, Buffer, Loader
from psycopg.pq import Format

from dativo.readers.postgres import sql
from dativo.readers.postgres.arrow import from_python
from dativo.readers.postgres.base import PostgresReaderBase

_DAYS_2000 = 10_957  # days from 1970-01-01 to PostgreSQL's epoch 2000-01-01
_MICROS_2000 = _DAYS_2000 * 86_400_000_000
_INT32 = struct.Struct("!i")
_INT64 = struct.Struct("!q")
_INTERVAL = struct.Struct("!qii")


class _DateLoader(Loader):
    format = Format.BINARY

    def load(self, data: Buffer) -> int:
        return _INT32.unpack(data)[0] + _DAYS_2000


class _TimestampLoader(Loader):
    format = Format.BINARY

    def load(self, data: Buffer) -> int:
        return _INT64.unpack(data)[0] + _MICROS_2000


class _TimeLoader(Loader):
    format = Format.BINARY

    def load(self, data: Buffer) -> int:
        return _INT64.unpack(data)[0]


class _IntervalLoader(Loader):
    format = Format.BINARY

    def load(self, data: Buffer) -> tuple[int, int, int]:
        micros, days, months = _INTERVAL.unpack(data)
        return months, days, micros * 1000


class _UuidLoader(Loader):
    format = Format.BINARY

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


def _register(adapters: AdaptersMap) -> None:
    # Array loaders look element loaders up in the same map, so date[] etc. follow too.
    for name, loader in (
        ("date", _DateLoader),
        ("timestamp", _TimestampLoader),
        ("timestamptz", _TimestampLoader),
        ("time", _TimeLoader),
        ("interval", _IntervalLoader),
        ("uuid", _UuidLoader),
    ):
        adapters.register_loader(name, loader)


class PostgresPythonReader(PostgresReaderBase):
    """PostgreSQL reader built on psycopg 3 rows (implementation ``postgres-python``).

    Same options, datasets, splits, snapshot and incremental behaviour as
    :class:`~dativo.readers.postgres.PostgresReader`; only :meth:`read` differs: a server-side cursor
    fetches ``batch_rows`` rows at a time and each chunk becomes one record batch.
    """

    def _batches(self, params: Any, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        conn = self._psycopg_connect()
        token = self._track(conn.close)
        try:
            _register(conn.adapters)
            # psycopg sends the BEGIN (with these settings) before the first statement.
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            for statement in sql.snapshot_statements(params["snapshot"]):
                conn.execute(statement)
            size = self.config.batch_rows
            with conn.cursor(name="dativo_split", binary=True) as cursor:
                cursor.itersize = size
                cursor.execute(params["sql"])
                while rows := cursor.fetchmany(size):
                    yield from_python(list(zip(*rows, strict=False)), schema, params["dataset"])
        finally:
            self._untrack(token)
            conn.close()
