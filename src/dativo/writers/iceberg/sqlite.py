"""The embedded catalog: pyiceberg's SQL catalog tables in a SQLite file, kept with the standard library.

:class:`SqliteCatalog` reads and writes exactly the tables and rows of pyiceberg's ``SqlCatalog`` (and so of
Iceberg Java's ``JdbcCatalog``): ``iceberg_tables`` keyed by catalog name, namespace and table name, and
``iceberg_namespace_properties``. Any of those opens a catalog file this one wrote, and this one opens
theirs, including a v0 file without the ``iceberg_type`` column. It exists because SQLAlchemy, which
``SqlCatalog`` is built on, takes about 0.3 s to import: a quarter of what a small job costs end to end.

Commits are the same optimistic swap as ``SqlCatalog``'s: the new metadata file is written first, then one
``UPDATE … WHERE metadata_location = <the one this commit started from>`` publishes it; a concurrent commit
that got there first leaves no row to update and this one fails with ``CommitFailedException``. Every
write runs in a ``BEGIN IMMEDIATE`` transaction, so concurrent jobs queue on SQLite's file lock (for up to
:data:`BUSY_TIMEOUT_S`) instead of failing. Each operation opens its own connection: the catalog can be
used from any thread and after a fork.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyiceberg.catalog import Catalog, MetastoreCatalog, PropertiesUpdateSummary
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NamespaceNotEmptyError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.io import load_file_io
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.serializers import FromInputFile
from pyiceberg.table import CommitTableResponse, Table, TableProperties
from pyiceberg.table.locations import load_location_provider
from pyiceberg.table.metadata import new_table_metadata
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER, SortOrder
from pyiceberg.typedef import EMPTY_DICT, Identifier, Properties

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.table.update import TableRequirement, TableUpdate
    from pyiceberg.view import View
    from pyiceberg.view.metadata import ViewVersion

BUSY_TIMEOUT_S = 60.0
"""How long an operation waits for another job's write transaction on the same file."""

TABLE_TYPE = "TABLE"
"""``iceberg_type`` of a table row (views, which other engines may add, are never listed as tables)."""

_DDL = (
    "CREATE TABLE IF NOT EXISTS iceberg_tables (\n\tcatalog_name VARCHAR(255) NOT NULL, \n\t"
    "table_namespace VARCHAR(255) NOT NULL, \n\ttable_name VARCHAR(255) NOT NULL, \n\t"
    "metadata_location VARCHAR(1000), \n\tprevious_metadata_location VARCHAR(1000), \n\t"
    "iceberg_type VARCHAR(5), \n\tPRIMARY KEY (catalog_name, table_namespace, table_name)\n)",
    "CREATE TABLE IF NOT EXISTS iceberg_namespace_properties (\n\tcatalog_name VARCHAR(255) NOT NULL, \n\t"
    "namespace VARCHAR(255) NOT NULL, \n\tproperty_key VARCHAR(255) NOT NULL, \n\t"
    "property_value VARCHAR(1000) NOT NULL, \n\tPRIMARY KEY (catalog_name, namespace, property_key)\n)",
)
"""The tables as SQLAlchemy creates them for ``SqlCatalog`` (the v1 schema), to the byte."""

_SQLITE_URI = re.compile(r"sqlite(?:\+\w+)?:///(.*)", re.DOTALL)
_MINIMAL_PROPERTIES = {"exists": "true"}
"""What ``SqlCatalog`` stores for a namespace created without properties (its row marks that it exists)."""


def sqlite_path(uri: str) -> Path | None:
    """The database file of any SQLite URI (``sqlite:///``, ``sqlite+driver:///``, with parameters); ``None``
    for another database or an in-memory one."""
    match = _SQLITE_URI.match(uri)
    path = match.group(1).split("?", 1)[0] if match else ""
    return Path(path) if path and path != ":memory:" else None


def sqlite_file(uri: str) -> Path | None:
    """The file of a plain ``sqlite:///path`` URI; ``None`` for anything else (another database, a driver
    suffix, URI parameters, or an in-memory database), which ``SqlCatalog`` handles."""
    return sqlite_path(uri) if uri.startswith("sqlite:///") and "?" not in uri else None


class SqliteCatalog(MetastoreCatalog):
    """An Iceberg catalog in a SQLite file, row for row the one pyiceberg's ``SqlCatalog`` keeps.

    Args:
        name: The catalog name, which keys every row (jobs share tables only under the same name).
        **properties: Catalog properties: ``uri`` (``sqlite:///path``), ``warehouse`` and FileIO settings;
            ``init_catalog_tables`` (default ``true``) and ``schema_version`` (``v0`` or ``v1``) as for
            ``SqlCatalog``.

    Raises:
        ValueError: If ``uri`` is not a plain SQLite file URI.
        sqlite3.Error: If the file cannot be opened or its tables cannot be created.
    """

    def __init__(self, name: str, **properties: str) -> None:
        super().__init__(name, **properties)
        path = sqlite_file(self.properties.get("uri", ""))
        if path is None:
            raise ValueError(f"not a SQLite file URI: {self.properties.get('uri')!r}")
        self.path = path
        self._typed = self._init_tables()

    # -- connections ------------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)) as db:
            yield db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A connection inside a ``BEGIN IMMEDIATE`` transaction, committed on success, else rolled back."""
        with self._read() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.rollback()
                raise
            db.commit()

    def _init_tables(self) -> bool:
        """Create the tables if absent; whether rows carry ``iceberg_type`` (False: a v0 file, kept v0)."""
        create = self.properties.get("init_catalog_tables", "true").lower() in ("true", "1", "yes", "on")
        with self._read() as db:
            columns = {row[1] for row in db.execute("PRAGMA table_info(iceberg_tables)")}
            names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "iceberg_tables" in names and "iceberg_namespace_properties" in names:
            if "iceberg_type" in columns:
                return True
            if self.properties.get("schema_version", "v0") != "v1":
                return False
            with self._write() as db:
                if "iceberg_type" not in {row[1] for row in db.execute("PRAGMA table_info(iceberg_tables)")}:
                    db.execute("ALTER TABLE iceberg_tables ADD COLUMN iceberg_type VARCHAR(5)")
            return True
        if create:
            with self._write() as db:
                for statement in _DDL:
                    db.execute(statement)
        return True

    def _tables_only(self) -> str:
        return " AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)" if self._typed else ""

    def _insert_table(self, namespace: str, table_name: str, metadata_location: str) -> None:
        columns = "catalog_name, table_namespace, table_name, metadata_location, previous_metadata_location"
        values: tuple[Any, ...] = (self.name, namespace, table_name, metadata_location, None)
        if self._typed:
            columns, values = columns + ", iceberg_type", (*values, TABLE_TYPE)
        try:
            with self._write() as db:
                db.execute(f"INSERT INTO iceberg_tables ({columns}) VALUES ({', '.join('?' * len(values))})", values)
        except sqlite3.IntegrityError as exc:
            raise TableAlreadyExistsError(f"Table {namespace}.{table_name} already exists") from exc

    def _location(self, namespace: str, table_name: str) -> str | None:
        with self._read() as db:
            row = db.execute(
                "SELECT metadata_location FROM iceberg_tables"
                " WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?" + self._tables_only(),
                (self.name, namespace, table_name),
            ).fetchone()
        return None if row is None else row[0]

    @staticmethod
    def _names(identifier: str | Identifier) -> tuple[str, str]:
        return Catalog.namespace_to_string(Catalog.namespace_from(identifier)), Catalog.table_name_from(identifier)

    # -- tables -----------------------------------------------------------------------------------

    def create_table(
        self,
        identifier: str | Identifier,
        schema: Schema | pa.Schema,
        location: str | None = None,
        partition_spec: PartitionSpec = UNPARTITIONED_PARTITION_SPEC,
        sort_order: SortOrder = UNSORTED_SORT_ORDER,
        properties: Properties = EMPTY_DICT,
    ) -> Table:
        """Write the table's first metadata file and register it.

        Raises:
            NoSuchNamespaceError: If the namespace does not exist.
            TableAlreadyExistsError: If the table exists (also when another job created it first).
        """
        version = int(properties.get(TableProperties.FORMAT_VERSION, TableProperties.DEFAULT_FORMAT_VERSION))
        iceberg_schema: Schema = self._convert_schema_if_needed(schema, version)  # type: ignore[arg-type]
        namespace, table_name = self._names(identifier)
        if not self.namespace_exists(namespace):
            raise NoSuchNamespaceError(f"Namespace does not exist: {namespace}")
        location = self._resolve_table_location(location, namespace, table_name)
        provider = load_location_provider(table_location=location, table_properties=properties)
        metadata_location = provider.new_table_metadata_file_location()
        metadata = new_table_metadata(
            location=location, schema=iceberg_schema, partition_spec=partition_spec, sort_order=sort_order,
            properties=properties,
        )
        self._write_metadata(metadata, load_file_io(self.properties, metadata_location), metadata_location)
        self._insert_table(namespace, table_name, metadata_location)
        return self.load_table(identifier)

    def register_table(self, identifier: str | Identifier, metadata_location: str, overwrite: bool = False) -> Table:
        """Register a table whose metadata file exists.

        Raises:
            NotImplementedError: For ``overwrite`` (as ``SqlCatalog``).
            NoSuchNamespaceError: If the namespace does not exist.
            TableAlreadyExistsError: If the table exists.
        """
        if overwrite:
            raise NotImplementedError("`overwrite` isn't supported")
        namespace, table_name = self._names(identifier)
        if not self.namespace_exists(namespace):
            raise NoSuchNamespaceError(f"Namespace does not exist: {namespace}")
        self._insert_table(namespace, table_name, metadata_location)
        return self.load_table(identifier)

    def load_table(self, identifier: str | Identifier) -> Table:
        """The table at its current metadata file.

        Raises:
            NoSuchTableError: If the catalog has no such table.
        """
        namespace, table_name = self._names(identifier)
        metadata_location = self._location(namespace, table_name)
        if not metadata_location:
            raise NoSuchTableError(f"Table does not exist: {namespace}.{table_name}")
        metadata = FromInputFile.table_metadata(load_file_io(self.properties, metadata_location).new_input(metadata_location))
        return Table(
            identifier=Catalog.identifier_to_tuple(namespace) + (table_name,),
            metadata=metadata,
            metadata_location=metadata_location,
            io=self._load_file_io(metadata.properties, metadata_location),
            catalog=self,
        )

    def drop_table(self, identifier: str | Identifier) -> None:
        """Remove the table from the catalog (its files stay).

        Raises:
            NoSuchTableError: If the catalog has no such table.
        """
        namespace, table_name = self._names(identifier)
        with self._write() as db:
            deleted = db.execute(
                "DELETE FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?"
                + self._tables_only(),
                (self.name, namespace, table_name),
            ).rowcount
        if deleted < 1:
            raise NoSuchTableError(f"Table does not exist: {namespace}.{table_name}")

    def rename_table(self, from_identifier: str | Identifier, to_identifier: str | Identifier) -> Table:
        """Rename a table, also into another namespace.

        Raises:
            NoSuchTableError: If ``from_identifier`` does not exist.
            TableAlreadyExistsError: If ``to_identifier`` exists.
            NoSuchNamespaceError: If the target namespace does not exist.
        """
        from_namespace, from_name = self._names(from_identifier)
        to_namespace, to_name = self._names(to_identifier)
        if not self.namespace_exists(to_namespace):
            raise NoSuchNamespaceError(f"Namespace does not exist: {to_namespace}")
        try:
            with self._write() as db:
                renamed = db.execute(
                    "UPDATE iceberg_tables SET table_namespace = ?, table_name = ?"
                    " WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?" + self._tables_only(),
                    (to_namespace, to_name, self.name, from_namespace, from_name),
                ).rowcount
        except sqlite3.IntegrityError as exc:
            raise TableAlreadyExistsError(f"Table {to_namespace}.{to_name} already exists") from exc
        if renamed < 1:
            raise NoSuchTableError(f"Table does not exist: {from_name}")
        return self.load_table(to_identifier)

    def commit_table(
        self, table: Table, requirements: tuple[TableRequirement, ...], updates: tuple[TableUpdate, ...]
    ) -> CommitTableResponse:
        """Write the updated metadata file and swap the table's row to it, if no one else moved it first.

        Raises:
            CommitFailedException: If a requirement is not met, or another commit published first.
            TableAlreadyExistsError: If a table created by this commit was created concurrently.
        """
        namespace, table_name = self._names(table.name())
        try:
            current: Table | None = self.load_table(table.name())
        except NoSuchTableError:
            current = None
        staged = self._update_and_stage_table(current, table.name(), requirements, updates)
        if current is not None and staged.metadata == current.metadata:
            return CommitTableResponse(metadata=current.metadata, metadata_location=current.metadata_location)
        self._write_metadata(metadata=staged.metadata, io=staged.io, metadata_path=staged.metadata_location)
        if current is None:
            self._insert_table(namespace, table_name, staged.metadata_location)
        else:
            with self._write() as db:
                swapped = db.execute(
                    "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ?"
                    " WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? AND metadata_location = ?",
                    (staged.metadata_location, current.metadata_location, self.name, namespace, table_name,
                     current.metadata_location),
                ).rowcount
            if swapped < 1:
                raise CommitFailedException(f"Table has been updated by another process: {namespace}.{table_name}")
        return CommitTableResponse(metadata=staged.metadata, metadata_location=staged.metadata_location)

    def list_tables(self, namespace: str | Identifier) -> list[Identifier]:
        """The tables directly in ``namespace``.

        Raises:
            NoSuchNamespaceError: If the namespace does not exist.
        """
        if namespace and not self.namespace_exists(namespace):
            raise NoSuchNamespaceError(f"Namespace does not exist: {namespace}")
        name = Catalog.namespace_to_string(namespace)
        with self._read() as db:
            rows = db.execute(
                "SELECT table_namespace, table_name FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ?"
                + self._tables_only(),
                (self.name, name),
            ).fetchall()
        return [Catalog.identifier_to_tuple(ns) + (table_name,) for ns, table_name in rows]

    # -- namespaces -------------------------------------------------------------------------------

    def namespace_exists(self, identifier: str | Identifier) -> bool:
        """Whether the namespace, or a namespace or table under it, is in the catalog."""
        namespace = Catalog.namespace_to_string(Catalog.identifier_to_tuple(identifier), NoSuchNamespaceError)
        under = namespace.replace("!", "!!").replace("_", "!_").replace("%", "!%") + ".%"
        with self._read() as db:
            for table, column in (("iceberg_tables", "table_namespace"), ("iceberg_namespace_properties", "namespace")):
                found = db.execute(
                    f"SELECT 1 FROM {table} WHERE catalog_name = ? AND ({column} = ? OR {column} LIKE ? ESCAPE '!')"
                    " LIMIT 1",
                    (self.name, namespace, under),
                ).fetchone()
                if found:
                    return True
        return False

    def create_namespace(self, namespace: str | Identifier, properties: Properties = EMPTY_DICT) -> None:
        """Create a namespace with ``properties`` (``exists: true`` when none are given).

        Raises:
            NamespaceAlreadyExistsError: If it exists (also when another job created it first).
        """
        if self.namespace_exists(namespace):
            raise NamespaceAlreadyExistsError(f"Namespace {namespace} already exists")
        name = Catalog.namespace_to_string(namespace, NoSuchNamespaceError)
        rows = [(self.name, name, key, value) for key, value in (properties or _MINIMAL_PROPERTIES).items()]
        try:
            with self._write() as db:
                db.executemany("INSERT INTO iceberg_namespace_properties VALUES (?, ?, ?, ?)", rows)
        except sqlite3.IntegrityError as exc:
            raise NamespaceAlreadyExistsError(f"Namespace {namespace} already exists") from exc

    def drop_namespace(self, namespace: str | Identifier) -> None:
        """Drop an empty namespace.

        Raises:
            NoSuchNamespaceError: If it does not exist.
            NamespaceNotEmptyError: If it holds tables.
        """
        if not self.namespace_exists(namespace):
            raise NoSuchNamespaceError(f"Namespace does not exist: {namespace}")
        name = Catalog.namespace_to_string(namespace)
        if tables := self.list_tables(namespace):
            raise NamespaceNotEmptyError(f"Namespace {name} is not empty. {len(tables)} tables exist.")
        with self._write() as db:
            db.execute("DELETE FROM iceberg_namespace_properties WHERE catalog_name = ? AND namespace = ?", (self.name, name))

    def list_namespaces(self, namespace: str | Identifier = ()) -> list[Identifier]:
        """The namespaces one level below ``namespace`` (the top level by default).

        Raises:
            NoSuchNamespaceError: If ``namespace`` is given and does not exist.
        """
        if namespace and not self.namespace_exists(namespace):
            raise NoSuchNamespaceError(f"Namespace does not exist: {namespace}")
        parent = Catalog.identifier_to_tuple(namespace)
        query = (
            "SELECT table_namespace FROM iceberg_tables WHERE catalog_name = ?{0}"
            " UNION SELECT namespace FROM iceberg_namespace_properties WHERE catalog_name = ?{1}"
        )
        if namespace:
            like = Catalog.namespace_to_string(namespace, NoSuchNamespaceError) + "%"
            sql = query.format(" AND table_namespace LIKE ?", " AND namespace LIKE ?")
            arguments: tuple[str, ...] = (self.name, like, self.name, like)
        else:
            sql, arguments = query.format("", ""), (self.name, self.name)
        with self._read() as db:
            names = {Catalog.identifier_to_tuple(row[0]) for row in db.execute(sql, arguments)}
        level = len(parent) + 1
        return list({ns[:level] for ns in names if len(ns) >= level and ns[: level - 1] == parent})

    def load_namespace_properties(self, namespace: str | Identifier) -> Properties:
        """The namespace's properties.

        Raises:
            NoSuchNamespaceError: If it does not exist.
        """
        name = Catalog.namespace_to_string(namespace)
        if not self.namespace_exists(namespace):
            raise NoSuchNamespaceError(f"Namespace {name} does not exists")
        with self._read() as db:
            rows = db.execute(
                "SELECT property_key, property_value FROM iceberg_namespace_properties"
                " WHERE catalog_name = ? AND namespace = ?",
                (self.name, name),
            ).fetchall()
        return dict(rows)

    def update_namespace_properties(
        self, namespace: str | Identifier, removals: set[str] | None = None, updates: Properties = EMPTY_DICT
    ) -> PropertiesUpdateSummary:
        """Remove ``removals`` and set ``updates`` in one transaction.

        Raises:
            NoSuchNamespaceError: If the namespace does not exist.
            ValueError: If ``removals`` and ``updates`` overlap.
        """
        name = Catalog.namespace_to_string(namespace)
        current = self.load_namespace_properties(namespace)
        summary = self._get_updated_props_and_update_summary(current, removals, updates)[0]
        changed = set(removals or ()) | set(updates)
        with self._write() as db:
            if changed:
                db.execute(
                    "DELETE FROM iceberg_namespace_properties WHERE catalog_name = ? AND namespace = ?"
                    f" AND property_key IN ({', '.join('?' * len(changed))})",
                    (self.name, name, *sorted(changed)),
                )
            db.executemany(
                "INSERT INTO iceberg_namespace_properties VALUES (?, ?, ?, ?)",
                [(self.name, name, key, value) for key, value in updates.items()],
            )
        return summary

    # -- views: not kept, as in SqlCatalog --------------------------------------------------------

    def create_view(
        self,
        identifier: str | Identifier,
        schema: Schema | pa.Schema,
        view_version: ViewVersion,
        location: str | None = None,
        properties: Properties = EMPTY_DICT,
    ) -> View:
        """Not supported: the SQL catalog keeps tables only."""
        raise NotImplementedError

    def list_views(self, namespace: str | Identifier) -> list[Identifier]:
        """Not supported: the SQL catalog keeps tables only."""
        raise NotImplementedError

    def view_exists(self, identifier: str | Identifier) -> bool:
        """Not supported: the SQL catalog keeps tables only."""
        raise NotImplementedError

    def register_view(self, identifier: str | Identifier, metadata_location: str) -> View:
        """Not supported: the SQL catalog keeps tables only."""
        raise NotImplementedError

    def drop_view(self, identifier: str | Identifier) -> None:
        """Not supported: the SQL catalog keeps tables only."""
        raise NotImplementedError

    def load_view(self, identifier: str | Identifier) -> View:
        """Not supported: the SQL catalog keeps tables only."""
        raise NotImplementedError
