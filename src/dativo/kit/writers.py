"""The writer checks, in the order they run after the common ones (:mod:`dativo.kit.common`).

Every run below calls the writer as the engine does — ``state``, ``prepare``, ``write`` per split, one
``commit`` with the state and the run id, ``abort`` of the files of a no-op commit, ``close`` — on a fresh
instance aimed at the kit's temporary target, each with a dataset of its own (``kit_<check>``), with
synthetic rows (``id`` int64 NOT NULL, ``name`` string, ``amount`` decimal128(12, 2), ``day`` date32, ``at``
timestamp[us, UTC], ``ok`` bool; some nulls).

=============================  ==================================================================================
``write-commit``               two splits written and committed: the target holds exactly those rows, the
                               ``CommitInfo`` is one, and a new instance's ``state()`` is the committed state
``idempotent-commit``          the same run id committed again (new files, as a rerun writes them) is
                               ``CommitInfo.no_op`` and adds no row
``empty-input``                a split without a batch writes and commits (no row added)
``concurrent-splits``          four splits written at once from four threads: every row once, no file shared
``schema-evolution``           appending with a column added, then with ``int32`` widened to ``int64``: each
                               either works (every row readable) or is refused with ``SchemaMismatch`` or
                               ``ConfigError``
``abort`` (fault)              every file ``write`` listed in ``WrittenFiles`` is gone after ``abort``, and no row
                               is visible
``crash-before-commit``        written, then closed without ``commit`` or ``abort`` (a killed run; an
(fault)                        out-of-process writer's process is ended): nothing becomes visible and the state
                               stays the last commit's
=============================  ==================================================================================

**Reading back.** For a target in a local folder (a ``path`` option, as the built-in ``parquet`` writer and
any writer on :class:`dativo.api.DatasetStores` have) the kit reads what a consumer sees: every Parquet, CSV
(with a header) or JSON-lines file under the dataset's folder, names starting with ``_`` or ``.`` skipped
(what pyarrow, DuckDB or Spark list).
Elsewhere (an Iceberg catalog, object storage, a format the kit cannot read) it relies on ``CommitInfo``
(``rows``, ``no_op``), ``state()`` and the files ``WrittenFiles`` lists: a writer that claims a no-op yet
publishes again cannot be caught there, which the report says.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from dativo.api import CommitInfo, Dataset, Split, State, WrittenFiles
from dativo.errors import ConfigError, SchemaMismatch
from dativo.kit.checks import Checklist, Failed
from dativo.kit.common import PluginChecks
from dativo.kit.perf import PerfLine, measure
from dativo.kit.rows import multiset_difference, row_digests
from dativo.kit.subject import Session, Subject, TemporaryTarget
from dativo.state import Watermark, same_state

SCHEMA = pa.schema([
    pa.field("id", pa.int64(), nullable=False),
    pa.field("name", pa.string()),
    pa.field("amount", pa.decimal128(12, 2)),
    pa.field("day", pa.date32()),
    pa.field("at", pa.timestamp("us", tz="UTC")),
    pa.field("ok", pa.bool_()),
])
"""The schema of the kit's synthetic rows."""

READ_TYPES = pa.schema([*SCHEMA, pa.field("extra", pa.string())])
"""The types a text target's columns are parsed with (the kit's rows, and the column schema evolution adds)."""


def rows(start: int, count: int, schema: pa.Schema = SCHEMA) -> pa.Table:
    """``count`` synthetic rows with ids from ``start``, in ``schema`` (a subset or variant of :data:`SCHEMA`)."""
    ids = pa.array(range(start, start + count), pa.int64())
    every = lambda n: pc.equal(pc.bit_wise_and(ids, n), 0)  # noqa: E731
    columns: dict[str, pa.Array] = {
        "id": ids,
        "name": pc.if_else(every(7), pa.nulls(count, pa.string()),
                           pc.binary_join_element_wise("row ", pc.cast(ids, pa.string()), "")),
        "amount": pc.cast(pc.binary_join_element_wise(pc.cast(pc.multiply(ids, 37), pa.string()), "25", "."),
                          pa.decimal128(12, 2)),
        "day": pc.cast(pc.cast(pc.add(pc.bit_wise_and(ids, 1023), 19_000), pa.int32()), pa.date32()),
        "at": pc.cast(pc.multiply(ids, 1_000_003), pa.timestamp("us", tz="UTC")),
        "ok": pc.if_else(every(3), pa.nulls(count, pa.bool_()), every(1)),
        "extra": pc.binary_join_element_wise("x", pc.cast(ids, pa.string()), ""),
    }
    return pa.table([pc.cast(columns[f.name], f.type) for f in schema], schema=schema)


def _as_text(arrow_type: pa.DataType) -> pa.DataType:
    textual = pa.types.is_temporal(arrow_type) or pa.types.is_decimal(arrow_type)
    return pa.string() if textual else arrow_type


def _read_jsonl(path: Path) -> pa.Table:
    """JSON lines, where dates, timestamps and decimals are text (as JSON writers write them)."""
    loose = pa.schema([pa.field(f.name, _as_text(f.type)) for f in READ_TYPES])
    table = pajson.read_json(path, parse_options=pajson.ParseOptions(
        explicit_schema=loose, unexpected_field_behavior="infer"))
    present = [n for n in table.column_names if n in READ_TYPES.names]
    return table.select(present).cast(pa.schema([READ_TYPES.field(n) for n in present]))


_READERS: dict[str, Callable[[Path], pa.Table]] = {
    ".parquet": pq.read_table,
    # text formats: parsed with the kit's column types (a column a file lacks is ignored), empty is NULL
    ".csv": lambda p: pacsv.read_csv(p, convert_options=pacsv.ConvertOptions(
        column_types=READ_TYPES, strings_can_be_null=True, quoted_strings_can_be_null=False)),
    ".jsonl": _read_jsonl,
}
_READERS[".ndjson"] = _READERS[".jsonl"]


def visible(path: Path) -> pa.Table | None:
    """What a consumer listing ``path`` sees: every Parquet, CSV or JSON-lines file not under a ``_`` or ``.``
    name; ``None`` when the folder holds data files of another format (the kit cannot read them back).

    Raises:
        Exception: A file cannot be read in the format its name says.
    """
    if not path.is_dir():
        return pa.table({})
    files = sorted(
        p for p in path.rglob("*")
        if p.is_file() and not any(part.startswith(("_", ".")) for part in p.relative_to(path).parts)
    )
    if any(p.suffix.lower() not in _READERS for p in files):
        return None
    tables = [_READERS[p.suffix.lower()](p) for p in files]
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="permissive")


@dataclass
class WriterRun:
    """What the writer checks learnt, for the differential and the report."""

    readback: bool = False
    readback_note: str = ""
    perf: list[PerfLine] = field(default_factory=list)
    committed: dict[str, pa.Table] = field(default_factory=dict)
    """What each dataset's target holds, as read back (only when the kit can read it)."""


class WriterChecks(PluginChecks):
    """Runs the writer checks against a temporary target.

    Args:
        target: The subject's configuration aimed at the kit's folder.
        work_dir: The contexts' scratch folder (an Iceberg writer's default catalog lives there).
        spec: The implementation to run instead of the subject's (the built-in beside it, a sandboxed one).
    """

    def __init__(self, session: Session, subject: Subject, checks: Checklist, secret: str, writer: Any,
                 target: TemporaryTarget, work_dir: Path, *, spec: Any = None) -> None:
        super().__init__(session, subject, checks, secret, writer, target.settings, target.options)
        self.spec = spec
        self.target = target
        self.work_dir = work_dir
        self.run = WriterRun(readback=target.path is not None)
        self.roundtrip_run = ""
        if target.path is None:
            self.run.readback_note = ("the kit cannot read this target back: rows are checked through CommitInfo, "
                                      "state() and the files WrittenFiles lists")

    def all(self) -> WriterRun:
        """Every writer check, in order."""
        self.options_schema()
        self.options_enforced()
        self.check()
        self.broken_config()
        self.write_commit()
        self.idempotent_commit()
        self.empty_input()
        self.concurrent_splits()
        self.schema_evolution()
        self.abort()
        self.crash_before_commit()
        self.secrets()
        return self.run

    def instance(self, **kw: Any) -> Any:
        kw.setdefault("work_dir", self.work_dir)
        if self.spec is not None:
            kw.setdefault("spec", self.spec)
        return super().instance(**kw)

    # --- helpers ------------------------------------------------------------------------------------------

    def read_back(self, dataset: str) -> pa.Table | None:
        """The dataset's visible rows, or ``None`` when this target cannot be read back."""
        if self.target.path is None:
            return None
        try:
            held = visible(Path(self.target.path.replace("{dataset}", dataset)))
            if held is None:
                raise ValueError("its data files are in a format the kit does not read (Parquet, CSV, JSON lines)")
            return held
        except Exception as exc:  # e.g. encrypted Parquet: fall back to CommitInfo and state
            self.target.path = None
            self.run.readback = False
            self.run.readback_note = (f"reading the target back failed ({type(exc).__name__}: {exc}); rows are "
                                      "checked through CommitInfo, state() and WrittenFiles")
            return None

    def state_now(self, dataset: Dataset) -> State | None:
        """What a fresh instance of the writer says the dataset's committed state is."""
        fresh = self.instance()
        try:
            return fresh.state(dataset)
        finally:
            self.session.close(fresh)

    @staticmethod
    def state_of(table: pa.Table) -> State:
        """The state a run of ``table`` commits (a watermark on ``id``)."""
        last = pc.max(table.column("id")).as_py() if table.num_rows else 0
        return Watermark("id", last).to_state(pa.schema([pa.field("id", pa.int64())]))

    def _write(self, writer: Any, dataset: Dataset, tables: list[pa.Table]) -> list[WrittenFiles]:
        written = []
        for i, table in enumerate(tables):
            result = writer.write(Split(dataset.name, str(i)), table.to_reader())
            if not isinstance(result, WrittenFiles):
                raise Failed(f"write() returned {type(result).__name__}, not dativo.api.WrittenFiles")
            written.append(result)
        return written

    def commit_run(self, dataset: Dataset, tables: list[pa.Table], *, run_id: str | None = None,
                   write: Callable[[Any, Dataset, list[pa.Table]], list[WrittenFiles]] | None = None,
                   ) -> tuple[CommitInfo, list[WrittenFiles], State | None]:
        """One run as the engine makes it: state, prepare, write every split, commit, abort a no-op's files."""
        run_id = run_id or self.session.run_id(dataset.name)
        writer = self.instance(run_id=run_id)
        try:
            writer.state(dataset)
            schema = tables[0].schema if tables else dataset.schema
            writer.prepare(dataset, schema, "append")
            written = (write or self._write)(writer, dataset, tables)
            whole = pa.concat_tables(tables) if tables else None
            state = self.state_of(whole) if whole is not None and whole.num_rows else None
            info = writer.commit(dataset, written, state, run_id)
            if not isinstance(info, CommitInfo):
                raise Failed(f"commit() returned {type(info).__name__}, not dativo.api.CommitInfo")
            if info.no_op:
                writer.abort(written)
            return info, written, state
        finally:
            self.session.close(writer)

    def same_rows(self, dataset: str, expected: pa.Table, what: str) -> str:
        """Compare what the target holds with ``expected``; return how it was checked."""
        held = self.read_back(dataset)
        if held is None:
            return "not read back"
        if held.num_rows != expected.num_rows:
            raise Failed(f"{what}: the target holds {held.num_rows:,} row(s) where {expected.num_rows:,} were "
                         "committed")
        if not expected.num_rows:
            return "read back: no rows, as expected"
        missing = [n for n in expected.schema.names if n not in held.schema.names]
        if missing:
            raise Failed(f"{what}: the target lacks column(s) {', '.join(missing)}")
        held = held.select(expected.schema.names)
        if not held.schema.equals(expected.schema, check_metadata=False):
            held = held.cast(expected.schema)
        lost, extra = multiset_difference(Counter(row_digests(expected)), Counter(row_digests(held)))
        if lost or extra:
            raise Failed(f"{what}: {lost:,} committed row(s) differ in the target ({extra:,} unexpected)")
        self.run.committed[dataset] = held
        return f"read back: the same {held.num_rows:,} row(s)"

    def dataset(self, name: str, schema: pa.Schema = SCHEMA) -> Dataset:
        return Dataset(name=f"kit_{name}", schema=schema, primary_key=("id",))

    # --- contract -----------------------------------------------------------------------------------------

    def write_commit(self) -> None:
        with self.checks.check("write-commit") as out:
            self.checks.require("check")
            dataset = self.dataset("roundtrip")
            tables = [rows(1, 300), rows(301, 300)]
            self.roundtrip_run = self.session.run_id("roundtrip")
            info, written, state = self.commit_run(dataset, tables, run_id=self.roundtrip_run)
            if info.no_op:
                raise Failed("the first commit of a run id returned no_op=True")
            if info.rows and info.rows != 600:
                raise Failed(f"commit() reported {info.rows:,} row(s) where 600 were written")
            how = self.same_rows(dataset.name, pa.concat_tables(tables), "after the commit")
            now = self.state_now(dataset)
            if now is not None and not same_state(now, state):
                raise Failed(f"state() after the commit is {now}, not the committed state {state}")
            kept = "state() gives the committed state" if now is not None else "the writer keeps no state"
            out.reason = f"600 rows in 2 splits → commit {info.commit_id}; {how}; {kept}"
            out.details = {"commit_id": info.commit_id, "files": sum(len(w.files) for w in written)}

    def idempotent_commit(self) -> None:
        with self.checks.check("idempotent-commit") as out:
            self.checks.require("write-commit")
            dataset = self.dataset("roundtrip")
            tables = [rows(1, 300), rows(301, 300)]
            info, written, _ = self.commit_run(dataset, tables, run_id=self.roundtrip_run)
            held = self.read_back(dataset.name)
            if not info.no_op:
                dup = f"; the target now holds {held.num_rows:,} rows for 600" if held is not None else ""
                raise Failed(f"committing run id {self.roundtrip_run} a second time returned no_op=False{dup}: "
                             "a rerun publishes its rows twice")
            if held is not None and held.num_rows != 600:
                raise Failed(f"the second commit of run id {self.roundtrip_run} said no_op=True, but the target "
                             f"holds {held.num_rows:,} rows for 600")
            out.reason = "the second commit of the run id is a no-op" + (
                ", no duplicate row" if held is not None else " (not read back)")

    def empty_input(self) -> None:
        with self.checks.check("empty-input") as out:
            self.checks.require("check")
            dataset = self.dataset("empty")
            empty = SCHEMA.empty_table()
            info, written, _ = self.commit_run(dataset, [empty])
            held = self.read_back(dataset.name)
            if held is not None and held.num_rows:
                raise Failed(f"an empty split left {held.num_rows:,} row(s) in the target")
            out.reason = f"an empty split wrote {sum(len(w.files) for w in written)} file(s) and committed"

    def concurrent_splits(self) -> None:
        with self.checks.check("concurrent-splits") as out:
            self.checks.require("check")
            dataset = self.dataset("concurrent")
            tables = [rows(1 + i * 250, 250) for i in range(4)]

            def parallel(writer: Any, dataset: Dataset, tables: list[pa.Table]) -> list[WrittenFiles]:
                barrier = threading.Barrier(len(tables))
                results: list[Any] = [None] * len(tables)

                def one(i: int) -> None:
                    try:
                        barrier.wait(timeout=10)
                        results[i] = writer.write(Split(dataset.name, str(i)), tables[i].to_reader())
                    except BaseException as exc:  # handed to the checking thread
                        results[i] = exc

                threads = [threading.Thread(target=one, args=(i,), name=f"kit-split-{i}") for i in range(len(tables))]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                for result in results:
                    if isinstance(result, BaseException):
                        raise result
                    if not isinstance(result, WrittenFiles):
                        raise Failed(f"write() returned {type(result).__name__}, not dativo.api.WrittenFiles")
                return list(results)

            info, written, _ = self.commit_run(dataset, tables, write=parallel)
            files = [f for w in written for f in w.files]
            if len(set(files)) != len(files):
                raise Failed("two splits written at once listed the same file: "
                             f"{sorted(f for f in files if files.count(f) > 1)[:2]}")
            how = self.same_rows(dataset.name, pa.concat_tables(tables), "after 4 concurrent splits")
            out.reason = f"4 splits from 4 threads, {len(files)} distinct file(s); {how}"

    def schema_evolution(self) -> None:
        with self.checks.check("schema-evolution") as out:
            self.checks.require("check")
            narrow = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("name", pa.string())])
            wider = narrow.append(pa.field("extra", pa.string()))
            int32 = pa.schema([pa.field("id", pa.int32(), nullable=False), pa.field("name", pa.string())])
            outcomes = [
                self._evolve("add a column", "evolve_add", narrow, wider),
                self._evolve("int32 → int64", "evolve_widen", int32, narrow),
            ]
            out.reason = "; ".join(outcomes)

    def _evolve(self, what: str, name: str, before: pa.Schema, after: pa.Schema) -> str:
        dataset = self.dataset(name, before)
        self.commit_run(dataset, [rows(1, 50, before)])
        evolved = Dataset(dataset.name, after, dataset.primary_key)
        try:
            self.commit_run(evolved, [rows(51, 50, after)])
        except (SchemaMismatch, ConfigError) as exc:
            return f"{what}: refused with {type(exc).__name__}"
        held = self.read_back(dataset.name)
        if held is not None and held.num_rows != 100:
            raise Failed(f"{what}: accepted, but the target holds {held.num_rows} of the 100 rows")
        return f"{what}: evolved" + ("" if held is None else f", {held.num_rows} rows readable")

    # --- faults -------------------------------------------------------------------------------------------

    def abort(self) -> None:
        with self.checks.check("abort", "fault") as out:
            self.checks.require("check")
            dataset = self.dataset("abort")
            writer = self.instance()
            try:
                writer.state(dataset)
                writer.prepare(dataset, SCHEMA, "append")
                written = self._write(writer, dataset, [rows(1, 200), rows(201, 200)])
                files = [f for w in written for f in w.files]
                writer.abort(written)
            finally:
                self.session.close(writer)
            left = [f for f in files if _exists(f)]
            if left:
                raise Failed(f"{len(left)} of the {len(files)} file(s) listed in WrittenFiles still exist after "
                             f"abort(): {left[0]}")
            held = self.read_back(dataset.name)
            if held is not None and held.num_rows:
                raise Failed(f"after abort() the target shows {held.num_rows:,} row(s)")
            local = sum(1 for f in files if "://" not in f.removeprefix("file://"))
            checked = f"{len(files)} file(s) written, none left" if local == len(files) else (
                f"{len(files)} file(s) written ({len(files) - local} remote, not checked)")
            out.reason = f"{checked} after abort()"

    def crash_before_commit(self) -> None:
        with self.checks.check("crash-before-commit", "fault") as out:
            self.checks.require("check")
            dataset = self.dataset("crash")
            baseline = rows(1, 100)
            _, _, state = self.commit_run(dataset, [baseline])
            writer = self.instance()
            try:
                writer.state(dataset)
                writer.prepare(dataset, SCHEMA, "append")
                written = self._write(writer, dataset, [rows(101, 200)])
            finally:
                self.session.close(writer)  # no commit, no abort: a run killed between write and commit
            self.same_rows(dataset.name, baseline, "after a run that wrote but never committed")
            now = self.state_now(dataset)
            if now is not None and not same_state(now, state):
                raise Failed(f"after a run that never committed, state() is {now}, not the last commit's {state}")
            seen = "nothing new visible" if self.target.path is not None else "the target was not read back"
            kept = "state() is still the last commit's" if now is not None else "the writer keeps no state"
            out.reason = f"{sum(len(w.files) for w in written)} file(s) written, never committed: {seen}; {kept}"

    # --- performance --------------------------------------------------------------------------------------

    def perf(self, label: str, spec: Any = None, target: TemporaryTarget | None = None,
             count: int = 100_000) -> PerfLine:
        """Write and commit ``count`` rows in one split, measured (the subject, or ``spec`` at ``target``)."""
        table = rows(1, count)
        dataset = self.dataset("perf")
        settings = target.settings if target is not None else self.settings
        options = target.options if target is not None else self.options
        work = self.session.folder("perf-work") if spec is not None else self.work_dir
        run_id = self.session.run_id("perf")
        writer = self.session.instance(self.subject, spec=spec, settings=settings, options=options, work_dir=work,
                                       run_id=run_id)

        def go() -> tuple[int, int]:
            writer.state(dataset)
            writer.prepare(dataset, SCHEMA, "append")
            written = [writer.write(Split(dataset.name, "0"), table.to_reader())]
            writer.commit(dataset, written, self.state_of(table), run_id)
            return table.num_rows, table.nbytes

        try:
            line = measure(label, (spec or self.subject.spec).name, "write", go)
        finally:
            self.session.close(writer)
        self.run.perf.append(line)
        return line


def _exists(file: str) -> bool:
    local = file.removeprefix("file://")
    if "://" in local:
        return False  # a remote object: the kit only checks local files
    return Path(local).exists()


__all__ = ["SCHEMA", "WriterChecks", "WriterRun", "rows", "visible"]
