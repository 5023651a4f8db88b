"""One writer's datasets: a store per dataset, and the steps of a run that every file writer takes alike."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from dativo.errors import CommitFailed, ConfigError
from dativo.names import UnsafeName
from dativo.storage.options import StoreOptions
from dativo.storage.sink import ROW_GROUP_MB, ParquetSink, StagedFiles
from dativo.storage.record import CommitRecord
from dativo.storage.store import NOTHING_PUBLISHED, Commit, Store

if TYPE_CHECKING:
    from dativo.storage.sink import Encryption


class Written(Protocol):
    """What one split staged; ``dativo.api.WrittenFiles`` is one."""

    dataset: str
    files: list[str]
    rows: int


class DatasetStores:
    """The stores of one writer's run, one per dataset, and how the run prepared each dataset. Thread-safe.

    A writer of files delegates its contract to these methods: :meth:`check`, :meth:`prepare`,
    :meth:`write`, :meth:`commit`, :meth:`abort` and :meth:`close` (the protocol is in
    :mod:`dativo.storage.store`).

    Args:
        options: The writer's options.
        job: The job's name.
        run_id: The run's id: what this writer stages goes into the run's staging.
        label: How messages name the path option (``target.path``, ``target.writer.options.path`` …).
        logger: Where the stores' warnings go.
    """

    def __init__(
        self,
        options: StoreOptions,
        *,
        job: str,
        run_id: str,
        label: str = "path",
        logger: logging.Logger | None = None,
    ) -> None:
        self.options = options
        self.job = job
        self.run_id = run_id
        self.label = label
        self.logger = logger
        self._lock = threading.Lock()
        self._stores: dict[str, Store] = {}
        self._modes: dict[str, str] = {}
        self._schemas: dict[str, pa.Schema] = {}

    def get(self, dataset: str) -> Store:
        """The store of ``dataset``, opened on first use.

        Args:
            dataset: The dataset's name (it replaces ``{dataset}`` in the path).

        Raises:
            UnsafeName: The dataset's name could lead out of the path's folder.
            ConfigError: The dataset's folder cannot be a target (e.g. ``path: /{dataset}``).
        """
        with self._lock:
            store = self._stores.get(dataset)
            if store is None:
                try:
                    store = self.options.store(dataset, logger=self.logger, label=self.label)
                except UnsafeName:
                    raise
                except ValueError as exc:
                    raise ConfigError(str(exc), hint="Choose a folder of its own for the target.") from None
                self._stores[dataset] = store
            return store

    def check(self) -> None:
        """Check that a dataset's folder could be written (S3: bucket and credentials; local: permissions).

        Raises:
            ConnectionFailed: Naming what failed.
        """
        self.options.store("dataset", logger=self.logger).check(f"{self.label} {self.options.path!r}")

    def prepare(self, dataset: str, schema: pa.Schema, mode: str) -> Store:
        """Remember the dataset's schema and mode, and prepare its store for the run.

        Args:
            dataset: The dataset.
            schema: The schema the run writes.
            mode: ``append`` or ``overwrite``.

        Returns:
            The dataset's store.

        Raises:
            ConfigError: A second dataset, but :attr:`StoreOptions.path` has no ``{dataset}`` placeholder.
            ConnectionFailed: The store cannot be prepared.
        """
        with self._lock:
            self._modes[dataset] = mode
            self._schemas[dataset] = schema
            if len(self._modes) > 1 and "{dataset}" not in self.options.path:
                raise ConfigError(
                    f"the source produces several datasets but {self.label} has no {{dataset}} placeholder",
                    hint="Write e.g. path: out/{dataset}.",
                )
        store = self.get(dataset)
        with store.errors("prepare the target"):
            store.prepare(self.run_id, mode)
        return store

    def mode(self, dataset: str) -> str:
        """The mode ``dataset`` was prepared with (``append`` if it was not).

        Args:
            dataset: The dataset.
        """
        with self._lock:
            return self._modes.get(dataset, "append")

    def schema(self, dataset: str) -> pa.Schema | None:
        """The schema ``dataset`` was prepared with (``None`` if it was not).

        Args:
            dataset: The dataset.
        """
        with self._lock:
            return self._schemas.get(dataset)

    def write(
        self,
        dataset: str,
        stream: pa.RecordBatchReader,
        *,
        name: Callable[[int], str],
        row_group_rows: int,
        row_group_mb: int = ROW_GROUP_MB,
        options: Mapping[str, Any] | None = None,
        encryption: Encryption | None = None,
    ) -> StagedFiles:
        """Stage ``stream`` as Parquet files of ``dataset``, rolling over at ``target_file_size_mb``.

        Args:
            dataset: The dataset.
            stream: The split's batches.
            name, row_group_rows, row_group_mb, options, encryption: As for
                :class:`~dativo.storage.sink.ParquetSink`.

        Raises:
            ConnectionFailed: The storage failed (a full disk says so); what the split staged is deleted.
        """
        store = self.get(dataset)
        sink = ParquetSink(
            store,
            self.run_id,
            name=name,
            file_size_mb=self.options.target_file_size_mb,
            row_group_rows=row_group_rows,
            row_group_mb=row_group_mb,
            options=options,
            encryption=encryption,
        )
        with store.errors("write a data file"):
            return sink.write(stream)

    def commit(
        self,
        dataset: str,
        written: Iterable[Written],
        run_id: str,
        extra: Mapping[str, Any] | Callable[[int], Mapping[str, Any]] | None = None,
        precondition: Callable[[list[CommitRecord]], str | None] | None = None,
    ) -> Commit:
        """Publish what the splits of ``dataset`` staged, in the mode it was prepared with.

        Args:
            dataset: The dataset.
            written: What its splits staged.
            run_id: The run id to commit under (the idempotency key).
            extra: The writer's fields of the record, or a function of the slot returning them.
            precondition: See :meth:`Store.commit`.

        Returns:
            What :meth:`Store.commit` did.

        Raises:
            CommitFailed: Nothing was published.
            CommitStateUnknown: The commit point may have been passed.
        """
        written = list(written)
        try:
            store = self.get(dataset)
        except (UnsafeName, ConfigError) as exc:
            raise CommitFailed(f"refused to commit: {exc}", hint=NOTHING_PUBLISHED) from None
        return store.commit(
            job=self.job,
            run_id=run_id,
            staging=self.run_id,
            mode=self.mode(dataset),
            files=[file for split in written for file in split.files],
            rows=sum(split.rows for split in written),
            extra=extra,
            precondition=precondition,
        )

    def abort(self, written: Iterable[Written]) -> None:
        """Delete the run's whole staging in each dataset this writer opened or ``written`` names.

        Args:
            written: What the splits staged (missing files are fine).

        Raises:
            UnsafeName: A dataset or file named in ``written`` lies outside what the run staged; nothing
                outside it was deleted, and every dataset's staging was deleted all the same.
        """
        by_dataset: dict[str, list[str]] = {}
        for split in written:
            by_dataset.setdefault(split.dataset, []).extend(split.files)
        with self._lock:
            opened = set(self._stores)
        refused: list[Exception] = []
        for dataset in sorted(opened | set(by_dataset)):
            try:
                self.get(dataset).abort(self.run_id, by_dataset.get(dataset, []))
            except (UnsafeName, ConfigError) as exc:
                refused.append(exc)
        if refused:
            raise refused[0]

    def close(self) -> None:
        """Release what the stores hold for the run (the leases of local staging folders)."""
        with self._lock:
            stores = list(self._stores.values())
        for store in stores:
            store.close()


__all__ = ["DatasetStores", "Written"]
