"""Running a job: load plugins, read splits in parallel into written files, then commit once.

The two-phase shape is what makes fallback and crash safety simple: until :meth:`Writer.commit` nothing is
visible, so a failing custom reader or writer can be discarded (``abort``) and the run repeated with the
built-in implementation; a crash leaves only orphan files that no reader of the target can see.
"""

from __future__ import annotations

import difflib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa

from dativo.api import CommitInfo, Context, Dataset, Split, State, WrittenFiles
from dativo.config import ImplementationConfig, JobConfig, job_locator
from dativo.errors import (
    CommitFailed,
    CommitStateUnknown,
    ConfigError,
    DativoError,
    PluginFailed,
    PluginIncompatible,
    PluginNotFound,
    SandboxError,
)
from dativo.registry import (
    BUILTIN_READERS,
    BUILTIN_WRITERS,
    PluginSpec,
    Role,
    builtin_for,
    has_builtin,
    resolve,
)
from dativo.report import DatasetReport, PluginReport, RunReport
from dativo.state import Watermark, WatermarkTracker
from dativo.streams import Cancelled, GuardedStream, describe

log = logging.getLogger("dativo")
T = TypeVar("T")


@dataclass
class _Loaded:
    """A plugin instance with how it was named and configured."""

    spec: PluginSpec
    instance: Any
    report: PluginReport


@dataclass
class _DatasetRun:
    """One dataset's written, uncommitted output."""

    dataset: Dataset
    schema: pa.Schema | None
    previous_state: State | None
    tracker: WatermarkTracker | None
    lock: threading.Lock = field(default_factory=threading.Lock)
    prepared: bool = False
    written: list[WrittenFiles] = field(default_factory=list)
    rows_read: int = 0
    splits: int = 0

    def new_state(self) -> State | None:
        """The state to commit: the new watermark, or the previous one if no new row arrived."""
        watermark = self.tracker.watermark() if self.tracker else None
        if watermark is None or self.schema is None:
            return self.previous_state
        return watermark.to_state(self.schema)


class Engine:
    """Runs one job.

    Args:
        job: The validated job.
        run_id: Id of this run; reusing the id of a committed run makes its commit a no-op.
        on_rows: Progress callback, called with the row count of every batch that was read.
        work_dir: Scratch and embedded-default folder (default ``./.dativo``).
    """

    def __init__(
        self,
        job: JobConfig,
        *,
        run_id: str | None = None,
        on_rows: Callable[[int], None] | None = None,
        work_dir: Path | None = None,
    ) -> None:
        self.job = job
        self.run_id = run_id or uuid.uuid4().hex
        self.on_rows = on_rows
        self.work_dir = (work_dir or Path.cwd() / ".dativo").resolve()
        self._loc = job_locator(job)

    # --- loading --------------------------------------------------------------------------------------

    def _section(self, role: Role) -> tuple[str, Any, ImplementationConfig]:
        if role == "reader":
            return "source", self.job.source, self.job.source.reader
        return "target", self.job.target, self.job.target.writer

    def _candidates(self, role: Role) -> list[Callable[[], PluginSpec]]:
        """The implementations to try for one side, in order (custom first, then the built-in)."""
        section, conf, impl = self._section(role)

        def default() -> PluginSpec:
            spec = builtin_for(role, conf.type)
            if spec is None:
                known = sorted(BUILTIN_READERS if role == "reader" else BUILTIN_WRITERS)
                guess = difflib.get_close_matches(conf.type, known, n=1)
                raise ConfigError(
                    f"{self._loc.where((section, 'type'))}: '{conf.type}' has no built-in {role}",
                    hint=(f"Did you mean '{guess[0]}'? " if guess else "")
                    + f"Built-in {role}s: {', '.join(known)}; or name your own with {section}.{role}.type: "
                    "custom and implementation: <name>.",
                )
            return spec

        if impl.type == "default":
            if impl.sandbox.enabled:  # the built-in itself, confined (e.g. a parser facing hostile files)
                return [lambda: resolve(role, conf.type, impl.sandbox)]
            return [default]
        # sandboxed: resolved to a proxy of a process in the sandbox, never imported here
        custom = lambda: resolve(role, impl.implementation or "", impl.sandbox)  # noqa: E731
        fallback = impl.fallback == "default" and has_builtin(role, conf.type)
        return [custom, default] if fallback else [custom]

    def _load(self, role: Role, load: Callable[[], PluginSpec], custom: bool) -> _Loaded:
        section, conf, impl = self._section(role)
        try:
            spec = load()
            config = spec.build_config(
                conf.settings(), impl.options if custom else {}, section=section, loc=self._loc
            )
            ctx = Context(
                job=self.job.name,
                run_id=self.run_id,
                plugin=spec.name,
                logger=log.getChild(f"{role}.{spec.name}"),
                settings=conf.settings(),
                parallelism=self.job.source.parallelism,
                cursor=self.job.source.incremental.cursor if self.job.source.incremental else None,
                work_dir=str(self.work_dir),
            )
            instance = spec.cls(config, ctx)
        except DativoError as exc:
            if isinstance(exc, PluginNotFound | PluginIncompatible):
                where = (section, role, "implementation") if custom else (section, "type")
                exc.message = f"{self._loc.where(where)}: {exc.message}"
            raise _tag(exc, role, "load", getattr(exc, "plugin", None) or impl.implementation)
        except Exception as exc:
            raise _wrap(exc, role, "__init__", impl.implementation or conf.type) from exc
        report = PluginReport(
            implementation=spec.name, origin=spec.origin, language=spec.language, version=spec.version
        )
        return _Loaded(spec, instance, report)

    # --- calling plugins ------------------------------------------------------------------------------

    def _call(self, loaded: _Loaded, stage: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except DativoError as exc:
            raise _tag(exc, loaded.spec.role, stage, loaded.spec.name)
        except Exception as exc:
            raise _wrap(exc, loaded.spec.role, stage, loaded.spec.name) from exc

    # --- public entry points --------------------------------------------------------------------------

    @contextmanager
    def _job_context(self) -> Iterator[None]:
        try:
            yield
        except DativoError as exc:
            raise exc.with_context(job=self.job.name)

    @contextmanager
    def _plugins(self, reader_load: Callable[[], PluginSpec], writer_load: Callable[[], PluginSpec],
                 custom: tuple[bool, bool]) -> Iterator[tuple[_Loaded, _Loaded]]:
        writer = self._load("writer", writer_load, custom[1])
        try:
            reader = self._load("reader", reader_load, custom[0])
        except BaseException:
            _close(writer)
            raise
        try:
            yield reader, writer
        finally:
            _close(reader)
            _close(writer)

    def run(self) -> RunReport:
        """Run the job to its commit.

        Returns:
            The run report (``status`` is ``succeeded``).

        Raises:
            DativoError: On any failure; nothing was published unless the error is a commit error.
        """
        with self._job_context():
            return self._run()

    def _run(self) -> RunReport:
        started = time.monotonic()
        report = RunReport(job=self.job.name, run_id=self.run_id)
        readers, writers = self._candidates("reader"), self._candidates("writer")
        r = w = 0
        while True:
            custom = (self.job.source.reader.type == "custom" and r == 0,
                      self.job.target.writer.type == "custom" and w == 0)
            try:
                with self._plugins(readers[r], writers[w], custom) as (reader, writer):
                    report.reader, report.writer = reader.report, writer.report
                    runs = self._write_all(reader, writer)
                    self._commit_all(writer, runs, report)
                break
            except DativoError as exc:
                if isinstance(exc, ConfigError | SandboxError):
                    raise  # the user's to fix: the built-in implementation would meet it too
                if exc.role == "reader" and r + 1 < len(readers) and self._may_fall_back("reader"):
                    r += 1
                elif exc.role == "writer" and w + 1 < len(writers) and self._may_fall_back("writer"):
                    w += 1
                else:
                    raise
                side = "source.reader" if exc.role == "reader" else "target.writer"
                reason = f"custom {exc.role} failed during {exc.stage or 'load'}: {exc}"
                log.warning("%s; falling back to the built-in %s (%s.fallback: default)", reason, exc.role, side)
                report.fallback_used = True
                report.fallback_reason = "; ".join(filter(None, [report.fallback_reason, reason]))
        return report.finish(time.monotonic() - started)

    def _may_fall_back(self, role: Role) -> bool:
        """Whether the custom plugin lets the built-in replace it (an encrypting writer must not)."""
        _, _, impl = self._section(role)
        try:
            spec = resolve(role, impl.implementation or "", impl.sandbox)  # cached: starts nothing new
        except DativoError:  # it never loaded: nothing of it can object
            return True
        if getattr(spec.cls, "allow_fallback", True):
            return True
        log.error("%s %s forbids falling back to the built-in %s", role, spec.name, role)
        return False

    def check(self) -> list[tuple[str, str, str]]:
        """Load both plugins and call their ``check``.

        Returns:
            ``(component, implementation, "ok")`` rows.

        Raises:
            DativoError: The first problem found.
        """
        with self._job_context(), self._first_plugins() as (reader, writer):
            self._call(reader, "check", reader.instance.check)
            self._call(writer, "check", writer.instance.check)
            return [("source", reader.spec.name, "ok"), ("target", writer.spec.name, "ok")]

    def discover(self) -> list[Dataset]:
        """Load the reader and list its datasets."""
        with self._job_context(), self._first_plugins() as (reader, _):
            self._call(reader, "check", reader.instance.check)
            return self._discover(reader)

    def _first_plugins(self) -> Any:
        """The implementations the job names, without fallback (for check and discover)."""
        custom = (self.job.source.reader.type == "custom", self.job.target.writer.type == "custom")
        return self._plugins(self._candidates("reader")[0], self._candidates("writer")[0], custom)

    # --- the two phases -------------------------------------------------------------------------------

    def _discover(self, reader: _Loaded) -> list[Dataset]:
        datasets = self._call(reader, "discover", reader.instance.discover)
        if not isinstance(datasets, list | tuple) or not all(isinstance(d, Dataset) for d in datasets):
            raise PluginFailed(
                f"discover() returned {describe(datasets)}; it must return a list of dativo.api.Dataset",
                role="reader", stage="discover", plugin=reader.spec.name, job=self.job.name,
                hint=_fix("reader"),
            )
        return list(datasets)

    def _write_all(self, reader: _Loaded, writer: _Loaded) -> list[_DatasetRun]:
        self._call(writer, "check", writer.instance.check)
        self._call(reader, "check", reader.instance.check)
        runs: list[_DatasetRun] = []
        try:
            for dataset in self._discover(reader):
                run = self._start_dataset(reader, writer, dataset)
                runs.append(run)
                self._write_dataset(reader, writer, run)
        except BaseException:
            written = [w for run in runs for w in run.written]
            if written:
                try:
                    writer.instance.abort(written)
                except Exception as exc:  # the original failure matters more; orphans are harmless
                    log.warning("abort() of %s failed: %s", writer.spec.name, exc)
            raise
        return runs

    def _start_dataset(self, reader: _Loaded, writer: _Loaded, dataset: Dataset) -> _DatasetRun:
        cursor = self.job.source.incremental.cursor if self.job.source.incremental else None
        tracker = None
        state = None
        if cursor:
            if dataset.schema is not None and cursor not in dataset.schema.names:
                candidates = ", ".join(dataset.cursor_candidates) or ", ".join(dataset.schema.names)
                raise ConfigError(
                    f"source.incremental.cursor '{cursor}' is not a column of dataset '{dataset.name}'",
                    job=self.job.name,
                    hint=f"Use one of: {candidates}.",
                )
            tracker = WatermarkTracker(cursor, tuple(dataset.primary_key))
            state = self._call(writer, "state", writer.instance.state, dataset)
        return _DatasetRun(dataset, dataset.schema, state, tracker)

    def _prepare(self, writer: _Loaded, run: _DatasetRun) -> None:
        if not run.prepared and run.schema is not None:
            self._call(writer, "prepare", writer.instance.prepare, run.dataset, run.schema, self.job.target.mode)
            run.prepared = True

    def _write_dataset(self, reader: _Loaded, writer: _Loaded, run: _DatasetRun) -> None:
        splits = self._call(reader, "plan", reader.instance.plan, run.dataset, run.previous_state)
        if not isinstance(splits, list | tuple) or not all(isinstance(s, Split) for s in splits):
            raise PluginFailed(
                f"plan() returned {describe(splits)}; it must return a list of dativo.api.Split",
                role="reader", stage="plan", plugin=reader.spec.name, job=self.job.name,
                hint=_fix("reader"),
            )
        run.splits = len(splits)
        self._prepare(writer, run)
        cancel = threading.Event()
        lock = threading.Lock()

        def one(split: Split) -> None:
            tracker = WatermarkTracker(run.tracker.column, run.tracker.key_columns) if run.tracker else None
            output = self._call(reader, "read", reader.instance.read, split)
            with run.lock:
                guard = GuardedStream(
                    split.id, run.dataset.name, run.schema,
                    after=None, tracker=tracker, cancel=cancel, on_rows=self.on_rows,
                )
                try:
                    stream = guard.open(output)
                except DativoError as exc:
                    raise _tag(exc, "reader", "read", reader.spec.name) from exc.__cause__
                if run.schema is None and len(guard.schema or ()):
                    run.schema = guard.schema
                if run.previous_state and run.schema is not None and run.tracker:
                    guard.after = Watermark.from_state(run.previous_state, run.schema)
                self._prepare(writer, run)
            if not run.prepared:  # no declared schema and this split had no batch at all
                return
            try:
                written = writer.instance.write(split, stream)
            except BaseException as exc:
                if guard.error is not None:
                    raise _tag(guard.error, "reader", "read", reader.spec.name) from guard.error.__cause__
                if isinstance(exc, Cancelled):
                    raise
                if isinstance(exc, DativoError):
                    raise _tag(exc, "writer", "write", writer.spec.name) from exc.__cause__
                raise _wrap(exc, "writer", "write", writer.spec.name) from exc
            if guard.error is not None:
                raise _tag(guard.error, "reader", "read", reader.spec.name)
            if not isinstance(written, WrittenFiles):
                raise _tag(
                    PluginFailed(
                        f"write() returned {describe(written)}; it must return dativo.api.WrittenFiles",
                        hint=_fix("writer"),
                    ),
                    "writer", "write", writer.spec.name,
                )
            with lock:
                run.written.append(written)
                run.rows_read += guard.rows
                if tracker and run.tracker:
                    run.tracker.merge(tracker)

        workers = max(1, min(self.job.source.parallelism, len(splits)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dativo-split") as pool:
            futures: list[Future[None]] = [pool.submit(one, split) for split in splits]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                cancel.set()
                for future in futures:
                    future.cancel()
                wait(futures)
                errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
                first = next((e for e in errors if not isinstance(e, Cancelled)), errors[0])
                raise first  # type: ignore[misc]
        if not run.prepared:  # no batch and no declared schema: the target still learns of the run
            self._call(writer, "prepare", writer.instance.prepare, run.dataset, pa.schema([]), self.job.target.mode)
            run.prepared = True

    def _commit_all(self, writer: _Loaded, runs: list[_DatasetRun], report: RunReport) -> None:
        for run in runs:
            try:
                info = writer.instance.commit(run.dataset, run.written, run.new_state(), self.run_id)
            except (CommitFailed, CommitStateUnknown) as exc:
                raise exc.with_context(job=self.job.name, plugin=writer.spec.name)
            except Exception as exc:
                raise CommitStateUnknown(
                    f"commit of dataset '{run.dataset.name}' raised {type(exc).__name__}: {exc}",
                    job=self.job.name,
                    plugin=writer.spec.name,
                    hint=f"Check the target, then rerun with --run-id {self.run_id}: a committed run is a no-op.",
                ) from exc
            if not isinstance(info, CommitInfo):
                info = CommitInfo(commit_id=None)
            if info.no_op:  # this run's files duplicate what the earlier commit published
                self._discard(writer, run.written)
            rows = sum(w.rows for w in run.written)
            report.datasets.append(
                DatasetReport(
                    name=run.dataset.name,
                    rows=rows,
                    files=sum(len(w.files) for w in run.written),
                    bytes=sum(w.bytes for w in run.written),
                    splits=run.splits,
                    commit_id=info.commit_id,
                    no_op=info.no_op,
                    state=run.new_state(),
                )
            )
            report.rows_read += run.rows_read
            report.rows_written += 0 if info.no_op else rows
            report.bytes_written += 0 if info.no_op else sum(w.bytes for w in run.written)
            report.commit_id = info.commit_id or report.commit_id


    @staticmethod
    def _discard(writer: _Loaded, written: list[WrittenFiles]) -> None:
        if not any(w.files for w in written):
            return
        try:
            writer.instance.abort(written)
        except Exception as exc:  # the run itself succeeded; leftovers are unreferenced files
            log.warning("abort() of %s failed to delete unpublished files: %s", writer.spec.name, exc)


def _tag(exc: DativoError, role: str, stage: str, plugin: str | None) -> DativoError:
    if not exc.role:
        exc.role = role
    if not exc.stage:
        exc.stage = stage
    return exc.with_context(plugin=plugin)


def _fix(role: str) -> str:
    side = "source.reader" if role == "reader" else "target.writer"
    return f"Fix the plugin, or set {side}.fallback: default to use the built-in {role}."


def _wrap(exc: BaseException, role: str, stage: str, plugin: str | None) -> PluginFailed:
    return PluginFailed(
        f"{stage}() raised {type(exc).__name__}: {exc}", role=role, stage=stage, plugin=plugin, hint=_fix(role)
    )


def _close(loaded: _Loaded) -> None:
    try:
        loaded.instance.close()
    except Exception as exc:  # closing must never hide the run's own outcome
        log.warning("close() of %s failed: %s", loaded.spec.name, exc)
