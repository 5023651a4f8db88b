"""What the two PostgreSQL readers share: connection checks, discovery, planning and the snapshot.

One *coordinator* connection (psycopg) holds a ``REPEATABLE READ READ ONLY`` transaction from the first
``discover``/``plan`` until :meth:`close`, and exports its snapshot with ``pg_export_snapshot()``. Every
split opens its own connection and adopts that snapshot (``SET TRANSACTION SNAPSHOT``, as ``pg_dump -j``
does), so all splits of all datasets of a run read one consistent state of the database, however the
reads are spread over threads, processes or machines. Catalog lookups run in the same transaction.

Incremental reads. With a cursor (a table's own from ``tables:``, else ``ctx.cursor``), :meth:`plan` decodes
the committed watermark and selects rows with ``(cursor, primary key…) > (watermark…)``; the engine
computes the next watermark from the batches. Rows whose cursor is NULL are read by the first run (no
state yet, a full read) and never again: a NULL cannot be placed after a watermark; the run warns with
their count. Give the cursor column a NOT NULL constraint (or a default) if such rows matter. Without a
primary key, rows that share the watermark's exact cursor value and arrive later are not read. Deletes,
and updates that do not move the cursor, are invisible to incremental reads; a periodic full refresh
reconciles them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import psycopg
import pyarrow as pa
from psycopg import sql as pgsql

from dativo import __version__
from dativo.api import ArrowStream, Context, Dataset, Reader, Split, State
from dativo.errors import ConfigError, DativoError, PluginFailed
from dativo.readers.postgres import sql
from dativo.readers.postgres.arrow import decode_schema, encode_schema
from dativo.readers.postgres.catalog import Relation, query_relation, table_relation
from dativo.readers.postgres.config import PostgresConfig
from dativo.readers.postgres.tables import select_tables
from dativo.readers.postgres.connect import connection_failed, conninfo, one_paragraph, read_failed, redact
from dativo.state import Watermark


class PostgresReaderBase(Reader):
    """Shared part of ``postgres`` and ``postgres-python``; subclasses implement :meth:`_batches`.

    Also the base of third-party Postgres readers (``rust_postgres``): implementing :meth:`_batches` alone
    gives them discovery, key-range splits, the shared snapshot, incremental selection and the connector's
    own keys (``connector = "postgres"``).
    """

    Config: ClassVar[type[PostgresConfig]] = PostgresConfig  # type: ignore[assignment]
    connector: ClassVar[str | None] = "postgres"
    version: ClassVar[str] = __version__
    config: PostgresConfig

    def __init__(self, config: PostgresConfig, ctx: Context) -> None:
        super().__init__(config, ctx)
        self._coordinator: psycopg.Connection | None = None
        self._snapshot: str | None = None
        self._relations: dict[str, Relation] = {}
        self._lock = threading.Lock()
        self._closers: dict[int, Callable[[], None]] = {}

    # -- helpers ---------------------------------------------------------------------------------------

    @property
    def _dsn(self) -> str:
        """The DSN as configured (contains the password: never print it, use ``redact_dsn``)."""
        return self.config.connection.dsn

    @property
    def _conninfo(self) -> str:
        return conninfo(self._dsn, self.config.connect_timeout)

    @contextmanager
    def _context(self) -> Iterator[None]:
        try:
            yield
        except DativoError as exc:
            raise exc.with_context(job=self.ctx.job, plugin=self.ctx.plugin) from exc.__cause__

    def _psycopg_connect(self) -> psycopg.Connection:
        info = self._conninfo
        try:
            return psycopg.connect(info)
        except psycopg.Error as exc:
            raise connection_failed(exc, self._dsn) from None

    def _track(self, closer: Callable[[], None]) -> int:
        with self._lock:
            token = id(closer)
            self._closers[token] = closer
            return token

    def _untrack(self, token: int) -> None:
        with self._lock:
            self._closers.pop(token, None)

    def _coordinator_connection(self) -> psycopg.Connection:
        """The connection holding the run's snapshot, opened on first use."""
        if self._coordinator is None:
            conn = self._psycopg_connect()
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            try:
                row = conn.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()
            except psycopg.Error as exc:
                conn.close()
                detail = redact(one_paragraph(str(exc)), self._dsn)
                raise PluginFailed(
                    f"Cannot export a snapshot for consistent reads: {detail}",
                    role="reader",
                    stage="plan",
                    hint="Connect to the server directly (not through a transaction-pooling proxy), "
                    "as a user allowed to run pg_export_snapshot().",
                ) from None
            assert row is not None
            self._coordinator, self._snapshot = conn, row[0]
            self.ctx.logger.debug("exported snapshot %s", self._snapshot)
        return self._coordinator

    def _relation(self, name: str) -> Relation:
        if name not in self._relations:
            self.discover()
        try:
            return self._relations[name]
        except KeyError:
            raise ConfigError(
                f"Unknown dataset {name!r}; this reader produces {sorted(self._relations)}"
            ) from None

    # -- the Reader contract ---------------------------------------------------------------------------

    def check(self) -> None:
        """Connect once and run a trivial query.

        Raises:
            ConnectionFailed: Unreachable server, refused credentials, missing database … (no password in
                the message).
        """
        with self._context():
            conn = self._psycopg_connect()
            try:
                conn.execute("SELECT 1")
            except psycopg.Error as exc:
                raise connection_failed(exc, self._dsn) from None
            finally:
                conn.close()

    def discover(self) -> list[Dataset]:
        """Describe every table ``tables:`` selects (every readable one if omitted), or the ``query:``.

        Returns:
            One dataset per table, named ``schema.table``, with the exact Arrow schema (NOT NULL columns are
            non-nullable), the primary key, the cursor candidates, the table's own cursor, the planner's row
            estimate and details (kind, partitions, PostgreSQL column types); or one dataset named ``query``.

        Raises:
            ConfigError: A table does not exist, a glob matches nothing, the query does not compile, an
                entry's cursor or key is not a column, or a column has a pseudo-type.
        """
        with self._context():
            conn = self._coordinator_connection()
            policy = self.config.numeric_policy
            if self.config.query is not None:
                relations = [query_relation(conn, self.config.query, policy)]
            else:
                selected = select_tables(conn, self.config.table_entries, self.config.exclude)
                relations = [table_relation(conn, one, policy) for one in selected]
            self._relations = {r.name: r for r in relations}
            return [r.dataset() for r in relations]

    def plan(self, dataset: Dataset, state: State | None) -> list[Split]:
        """Split a dataset over the run's snapshot.

        With ``ctx.parallelism > 1`` a table is cut into at most ``parallelism`` splits, and at most one per
        ``min_split_bytes`` of its on-disk size. The cuts follow the first key column when it is an integer
        (its span inside the snapshot, after the watermark, cut along the planner's histogram of the key
        when the table has been analysed, else in equal widths); any other table, view excepted, is cut
        into ranges of its pages (``ctid``), which every row of the snapshot has exactly one of. A view or
        query without an integer key is one split. With a cursor (the table's own, else the job's) and a
        committed ``state``, only rows after its watermark are selected; a nullable cursor with NULLs in it
        is warned about (see the module docstring).

        Returns:
            Splits whose ``params`` (JSON) hold the SQL, the snapshot id and the schema.

        Raises:
            ConfigError: The cursor is not a column, or ``state`` was committed for another cursor.
        """
        with self._context():
            relation = self._relation(dataset.name)
            conn = self._coordinator_connection()
            predicates: list[str | None] = [self._after_watermark(relation, state, conn)]
            ranges: list[str | None] = [None]
            parts = self._parts(relation)
            key = relation.range_key
            if parts > 1 and key is not None:
                low, high = conn.execute(sql.min_max(relation, key, predicates)).fetchone() or (None, None)
                if low is not None and high is not None:
                    cuts = sql.key_ranges(low, high, parts, self._histogram(relation, key, conn))
                    ranges = [sql.range_predicate(key, start, end) for start, end in cuts]
            elif parts > 1 and relation.has_pages and conn.info.server_version >= 140000:  # TID range scans
                pages = self._pages(relation, conn)
                if pages > 1:
                    ranges = [sql.page_predicate(start, end) for start, end in sql.page_ranges(pages, parts)]
            common: dict[str, Any] = {
                "dataset": relation.name,
                "snapshot": self._snapshot,
                "schema": encode_schema(relation.schema),
            }
            splits = [
                Split(
                    dataset=relation.name,
                    id=str(i),
                    params={**common, "sql": sql.select(relation, [*predicates, r])},
                )
                for i, r in enumerate(ranges)
            ]
            self.ctx.logger.debug("planned %d split(s) for %s", len(splits), relation.name)
            return splits

    def _parts(self, relation: Relation) -> int:
        """How many splits to aim for: ``parallelism``, fewer for a table smaller than that many
        ``min_split_bytes`` (views and queries have no size to go by)."""
        size = relation.listed.size_bytes if relation.listed else None
        if size is None:
            return self.ctx.parallelism
        return max(1, min(self.ctx.parallelism, -(-size // self.config.min_split_bytes)))

    @staticmethod
    def _pages(relation: Relation, conn: psycopg.Connection) -> int:
        """Pages of the largest heap behind ``relation`` (a partition's, for a partitioned table)."""
        assert relation.listed is not None
        row = conn.execute("SELECT pg_catalog.current_setting('block_size')::int").fetchone()
        block = int(row[0]) if row else 8192
        return -(-(relation.listed.largest_heap or 0) // block)

    @staticmethod
    def _histogram(relation: Relation, key: str, conn: psycopg.Connection) -> list[int]:
        assert relation.table is not None
        row = conn.execute(sql.HISTOGRAM, (*relation.table, key)).fetchone()
        if row is None or row[0] is None:
            return []
        return [int(b) for b in row[0].strip("{}").split(",") if b]

    def _after_watermark(
        self, relation: Relation, state: State | None, conn: psycopg.Connection
    ) -> str | None:
        cursor = relation.cursor or self.ctx.cursor
        if cursor is None:
            return None
        schema = relation.schema
        if cursor not in schema.names:
            raise ConfigError(
                f"incremental.cursor {cursor!r} is not a column of {relation.name}",
                hint=f"Use one of its cursor candidates: {', '.join(relation.cursor_candidates) or 'none'}.",
            )
        if schema.field(cursor).nullable:
            self._warn_null_cursors(relation, cursor, conn)
        try:
            watermark = Watermark.from_state(state, schema)
        except (KeyError, ValueError, pa.ArrowException) as exc:
            raise ConfigError(
                f"The committed incremental state of {relation.name} does not match its columns: {exc}",
                hint="Reset the dataset's state (run a full refresh) after changing its columns.",
            ) from None
        if watermark is None:
            return None
        if watermark.column != cursor:
            raise ConfigError(
                f"The committed state of {relation.name} tracks cursor {watermark.column!r}, "
                f"but the job now uses {cursor!r}",
                hint="Reset the dataset's state (run a full refresh) when changing incremental.cursor.",
            )
        values = (watermark.value, *watermark.key)
        literals = [pgsql.Literal(v).as_string(conn) for v in values]
        return sql.after_predicate((watermark.column, *watermark.key_columns), literals)

    def _warn_null_cursors(self, relation: Relation, cursor: str, conn: psycopg.Connection) -> None:
        """Warn when rows have a NULL cursor: incremental runs after the first never read them.

        The count is exact; it is skipped when the planner's statistics say the column has no NULL.
        """
        if relation.table is not None:
            row = conn.execute(sql.NULL_FRACTION, (*relation.table, cursor)).fetchone()
            if row is not None and row[0] == 0:
                return
        found = conn.execute(sql.null_count(relation, cursor)).fetchone()
        nulls = int(found[0]) if found else 0
        if nulls:
            self.ctx.logger.warning(
                "%s: %s row(s) have a NULL %s; an incremental run reads them only while the dataset has no "
                "committed state (the first run, or `dativo run --full-refresh`), never after a watermark. "
                "Give %s a NOT NULL constraint or a default, or pick another cursor.",
                relation.name, f"{nulls:,}", cursor, cursor,
            )

    def read(self, split: Split) -> ArrowStream:
        """Read one split inside the run's snapshot, lazily, batch by batch.

        Returns:
            A ``pyarrow.RecordBatchReader`` with the planned schema; the connection opens on the first batch
            and closes when the stream is exhausted or closed.

        Raises:
            ConnectionFailed: The split's connection cannot be opened.
            PluginFailed: A query or value error mid-read, naming the dataset (and the column if known).
        """
        params = split.params
        schema = decode_schema(params["schema"])
        return pa.RecordBatchReader.from_batches(schema, self._guarded(params, schema))

    def _guarded(self, params: dict[str, Any] | Any, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        with self._context():
            try:
                yield from self._batches(params, schema)
            except self._driver_errors as exc:
                raise read_failed(exc, params["dataset"], self._dsn) from exc

    _driver_errors: ClassVar[tuple[type[Exception], ...]] = (psycopg.Error,)
    """Exceptions of the driver that :meth:`read` turns into ``PluginFailed``."""

    def _batches(self, params: Any, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        """Yield the split's batches, already in ``schema``; open and close its own connection."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the coordinator (ending the snapshot) and any split connection still open."""
        with self._lock:
            closers = list(self._closers.values())
            self._closers.clear()
        for closer in closers:
            try:
                closer()
            except Exception as exc:  # closing must go on; nothing is lost, the server ends the session
                self.ctx.logger.debug("closing a split connection failed: %s", exc)
        if self._coordinator is not None:
            self._coordinator.close()
            self._coordinator = None
            self._snapshot = None
