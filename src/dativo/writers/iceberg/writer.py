"""The built-in Iceberg writer: parallel data-file writes, then one atomic commit with the run's state.

See :mod:`.schema` for how Arrow types land in Iceberg, :mod:`.files` for how data files are written,
and :mod:`.commit` for how state, run ids and the modes are committed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa
from pyiceberg.exceptions import (
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.io.pyarrow import parquet_file_to_data_file
from pyiceberg.manifest import DataFile
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC
from pyiceberg.table import Table

import dativo
from dativo import budget
from dativo.api import CommitInfo, Context, Dataset, Mode, Split, State, Writer, WrittenFiles
from dativo.errors import (
    CommitFailed,
    CommitStateUnknown,
    ConfigError,
    ConnectionFailed,
    DativoError,
    PluginFailed,
)
from dativo.maintenance import MaintenancePolicy, MaintenanceResult
from dativo.writers.iceberg import commit as commits
from dativo.writers.iceberg import maintain as maintenance
from dativo.writers.iceberg import partitioning
from dativo.writers.iceberg.catalog import (
    CatalogHandle,
    ensure_namespace,
    first_line,
    open_catalog,
    probe_warehouse,
    refused_credentials,
    unreachable,
)
from dativo.writers.iceberg.config import IcebergWriterConfig
from dativo.writers.iceberg.conform import conform_batch
from dativo.writers.iceberg.files import DataFileWriter, WriteOptions, new_prefix
from dativo.writers.iceberg.schema import plan_evolution, to_iceberg_schema

_CODECS = {"none": "uncompressed"}


class IcebergWriter(Writer):
    """Writes Arrow streams into an Iceberg table (SQL or REST catalog; local or S3 storage).

    ``write`` may run in many threads at once; each call writes its own Parquet files into the table's
    data location and publishes nothing. ``commit`` publishes every file of the run, and the run's state,
    in one snapshot whose summary carries ``dativo.run-id``, ``dativo.job`` and ``dativo.state``.
    """

    Config = IcebergWriterConfig
    version = dativo.__version__

    def __init__(self, config: IcebergWriterConfig, ctx: Context) -> None:
        super().__init__(config, ctx)
        self.config: IcebergWriterConfig = config
        self._lock = threading.Lock()
        self._handle: CatalogHandle | None = None
        self._tables: dict[str, Table] = {}
        self._modes: dict[str, Mode] = {}
        self._started: dict[str, tuple[bool, State | None]] = {}  # what state() told the engine, per dataset

    # -- contract ---------------------------------------------------------------------------------

    def check(self) -> None:
        """Verify the catalog answers and the warehouse takes a write.

        Raises:
            ConnectionFailed: Naming the catalog and what failed (never a credential).
        """
        with self._errors("check"):
            handle = self._catalog()
            try:
                handle.catalog.list_namespaces()
            except Exception as exc:  # any driver error means the catalog does not answer
                raise handle.error("the catalog does not answer", exc) from None
            probe_warehouse(handle)

    def prepare(self, dataset: Dataset, schema: pa.Schema, mode: Mode) -> None:
        """Create the table from ``schema``, or evolve the existing one to accept it.

        Raises:
            SchemaMismatch: If the table cannot accept ``schema`` (names the column and both types).
            ConfigError: On a bad ``partition_by``, or ``merge`` without a primary key.
        """
        with self._errors("prepare"):
            if mode == "merge" and not dataset.primary_key:
                raise ConfigError(
                    f"mode 'merge' upserts by primary key, and dataset '{dataset.name}' has none",
                    hint="Declare the primary key in the source, or use mode 'append' or 'overwrite'",
                )
            catalog = self._catalog().catalog
            identifier, partition_by = self.config.settings_for(dataset.name)
            name = ".".join(identifier)
            if len(schema) == 0:  # no batch and no declared schema: nothing to create or check
                with self._lock:
                    self._modes[dataset.name] = mode
                return
            incoming = to_iceberg_schema(schema, dataset.primary_key)
            try:
                table = catalog.load_table(identifier)
            except (NoSuchTableError, NoSuchNamespaceError):
                ensure_namespace(catalog, identifier[:-1])
                table = self._create(identifier, incoming, partition_by)
            else:
                evolution = plan_evolution(table.schema(), incoming)
                if evolution.union is not None:
                    with table.update_schema() as update:
                        update.union_by_name(evolution.union)
                    self.ctx.logger.info(
                        "evolved %s: added %s, widened %s",
                        name,
                        list(evolution.added) or "nothing",
                        [f"{c} {a}->{b}" for c, a, b in evolution.widened] or "nothing",
                    )
            if partition_by and not partitioning.same_spec(table.spec(), table.schema(), partition_by):
                raise ConfigError(
                    f"table {name} is partitioned by {partitioning.describe(table.spec(), table.schema())}, "
                    f"the job asks for {partition_by}",
                    hint="Make target.partition_by match the table, or evolve the table's partition spec",
                )
            missing = [k for k in dataset.primary_key if k not in table.schema().column_names]
            if mode == "merge" and missing:
                raise ConfigError(f"mode 'merge': primary-key column '{missing[0]}' is not in table {name}")
            with self._lock:
                self._tables[dataset.name] = table
                self._modes[dataset.name] = mode

    def write(self, split: Split, stream: pa.RecordBatchReader) -> WrittenFiles:
        """Write one split into new data files of the table; batch by batch, publishing nothing."""
        with self._errors("write"):
            table = self._table(split.dataset)
            schema = table.schema()
            writer = DataFileWriter(table.metadata, table.io, self._options(), new_prefix(split.id))
            try:
                for batch in _upstream(stream):
                    writer.write(conform_batch(batch, schema))
                data_files = writer.close()
            except BaseException:
                writer.abort()
                raise
            return WrittenFiles(
                dataset=split.dataset,
                split=split.id,
                files=[f.file_path for f in data_files],
                rows=writer.rows,
                bytes=writer.bytes,
                extra={"data_files": data_files, "table": ".".join(table.name())},
            )

    def commit(
        self, dataset: Dataset, files: list[WrittenFiles], state: State | None, run_id: str
    ) -> CommitInfo:
        """Publish every file of the run and ``state`` in one snapshot; a committed run id is a no-op.

        Raises:
            CommitFailed: Nothing was published.
            CommitStateUnknown: The outcome is unknown; rerun with the same run id.
        """
        with self._lock:  # the state this run read (if it read one): each state() answers one commit
            started = self._started.pop(dataset.name, None)
        with self._errors("commit"):
            handle = self._catalog()
            identifier = self.identifier(dataset.name)
            try:
                table = handle.catalog.load_table(identifier)
            except (NoSuchTableError, NoSuchNamespaceError):
                if not any(part.files for part in files):  # a first run without any row or schema
                    if state is not None:
                        self.ctx.logger.warning(
                            "table %s does not exist and the run has no rows: its state is not kept",
                            ".".join(identifier),
                        )
                    return CommitInfo(commit_id=None, rows=0)
                raise CommitFailed(
                    f"table {'.'.join(identifier)} does not exist",
                    hint="prepare() creates it before any write",
                ) from None
            data_files = [f for part in files for f in self._data_files(table, part)]
            options = self._options()
            for _ in range(commits.CAS_ATTEMPTS):
                try:
                    return commits.commit(
                        table,
                        data_files,
                        mode=self._mode(dataset.name),
                        state=state,
                        job=self.ctx.job,
                        run_id=run_id,
                        primary_key=tuple(dataset.primary_key),
                        new_writer=lambda metadata: DataFileWriter(metadata, table.io, options, new_prefix("merge")),
                        reload=lambda: handle.catalog.load_table(identifier),
                        logger=self.ctx.logger,
                        dataset=dataset.name,
                        started_from=started,
                    )
                except commits.Conflict:  # another commit landed: check the state again on the new table
                    table = handle.catalog.load_table(identifier)
            raise CommitFailed(
                f"table {'.'.join(identifier)} kept changing under the commit of dataset '{dataset.name}'",
                hint="Nothing was published; rerun the job when fewer writers commit to the table at once",
            )

    def state(self, dataset: Dataset) -> State | None:
        """The ``dativo.state`` of this job's newest snapshot of ``dataset`` in the table's current ancestry.

        The commit of this run then checks that it is still the newest (no overlapping run moved it).
        """
        with self._errors("state"):
            try:
                table = self._catalog().catalog.load_table(self.identifier(dataset.name))
            except (NoSuchTableError, NoSuchNamespaceError):
                started: tuple[bool, State | None] = (False, None)
            else:
                started = commits.last_state(table.metadata, self.ctx.job, dataset.name)
            with self._lock:
                self._started[dataset.name] = started
            return started[1]

    def maintain(self, dataset: Dataset, policy: MaintenancePolicy, *, dry_run: bool) -> MaintenanceResult:
        """Expire old snapshots and delete orphan files of ``dataset``'s table (see ``iceberg.maintain``)."""
        with self._errors("maintain"):
            identifier = self.identifier(dataset.name)
            try:
                table = self._catalog().catalog.load_table(identifier)
            except (NoSuchTableError, NoSuchNamespaceError):
                return MaintenanceResult(target=".".join(identifier), dry_run=dry_run)
            return maintenance.maintain(table, policy, dry_run=dry_run, logger=self.ctx.logger)

    def abort(self, files: list[WrittenFiles]) -> None:
        """Delete the data files of ``files`` (written, never committed)."""
        with self._errors("abort"):
            handle = self._catalog()
            for part in files:
                try:
                    io = self._table(part.dataset).io
                except Exception:  # the catalog's own FileIO reaches the same storage
                    io = handle.io()
                for path in part.files:
                    try:
                        io.delete(path)
                    except FileNotFoundError:
                        pass
                    except OSError as exc:
                        self.ctx.logger.warning(
                            "could not delete %s: %s", path, handle.redact(first_line(exc))
                        )

    def close(self) -> None:
        """Forget cached tables; the catalog connection is released with the writer."""
        with self._lock:
            self._tables.clear()
            handle, self._handle = self._handle, None
        engine = getattr(handle.catalog, "engine", None) if handle else None
        if engine is not None:  # the SQL catalog's connection pool
            engine.dispose()

    # -- helpers ----------------------------------------------------------------------------------

    def identifier(self, dataset_name: str) -> tuple[str, ...]:
        """``(namespace…, table)`` of a dataset."""
        return self.config.settings_for(dataset_name)[0]

    def _catalog(self) -> CatalogHandle:
        with self._lock:
            if self._handle is None:
                self._handle = open_catalog(self.config.catalog, self.ctx.work_dir)
            return self._handle

    def _create(self, identifier: tuple[str, ...], schema: object, partition_by: list[str]) -> Table:
        catalog = self._catalog().catalog
        spec = (
            partitioning.build_spec(schema, partition_by)  # type: ignore[arg-type]
            if partition_by
            else UNPARTITIONED_PARTITION_SPEC
        )
        properties = {
            "write.parquet.compression-codec": _CODECS.get(self.config.compression, self.config.compression),
            **self.config.table_properties,
        }
        try:
            table = catalog.create_table(
                identifier, schema=schema, partition_spec=spec, properties=properties
            )
        except TableAlreadyExistsError:  # created concurrently: evolve like any existing table
            table = catalog.load_table(identifier)
            evolution = plan_evolution(table.schema(), schema)  # type: ignore[arg-type]
            if evolution.union is not None:
                with table.update_schema() as update:
                    update.union_by_name(evolution.union)
        else:
            self.ctx.logger.info("created table %s at %s", ".".join(identifier), table.location())
        return table

    def _table(self, dataset_name: str) -> Table:
        with self._lock:
            table = self._tables.get(dataset_name)
        if table is None:
            table = self._catalog().catalog.load_table(self.identifier(dataset_name))
            with self._lock:
                table = self._tables.setdefault(dataset_name, table)
        return table

    def _mode(self, dataset_name: str) -> Mode:
        mode = self._modes.get(dataset_name) or self.ctx.settings.get("mode") or "append"
        if mode not in ("append", "overwrite", "merge"):
            raise ConfigError(f"target.mode: unknown mode {mode!r}", hint="Use append, overwrite or merge")
        return mode  # type: ignore[return-value]

    def _options(self) -> WriteOptions:
        return WriteOptions(
            target_file_bytes=self.config.target_file_size_bytes,
            row_group_bytes=self.config.row_group_size_bytes
            or budget.row_group_bytes(self.ctx.memory_bytes, self.ctx.parallelism),
            compression=self.config.compression,
            compression_level=self.config.compression_level,
        )

    @staticmethod
    def _data_files(table: Table, part: WrittenFiles) -> list[DataFile]:
        data_files = part.extra.get("data_files")
        if data_files is not None:
            return list(data_files)
        # WrittenFiles that crossed a process boundary without their metadata: read the footers again
        return [parquet_file_to_data_file(table.io, table.metadata, path) for path in part.files]

    @contextmanager
    def _errors(self, stage: str) -> Iterator[None]:
        """Give every error the job and plugin, scrub secrets, and map foreign exceptions to ours."""
        try:
            yield
        except _UpstreamError as wrapper:  # the reader's failure, not ours: pass it on untouched
            raise wrapper.original from None
        except (CommitFailed, CommitStateUnknown) as exc:
            raise exc.with_context(job=self.ctx.job, plugin=self.ctx.plugin) from exc.__cause__
        except DativoError as exc:
            if stage == "commit":  # nothing was published: say so in the commit's own terms
                raise CommitFailed(exc.message, job=self.ctx.job, plugin=self.ctx.plugin, hint=exc.hint) from exc
            raise exc.with_context(job=self.ctx.job, plugin=self.ctx.plugin) from exc.__cause__
        except Exception as exc:
            handle = self._handle
            text = handle.redact(first_line(exc)) if handle else first_line(exc)
            where = handle.description if handle else "Iceberg target"
            job, plugin = self.ctx.job, self.ctx.plugin
            if stage == "commit":
                raise CommitFailed(
                    f"commit failed before publishing: {type(exc).__name__}: {text}",
                    job=job,
                    plugin=plugin,
                    hint="Nothing was published; rerun the job",
                ) from None
            if (full := commits.no_room(exc)) is not None:  # the data files, the metadata or the catalog's file
                message = f"{where}: cannot {stage}: {full}"
                hint = f"{commits.NO_ROOM_HINT} Nothing was published, and the files this run wrote are deleted."
                if stage == "commit":
                    raise CommitFailed(message, job=job, plugin=plugin, hint=hint) from None
                raise ConnectionFailed(message, job=job, plugin=plugin, hint=hint) from None
            if handle is not None and (refused_credentials(exc) or unreachable(exc)):  # e.g. an expired token
                raise handle.error(f"{stage} failed", exc).with_context(job=job, plugin=plugin) from None
            if _is_storage_access_error(exc):
                raise ConnectionFailed(
                    f"{where}: storage refused the {stage}: {text}",
                    job=job,
                    plugin=plugin,
                    hint="Check the storage endpoint and credentials",
                ) from None
            raise PluginFailed(
                f"{stage} failed: {type(exc).__name__}: {text}",
                role="writer",
                stage=stage,
                job=job,
                plugin=plugin,
            ) from None


class _UpstreamError(Exception):
    """Carries an exception raised by the input stream through the writer's error translation."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


def _upstream(stream: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    """The stream's batches; an exception from the stream itself is marked as the reader's."""
    batches = iter(stream)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:
            raise _UpstreamError(exc) from exc
        yield batch


_ACCESS_MARKERS = (
    "AWS Error",
    "ACCESS_DENIED",
    "SIGNATURE",
    "InvalidAccessKeyId",
    "access denied",
    "Connection refused",
    "Couldn't connect",
    "Could not connect",
)


def _is_storage_access_error(exc: BaseException) -> bool:
    if isinstance(exc, PermissionError):
        return True
    if isinstance(exc, OSError):
        text = str(exc)
        return any(marker.lower() in text.lower() for marker in _ACCESS_MARKERS)
    return False


__all__ = ["IcebergWriter"]
