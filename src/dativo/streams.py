"""Turning whatever a reader returns into one checked, bounded Arrow stream.

A reader may hand over anything with ``__arrow_c_stream__`` (zero copy), a ``RecordBatchReader``, a
``Table``, or an iterable of ``RecordBatch``. :class:`GuardedStream` normalises it, checks every batch
against the dataset's schema, counts rows, feeds the incremental watermark, and records any failure as
the reader's, so the engine can tell a reader's fault from a writer's even when the writer is native code
that only sees an Arrow error. A background thread reads ahead a few batches, so reading and writing
overlap, while the bounded queue keeps memory flat whatever the table size.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dativo.errors import DativoError, PluginFailed, SchemaMismatch, fallback_hint
from dativo.state import Watermark, WatermarkTracker


MAX_COLUMNS = 10_000
"""Most top-level columns a reader's schema may have."""
MAX_NESTING = 64
"""Deepest nesting of struct, list and map types a reader's schema may have."""
MAX_BATCH_BYTES = 1 << 30
"""Largest single batch the host accepts; readers send batches of a few MiB."""


def schema_problem(schema: pa.Schema) -> str | None:
    """Why the host refuses ``schema`` (too many columns, nested too deeply), or ``None``."""
    if len(schema) > MAX_COLUMNS:
        return f"it has {len(schema):,} columns (at most {MAX_COLUMNS:,})"

    def depth(kind: pa.DataType, level: int) -> int:
        if level > MAX_NESTING:
            return level
        children = [kind.field(i).type for i in range(kind.num_fields)]
        return max((depth(child, level + 1) for child in children), default=level)

    deepest = max((depth(f.type, 1) for f in schema), default=0)
    if deepest > MAX_NESTING:
        return f"its types are nested more than {MAX_NESTING} levels deep"
    return None


class Cancelled(Exception):
    """Raised inside a split when another split failed and the run is being stopped."""


def describe(obj: object) -> str:
    """A short name of an object's type for messages."""
    kind = type(obj)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def schema_difference(expected: pa.Schema, got: pa.Schema) -> str | None:
    """Describe how ``got`` differs from ``expected`` (names, order, types), or ``None`` if it does not."""
    expected_names, got_names = expected.names, got.names
    expected_set, got_set = set(expected_names), set(got_names)  # linear: a schema may have many columns
    missing = [n for n in expected_names if n not in got_set]
    extra = [n for n in got_names if n not in expected_set]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(repr(n) for n in missing)}")
        if extra:
            parts.append(f"unexpected column(s) {', '.join(repr(n) for n in extra)}")
        return "; ".join(parts)
    if expected_names != got_names:
        return f"columns are in a different order: expected {expected_names}, got {got_names}"
    for want, have in zip(expected, got):
        if not want.type.equals(have.type):
            return f"column '{want.name}' should be {want.type} but is {have.type}"
    return None


def arrow_batches(obj: Any) -> tuple[pa.Schema | None, Iterator[pa.RecordBatch]]:
    """Normalise a reader's return value into (schema if known, iterator of batches).

    Raises:
        TypeError: ``obj`` is not Arrow data (the caller reports it as the reader's failure).
    """
    if isinstance(obj, pa.RecordBatchReader):
        return obj.schema, iter(obj)
    if isinstance(obj, pa.Table):
        return obj.schema, iter(obj.to_batches())
    if isinstance(obj, pa.RecordBatch):
        return obj.schema, iter([obj])
    if hasattr(obj, "__arrow_c_stream__"):
        stream = pa.RecordBatchReader.from_stream(obj)
        return stream.schema, iter(stream)
    if obj is None or isinstance(obj, str | bytes | dict) or not hasattr(obj, "__iter__"):
        raise TypeError(
            f"read() returned {describe(obj)}, which is not Arrow data; return an object with "
            "__arrow_c_stream__, a pyarrow.RecordBatchReader or Table, or an iterable of pyarrow.RecordBatch"
        )

    def checked() -> Iterator[pa.RecordBatch]:
        for item in obj:
            if not isinstance(item, pa.RecordBatch):
                raise TypeError(
                    f"read() yielded {describe(item)}, not a pyarrow.RecordBatch; yield RecordBatch objects"
                )
            yield item

    return None, checked()


class GuardedStream:
    """One split's reader output, checked and counted on its way to the writer.

    Args:
        split_id: For messages.
        dataset: The dataset's name, for messages.
        schema: The declared schema, or ``None`` to adopt the first batch's.
        after: Drop rows at or before this watermark (incremental correctness for any reader).
        tracker: Follows the greatest cursor seen, or ``None`` when not incremental.
        cancel: Set by the engine to stop every split.
        on_rows: Called with each batch's row count (progress).
        prefetch: Batches to read ahead in a background thread (0: none).
        prefetch_bytes: At most this many bytes of batches read ahead (one batch always may be); ``None``:
            only ``prefetch`` bounds it. Part of the job's memory budget (:mod:`dativo.budget`).
        validate: Check every batch's buffers fully before anything else touches them (``False`` only for
            the built-in readers): a plugin's offsets or dictionary indices may point anywhere in memory.
    """

    def __init__(
        self,
        split_id: str,
        dataset: str,
        schema: pa.Schema | None,
        *,
        after: Watermark | None = None,
        tracker: WatermarkTracker | None = None,
        cancel: threading.Event | None = None,
        on_rows: Callable[[int], None] | None = None,
        prefetch: int = 2,
        prefetch_bytes: int | None = None,
        validate: bool = True,
    ) -> None:
        self.split_id = split_id
        self.dataset = dataset
        self.schema = schema
        self.after = after
        self.tracker = tracker
        self.cancel = cancel or threading.Event()
        self.on_rows = on_rows
        self.prefetch = prefetch
        self.prefetch_bytes = prefetch_bytes
        self.validate = validate
        self._prefetch: Prefetch | None = None
        self.rows = 0
        self.error: DativoError | None = None

    def _fail(self, exc: BaseException, stage: str = "read") -> DativoError:
        if isinstance(exc, DativoError):
            self.error = exc
        else:
            self.error = PluginFailed(
                f"{stage}() of dataset '{self.dataset}' split '{self.split_id}' failed: "
                f"{type(exc).__name__}: {exc}",
                role="reader",
                stage=stage,
                hint=fallback_hint("reader"),
            )
            self.error.__cause__ = exc
        return self.error

    def _checked(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` if its buffers are what its type says and its size is bounded; else the reader's fault."""
        if self.validate:
            try:
                batch.validate(full=True)
            except (pa.ArrowInvalid, pa.ArrowException) as exc:
                raise PluginFailed(
                    f"dataset '{self.dataset}' split '{self.split_id}': the reader sent a malformed batch "
                    f"({str(exc).splitlines()[0][:200]})",
                    role="reader",
                    stage="read",
                    hint="The plugin builds Arrow arrays with wrong offsets, lengths or indices: fix it. "
                    + fallback_hint("reader"),
                ) from None
        if batch.nbytes > MAX_BATCH_BYTES:
            raise PluginFailed(
                f"dataset '{self.dataset}' split '{self.split_id}': a batch of {batch.nbytes / 2**20:,.0f} MiB "
                f"is larger than the {MAX_BATCH_BYTES // 2**20} MiB the host accepts",
                role="reader",
                stage="read",
                hint="Send smaller batches (a few MiB each).",
            )
        return batch

    def _conform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        assert self.schema is not None
        same = batch.schema.equals(self.schema, check_metadata=False)
        difference = None if same else schema_difference(self.schema, batch.schema)
        if difference:
            raise SchemaMismatch(
                f"dataset '{self.dataset}' split '{self.split_id}': {difference}",
                role="reader",
                stage="read",
                hint="Make every batch match the schema the reader declares (or its first batch).",
            )
        for field, column in zip(self.schema, batch.columns):
            if not field.nullable and column.null_count:
                raise SchemaMismatch(
                    f"dataset '{self.dataset}' split '{self.split_id}': column '{field.name}' is declared "
                    f"NOT NULL but has {column.null_count} null value(s)",
                    role="reader",
                    stage="read",
                    hint="Declare the column nullable, or do not emit nulls for it.",
                )
        if batch.schema.equals(self.schema, check_metadata=True):
            return batch
        return pa.RecordBatch.from_arrays(batch.columns, schema=self.schema)

    def open(self, obj: Any) -> pa.RecordBatchReader:
        """Wrap a reader's return value as a checked ``RecordBatchReader`` for the writer.

        Raises:
            PluginFailed: If ``obj`` is not Arrow data or its schema does not match.
        """
        try:
            declared, source = arrow_batches(obj)
            if self.schema is None and declared is None:
                first = next(source, None)
                if first is None:
                    source, declared = iter(()), pa.schema([])
                else:
                    declared = first.schema
                    source = _chain(first, source)
            if self.schema is None:
                self.schema = declared
            problem = schema_problem(self.schema)  # a stream of another schema is refused below anyway
            if problem:
                raise PluginFailed(
                    f"dataset '{self.dataset}' split '{self.split_id}': the reader's schema is refused: {problem}",
                    role="reader",
                    stage="read",
                    hint="Split the data into datasets of fewer columns, or flatten deeply nested types.",
                )
            difference = schema_difference(self.schema, declared) if declared is not None and len(declared) else None
            if difference:
                raise SchemaMismatch(
                    f"dataset '{self.dataset}' split '{self.split_id}': {difference}",
                    role="reader",
                    stage="read",
                    hint="Make read() return the schema the reader declares in discover().",
                )
        except Exception as exc:
            error = self._fail(exc)
            raise error from error.__cause__
        assert self.schema is not None
        batches: Iterator[pa.RecordBatch] | Prefetch = source
        if self.prefetch:
            batches = self._prefetch = Prefetch(source, self.prefetch, self.cancel, self.prefetch_bytes)
        return pa.RecordBatchReader.from_batches(self.schema, self._guarded(iter(batches)))

    def close(self, timeout: float | None = None) -> bool:
        """Stop reading ahead and wait for the read-ahead thread to leave the reader's stream.

        Returns:
            Whether no thread of this stream is inside the reader any more.
        """
        return self._prefetch.close(timeout=timeout) if self._prefetch is not None else True

    def _guarded(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        try:
            for batch in batches:
                if self.cancel.is_set():
                    raise Cancelled()
                batch = self._conform(self._checked(batch))
                if self.after is not None and batch.num_rows:
                    batch = batch.filter(after_mask(batch, self.after))
                if not batch.num_rows:
                    continue
                if self.tracker is not None:
                    self.tracker.observe(batch)
                self.rows += batch.num_rows
                if self.on_rows:
                    self.on_rows(batch.num_rows)
                yield batch
        except Cancelled:
            raise
        except Exception as exc:
            error = self._fail(exc)
            raise error from error.__cause__


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest


_DONE = object()


class Prefetch:
    """Reads ``source`` in a background thread, at most ``depth`` batches ahead.

    :meth:`close` stops the thread and waits until it has left ``source``: only then may the plugin that
    produced ``source`` be closed (closing an ADBC stream that another thread is reading crashes the process).
    """

    def __init__(self, source: Iterator[pa.RecordBatch], depth: int, cancel: threading.Event,
                 max_bytes: int | None = None) -> None:
        self._source = source
        self._buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._cancel = cancel
        self._max_bytes = max_bytes
        self._queued = 0  # bytes of the batches in the buffer
        self._room = threading.Condition()
        self._worker = threading.Thread(target=self._pump, name="dativo-prefetch", daemon=True)
        self._worker.start()

    def _stopped(self) -> bool:
        return self._stop.is_set() or self._cancel.is_set()

    def _put(self, item: Any, size: int = 0) -> bool:
        if size and self._max_bytes is not None:
            with self._room:  # a batch waits while others fill the byte bound; one alone always goes
                while self._queued and self._queued + size > self._max_bytes and not self._stopped():
                    self._room.wait(0.1)
                self._queued += size
        while not self._stopped():
            try:
                self._buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _pump(self) -> None:
        try:
            for batch in self._source:
                if not self._put(batch, batch.nbytes if self._max_bytes is not None else 0):
                    return
            self._put(_DONE)
        except BaseException as exc:  # handed to the consuming thread, which raises it there
            self._put(exc)

    def _taken(self, item: Any) -> None:
        if self._max_bytes is not None and isinstance(item, pa.RecordBatch):
            with self._room:
                self._queued -= item.nbytes
                self._room.notify()

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            while True:
                try:
                    item = self._buffer.get(timeout=0.1)
                except queue.Empty:
                    if self._cancel.is_set():
                        raise Cancelled() from None
                    continue
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                self._taken(item)
                yield item
        finally:
            self.close(wait=False)

    def close(self, *, wait: bool = True, timeout: float | None = None) -> bool:
        """Stop reading ahead; with ``wait``, return only once the thread has left the source.

        Returns:
            Whether the thread has ended (it may still be inside one slow read when ``timeout`` passed).
        """
        self._stop.set()
        if wait and self._worker is not threading.current_thread():
            self._worker.join(timeout)
        return not self._worker.is_alive()


def after_mask(batch: pa.RecordBatch, mark: Watermark) -> pa.Array:
    """Rows strictly after ``mark`` in ``(cursor, key…)`` order; rows with a null cursor are excluded."""
    columns = (mark.column, *mark.key_columns)
    values = (mark.value, *mark.key)
    result = None
    equal_so_far = None
    for name, value in zip(columns, values):
        column = batch.column(name)
        scalar = pa.scalar(value, type=column.type)
        greater = pc.greater(column, scalar)
        term = greater if equal_so_far is None else pc.and_(equal_so_far, greater)
        result = term if result is None else pc.or_(result, term)
        equal = pc.equal(column, scalar)
        equal_so_far = equal if equal_so_far is None else pc.and_(equal_so_far, equal)
    assert result is not None
    return pc.fill_null(result, False)
