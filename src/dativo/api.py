"""The plugin contract: everything a reader or writer implementation needs, and nothing else.

This module is Dativo's stable public face. A plugin imports from here only; what is exported is pinned
by a test and follows :data:`API_VERSION` (semver: a minor version adds, a major version breaks).

A reader only has to implement :meth:`Reader.read`; a writer only :meth:`Writer.write` and
:meth:`Writer.commit`. Everything else has a sensible default.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from dativo import API_VERSION, budget
from dativo.counters import Counters
from dativo.errors import (
    CommitFailed,
    CommitStateUnknown,
    ConfigError,
    ConnectionFailed,
    DativoError,
    PluginFailed,
    SchemaMismatch,
)
from dativo.storage import CommitRecord, DatasetStores, ParquetSink, S3Settings, Store, StoreOptions, open_store

# API_VERSION (imported above): the version of this contract. Plugins declare the range they support
# in ``api_version``.

Mode = Literal["append", "overwrite", "merge"]
"""How a writer publishes a run: add rows, replace the table, or upsert by primary key."""

Role = Literal["reader", "writer"]
"""Which side of the pipeline a plugin serves."""

State = dict[str, Any]
"""Incremental state of one dataset: a JSON-serialisable mapping, committed together with the data."""


@runtime_checkable
class ArrowStreamExportable(Protocol):
    """Anything that exports an Arrow C stream (pyarrow, polars, pyo3-arrow, nanoarrow, a Rust plugin …)."""

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...


ArrowStream = ArrowStreamExportable | Iterable[pa.RecordBatch] | pa.RecordBatchReader | pa.Table
"""What :meth:`Reader.read` may return."""


class NoOptions(BaseModel):
    """The default ``Config`` of a plugin: it accepts no options."""

    model_config = ConfigDict(extra="forbid")


def config_from_schema(schema: str | Mapping[str, Any], *, name: str = "Config") -> type[BaseModel]:
    """A plugin's ``Config`` made from the JSON Schema of its options, for options declared in another language.

    A Rust plugin declares its options once, as a serde struct with ``schemars::JsonSchema``, and publishes
    the schema (``dativo_plugin::options_schema``); its Python class says
    ``Config = config_from_schema(_native.options_schema())``. The host then checks the job's options
    against that schema with the messages a pydantic ``Config`` gives (the YAML line, "did you mean"),
    ``dativo plugins info`` shows it, and attributes read the options with the schema's defaults. Values
    are checked as JSON types, never converted; pass ``config.model_dump(by_alias=True,
    exclude_unset=True)`` to the native side, which fills in its own defaults.

    Args:
        schema: The JSON Schema, as a document or already parsed.
        name: The class name.

    Raises:
        ConfigError: ``schema`` is not a JSON object.
    """
    import json

    from dativo.plugins.options import PluginOptions, declared  # only plugins declared elsewhere need it

    try:
        parsed = json.loads(schema) if isinstance(schema, str) else dict(schema)
    except ValueError as exc:
        raise ConfigError(f"the options schema is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ConfigError(f"an options schema must be a JSON object, not {type(parsed).__name__}")
    return declared(PluginOptions, parsed, name=name)


@dataclass(frozen=True)
class Dataset:
    """One table, file set or stream a reader can produce.

    Attributes:
        name: Stable name, e.g. ``public.orders``; the target table defaults to its last part.
        schema: The Arrow schema every batch will have; ``None`` means "the first batch decides".
        primary_key: Columns that identify a row (used for splits, merge and cursor tie-breaks).
        cursor_candidates: Columns usable as an incremental cursor (monotonic timestamps, sequences).
        cursor: This dataset's own incremental cursor, when the reader's per-dataset settings give one;
            it replaces the job's ``incremental.cursor`` for this dataset (and makes it incremental).
        estimated_rows: The source's estimate of its size in rows, if it has one (shown by discover).
        details: JSON-serialisable facts for people (kind, partitions, source column types …), shown by
            ``dativo discover``; the engine does not act on them.
    """

    name: str
    schema: pa.Schema | None = None
    primary_key: tuple[str, ...] = ()
    cursor_candidates: tuple[str, ...] = ()
    cursor: str | None = None
    estimated_rows: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Split:
    """One independent unit of reading: a key range, a file, a page range …

    ``params`` must be JSON-serialisable so a split can travel to another process or machine.
    """

    dataset: str
    id: str = "0"
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class WrittenFiles:
    """What :meth:`Writer.write` produced for one split. Written, but not yet visible to anyone.

    Attributes:
        dataset: The dataset the files belong to.
        split: The split id they came from.
        files: Paths or URIs of the data files.
        rows: Rows in those files.
        bytes: Bytes in those files.
        extra: Writer-private details the commit needs (e.g. Iceberg data-file metadata).
    """

    dataset: str
    split: str
    files: list[str] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CommitInfo:
    """The result of one atomic commit.

    Attributes:
        commit_id: The target's id of what was published (snapshot id, log version …).
        rows: Rows published by this commit.
        no_op: ``True`` when this run id had already been committed and nothing was done; the engine
            then passes this run's files to ``Writer.abort`` so they do not linger unreferenced.
    """

    commit_id: str | None
    rows: int = 0
    no_op: bool = False


@dataclass(frozen=True)
class Context:
    """What the engine tells a plugin about the job it runs in.

    Attributes:
        job: The job's name.
        run_id: Unique id of this run; commits carry it so a rerun of the same run is a no-op.
        plugin: How the job named this implementation (for messages).
        logger: A logger whose records are attributed to the plugin, with secrets redacted.
        settings: The connector settings of the job's ``source`` or ``target`` section (``path``,
            ``connection``, ``tables`` …), with ``${VAR}`` references resolved.
        parallelism: How many splits the engine will run at once; a reader may plan that many.
        cursor: The incremental cursor column, if the job asked for incremental reads.
        work_dir: A directory the plugin may use for scratch files.
        memory_bytes: The job's memory budget for buffers, across all splits (``memory_mb``; see
            :mod:`dativo.budget`): a plugin sizes what it holds per split to ``memory_bytes / parallelism``.
        batch_bytes: The size of record batch a reader should build within that budget (a reader option the
            job sets explicitly wins).
        counters: What :meth:`count` added up (the engine reads it; a plugin calls :meth:`count`).
    """

    job: str
    run_id: str
    plugin: str
    logger: logging.Logger
    settings: Mapping[str, Any] = field(default_factory=dict)
    parallelism: int = 1
    cursor: str | None = None
    work_dir: str = ".dativo"
    memory_bytes: int = budget.DEFAULT_MEMORY_MB * budget.MiB
    batch_bytes: int = budget.MAX_BATCH_BYTES
    counters: Counters = field(default_factory=Counters, repr=False, compare=False)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the plugin's counter ``name`` (invalid values read as null, records rejected …).

        The run report shows the totals of the attempt that committed under ``counters``, per side; they
        reach it from plugin processes and Ray workers too. Safe to call from several splits at once.

        Args:
            name: 1-100 letters, digits and ``_ . : / -``, starting with a letter or digit
                (``invalid_numbers.ACCT-BAL``).
            n: An integer from 0 to 2^63 - 1.

        Raises:
            ValueError: A name or count that is neither.
        """
        self.counters.add(name, n)


class _Plugin:
    """What readers and writers share: identity, declared API range and options model."""

    Config: ClassVar[type[BaseModel]] = NoOptions
    """Pydantic model of the plugin's own ``options``; its JSON Schema is published."""
    version: ClassVar[str] = "0.0.0"
    """The plugin's own version (entry-point plugins default to their distribution's version)."""
    language: ClassVar[str] = "python"
    """Implementation language, shown in reports (``python``, ``rust``, ``go``, ``c++``)."""
    api_version: ClassVar[str] = ">=1,<2"
    """PEP 440 specifier of the :data:`API_VERSION` range this plugin supports."""
    allow_fallback: ClassVar[bool] = True
    """``False``: never replace this plugin by the built-in, whatever the job's ``fallback`` says (a writer
    that encrypts must not fall back to one that writes plaintext); its failure fails the job."""
    connector: ClassVar[str | None] = None
    """The connector type (``postgres``, ``csv`` …) whose section keys ``Config`` validates along with
    ``options``; a plugin that reads the same kind of source as a built-in (a native Postgres reader, say)
    sets it to take ``dsn``, ``tables`` … from the job's section. ``None``: ``Config`` sees ``options`` only."""

    def __init__(self, config: BaseModel, ctx: Context) -> None:
        self.config = config
        self.ctx = ctx

    def check(self) -> None:
        """Verify that the source or target is reachable and usable.

        Raises:
            ConnectionFailed: With a message that says what to fix.
        """

    def close(self) -> None:
        """Release connections and files. Called once, whatever happened before."""


class Reader(_Plugin, ABC):
    """A source of Arrow record batches.

    Only :meth:`read` is abstract. A reader may set ``schema`` to declare its output; otherwise the first
    batch establishes it and every later batch must match.
    """

    schema: ClassVar[pa.Schema | None] = None
    """The declared schema of a single-dataset reader, used by the default :meth:`discover`."""

    def discover(self) -> list[Dataset]:
        """List the datasets this reader can produce.

        Returns:
            The datasets, with schemas where known. The default is one dataset named after the job,
            with the declared ``schema``.
        """
        return [Dataset(name=self.ctx.job, schema=self.schema)]

    def plan(self, dataset: Dataset, state: State | None) -> list[Split]:
        """Divide one dataset into independent splits.

        Args:
            dataset: One of the datasets from :meth:`discover`.
            state: The state committed by the previous run (``None`` on the first run).

        Returns:
            The splits to read; the default is a single split.
        """
        return [Split(dataset=dataset.name)]

    @abstractmethod
    def read(self, split: Split) -> ArrowStream:
        """Read one split.

        Args:
            split: One of the splits from :meth:`plan`.

        Returns:
            An object with ``__arrow_c_stream__`` (zero copy), a ``pyarrow.RecordBatchReader`` or
            ``Table``, or an iterable of ``pyarrow.RecordBatch``. Batches are pulled lazily.
        """


class Writer(_Plugin, ABC):
    """A target that writes data files in parallel, then publishes them in one atomic commit."""

    def state(self, dataset: Dataset) -> State | None:
        """Return the incremental state of the last commit to this dataset's target, if any."""
        return None

    def prepare(self, dataset: Dataset, schema: pa.Schema, mode: Mode) -> None:
        """Create or evolve the target for ``dataset`` before any split is written.

        Raises:
            SchemaMismatch: If the target exists with a schema that ``schema`` cannot evolve into.
        """

    @abstractmethod
    def write(self, split: Split, stream: pa.RecordBatchReader) -> WrittenFiles:
        """Write one split's batches to data files that nobody can see yet.

        Called from several threads at once (one split each). Must publish nothing.
        """

    @abstractmethod
    def commit(
        self, dataset: Dataset, files: list[WrittenFiles], state: State | None, run_id: str
    ) -> CommitInfo:
        """Publish ``files`` and ``state`` together, atomically.

        Committing a ``run_id`` that was already committed must do nothing and return
        ``CommitInfo(no_op=True)``.

        Raises:
            CommitFailed: Nothing was published; the run may be retried.
            CommitStateUnknown: The outcome is unknown; rerun with the same run id.
        """

    def abort(self, files: list[WrittenFiles]) -> None:
        """Discard files written by :meth:`write` that will never be committed."""


__all__ = [
    "API_VERSION",
    "ArrowStream",
    "ArrowStreamExportable",
    "CommitFailed",
    "CommitInfo",
    "CommitRecord",
    "CommitStateUnknown",
    "ConfigError",
    "ConnectionFailed",
    "Context",
    "Dataset",
    "DatasetStores",
    "DativoError",
    "Mode",
    "NoOptions",
    "ParquetSink",
    "PluginFailed",
    "Reader",
    "Role",
    "S3Settings",
    "SchemaMismatch",
    "Split",
    "State",
    "Store",
    "StoreOptions",
    "Writer",
    "WrittenFiles",
    "config_from_schema",
    "open_store",
]
