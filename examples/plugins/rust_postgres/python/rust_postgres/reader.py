"""The reader class: planning from Dativo's Postgres base, reading in Rust."""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from importlib import metadata
from typing import Any, ClassVar

import pyarrow as pa
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dativo.api import Dataset
from dativo.errors import PluginFailed
from dativo.readers.postgres import PostgresReaderBase, sql
from dativo.readers.postgres.connect import connection_failed
from rust_postgres import _native

# Connection keys the Rust driver (tokio-postgres) understands; the rest only matter to libpq.
_NATIVE_KEYS = frozenset(
    {
        "host",
        "hostaddr",
        "port",
        "user",
        "password",
        "dbname",
        "options",
        "application_name",
        "connect_timeout",
        "tcp_user_timeout",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_retries",
        "target_session_attrs",
        "channel_binding",
        "load_balance_hosts",
    }
)
# libpq reads these when the DSN leaves a key out; the Rust driver does not, so they are applied here.
_ENVIRONMENT = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "dbname": "PGDATABASE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "sslmode": "PGSSLMODE",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "channel_binding": "PGCHANNELBINDING",
    "service": "PGSERVICE",
}
_TLS_MODES = ("require", "verify-ca", "verify-full")
_FALLBACK_HINT = (
    "Use the built-in postgres reader for this source: set source.reader.fallback: default (it then takes "
    "over automatically) or remove source.reader."
)


def _version() -> str:
    try:
        return metadata.version("rust-postgres")
    except metadata.PackageNotFoundError:  # imported from a source tree
        return "0.0.0"


def native_conninfo(conninfo: str) -> str:
    """Translate a libpq connection string into one the Rust driver accepts.

    Keys the DSN leaves out are taken from the libpq environment variables (``PGHOST``, ``PGPASSWORD`` …),
    then from libpq's defaults (the local socket directory, the OS user). Keys only libpq knows are dropped
    (``client_encoding``: the driver always speaks UTF-8). The driver connects without TLS.

    Raises:
        PluginFailed: The DSN requires TLS (``sslmode=require``/``verify-*``) or names a ``service``,
            neither of which this reader supports; the built-in reader does.
    """
    params: dict[str, Any] = conninfo_to_dict(conninfo)
    for key, variable in _ENVIRONMENT.items():
        if key not in params and os.environ.get(variable):
            params[key] = os.environ[variable]
    if "service" in params:
        raise PluginFailed(
            "The connection names a service (pg_service.conf), which rust_postgres does not read",
            role="reader",
            hint=f"Spell out host, port, dbname and user in source.connection.dsn, or: {_FALLBACK_HINT}",
        )
    sslmode = str(params.get("sslmode", "prefer")).lower()
    if sslmode in _TLS_MODES:
        raise PluginFailed(
            f"The connection asks for TLS (sslmode={sslmode}), which the rust_postgres example reader does "
            "not support: it connects without TLS",
            role="reader",
            hint=_FALLBACK_HINT,
        )
    if "host" not in params and "hostaddr" not in params:
        params["host"] = "/var/run/postgresql" if os.path.isdir("/var/run/postgresql") else "/tmp"
    params.setdefault("user", getpass.getuser())
    native = {key: value for key, value in params.items() if key in _NATIVE_KEYS}
    return make_conninfo("", **native, sslmode="disable")


class RustPostgresReader(PostgresReaderBase):
    """The ``postgres`` connector read by Rust: binary ``COPY`` decoded straight into Arrow batches.

    Planning (discovery, key-range splits, the shared snapshot, incremental selection) is the built-in
    reader's; each split is read by ``rust_postgres._native.copy_stream`` on a background thread, without
    the GIL, at most two batches ahead of the engine. Batches end at 64k rows or ``batch_size_bytes`` of
    COPY data, whichever comes first.

    Not supported (the built-in reader takes over with ``fallback: default``): array columns, TLS
    connections, ``service`` names and passwords from ``~/.pgpass``.
    """

    language: ClassVar[str] = "rust"
    version: ClassVar[str] = _version()
    _driver_errors: ClassVar[tuple[type[Exception], ...]] = (
        *PostgresReaderBase._driver_errors,
        _native.PostgresError,
    )

    @property
    def _native_conninfo(self) -> str:
        """The connection string for the Rust driver (contains the password: never print it)."""
        return native_conninfo(self._conninfo)

    def check(self) -> None:
        """Connect with psycopg (catalog and snapshot) and with the Rust driver (data).

        Raises:
            ConnectionFailed: Either connection fails (no password in the message).
            PluginFailed: The DSN asks for TLS or a service file, which this reader does not support.
        """
        super().check()
        with self._context():
            info = self._native_conninfo
            try:
                _native.ping(info)
            except _native.ConnectError as exc:
                raise connection_failed(exc, self._dsn) from None

    def discover(self) -> list[Dataset]:
        """The built-in reader's datasets, refused early if a column has a type this reader cannot produce.

        Raises:
            PluginFailed: Naming each such column and its Arrow type (``fallback: default`` then reads the
                job with the built-in reader).
        """
        datasets = super().discover()
        with self._context():
            for dataset in datasets:
                assert dataset.schema is not None
                names = _native.unsupported_columns(dataset.schema)
                if names:
                    columns = ", ".join(f"{name} ({dataset.schema.field(name).type})" for name in names)
                    what = "columns of an Arrow type rust_postgres cannot produce"
                    raise PluginFailed(
                        f"{dataset.name} has {what}: {columns}",
                        role="reader",
                        stage="discover",
                        hint=f"Read it through a 'query:' that casts them (col::text). Or: {_FALLBACK_HINT}",
                    )
        return datasets

    def _batches(self, params: Any, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        setup = [sql.BEGIN, *sql.snapshot_statements(params["snapshot"])]
        options = {"dataset": params["dataset"], "batch_bytes": self.config.batch_size_bytes or self.ctx.batch_bytes}
        try:
            # Connects and runs the COPY up to its first batch; the rest streams from a Rust thread.
            stream = _native.copy_stream(self._native_conninfo, setup, params["sql"], schema, options)
        except _native.ConnectError as exc:
            raise connection_failed(exc, self._dsn) from None
        token = self._track(stream.close)
        try:
            for batch in stream:
                yield pa.record_batch(batch)
        finally:
            self._untrack(token)
            stream.close()
