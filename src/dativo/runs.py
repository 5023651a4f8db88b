"""What the engine drives between ``plan`` and ``commit``: one dataset's run and each of its splits.

A :class:`DatasetRun` collects the written, uncommitted output of one dataset; a :class:`SplitRun` is the
life of one split within it, in this order:

1. ``reader.read(split)`` gives the reader's output;
2. :class:`~dativo.streams.GuardedStream` opens it; the first split to see a schema adopts it for the dataset
   (when ``discover`` declared none), and an incremental run resumes after the previous watermark;
3. the target is prepared once per dataset, by whichever split knows the schema first;
4. ``writer.write(split, stream)`` writes the files; a failure is attributed to the reader when the stream
   recorded one (the writer only saw an Arrow error) and to the writer otherwise;
5. the :class:`~dativo.api.WrittenFiles`, rows read and watermark are added to the dataset's run.

Every plugin call goes through :func:`call`, which translates failures with :func:`dativo.errors.translate`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import pyarrow as pa

from dativo.api import Dataset, Mode, Role, Split, State, WrittenFiles
from dativo.errors import DativoError, PluginFailed, fallback_hint, translate
from dativo.state import Watermark, WatermarkTracker
from dativo.streams import Cancelled, GuardedStream, describe

T = TypeVar("T")

STREAM_CLOSE_TIMEOUT_S = 30.0
"""How long a finished split waits for its read-ahead thread to come back from the reader."""


class _Spec(Protocol):
    role: Role
    name: str


class Bound(Protocol):
    """A loaded plugin: its spec (role and name) and its instance."""

    spec: _Spec
    instance: Any


def cause(exc: BaseException) -> BaseException | None:
    """What to chain a translated error to: a Dativo error's own cause, or the foreign exception itself."""
    return exc.__cause__ if isinstance(exc, DativoError) else exc


def call(plugin: Bound, stage: str, fn: Callable[..., T], *args: Any) -> T:
    """Call one contract method of a plugin; any failure becomes the Dativo error for that stage.

    Raises:
        DativoError: With the plugin's role, the stage and its name (see :func:`dativo.errors.translate`).
    """
    try:
        return fn(*args)
    except Exception as exc:
        raise translate(exc, role=plugin.spec.role, stage=stage, plugin=plugin.spec.name) from cause(exc)


@dataclass
class DatasetRun:
    """One dataset's written, uncommitted output.

    Attributes:
        dataset: The dataset as discovered.
        schema: Its schema: declared by ``discover`` or adopted from the first batch.
        previous_state: The state of the last commit, for incremental runs.
        tracker: Follows the greatest cursor read, for incremental runs.
    """

    dataset: Dataset
    schema: pa.Schema | None
    previous_state: State | None
    tracker: WatermarkTracker | None
    lock: threading.Lock = field(default_factory=threading.Lock)
    prepared: bool = False
    written: list[WrittenFiles] = field(default_factory=list)
    rows_read: int = 0
    splits: int = 0
    stuck_streams: int = 0
    """Read-ahead threads still inside the reader after its split ended: the reader must not be closed."""

    def new_state(self) -> State | None:
        """The state to commit: the new watermark, or the previous one if no new row arrived."""
        watermark = self.tracker.watermark() if self.tracker else None
        if watermark is None or self.schema is None:
            return self.previous_state
        return watermark.to_state(self.schema)

    def prepare(self, writer: Bound, mode: Mode, *, schema: pa.Schema | None = None) -> None:
        """Create or evolve the target once, as soon as the schema is known (or with ``schema``)."""
        schema = schema if schema is not None else self.schema
        if not self.prepared and schema is not None:
            call(writer, "prepare", writer.instance.prepare, self.dataset, schema, mode)
            self.prepared = True

    def resume_after(self) -> Watermark | None:
        """The watermark a split must read past: the previous run's, once the schema is known."""
        if self.previous_state and self.schema is not None and self.tracker:
            return Watermark.from_state(self.previous_state, self.schema)
        return None

    def add(self, written: WrittenFiles, rows: int, tracker: WatermarkTracker | None) -> None:
        """Record one finished split (called with :attr:`lock` held by nobody else)."""
        with self.lock:
            self.written.append(written)
            self.rows_read += rows
            if tracker and self.tracker:
                self.tracker.merge(tracker)


class SplitRun:
    """One split's life, from ``read`` to its :class:`~dativo.api.WrittenFiles` (see the module's steps).

    Args:
        run: The dataset's run the split belongs to.
        split: The split, as planned by the reader.
        reader: The loaded reader.
        writer: The loaded writer.
        mode: The target's write mode (for ``prepare``).
        cancel: Set when another split failed: this one stops at its next batch.
        on_rows: Progress callback.
        read_ahead_bytes: Bytes of batches read ahead at most (:func:`dativo.budget.read_ahead_bytes`);
            ``None``: two batches, whatever their size.
    """

    def __init__(
        self,
        run: DatasetRun,
        split: Split,
        reader: Bound,
        writer: Bound,
        *,
        mode: Mode,
        cancel: threading.Event,
        on_rows: Callable[[int], None] | None = None,
        read_ahead_bytes: int | None = None,
    ) -> None:
        self.run = run
        self.split = split
        self.reader = reader
        self.writer = writer
        self.mode = mode
        self.cancel = cancel
        self.on_rows = on_rows
        self.read_ahead_bytes = read_ahead_bytes
        self.tracker = WatermarkTracker(run.tracker.column, run.tracker.key_columns) if run.tracker else None

    def __call__(self) -> None:
        """Read and write the split; its output is added to the dataset's run."""
        output = call(self.reader, "read", self.reader.instance.read, self.split)
        opened = self.open(output)
        if opened is None:  # no declared schema and this split had no batch at all
            return
        guard, stream = opened
        try:
            written = self.write(guard, stream)
        finally:  # the reader may be closed only once no thread of this split is inside its stream
            if not guard.close(timeout=STREAM_CLOSE_TIMEOUT_S):
                with self.run.lock:
                    self.run.stuck_streams += 1
        self.run.add(written, guard.rows, self.tracker)

    def open(self, output: Any) -> tuple[GuardedStream, pa.RecordBatchReader] | None:
        """Open the reader's output as a checked stream; adopt its schema, resume, prepare the target."""
        run = self.run
        with run.lock:  # one split at a time adopts the schema and prepares the target
            guard = GuardedStream(
                self.split.id, run.dataset.name, run.schema,
                tracker=self.tracker, cancel=self.cancel, on_rows=self.on_rows,
                prefetch_bytes=self.read_ahead_bytes,
                validate=not getattr(self.reader.spec, "builtin", False),  # a plugin's buffers are untrusted
            )
            try:
                stream = guard.open(output)
            except DativoError as exc:
                raise self._reader_error(exc) from exc.__cause__
            if run.schema is None and len(guard.schema or ()):
                run.schema = guard.schema
            guard.after = run.resume_after()
            run.prepare(self.writer, self.mode)
        return (guard, stream) if run.prepared else None

    def write(self, guard: GuardedStream, stream: pa.RecordBatchReader) -> WrittenFiles:
        """Let the writer write the stream; say whose fault a failure was."""
        writer = self.writer.spec
        try:
            written = self.writer.instance.write(self.split, stream)
        except BaseException as exc:
            if guard.error is not None:  # the writer only saw the Arrow error the reader's stream raised
                raise self._reader_error(guard.error) from guard.error.__cause__
            if isinstance(exc, Cancelled) or not isinstance(exc, Exception):
                raise
            raise translate(exc, role="writer", stage="write", plugin=writer.name) from cause(exc)
        if guard.error is not None:
            raise self._reader_error(guard.error) from guard.error.__cause__
        if not isinstance(written, WrittenFiles):
            raise PluginFailed(
                f"write() returned {describe(written)}; it must return dativo.api.WrittenFiles",
                role="writer", stage="write", plugin=writer.name, hint=fallback_hint("writer"),
            )
        return written

    def _reader_error(self, exc: DativoError) -> DativoError:
        return translate(exc, role="reader", stage="read", plugin=self.reader.spec.name)
