"""The built-in PostgreSQL readers.

- ``postgres`` (:class:`PostgresReader`): ADBC, binary COPY straight into Arrow. The default.
- ``postgres-python`` (:class:`PostgresPythonReader`): psycopg 3 rows turned into Arrow; the baseline.

Both take :class:`PostgresConfig`, produce the same schema and values (see :mod:`.catalog` for the type
mapping), split tables with a one-column integer primary key into key ranges, read every split inside one
exported snapshot, and select rows after the committed watermark on incremental runs (see :mod:`.base`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dativo.readers.postgres.adbc import PostgresReader
    from dativo.readers.postgres.base import PostgresReaderBase
    from dativo.readers.postgres.config import Connection, PostgresConfig
    from dativo.readers.postgres.connect import redact_dsn
    from dativo.readers.postgres.psycopg import PostgresPythonReader

# Each name is imported from its module on first use, so a job loads only its own driver (the ADBC driver
# for ``postgres``, nothing of it for ``postgres-python`` or a reader built on the base, such as rust_postgres).
_HOMES = {
    "PostgresReader": "adbc",
    "PostgresReaderBase": "base",
    "Connection": "config",
    "PostgresConfig": "config",
    "redact_dsn": "connect",
    "PostgresPythonReader": "psycopg",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = ["Connection", "PostgresConfig", "PostgresPythonReader", "PostgresReader", "PostgresReaderBase", "redact_dsn"]
