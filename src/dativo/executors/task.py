"""One split as a value that travels to another machine, what comes back, and how a worker runs it.

The local executor runs :class:`~dativo.runs.SplitRun` objects, which hold loaded plugin instances. A Ray
worker cannot share those: it gets a :class:`SplitTask` (plain, picklable data: the validated job, the run id,
the dataset, its schema and previous state, the split, which side runs the custom implementation) and
:func:`execute` rebuilds the same run there (called by :func:`dativo.engine.run_split`, the task's body):

1. an :class:`~dativo.engine.Engine` for the same job and run id loads the reader and writer through the
   same plugin host and registry as the driver (entry point, dotted path, native library, ``command:``
   plugin over Flight, sandbox — the sandbox is created on the worker's node);
2. the writer's ``prepare`` is called again with the driver's schema and mode: the driver created or
   evolved the target already, so this only lets the worker's own writer instance find it;
3. a :class:`~dativo.runs.SplitRun` streams the split through the same
   :class:`~dativo.streams.GuardedStream` (validation, schema, watermark, bounded read-ahead);
4. its :class:`~dativo.api.WrittenFiles`, row count and watermark come back as a :class:`SplitResult`.

A plugin's failure comes back as the result's ``error`` (a Dativo error naming the node), not as a task
exception: Ray retries only what died (the worker process, the node), never a deterministic plugin error.
Whatever the writer wrote before a failure is aborted on the worker; files of an attempt whose process was
killed are never returned, so the driver never commits them (``dativo maintain`` removes such orphans).
"""

from __future__ import annotations

import copy
import logging
import pickle
import socket
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from dativo import allocator, budget
from dativo.api import Dataset, Mode, Split, State, WrittenFiles
from dativo.config import JobConfig
from dativo.counters import counted
from dativo.errors import DativoError, PluginFailed, PluginIncompatible, PluginNotFound
from dativo.report import collecting_warnings
from dativo.runs import DatasetRun, SplitRun
from dativo.state import WatermarkTracker

log = logging.getLogger("dativo.executors")

PROGRESS_EVERY_S = 0.5
"""How often a worker reports the rows it read to the driver's progress counter."""


@dataclass(frozen=True)
class SplitTask:
    """Everything a worker needs to run one split of one dataset (picklable; no plugin instance).

    Attributes:
        job: The validated job (secrets already substituted: it travels as Ray task arguments do).
        run_id: The run's id (the commit carries it; plugins see it in their context).
        work_dir: The driver's work directory, as the plugins' ``Context.work_dir``.
        custom: Whether the reader and the writer run the job's custom implementation (``False``: the
            built-in, after the driver fell back to it).
        dataset: The dataset as discovered on the driver.
        schema: Its declared schema (a Ray run needs one before any worker writes).
        previous_state: The state of the last commit, for incremental runs.
        cursor: The incremental cursor column, if any.
        key_columns: The primary key, which breaks cursor ties.
        split: The split, as planned on the driver.
        mode: The target's write mode.
    """

    job: JobConfig
    run_id: str
    work_dir: str
    custom: tuple[bool, bool]
    dataset: Dataset
    schema: pa.Schema
    previous_state: State | None
    cursor: str | None
    key_columns: tuple[str, ...]
    split: Split
    mode: Mode


@dataclass
class SplitResult:
    """What a worker sends back for one split.

    Attributes:
        split: The split's id.
        node: Where it ran (the node's address).
        written: The files written (``None`` when the split failed).
        rows: Rows read (and given to the writer).
        tracker: The greatest cursor read, for incremental runs.
        seconds: Time the split took on the worker.
        warnings: Warnings the plugins logged meanwhile (the driver logs them into its report).
        error: The failure, already a Dativo error naming the node; ``None`` on success.
        attempt: Which attempt of the task this was (0: the first; more: Ray ran it again after a worker died).
        counters: What the reader and the writer counted (``Context.count``), by role.
    """

    split: str
    node: str
    written: WrittenFiles | None = None
    rows: int = 0
    tracker: WatermarkTracker | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    error: DativoError | None = None
    attempt: int = 0
    counters: dict[str, dict[str, int]] = field(default_factory=dict)


class Progress:
    """The rows a worker read, sent in small bundles to the run's counter (a Ray actor).

    Args:
        counter: A handle of :class:`dativo.executors.ray.Counter` (its ``add`` is called without
            waiting); ``None``: nothing is sent.
    """

    def __init__(self, counter: Any | None) -> None:
        self._counter = counter
        self._pending = 0
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, rows: int) -> None:
        with self._lock:
            self._pending += rows
            if time.monotonic() - self._last < PROGRESS_EVERY_S:
                return
        self.flush()

    def flush(self) -> None:
        """Send what has not been sent yet."""
        with self._lock:
            rows, self._pending, self._last = self._pending, 0, time.monotonic()
        if rows and self._counter is not None:
            try:
                self._counter.add.remote(rows)
            except Exception as exc:  # progress is a display; the split's own result is what counts
                log.debug("progress not sent: %s", exc)


@dataclass
class _Bound:
    """A loaded plugin as :class:`~dativo.runs.SplitRun` expects it."""

    spec: Any
    instance: Any


class _RecordingWriter:
    """The worker's writer, remembering what each ``write`` returned so a later failure can abort it."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer
        self.written: list[WrittenFiles] = []

    def write(self, split: Split, stream: pa.RecordBatchReader) -> WrittenFiles:
        written = self._writer.write(split, stream)
        if isinstance(written, WrittenFiles):
            self.written.append(written)
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


def node_address() -> str:
    """This node's address as the cluster knows it (the host name outside a Ray worker)."""
    try:
        import ray

        if ray.is_initialized():
            return str(ray.util.get_node_ip_address())
    except Exception:  # not inside Ray: the host name is the best name for the node
        pass
    return socket.gethostname()


Plugins = Callable[[tuple[bool, bool]], AbstractContextManager[tuple[Any, Any]]]
"""Opens the loaded reader and writer of a split: ``custom`` per side → a context of ``(reader, writer)``."""


def attempt_number() -> int:
    """Which attempt of the current Ray task this is (0 outside Ray, or if Ray cannot say)."""
    try:
        import ray

        # not in Ray's public runtime context; the core worker knows it
        return int(ray._private.worker.global_worker.core_worker.get_current_task_attempt_number())
    except Exception:
        return 0


def execute(task: SplitTask, plugins: Plugins, progress: Progress,
            on_stuck: Callable[[int], None] = lambda n: None) -> SplitResult:
    """Run one split on this machine (see the module's steps).

    Args:
        task: The split and everything it needs.
        plugins: Loads the reader and writer (:meth:`dativo.engine.Engine.split_plugins`).
        progress: Counts the rows read (sent to the driver's progress display).
        on_stuck: Told how many read-ahead threads are still inside the reader (it must not be closed).

    Returns:
        The result; a failure is in its ``error``, never raised (except an interrupt of the task itself).
    """
    allocator.tune()  # a Ray worker is not started by the dativo command, which tunes its own process
    node = node_address()
    started = time.monotonic()
    result = SplitResult(split=task.split.id, node=node, attempt=attempt_number())
    writer: _RecordingWriter | None = None
    try:
        with collecting_warnings(result.warnings), plugins(task.custom) as (reader, loaded):
            writer = _RecordingWriter(loaded.instance)
            bound = _Bound(loaded.spec, writer)
            tracker = WatermarkTracker(task.cursor, task.key_columns) if task.cursor else None
            run = DatasetRun(task.dataset, task.schema, task.previous_state, tracker)
            try:
                run.prepare(bound, task.mode)
                ahead = budget.read_ahead_bytes(task.job.memory_bytes, task.job.source.parallelism)
                SplitRun(run, task.split, reader, bound, mode=task.mode, cancel=threading.Event(),
                         on_rows=progress, read_ahead_bytes=ahead)()
            finally:
                on_stuck(run.stuck_streams)
            result.written = run.written[0] if run.written else None
            result.rows = run.rows_read
            result.tracker = run.tracker
        result.counters = counted(reader, loaded)  # closed: a plugin process has sent its own
    except DativoError as exc:
        _abort(writer)
        result.error = _on_node(exc, node)
    except Exception as exc:  # a failure of Dativo itself on the worker: still one paragraph to the user
        _abort(writer)
        result.error = _on_node(PluginFailed(f"the split failed on the worker: {type(exc).__name__}: {exc}",
                                             job=task.job.name), node)
    except BaseException:  # the task was cancelled (another split failed, or the run was interrupted)
        _abort(writer)
        raise
    finally:
        progress.flush()
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _abort(writer: _RecordingWriter | None) -> None:
    """Delete what this attempt wrote: it will never be committed."""
    if writer is None or not writer.written:
        return
    try:
        writer.abort(writer.written)
    except Exception as exc:  # orphans are harmless and `dativo maintain` removes them
        log.warning("abort() on the worker failed: %s", exc)


_MISSING_HINT = (
    "Install it on every node of the cluster (the same image or virtual environment as the driver); a "
    "Python plugin can also be shipped with the run: executor.runtime_env: {pip: [its-package==VERSION]} "
    "or {py_modules: [./its/folder]}."
)


def _on_node(exc: DativoError, node: str) -> DativoError:
    """``exc`` with the node in its message (a new exception), picklable for the way back to the driver."""
    error = copy.copy(exc)
    error.message = f"on Ray node {node}: {exc.message}"
    error.args = (error.message,)
    if isinstance(exc, PluginNotFound | PluginIncompatible) or exc.stage == "load":
        error.hint = " ".join(filter(None, [exc.hint, _MISSING_HINT]))
    error.__cause__ = error.__context__ = None  # the cause stays in the worker's log; it may not pickle
    error.__traceback__ = None
    try:
        pickle.dumps(error)
    except Exception:  # an exception class that cannot be rebuilt from its message alone
        fallback = PluginFailed(error.message, job=exc.job, plugin=exc.plugin, hint=exc.hint, role=exc.role,
                                stage=exc.stage)
        fallback.detail = exc.detail
        return fallback
    return error

