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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa

from dativo import budget
from dativo.api import CommitInfo, Context, Dataset, Mode, Role, Split, WrittenFiles
from dativo.config import FlightEndpoint, ImplementationConfig, JobConfig, PluginCommand, job_locator
from dativo.counters import counted, counters_of
from dativo.errors import (
    ConfigError,
    DativoError,
    PluginFailed,
    PluginIncompatible,
    PluginNotFound,
    PluginUntrusted,
    SandboxError,
    fallback_hint,
    side,
    translate,
)
from dativo.executors.local import LocalExecutor
from dativo.executors.ray import RayExecutor
from dativo.executors.task import Progress, SplitResult, SplitTask, execute
from dativo.fallback import same_datasets, situated
from dativo.plugins.host import PluginHost
from dativo.registry import BUILTIN_READERS, BUILTIN_WRITERS, PluginSpec, builtin_for, has_builtin
from dativo.report import DatasetReport, PluginReport, RunReport, collecting_warnings
from dativo.maintenance import Maintainable, MaintenancePolicy, MaintenanceResult
from dativo.names import check_plugin_name, check_run_id, printable
from dativo.runs import DatasetRun, SplitRun, call, cause
from dativo.state import WatermarkTracker
from dativo.streams import describe

log = logging.getLogger("dativo")
T = TypeVar("T")


MAX_LISTED = 100_000
"""The most datasets a ``discover``, and splits a ``plan``, may return: every split is a task and a staged
file, and a reader that returns millions (a bug, or a hostile plugin) would exhaust the host first."""


@dataclass
class _Loaded:
    """A plugin instance with how it was named and configured."""

    spec: PluginSpec
    instance: Any
    report: PluginReport
    custom: bool = False
    """Whether this is the job's custom implementation (not the built-in)."""
    ctx: Context | None = None
    """The context it was given (its counters go into the run report)."""


class Engine:
    """Runs one job.

    Args:
        job: The validated job.
        run_id: Id of this run; reusing the id of a committed run makes its commit a no-op.
        on_rows: Progress callback, called with the row count of every batch that was read.
        work_dir: Scratch and embedded-default folder (default ``./.dativo``).
        full_refresh: Read every dataset from scratch (its committed state ignored) and replace what its
            target holds (mode ``overwrite`` whatever the job says), committing a fresh state: how rows
            that incremental runs cannot see (deletes, updates that did not move the cursor, NULL cursors)
            are reconciled.
    """

    def __init__(
        self,
        job: JobConfig,
        *,
        run_id: str | None = None,
        on_rows: Callable[[int], None] | None = None,
        work_dir: Path | None = None,
        full_refresh: bool = False,
    ) -> None:
        self.job = job
        self.full_refresh = full_refresh
        self.run_id = check_run_id(run_id) if run_id is not None else uuid.uuid4().hex
        self.on_rows = on_rows
        self.work_dir = (work_dir or Path.cwd() / ".dativo").resolve()
        self._loc = job_locator(job)
        self.committing = False
        """True while the run's commits are under way (an interrupt then waits for them)."""
        self.abandoned = 0
        """Splits an interrupt left running: their plugins are not closed under them."""
        self._host: PluginHost | None = None
        self._custom_datasets: list[Dataset] | None = None
        """What the custom reader discovered, which a built-in that replaces it must match."""
        self._ray: RayExecutor | None = None
        """The cluster the splits run on, while a run with ``executor: ray`` is under way."""

    # --- the plugin host ------------------------------------------------------------------------------

    @contextmanager
    def _hosting(self) -> Iterator[PluginHost]:
        """Open this run's plugin host; closing it stops every plugin process the run left running."""
        beside = self.job.path.parent.resolve() if self.job.path else None
        with PluginHost(job=self.job.name, beside=beside, policy=self.job.plugins.policy.unsigned) as host:
            self._host = host
            try:
                yield host
            finally:
                self._host = None

    def _plugin_host(self) -> PluginHost:
        """The host of the run in progress (``run``, ``check`` and ``discover`` open one)."""
        if self._host is None:
            raise RuntimeError("an Engine loads plugins only within run(), check() or discover()")
        return self._host

    # --- loading --------------------------------------------------------------------------------------

    def _section(self, role: Role) -> tuple[str, Any, ImplementationConfig]:
        if role == "reader":
            return "source", self.job.source, self.job.source.reader
        return "target", self.job.target, self.job.target.writer

    def _candidates(self, role: Role) -> list[Callable[[], PluginSpec]]:
        """The implementations to try for one side, in order (custom first, then the built-in)."""
        section, conf, impl = self._section(role)
        host = self._plugin_host()

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
                return [lambda: host.resolve(role, conf.type, impl.sandbox)]
            return [default]
        # sandboxed: resolved to a proxy of a process in the sandbox, never imported here
        custom = lambda: host.resolve(role, impl.implementation or "", impl.sandbox)  # noqa: E731
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
                memory_bytes=self.job.memory_bytes,
                batch_bytes=budget.batch_bytes(self.job.memory_bytes, self.job.source.parallelism),
            )
            instance = self._plugin_host().instantiate(spec, config, ctx)
        except DativoError as exc:
            error = exc
            if isinstance(exc, PluginNotFound | PluginIncompatible):  # point at the YAML line that named it
                where = (section, role, "implementation") if custom else (section, "type")
                error = type(exc)(f"{self._loc.where(where)}: {exc.message}", job=exc.job, plugin=exc.plugin,
                                  hint=exc.hint)
            plugin = exc.plugin or (impl.implementation if isinstance(impl.implementation, str) else None)
            raise translate(error, role=role, stage="load", plugin=plugin or str(impl.implementation)) \
                from exc.__cause__
        except Exception as exc:
            raise translate(exc, role=role, stage="__init__", plugin=str(impl.implementation or conf.type)) \
                from exc
        report = PluginReport(
            implementation=spec.name, origin=spec.origin, language=spec.language, version=spec.version
        )
        return _Loaded(spec, instance, report, custom, ctx)

    # --- public entry points --------------------------------------------------------------------------

    @contextmanager
    def _job_context(self) -> Iterator[None]:
        try:
            yield
        except DativoError as exc:
            raise exc.with_context(job=self.job.name) from exc.__cause__

    def _starts_a_process(self, role: Role, custom: bool) -> bool:
        """Whether this side's plugin runs in a process of its own, named as such in the job (no import)."""
        _, _, impl = self._section(role)
        if impl.type == "default":
            return impl.sandbox.enabled  # the built-in, confined
        return custom and (impl.sandbox.enabled or isinstance(impl.implementation, PluginCommand | FlightEndpoint))

    def _early(self, role: Role, load: Callable[[], PluginSpec], custom: bool) -> threading.Thread | None:
        """Start resolving an out-of-process plugin in a thread (its process starting, its spec asked for)
        while the other side loads; :meth:`_load` then finds the spec resolved, or its error."""
        if not self._starts_a_process(role, custom):
            return None

        def resolve() -> None:
            try:
                load()
            except Exception:  # the host keeps a plugin's error; _load raises it in the engine's thread
                pass

        thread = threading.Thread(target=resolve, name=f"dativo-start-{role}", daemon=True)
        thread.start()
        return thread

    @contextmanager
    def _plugins(self, reader_load: Callable[[], PluginSpec], writer_load: Callable[[], PluginSpec],
                 custom: tuple[bool, bool]) -> Iterator[tuple[_Loaded, _Loaded]]:
        early = self._early("reader", reader_load, custom[0])
        try:
            writer = self._load("writer", writer_load, custom[1])
        finally:
            if early is not None:  # its process is the host's to end: never leave it starting
                early.join()
        try:
            reader = self._load("reader", reader_load, custom[0])
        except BaseException:
            _close(writer)
            raise
        try:
            yield reader, writer
        finally:
            if self.abandoned:  # a split's thread may still be inside them: closing could crash the process
                log.debug("not closing %s and %s: %d split(s) still inside", reader.spec.name,
                          writer.spec.name, self.abandoned)
            else:
                _close(reader)
                _close(writer)

    def run(self) -> RunReport:
        """Run the job to its commit.

        Returns:
            The run report (``status`` is ``succeeded``).

        Raises:
            DativoError: On any failure; nothing was published unless the error is a commit error.
        """
        with self._job_context(), self._executor(), self._hosting():
            report = self._run()
            if self._ray is not None:
                self._ray.describe(report)
            return report

    @contextmanager
    def _executor(self) -> Iterator[None]:
        """Join the Ray cluster for the run (``executor: ray``); the local executor needs nothing."""
        if self.job.executor.type != "ray":
            yield
            return
        with RayExecutor(self.job, run_id=self.run_id, work_dir=self.work_dir, work=run_split) as executor:
            self._ray = executor
            try:
                yield
            finally:
                self._ray = None

    @contextmanager
    def split_plugins(self, custom: tuple[bool, bool]) -> Iterator[tuple[Any, Any]]:
        """Load the reader and writer of a split planned elsewhere (on a Ray worker, for the driver's run).

        Args:
            custom: Whether the reader and the writer run the job's custom implementation; ``False`` picks the
                built-in (the driver fell back to it).

        Yields:
            The loaded reader and writer (closed afterwards, with this host's plugin processes).
        """
        with self._job_context(), self._hosting():
            readers, writers = self._candidates("reader"), self._candidates("writer")
            with self._plugins(readers[0 if custom[0] else -1], writers[0 if custom[1] else -1],
                               custom) as loaded:
                yield loaded

    def _run(self) -> RunReport:
        started = time.monotonic()
        report = RunReport(job=self.job.name, run_id=self.run_id, full_refresh=self.full_refresh,
                           memory_budget_mb=self.job.memory_mb)
        with collecting_warnings(report.warnings):
            self._attempts(report)
        return report.finish(time.monotonic() - started)

    def _attempts(self, report: RunReport) -> None:
        """Run with the custom plugins, then with the built-in of a side whose custom plugin failed."""
        readers, writers = self._candidates("reader"), self._candidates("writer")
        r = w = 0
        while True:
            custom = (self.job.source.reader.type == "custom" and r == 0,
                      self.job.target.writer.type == "custom" and w == 0)
            try:
                with self._plugins(readers[r], writers[w], custom) as (reader, writer):
                    report.reader, report.writer = reader.report, writer.report
                    runs = self._write_all(reader, writer, fallback=r > 0)
                    self._commit_all(writer, runs, report)
                report.counters = counted(reader, writer)  # closed: a plugin process has sent its own
                return
            except DativoError as exc:
                if isinstance(exc, ConfigError | SandboxError | PluginUntrusted):
                    raise  # the user's to fix (and a refused plugin is never silently replaced)
                if exc.role == "reader" and r + 1 < len(readers) and self._may_fall_back("reader"):
                    r += 1
                elif exc.role == "writer" and w + 1 < len(writers) and self._may_fall_back("writer"):
                    w += 1
                else:
                    raise situated(exc, self.job) from exc.__cause__
                reason = f"custom {exc.role} failed during {exc.stage or 'load'}: {exc}"
                log.warning("%s; falling back to the built-in %s (%s.fallback: default)", reason, exc.role,
                            side(exc.role))
                report.fallback_used = True
                report.fallback_reason = "; ".join(filter(None, [report.fallback_reason, reason]))

    def _may_fall_back(self, role: Role) -> bool:
        """Whether the custom plugin lets the built-in replace it (an encrypting writer must not)."""
        _, _, impl = self._section(role)
        spec = self._plugin_host().resolved(role, impl.implementation or "", impl.sandbox)
        if spec is None or getattr(spec.cls, "allow_fallback", True):  # one that never loaded cannot object
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
        with self._job_context(), self._hosting(), self._first_plugins() as (reader, writer):
            call(reader, "check", reader.instance.check)
            call(writer, "check", writer.instance.check)
            return [("source", reader.spec.name, "ok"), ("target", writer.spec.name, "ok")]

    def discover(self) -> list[Dataset]:
        """Load the reader and list its datasets."""
        with self._job_context(), self._hosting(), self._first_plugins() as (reader, _):
            call(reader, "check", reader.instance.check)
            return self._discover(reader)

    def maintain(self, policy: MaintenancePolicy, *, dry_run: bool = False) -> list[MaintenanceResult]:
        """Tidy the target of every dataset the source offers (``dativo maintain``).

        Raises:
            ConfigError: The job's writer cannot be maintained.
        """
        with self._job_context(), self._hosting(), self._first_plugins() as (reader, writer):
            if not isinstance(writer.instance, Maintainable):
                raise ConfigError(
                    f"the {writer.spec.name} writer has nothing to maintain",
                    plugin=writer.spec.name,
                    hint="Maintenance applies to targets that keep snapshots, such as Iceberg tables.",
                )
            call(reader, "check", reader.instance.check)
            call(writer, "check", writer.instance.check)
            maintain = writer.instance.maintain
            return [call(writer, "maintain", lambda d: maintain(d, policy, dry_run=dry_run), dataset)
                    for dataset in self._discover(reader)]

    def _first_plugins(self) -> Any:
        """The implementations the job names, without fallback (for check and discover)."""
        custom = (self.job.source.reader.type == "custom", self.job.target.writer.type == "custom")
        return self._plugins(self._candidates("reader")[0], self._candidates("writer")[0], custom)

    # --- the two phases -------------------------------------------------------------------------------

    def _discover(self, reader: _Loaded) -> list[Dataset]:
        datasets = self._list_of(reader, "discover", Dataset, call(reader, "discover", reader.instance.discover))
        for dataset in datasets:
            call(reader, "discover", lambda name: check_plugin_name(
                name, "dataset name", role="reader", stage="discover"), dataset.name)
        return datasets

    def _write_all(self, reader: _Loaded, writer: _Loaded, *, fallback: bool = False) -> list[DatasetRun]:
        call(writer, "check", writer.instance.check)
        call(reader, "check", reader.instance.check)
        runs: list[DatasetRun] = []
        datasets = self._discover(reader)
        if fallback:
            same_datasets(self._custom_datasets, datasets, reader.spec.name, job=self.job.name)
        else:
            self._custom_datasets = datasets
        for dataset in datasets:  # every dataset is checked before any target is created
            self._check_dataset(dataset)
        try:
            for dataset in datasets:
                run = self._start_dataset(writer, dataset)
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

    def _cursor(self, dataset: Dataset) -> str | None:
        """The dataset's incremental cursor: its own (from the reader's per-dataset settings), else the job's."""
        return dataset.cursor or (self.job.source.incremental.cursor if self.job.source.incremental else None)

    def _check_dataset(self, dataset: Dataset) -> None:
        """The job's cursor is a column of ``dataset`` (checked for every dataset before any is written)."""
        if self._ray is not None:
            self._ray.check_dataset(dataset)
        cursor = self._cursor(dataset)
        if cursor and dataset.schema is not None and cursor not in dataset.schema.names:
            candidates = ", ".join(dataset.cursor_candidates) or ", ".join(dataset.schema.names)
            where = "its own cursor" if dataset.cursor else "source.incremental.cursor"
            raise ConfigError(
                f"{where} '{cursor}' is not a column of dataset '{dataset.name}'",
                job=self.job.name,
                hint=f"Use one of: {candidates}; or give the dataset a cursor of its own in the source's "
                "per-table settings. No target was created.",
            )

    def _start_dataset(self, writer: _Loaded, dataset: Dataset) -> DatasetRun:
        cursor = self._cursor(dataset)
        if not cursor:
            return DatasetRun(dataset, dataset.schema, None, None)
        state = call(writer, "state", writer.instance.state, dataset)  # also what the commit's CAS starts from
        if self.full_refresh:
            state = None
        return DatasetRun(dataset, dataset.schema, state, WatermarkTracker(cursor, tuple(dataset.primary_key)))

    def _write_dataset(self, reader: _Loaded, writer: _Loaded, run: DatasetRun) -> None:
        planned = call(reader, "plan", reader.instance.plan, run.dataset, run.previous_state)
        splits = self._list_of(reader, "plan", Split, planned)
        for split in splits:
            self._check_split(reader, run.dataset, split)
        run.splits = len(splits)
        mode: Mode = "overwrite" if self.full_refresh else self.job.target.mode
        run.prepare(writer, mode)
        if self._ray is not None:  # the driver prepared the target: workers only write into it
            self._ray.run(run, splits, mode, custom=(reader.custom, writer.custom), on_rows=self.on_rows,
                          counters=counters_of(reader, writer))
            return
        cancel = threading.Event()
        ahead = budget.read_ahead_bytes(self.job.memory_bytes, self.job.source.parallelism)
        tasks = [SplitRun(run, split, reader, writer, mode=mode, cancel=cancel, on_rows=self.on_rows,
                          read_ahead_bytes=ahead)
                 for split in splits]
        executor = LocalExecutor(self.job.source.parallelism)
        try:
            executor.run(tasks, cancel)
        finally:
            self.abandoned += executor.abandoned + run.stuck_streams
        run.prepare(writer, mode, schema=pa.schema([]))  # no batch, no declared schema: the target still learns

    def _list_of(self, reader: _Loaded, stage: str, kind: type[T], value: Any) -> list[T]:
        """``value`` if it is a list of ``kind`` (what ``discover`` and ``plan`` must return), and not longer
        than :data:`MAX_LISTED`."""
        if not isinstance(value, list | tuple) or not all(isinstance(item, kind) for item in value):
            raise PluginFailed(
                f"{stage}() returned {describe(value)}; it must return a list of dativo.api.{kind.__name__}",
                role="reader", stage=stage, plugin=reader.spec.name, job=self.job.name,
                hint=fallback_hint("reader"),
            )
        if len(value) > MAX_LISTED:
            what = "splits" if kind is Split else "datasets"
            raise PluginFailed(
                f"{stage}() returned {len(value):,} {what}; a run takes at most {MAX_LISTED:,}",
                role="reader", stage=stage, plugin=reader.spec.name, job=self.job.name,
                hint="Plan fewer, larger splits (a split may cover many files or key ranges)." if kind is Split
                else "Name the tables or files the job reads in the source section instead of all of them.",
            )
        return list(value)

    def _check_split(self, reader: _Loaded, dataset: Dataset, split: Split) -> None:
        """A split names its dataset and has an id that is safe in a path (writers stage files by both)."""
        if split.dataset != dataset.name:
            raise PluginFailed(
                f"plan() of dataset '{dataset.name}' returned a split of dataset {printable(split.dataset)}",
                role="reader", stage="plan", plugin=reader.spec.name, job=self.job.name,
                hint="Every split plan(dataset) returns must name that dataset.",
            )
        call(reader, "plan", lambda name: check_plugin_name(name, "split id", role="reader", stage="plan"),
                   split.id)

    def _commit_all(self, writer: _Loaded, runs: list[DatasetRun], report: RunReport) -> None:
        self.committing = True  # the CLI holds SIGINT/SIGTERM until the commits have ended
        try:
            self._commit_each(writer, runs, report)
        finally:
            self.committing = False

    def _commit_each(self, writer: _Loaded, runs: list[DatasetRun], report: RunReport) -> None:
        for run in runs:
            try:
                info = writer.instance.commit(run.dataset, run.written, run.new_state(), self.run_id)
            except Exception as exc:
                raise translate(
                    exc, role="writer", stage="commit", plugin=writer.spec.name, job=self.job.name,
                    action=f"commit of dataset '{run.dataset.name}'",
                    hint=f"Check the target, then rerun with --run-id {self.run_id}: a committed run is a no-op.",
                ) from cause(exc)
            if not isinstance(info, CommitInfo):
                info = CommitInfo(commit_id=None)
            if info.no_op:  # this run's files duplicate what the earlier commit published
                self._discard(writer, run.written)
            rows = self._rows_written(writer, run)
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
    def _rows_written(writer: _Loaded, run: DatasetRun) -> int:
        """The rows the writer was given: its own count is a claim, shown only when it disagrees."""
        claimed = sum(w.rows for w in run.written)
        if claimed != run.rows_read:
            log.warning("%s says it wrote %s rows of dataset '%s', but it was given %s; the report counts %s",
                        writer.spec.name, f"{claimed:,}", run.dataset.name, f"{run.rows_read:,}",
                        f"{run.rows_read:,}")
        return run.rows_read

    @staticmethod
    def _discard(writer: _Loaded, written: list[WrittenFiles]) -> None:
        if not any(w.files for w in written):
            return
        try:
            writer.instance.abort(written)
        except Exception as exc:  # the run itself succeeded; leftovers are unreferenced files
            log.warning("abort() of %s failed to delete unpublished files: %s", writer.spec.name, exc)


def run_split(task: SplitTask, counter: Any | None = None) -> SplitResult:
    """The body of a Ray task: one split the driver's engine planned, run on this machine.

    Args:
        task: The split and everything it needs (see :class:`~dativo.executors.task.SplitTask`).
        counter: The run's progress counter (:class:`~dativo.executors.ray.Counter` handle), if any.
    """
    progress = Progress(counter)
    engine = Engine(task.job, run_id=task.run_id, on_rows=progress, work_dir=Path(task.work_dir))

    def stuck(streams: int) -> None:
        engine.abandoned += streams

    return execute(task, engine.split_plugins, progress, stuck)


def _close(loaded: _Loaded) -> None:
    try:
        loaded.instance.close()
    except Exception as exc:  # closing must never hide the run's own outcome
        log.warning("close() of %s failed: %s", loaded.spec.name, exc)
