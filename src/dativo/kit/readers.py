"""The reader checks, in the order they run after the common ones (:mod:`dativo.kit.common`):

=========================  ======================================================================================
``discover``               ``discover()`` returns a non-empty list of valid ``Dataset`` s: safe unique names,
                           keys and cursor candidates that are columns of the schema
``plan-json``              every ``Split`` of ``plan(dataset, None)`` names its dataset, has a unique safe id, and
                           its ``params`` survive ``json.dumps``/``json.loads`` (the round-tripped splits are the
                           ones read afterwards)
``plan-deterministic``     planning twice gives the same splits (ids and params)
``read-deterministic``     reading every split twice gives the same rows (multisets of row digests)
``schema``                 every batch has the declared schema (or the first batch's), NOT NULL columns have no
                           nulls, every batch's buffers validate fully
``incremental-future``     a state whose watermark is above every cursor value reads no row
``incremental-resume``     a state at the middle row's watermark reads exactly the rows after it
``cancel`` (fault)         closing a stream after its first batch leaves no thread and no child process behind
=========================  ======================================================================================

The cursor of the incremental checks is the dataset's own, else the job's ``incremental.cursor``, else the
dataset's first cursor candidate (the reader is then created with it as ``ctx.cursor``). States are built with
:class:`dativo.state.WatermarkTracker` and :class:`~dativo.state.Watermark`, exactly as the engine commits
them; the expected rows are selected with :func:`dativo.streams.after_mask`, the engine's own rule.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dativo.api import Dataset, Split
from dativo.kit.checks import Checklist, Failed, Skipped
from dativo.kit.common import PluginChecks
from dativo.kit.perf import PerfLine, measure
from dativo.kit.rows import DIGEST, Pass, Stream, multiset_difference, read_pass
from dativo.kit.subject import Session, Subject
from dativo.names import name_problem
from dativo.state import Watermark, WatermarkTracker
from dativo.streams import after_mask

THREAD_GRACE_S = 3.0
"""How long the threads and processes of a closed stream have to end."""


@dataclass
class ReaderRun:
    """What the reader checks learnt, for the checks after them (differential, sandbox, report)."""

    reader: Any = None
    datasets: list[Dataset] = field(default_factory=list)
    splits: dict[str, list[Split]] = field(default_factory=dict)
    passes: dict[str, Pass] = field(default_factory=dict)
    perf: list[PerfLine] = field(default_factory=list)


@dataclass
class _Case:
    """One dataset of the incremental checks: its reader (told the cursor), its rows' cursor and key values."""

    dataset: Dataset
    reader: Any
    cursor: str
    key: tuple[str, ...]
    table: pa.Table
    rows: pa.Table
    count: int


def cursor_of(dataset: Dataset, subject: Subject) -> str | None:
    """The incremental cursor the kit uses for ``dataset`` (see the module's docstring)."""
    return dataset.cursor or subject.cursor or (dataset.cursor_candidates[0] if dataset.cursor_candidates else None)


def split_json(splits: list[Split]) -> str:
    """The canonical JSON of a plan (``TypeError`` if a split's params are not JSON)."""
    return json.dumps([{"dataset": s.dataset, "id": s.id, "params": s.params} for s in splits], sort_keys=True)


def _bumped(value: Any) -> Any:
    """A value above ``value`` of the same kind, where there is an obvious one (else ``value``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | decimal.Decimal):
        return value + 1
    if isinstance(value, dt.datetime | dt.date):
        return value + dt.timedelta(days=1)
    return value


class ReaderChecks(PluginChecks):
    """Runs the reader checks on the subject's main instance (created by the ``load`` check)."""

    def __init__(self, session: Session, subject: Subject, checks: Checklist, secret: str, reader: Any) -> None:
        super().__init__(session, subject, checks, secret, reader, subject.settings, subject.options)
        self.run = ReaderRun(reader=reader)

    def all(self) -> ReaderRun:
        """Every reader check, in order."""
        self.options_schema()
        self.options_enforced()
        self.check()
        self.broken_config()
        self.discover()
        self.plan()
        self.read()
        self.incremental()
        self.cancel()
        self.secrets()
        return self.run

    # --- discover and plan --------------------------------------------------------------------------------

    def discover(self) -> None:
        with self.checks.check("discover") as out:
            self.checks.require("check")
            datasets = self.run.reader.discover()
            if not isinstance(datasets, list | tuple) or not all(isinstance(d, Dataset) for d in datasets):
                raise Failed(f"discover() returned {type(datasets).__name__}, not a list of dativo.api.Dataset")
            if not datasets:
                raise Failed("discover() returned no dataset")
            names = [d.name for d in datasets]
            if len(set(names)) != len(names):
                raise Failed(f"discover() returned the same dataset name twice: {names}")
            for d in datasets:
                problem = name_problem(d.name)
                if problem:
                    raise Failed(f"dataset name {d.name!r} cannot be used: {problem}")
                if d.schema is not None and not isinstance(d.schema, pa.Schema):
                    raise Failed(f"dataset '{d.name}' has a schema of type {type(d.schema).__name__}")
                if d.schema is not None:
                    columns = set(d.schema.names)
                    for what, names_ in (("primary key", d.primary_key), ("cursor candidate", d.cursor_candidates),
                                         ("cursor", (d.cursor,) if d.cursor else ())):
                        unknown = [n for n in names_ if n not in columns]
                        if unknown:
                            raise Failed(f"dataset '{d.name}': {what} {', '.join(unknown)} is not a column")
            self.run.datasets = list(datasets)
            shown = ", ".join(names[:5]) + ("…" if len(names) > 5 else "")
            out.reason = f"{len(datasets)} dataset(s): {shown}"
            out.details["datasets"] = [
                {"name": d.name, "columns": len(d.schema) if d.schema is not None else None,
                 "primary_key": list(d.primary_key), "cursor_candidates": list(d.cursor_candidates)}
                for d in datasets
            ]

    def _plan(self, reader: Any, dataset: Dataset, state: Any) -> list[Split]:
        splits = reader.plan(dataset, state)
        if not isinstance(splits, list | tuple) or not all(isinstance(s, Split) for s in splits):
            raise Failed(f"plan() of dataset '{dataset.name}' returned {type(splits).__name__}, not a list of Split")
        return list(splits)

    def plan(self) -> None:
        first: dict[str, str] = {}
        with self.checks.check("plan-json") as out:
            self.checks.require("discover")
            total = 0
            for dataset in self.run.datasets:
                splits = self._plan(self.run.reader, dataset, None)
                ids = [s.id for s in splits]
                if len(set(ids)) != len(ids):
                    raise Failed(f"plan() of dataset '{dataset.name}' returned the same split id twice: {ids}")
                for split in splits:
                    if split.dataset != dataset.name:
                        raise Failed(f"plan() of dataset '{dataset.name}' returned a split of '{split.dataset}'")
                    problem = name_problem(split.id)
                    if problem:
                        raise Failed(f"split id {split.id!r} of dataset '{dataset.name}' cannot be used: {problem}")
                try:
                    text = split_json(splits)
                except (TypeError, ValueError) as exc:
                    raise Failed(f"the params of a split of dataset '{dataset.name}' are not JSON: {exc}") from None
                first[dataset.name] = text
                self.run.splits[dataset.name] = [Split(**entry) for entry in json.loads(text)]
                total += len(splits)
            out.reason = f"{total} split(s) over {len(self.run.datasets)} dataset(s) survive a JSON round trip"
        with self.checks.check("plan-deterministic") as out:
            self.checks.require("plan-json")
            for dataset in self.run.datasets:
                again = split_json(self._plan(self.run.reader, dataset, None))
                if again != first[dataset.name]:
                    before, after = json.loads(first[dataset.name]), json.loads(again)
                    ids = ([s["id"] for s in before], [s["id"] for s in after])
                    detail = (f"split ids {ids[0]} then {ids[1]}" if ids[0] != ids[1]
                              else "the same split ids with other params")
                    raise Failed(f"planning dataset '{dataset.name}' twice gave different splits ({detail})")
            out.reason = "planning twice gives the same splits"

    # --- read ---------------------------------------------------------------------------------------------

    def _keep(self, dataset: Dataset) -> tuple[str, ...]:
        cursor = cursor_of(dataset, self.subject)
        return tuple(dict.fromkeys([cursor, *dataset.primary_key])) if cursor else ()

    def _read(self, reader: Any, dataset: Dataset, splits: list[Split], **kw: Any) -> Pass:
        try:
            return read_pass(splits, reader.read, expected=dataset.schema, **kw)
        except Exception as exc:
            self._error("read()", exc)
            raise

    def read(self) -> None:
        problems: list[str] = []
        with self.checks.check("read-deterministic") as out:
            self.checks.require("plan-json")
            rows = batches = 0
            for dataset in self.run.datasets:
                splits = self.run.splits[dataset.name]
                first = self._read(self.run.reader, dataset, splits, keep=self._keep(dataset))
                second = self._read(self.run.reader, dataset, splits)
                problems += [f"dataset '{dataset.name}' {p.problem}" for p in (first, second) if p.problem]
                self.run.passes[dataset.name] = first
                missing, extra = multiset_difference(first.rows, second.rows)
                if missing or extra:
                    raise Failed(
                        f"reading dataset '{dataset.name}' twice gave different rows: {first.count:,} then "
                        f"{second.count:,} rows, {missing:,} of the first read missing from the second"
                    )
                rows += first.count
                batches += first.batches
            out.reason = f"{rows:,} row(s) in {batches:,} batch(es), the same on a second read" + (
                "" if rows else " (no rows: the data checks prove little)")
        with self.checks.check("schema") as out:
            self.checks.require("read-deterministic")
            if problems:
                raise Failed(problems[0])
            declared = all(d.schema is not None for d in self.run.datasets)
            out.reason = ("every batch matches the schema discover() declared" if declared
                          else "every batch matches the first batch's schema (no declared schema)")

    # --- incremental --------------------------------------------------------------------------------------

    def incremental(self) -> None:
        names = ("incremental-future", "incremental-resume")
        if not self.checks.passed("read-deterministic"):
            for name in names:
                with self.checks.check(name):
                    self.checks.require("read-deterministic")
            return
        cases = [d for d in self.run.datasets if cursor_of(d, self.subject)]
        if not cases:
            for name in names:
                self.checks.skip(name, "contract", "no dataset has a cursor (no cursor candidates, no "
                                 "incremental.cursor in the job)")
            return
        found: tuple[list[str], list[str]] = ([], [])
        failures: list[tuple[str, BaseException] | None] = [None, None]
        for dataset in cases:
            try:
                case = self._incremental_case(dataset)
            except Exception as exc:
                failures = [f or (dataset.name, exc) for f in failures]
                continue
            if case is None:
                continue
            try:
                for index, probe in enumerate((self._future, self._resume)):
                    try:
                        found[index].append(probe(case))
                    except Skipped:
                        continue
                    except Exception as exc:
                        failures[index] = failures[index] or (dataset.name, exc)
            finally:
                if case.reader is not self.run.reader:
                    self.session.close(case.reader)
        for index, name in enumerate(names):
            with self.checks.check(name) as out:
                failure = failures[index]
                if failure is not None:
                    dataset_name, exc = failure
                    if isinstance(exc, Failed):
                        raise Failed(f"dataset '{dataset_name}': {exc}")
                    raise exc
                if not found[index]:
                    raise Skipped("no row has a cursor value to build a state from")
                out.reason = "; ".join(found[index][:3])

    def _incremental_case(self, dataset: Dataset) -> _Case | None:
        cursor = cursor_of(dataset, self.subject)
        assert cursor is not None
        full = self.run.passes[dataset.name]
        table = full.kept_table()
        if table is None:
            if full.count and (full.schema is None or cursor not in full.schema.names):
                raise Failed(f"the cursor '{cursor}' is not a column of its batches")
            return None
        rows = table.filter(pc.is_valid(table.column(cursor)))
        if rows.num_rows == 0:
            return None
        key = tuple(k for k in dataset.primary_key if k != cursor)
        reader = self.run.reader
        if cursor != (dataset.cursor or self.subject.cursor):  # the reader must be told which column it is
            reader = self.session.instance(self.subject, cursor=cursor)
        return _Case(dataset, reader, cursor, key, table, rows, full.count)

    def _future(self, case: _Case) -> str:
        tracker = WatermarkTracker(case.cursor, case.key)
        for batch in case.rows.to_batches():
            tracker.observe(batch)
        top = tracker.watermark()
        assert top is not None
        try:
            state = Watermark(case.cursor, _bumped(top.value), top.key_columns, top.key).to_state(case.table.schema)
        except (pa.ArrowException, OverflowError, ValueError, TypeError):
            state = top.to_state(case.table.schema)  # strictly after the greatest (cursor, key…): nothing
        got = self._read(case.reader, case.dataset, self._plan(case.reader, case.dataset, state))
        value = state["cursor"]["value"]
        if got.count:
            raise Failed(f"a state with watermark {case.cursor} = {value}, above every value, still read "
                         f"{got.count:,} row(s): the reader ignores its state")
        return f"'{case.dataset.name}': a state at {case.cursor} = {value} reads nothing"

    def _resume(self, case: _Case) -> str:
        ordered = case.rows.sort_by([(case.cursor, "ascending"), *((k, "ascending") for k in case.key)])
        if ordered.num_rows < 2:
            raise Skipped("one row only: nothing to resume after")
        middle = (ordered.num_rows - 1) // 2
        tracker = WatermarkTracker(case.cursor, case.key)
        for batch in ordered.slice(0, middle + 1).to_batches():
            tracker.observe(batch)
        watermark = tracker.watermark()
        assert watermark is not None
        state = watermark.to_state(case.table.schema)
        expected: Counter[int] = Counter()
        for batch in case.table.to_batches():
            expected.update(batch.filter(after_mask(batch, watermark)).column(DIGEST).to_pylist())
        resumed = self._read(case.reader, case.dataset, self._plan(case.reader, case.dataset, state))
        missing, extra = multiset_difference(expected, resumed.rows)
        value = state["cursor"]["value"]
        newer = sum(expected.values())
        if missing or extra:
            raise Failed(
                f"resumed at {case.cursor} = {value}, it read {resumed.count:,} row(s) where {newer:,} come after "
                f"the watermark ({extra:,} row(s) read that are not newer, {missing:,} newer row(s) missing)"
            )
        return f"'{case.dataset.name}': resumed at {case.cursor} = {value}, it read exactly the {newer:,} newer row(s)"

    # --- faults -------------------------------------------------------------------------------------------

    def cancel(self) -> None:
        with self.checks.check("cancel", "fault") as out:
            self.checks.require("read-deterministic")
            chosen = max(
                ((d, s) for d in self.run.datasets for s in self.run.splits[d.name]),
                key=lambda pair: self.run.passes[pair[0].name].count,
                default=None,
            )
            if chosen is None:
                raise Skipped("no split to read")
            _, split = chosen
            threads, children = set(threading.enumerate()), _children()
            stream = Stream(self.run.reader.read(split))
            batches = 0
            try:
                for _ in stream:
                    batches += 1
                    break
            finally:
                stream.close()
            deadline = time.monotonic() + THREAD_GRACE_S
            while True:
                left = [t for t in threading.enumerate() if t not in threads and t.is_alive()]
                orphans = sorted(_children() - children)
                if (not left and not orphans) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            if left:
                names = ", ".join(sorted(t.name for t in left)[:5])
                raise Failed(f"{len(left)} thread(s) still running {THREAD_GRACE_S:.0f} s after the stream was "
                             f"closed mid-read: {names}")
            if orphans:
                raise Failed(f"{len(orphans)} child process(es) still running {THREAD_GRACE_S:.0f} s after the "
                             f"stream was closed mid-read: pids {orphans[:5]}")
            out.reason = (f"closed after {batches} batch(es) of split '{split.id}': no thread or process left "
                          f"behind ({len(threads)} thread(s) before and after)")

    # --- performance --------------------------------------------------------------------------------------

    def perf(self, label: str, spec: Any = None) -> PerfLine | None:
        """Read every dataset once with a fresh instance (of the subject, or of ``spec``), measured."""
        instance = self.session.instance(self.subject, spec=spec, options={} if spec is not None else None)
        try:
            datasets = self.run.datasets if spec is None else instance.discover()

            def work() -> tuple[int, int]:
                rows = size = 0
                for dataset in datasets:
                    result = read_pass(instance.plan(dataset, None), instance.read, digests=False, validate=False)
                    rows, size = rows + result.count, size + result.bytes
                return rows, size

            name = (spec or self.subject.spec).name
            line = measure(label, name, "read", work)
        finally:
            self.session.close(instance)
        self.run.perf.append(line)
        return line


def _children() -> set[int]:
    """This process's live child processes."""
    found: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        try:
            found.update(int(p) for p in task.read_text().split())
        except OSError:
            continue
    return {pid for pid in found if Path(f"/proc/{pid}").exists() and _alive(pid)}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


__all__ = ["ReaderChecks", "ReaderRun", "cursor_of", "split_json"]
