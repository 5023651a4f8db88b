"""The one Iceberg commit of a run: data files, incremental state and run id in a single snapshot.

State and idempotency live in the snapshot summary, so they are published atomically with the data:

- ``dativo.run-id``: the run that made the snapshot;
- ``dativo.job``: the job's name;
- ``dativo.dataset``: the source dataset the snapshot published (several may feed one table);
- ``dativo.state``: the JSON of the state the run committed (``null`` when it had none);
- ``dativo.mode``: ``append``, ``overwrite`` or ``merge``.

A run has committed a dataset when a snapshot in the current snapshot's ancestry carries its job, run id
and dataset; the state of a job's dataset is the ``dativo.state`` of the newest such snapshot (snapshots of
other writers, jobs and datasets in between are skipped; a snapshot without ``dativo.dataset``, written
before it existed, counts for every dataset of its job). Rolling the table back past a run therefore also
rolls back its state.

**Overlapping runs.** The commit is a compare-and-swap on the state the run started from: when the writer
told the engine a dataset's state (:meth:`IcebergWriter.state`), the commit first checks, on the freshly
loaded table, that this is still the newest state of that job and dataset, and the catalog then accepts
the new metadata only if no other commit landed since that load. A run that loses the race publishes
nothing (``CommitFailed``): the winner's rows are not read and appended twice. Such a commit does not let
pyiceberg rebase it onto a newer table by itself; on a conflict it reloads the table and checks the state
again: another dataset's or writer's commit is retried on top, another run of the same dataset wins.

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
import sqlite3
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
from dativo.state import same_state, state_json
from dativo.storage.store import disk_full
from dativo.writers.iceberg.conform import conform_batch
from dativo.writers.iceberg.files import DataFileWriter

RUN_ID = "dativo.run-id"
JOB = "dativo.job"
DATASET = "dativo.dataset"
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


NO_ROOM_HINT = ("Free space on the disk that holds the warehouse and the catalog (or raise the quota or the "
                "file-size limit), then rerun the job.")


def no_room(exc: BaseException) -> str | None:
    """Why ``exc`` means that the storage has no room (a full disk, a quota, a file-size limit), else ``None``:
    for the data files, the table's metadata, or the embedded catalog's SQLite file."""
    if (full := disk_full(exc)) is not None:
        return full
    if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return "the disk is full (the catalog's SQLite file cannot grow)"
    return None


def ancestry(metadata: TableMetadata) -> Iterator[Snapshot]:
    """The current snapshot and its ancestors, newest first."""
    yield from ancestors_of(metadata.current_snapshot(), metadata)


def _ours(snapshot: Snapshot, job: str, dataset: str | None) -> bool:
    """Whether ``snapshot`` is a commit of ``job``'s ``dataset`` (any dataset when ``None``)."""
    summary = snapshot.summary
    if summary is None or summary.get(JOB) != job:
        return False
    committed = summary.get(DATASET)
    return dataset is None or committed is None or committed == dataset


def find_run(metadata: TableMetadata, job: str, run_id: str, dataset: str | None = None) -> Snapshot | None:
    """The snapshot in the current ancestry in which ``job``'s run ``run_id`` committed ``dataset``."""
    for snapshot in ancestry(metadata):
        if _ours(snapshot, job, dataset) and snapshot.summary.get(RUN_ID) == run_id:  # type: ignore[union-attr]
            return snapshot
    return None


def last_state(metadata: TableMetadata, job: str, dataset: str | None = None) -> tuple[bool, State | None]:
    """``(found, state)`` of the newest snapshot of ``job``'s ``dataset`` in the current ancestry."""
    for snapshot in ancestry(metadata):
        if _ours(snapshot, job, dataset):
            text = snapshot.summary.get(STATE)  # type: ignore[union-attr]
            return True, (json.loads(text) if text else None)
    return False, None


def snapshot_properties(
    job: str, run_id: str, state: State | None, mode: Mode, dataset: str | None = None
) -> dict[str, str]:
    """The summary properties that make a snapshot a Dativo commit."""
    props = {
        RUN_ID: run_id,
        JOB: job,
        STATE: state_json(state),
        MODE: mode,
    }
    if dataset is not None:
        props[DATASET] = dataset
    return props


def live_data_files(table: Table, *, keep_snapshots: frozenset[int] = frozenset()) -> list[DataFile]:
    """Every data file of the current snapshot, except those added by the snapshots in ``keep_snapshots``."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return []
    files = []
    for manifest in snapshot.manifests(table.io):
        if manifest.content != ManifestContent.DATA:
            continue
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            if entry.data_file.content == DataFileContent.DATA and entry.snapshot_id not in keep_snapshots:
                files.append(entry.data_file)
    return files


def run_snapshots(metadata: TableMetadata, job: str, run_id: str) -> frozenset[int]:
    """The snapshots in the current ancestry that ``job``'s run ``run_id`` made (one per dataset)."""
    return frozenset(
        s.snapshot_id for s in ancestry(metadata)
        if s.summary is not None and s.summary.get(JOB) == job and s.summary.get(RUN_ID) == run_id
    )


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


CAS_ATTEMPTS = 5
"""Commits of a compare-and-swap run tried on a table that other writers keep changing."""


class Conflict(Exception):
    """A compare-and-swap commit met a table that changed since it was loaded: reload, then commit again.

    :func:`commit` checks the state again on the reloaded table, so a retry publishes only if no other run
    of the same job and dataset got there first.
    """


def _without_retries(table: Table) -> Table:
    """``table`` whose commits pyiceberg does not retry on a newer version (in memory only)."""
    properties = {**table.metadata.properties, "commit.retry.num-retries": "0"}
    metadata = table.metadata.model_copy(update={"properties": properties})
    return Table(table.name(), metadata, table.metadata_location, table.io, table.catalog, config=table.config)


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
    dataset: str | None = None,
    started_from: tuple[bool, State | None] | None = None,
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
        dataset: The source dataset (several may feed one table: each keeps its own state and run ids).
        started_from: ``(found, state)`` the run started from; the commit is refused when another run of
            the job has committed this dataset since (see the module docstring). ``None``: not checked.

    Raises:
        CommitFailed: Nothing was published.
        CommitStateUnknown: The outcome could not be determined; rerun with the same run id.
        Conflict: With ``started_from``, the table changed since it was loaded (nothing was published).
    """
    done = find_run(table.metadata, job, run_id, dataset)
    if done is not None:
        logger.info("run %s was already committed as snapshot %s; nothing to do", run_id, done.snapshot_id)
        return CommitInfo(commit_id=str(done.snapshot_id), rows=0, no_op=True)
    if started_from is not None:
        now = last_state(table.metadata, job, dataset)
        if now[0] != started_from[0] or not same_state(now[1], started_from[1]):
            if not files and mode != "overwrite":  # nothing to add: the other run's state simply stays
                logger.info("%s: another run committed meanwhile and this one has no rows", _what(dataset))
                current = table.current_snapshot()
                return CommitInfo(commit_id=str(current.snapshot_id) if current else None, rows=0)
            raise CommitFailed(
                f"another run of job '{job}' committed {_what(dataset)} to table {'.'.join(table.name())} "
                f"after this run started, so this run's rows may repeat its rows",
                hint="Nothing was published. Run the job again: it continues from the newer state "
                "(avoid overlapping runs of one incremental job).",
            )

    rows = sum(f.record_count for f in files)
    current = table.current_snapshot()
    if not files and mode != "overwrite":
        found, previous = last_state(table.metadata, job, dataset)
        if state is None or (found and previous == state):
            logger.info("%s: no new rows and no new state: nothing committed, table %s unchanged",
                        _what(dataset), ".".join(table.name()))
            return CommitInfo(commit_id=str(current.snapshot_id) if current else None, rows=0)

    if mode == "merge" and not primary_key:
        raise ConfigError(
            "mode 'merge' needs the dataset's primary key, and this dataset has none",
            hint="Declare a primary key in the source, or use mode 'append' or 'overwrite'",
        )

    props = snapshot_properties(job, run_id, state, mode, dataset)
    rewriter: DataFileWriter | None = None
    deleted: list[DataFile] = []
    added: list[DataFile] = list(files)
    if mode == "overwrite":  # what this run's other datasets published into the same table stays
        deleted = live_data_files(table, keep_snapshots=run_snapshots(table.metadata, job, run_id))
    elif mode == "merge" and files:
        deleted, rewritten, rewriter = plan_merge(table, files, primary_key, new_writer, logger)
        added = rewritten + added

    tx = (_without_retries(table) if started_from is not None else table).transaction()
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
        if started_from is not None and isinstance(exc, CommitFailedException):
            raise Conflict() from exc
        raise CommitFailed(
            f"the commit to table {'.'.join(table.name())} was refused: {_line(exc)}",
            hint="Nothing was published; rerun the job",
        ) from None
    except Exception as exc:  # settle what happened before saying anything
        snapshot = _settle(reload, job, run_id, dataset)
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
        full = no_room(exc)
        raise CommitFailed(
            f"the commit to table {'.'.join(table.name())} failed: {full or _line(exc)}",
            hint=f"{NO_ROOM_HINT} Nothing was published." if full else "Nothing was published; rerun the job",
        ) from None

    snapshot = find_run(committed.metadata, job, run_id, dataset)
    snapshot_id = snapshot.snapshot_id if snapshot is not None else committed.current_snapshot().snapshot_id
    logger.info(
        "%s: committed snapshot %s to %s (%s%s): %s rows in %d new file(s)%s",
        _what(dataset),
        snapshot_id,
        ".".join(table.name()),
        mode,
        ", first load" if current is None else "",
        f"{rows:,}",
        len(files),
        (f"; {len(deleted)} earlier file(s) rewritten without the rows this run updates" if mode == "merge"
         else f"; {len(deleted)} earlier file(s) replaced") if deleted else "",
    )
    return CommitInfo(commit_id=str(snapshot_id), rows=rows)


_UNKNOWN: Any = object()


def _what(dataset: str | None) -> str:
    return f"dataset '{dataset}'" if dataset else "its data"


def _settle(reload: Callable[[], Table], job: str, run_id: str, dataset: str | None) -> Snapshot | None:
    """After an unclear failure: the run's snapshot if it landed, ``None`` if not, else ``_UNKNOWN``."""
    try:
        return find_run(reload().metadata, job, run_id, dataset)
    except Exception:  # the table cannot be read: the outcome stays unknown
        return _UNKNOWN


def _discard(writer: DataFileWriter | None) -> None:
    if writer is not None:
        writer.abort()


def _line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


__all__ = [
    "CAS_ATTEMPTS",
    "DATASET",
    "JOB",
    "Conflict",
    "MODE",
    "RUN_ID",
    "STATE",
    "ancestry",
    "commit",
    "find_run",
    "last_state",
    "live_data_files",
    "run_snapshots",
    "snapshot_properties",
]
