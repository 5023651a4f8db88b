"""The one Iceberg commit of a run: data files, incremental state and run id in a single snapshot.

State and idempotency live in the snapshot summary, so they are published atomically with the data:

- ``dativo.run-id``: the run that made the snapshot;
- ``dativo.job``: the job's name;
- ``dativo.state``: the JSON of the state the run committed (``null`` when it had none);
- ``dativo.mode``: ``append``, ``overwrite`` or ``merge``.

A run is committed when a snapshot in the current snapshot's ancestry carries its job and run id; the
state of a job is the ``dativo.state`` of the newest such snapshot of that job (snapshots of other
writers in between are skipped). Rolling the table back past a run therefore also rolls back its state.

Modes, each one catalog commit (one Iceberg transaction, one snapshot):

- ``append``: a fast append of the new files;
- ``overwrite``: an overwrite snapshot that removes every live data file and adds the new ones;
- ``merge``: copy-on-write upsert by primary key. Existing files that may hold an incoming key
  (pruned with the key columns' min/max) are read one at a time; rows whose key arrives again are
  dropped, the rest rewritten; old files are replaced and the new files added in one overwrite snapshot.
  Incoming rows are not deduplicated among themselves (a warning says so).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from functools import reduce
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.exceptions import CommitFailedException, CommitStateUnknownException, ValidationException
from pyiceberg.expressions import AlwaysTrue, And, BooleanExpression, GreaterThanOrEqual, LessThanOrEqual
from pyiceberg.io.pyarrow import ArrowScan
from pyiceberg.manifest import DataFile, DataFileContent, ManifestContent
from pyiceberg.table import Table
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Snapshot, ancestors_of
from pyiceberg.types import (
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    StringType,
    TimestampType,
    TimestamptzType,
)

from dativo.api import CommitInfo, Mode, State
from dativo.errors import CommitFailed, CommitStateUnknown, ConfigError
from dativo.writers.iceberg.conform import conform_batch
from dativo.writers.iceberg.files import DataFileWriter

RUN_ID = "dativo.run-id"
JOB = "dativo.job"
STATE = "dativo.state"
MODE = "dativo.mode"

_RANGE_TYPES = (
    IntegerType,
    LongType,
    FloatType,
    DoubleType,
    DecimalType,
    StringType,
    DateType,
    TimestampType,
    TimestamptzType,
)

WriterFactory = Callable[[TableMetadata], DataFileWriter]


def ancestry(metadata: TableMetadata) -> Iterator[Snapshot]:
    """The current snapshot and its ancestors, newest first."""
    yield from ancestors_of(metadata.current_snapshot(), metadata)


def find_run(metadata: TableMetadata, job: str, run_id: str) -> Snapshot | None:
    """The snapshot in the current ancestry that ``job``'s run ``run_id`` committed, if any."""
    for snapshot in ancestry(metadata):
        summary = snapshot.summary
        if summary is not None and summary.get(RUN_ID) == run_id and summary.get(JOB) == job:
            return snapshot
    return None


def last_state(metadata: TableMetadata, job: str) -> tuple[bool, State | None]:
    """``(found, state)`` of the newest snapshot of ``job`` in the current ancestry."""
    for snapshot in ancestry(metadata):
        summary = snapshot.summary
        if summary is not None and summary.get(JOB) == job:
            text = summary.get(STATE)
            return True, (json.loads(text) if text else None)
    return False, None


def snapshot_properties(job: str, run_id: str, state: State | None, mode: Mode) -> dict[str, str]:
    """The summary properties that make a snapshot a Dativo commit."""
    return {
        RUN_ID: run_id,
        JOB: job,
        STATE: json.dumps(state, sort_keys=True, separators=(",", ":"), default=str),
        MODE: mode,
    }


def live_data_files(table: Table) -> list[DataFile]:
    """Every data file of the current snapshot."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return []
    files = []
    for manifest in snapshot.manifests(table.io):
        if manifest.content != ManifestContent.DATA:
            continue
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            if entry.data_file.content == DataFileContent.DATA:
                files.append(entry.data_file)
    return files


def _comparable(arr: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if isinstance(arr.type, pa.BaseExtensionType):
        arr = arr.storage
    if pa.types.is_string(arr.type):
        arr = arr.cast(pa.large_string())
    elif pa.types.is_binary(arr.type):
        arr = arr.cast(pa.large_binary())
    return arr


def read_keys(table: Table, files: list[DataFile], key: tuple[str, ...]) -> pa.Table:
    """The key columns of the new data files, in comparable Arrow types."""
    parts = []
    for data_file in files:
        with table.io.new_input(data_file.file_path).open() as stream:
            parts.append(pq.ParquetFile(stream).read(columns=list(key)))
    keys = pa.concat_tables(parts) if parts else pa.table({k: pa.array([], pa.null()) for k in key})
    return pa.table({k: _comparable(keys.column(k)) for k in key})


def _key_filter(table: Table, keys: pa.Table, key: tuple[str, ...]) -> BooleanExpression:
    """A min/max filter on the key columns that prunes files which cannot hold an incoming key."""
    schema = table.schema()
    terms: list[BooleanExpression] = []
    for name in key:
        if not isinstance(schema.find_field(name).field_type, _RANGE_TYPES):
            continue
        bounds = pc.min_max(keys.column(name))
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        if low is None or high is None:
            continue
        terms += [GreaterThanOrEqual(name, low), LessThanOrEqual(name, high)]
    return reduce(And, terms) if terms else AlwaysTrue()


def _kept_rows(existing: pa.Table, keys: pa.Table, key: tuple[str, ...]) -> pa.Table:
    """The rows of ``existing`` whose key does not arrive again."""
    if len(key) == 1:
        values = _comparable(existing.column(key[0]))
        matched = pc.is_in(values, value_set=keys.column(key[0]).cast(values.type))
        return existing.filter(pc.invert(matched))
    left = pa.table(
        {
            **{k: _comparable(existing.column(k)) for k in key},
            "__row": pa.array(range(existing.num_rows), pa.int64()),
        }
    )
    right = pa.table({k: keys.column(k).cast(left.column(k).type) for k in key})
    kept = left.join(right, keys=list(key), join_type="left anti", use_threads=False)
    return existing.take(kept.sort_by("__row").column("__row"))


def plan_merge(
    table: Table,
    files: list[DataFile],
    key: tuple[str, ...],
    new_writer: WriterFactory,
    logger: logging.Logger,
) -> tuple[list[DataFile], list[DataFile], DataFileWriter]:
    """Find the existing files an upsert touches and rewrite them without the incoming keys.

    Returns:
        ``(files to delete, rewritten files to add, the writer that wrote them)``.
    """
    missing = [k for k in key if k not in table.schema().column_names]
    if missing:
        raise ConfigError(
            f"merge: primary-key column '{missing[0]}' is not in table {'.'.join(table.name())}"
        )
    keys = read_keys(table, files, key)
    distinct = keys.group_by(list(key), use_threads=False).aggregate([]).num_rows
    if distinct < keys.num_rows:
        logger.warning(
            "merge: %d incoming rows share a primary key with another incoming row; all of them are kept",
            keys.num_rows - distinct,
        )
    writer = new_writer(table.metadata)
    deleted: list[DataFile] = []
    if keys.num_rows == 0 or table.current_snapshot() is None:
        return deleted, [], writer
    scan = ArrowScan(table.metadata, table.io, projected_schema=table.schema(), row_filter=AlwaysTrue())
    schema = table.schema()
    try:
        for task in table.scan(row_filter=_key_filter(table, keys, key)).plan_files():
            existing = scan.to_table([task])
            kept = _kept_rows(existing, keys, key)
            if kept.num_rows == existing.num_rows:
                continue
            deleted.append(task.file)
            for batch in kept.to_batches():
                writer.write(conform_batch(batch, schema))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return deleted, writer.data_files, writer


def commit(
    table: Table,
    files: list[DataFile],
    *,
    mode: Mode,
    state: State | None,
    job: str,
    run_id: str,
    primary_key: tuple[str, ...],
    new_writer: WriterFactory,
    reload: Callable[[], Table],
    logger: logging.Logger,
) -> CommitInfo:
    """Publish ``files`` and ``state`` in one Iceberg commit (see the module docstring).

    Args:
        table: The freshly loaded target table.
        files: The ``DataFile`` entries of every split of the run.
        mode: ``append``, ``overwrite`` or ``merge``.
        state: The incremental state to publish with the data.
        job: The job's name.
        run_id: The run's id; a run already in the ancestry is not committed twice.
        primary_key: The upsert key of ``merge``.
        new_writer: Makes a data-file writer for rewritten files (``merge``).
        reload: Loads the table again, to settle an unclear commit outcome.
        logger: Where to say what was committed.

    Raises:
        CommitFailed: Nothing was published.
        CommitStateUnknown: The outcome could not be determined; rerun with the same run id.
    """
    done = find_run(table.metadata, job, run_id)
    if done is not None:
        logger.info("run %s was already committed as snapshot %s; nothing to do", run_id, done.snapshot_id)
        return CommitInfo(commit_id=str(done.snapshot_id), rows=0, no_op=True)

    rows = sum(f.record_count for f in files)
    current = table.current_snapshot()
    if not files and mode != "overwrite":
        found, previous = last_state(table.metadata, job)
        if state is None or (found and previous == state):
            logger.info("no rows and no new state: nothing to commit")
            return CommitInfo(commit_id=str(current.snapshot_id) if current else None, rows=0)

    if mode == "merge" and not primary_key:
        raise ConfigError(
            "mode 'merge' needs the dataset's primary key, and this dataset has none",
            hint="Declare a primary key in the source, or use mode 'append' or 'overwrite'",
        )

    props = snapshot_properties(job, run_id, state, mode)
    rewriter: DataFileWriter | None = None
    deleted: list[DataFile] = []
    added: list[DataFile] = list(files)
    if mode == "overwrite":
        deleted = live_data_files(table)
    elif mode == "merge" and files:
        deleted, rewritten, rewriter = plan_merge(table, files, primary_key, new_writer, logger)
        added = rewritten + added

    tx = table.transaction()
    update = tx.update_snapshot(snapshot_properties=props)
    try:
        if deleted or mode == "overwrite":
            with update.overwrite() as producer:
                for data_file in deleted:
                    producer.delete_data_file(data_file)
                for data_file in added:
                    producer.append_data_file(data_file)
        else:
            with update.fast_append() as producer:
                for data_file in added:
                    producer.append_data_file(data_file)
        committed = tx.commit_transaction()
    except (CommitFailedException, ValidationException) as exc:
        _discard(rewriter)
        raise CommitFailed(
            f"the commit to table {'.'.join(table.name())} was refused: {_line(exc)}",
            hint="Nothing was published; rerun the job",
        ) from None
    except Exception as exc:  # settle what happened before saying anything
        snapshot = _settle(reload, job, run_id)
        if snapshot is not None and snapshot is not _UNKNOWN:
            logger.warning(
                "the commit reported %s but snapshot %s is in the table", _line(exc), snapshot.snapshot_id
            )
            return CommitInfo(commit_id=str(snapshot.snapshot_id), rows=rows)
        if isinstance(exc, CommitStateUnknownException) or snapshot is _UNKNOWN:
            raise CommitStateUnknown(
                f"the commit to table {'.'.join(table.name())} may or may not have landed: {_line(exc)}",
                hint=f"Rerun with the same run id ({run_id}): it commits once, or finds the commit done",
            ) from None
        _discard(rewriter)
        raise CommitFailed(
            f"the commit to table {'.'.join(table.name())} failed: {_line(exc)}",
            hint="Nothing was published; rerun the job",
        ) from None

    snapshot = find_run(committed.metadata, job, run_id)
    snapshot_id = snapshot.snapshot_id if snapshot is not None else committed.current_snapshot().snapshot_id
    logger.info(
        "committed snapshot %s to %s (%s): %d rows in %d new files, %d files replaced",
        snapshot_id,
        ".".join(table.name()),
        mode,
        rows,
        len(files),
        len(deleted),
    )
    return CommitInfo(commit_id=str(snapshot_id), rows=rows)


_UNKNOWN: Any = object()


def _settle(reload: Callable[[], Table], job: str, run_id: str) -> Snapshot | None:
    """After an unclear failure: the run's snapshot if it landed, ``None`` if not, else ``_UNKNOWN``."""
    try:
        return find_run(reload().metadata, job, run_id)
    except Exception:  # the table cannot be read: the outcome stays unknown
        return _UNKNOWN


def _discard(writer: DataFileWriter | None) -> None:
    if writer is not None:
        writer.abort()


def _line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


__all__ = [
    "JOB",
    "MODE",
    "RUN_ID",
    "STATE",
    "ancestry",
    "commit",
    "find_run",
    "last_state",
    "live_data_files",
    "snapshot_properties",
]
