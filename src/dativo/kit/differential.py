"""Differential certification (``--against default``): the plugin and the built-in of its connector, row for row.

Both read the user's own job (a reader), or write the same rows into two temporary targets that are read
back (a writer). The comparison, per dataset:

1. the dataset names must be the same;
2. the schemas must be equal, exactly: names, order, Arrow types and nullability;
3. the rows are compared without regard to order: keyed by the primary key when the dataset has one (each
   key's row digest, then which columns differ), else as multisets of row digests.

Only 64-bit digests are kept for the first side, never its rows, so a large table is compared in bounded
memory (about 100 bytes a row); when something differs, both sides are read once more to fetch the first
differing rows (at most :data:`SAMPLES`) and name their columns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from dativo.api import Dataset, Split
from dativo.kit.rows import Stream, row_digests, schema_problems, values

SAMPLES = 10
"""Differing rows kept per dataset."""

Key = tuple[Any, ...]


@dataclass
class RowDifference:
    """One row that differs: its key (``None`` without a primary key), the columns that differ, both rows."""

    key: dict[str, Any] | None
    columns: list[str]
    plugin: dict[str, Any] | None
    builtin: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "columns": self.columns, "plugin": self.plugin, "builtin": self.builtin}


@dataclass
class DatasetDiff:
    """The comparison of one dataset.

    Attributes:
        dataset: Its name.
        keyed_by: The primary key the rows were matched by (empty: as multisets).
        schema: How the plugin's schema differs from the built-in's (``None``: equal).
        rows_plugin: Rows the plugin read.
        rows_builtin: Rows the built-in read.
        only_plugin: Rows only the plugin has.
        only_builtin: Rows only the built-in has.
        differing: Keys whose rows differ.
        duplicate_keys: Key values seen twice on one side.
        samples: The first differing rows.
        columns: Columns that differ in the samples, with how many samples each.
    """

    dataset: str
    keyed_by: list[str] = field(default_factory=list)
    schema: str | None = None
    rows_plugin: int = 0
    rows_builtin: int = 0
    only_plugin: int = 0
    only_builtin: int = 0
    differing: int = 0
    duplicate_keys: int = 0
    samples: list[RowDifference] = field(default_factory=list)
    columns: dict[str, int] = field(default_factory=dict)

    @property
    def differences(self) -> int:
        """Rows that do not match."""
        return self.only_plugin + self.only_builtin + self.differing + self.duplicate_keys

    @property
    def identical(self) -> bool:
        """Same schema, same rows."""
        return self.schema is None and self.differences == 0

    def summary(self) -> str:
        """One line."""
        if self.identical:
            return f"'{self.dataset}': {self.rows_plugin:,} rows, identical"
        parts = []
        if self.schema:
            parts.append(f"schema: {self.schema}")
        if self.differences:
            parts.append(f"{self.differences:,} row(s) differ ({self.rows_plugin:,} read by the plugin, "
                         f"{self.rows_builtin:,} by the built-in; {self.differing:,} changed, {self.only_plugin:,} "
                         f"only in the plugin's, {self.only_builtin:,} only in the built-in's)")
        if self.columns:
            parts.append(f"column(s) {', '.join(sorted(self.columns))}")
        if self.samples:
            first = self.samples[0]
            column = first.columns[0] if first.columns else None
            key = ", ".join(f"{k}={v}" for k, v in (first.key or {}).items())
            if key and column and first.plugin and first.builtin:
                parts.append(f"first: {key}: plugin {column}={first.plugin[column]} vs built-in "
                             f"{column}={first.builtin[column]}")
            elif key:
                where = ("only the built-in has it" if first.plugin is None
                         else "only the plugin has it" if first.builtin is None else "it differs")
                parts.append(f"first: {key}, {where}")
        return f"'{self.dataset}': " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "keyed_by": self.keyed_by,
            "schema_difference": self.schema,
            "rows_plugin": self.rows_plugin,
            "rows_builtin": self.rows_builtin,
            "only_plugin": self.only_plugin,
            "only_builtin": self.only_builtin,
            "differing": self.differing,
            "duplicate_keys": self.duplicate_keys,
            "identical": self.identical,
            "columns": self.columns,
            "samples": [s.to_dict() for s in self.samples],
        }


Source = Callable[[], Iterable[pa.RecordBatch]]
"""Gives one side's batches of a dataset from the start (it is called again to fetch samples)."""


def reader_source(reader: Any, splits: list[Split]) -> Source:
    """The batches ``reader`` reads from ``splits``, one split after the other."""

    def batches() -> Iterable[pa.RecordBatch]:
        for split in splits:
            stream = Stream(reader.read(split))
            try:
                yield from stream
            finally:
                stream.close()

    return batches


def table_source(table: pa.Table) -> Source:
    """The batches of a table (what a writer's target was read back as)."""
    return lambda: table.to_batches()


def _keys(batch: pa.RecordBatch, key: list[str]) -> list[Key]:
    return list(zip(*(batch.column(k).to_pylist() for k in key)))


def compare(dataset: str, plugin: Source, builtin: Source, *, key: list[str], schemas: tuple[pa.Schema | None,
            pa.Schema | None] = (None, None)) -> DatasetDiff:
    """Compare one dataset's rows as the plugin and the built-in give them (see the module's docstring).

    Args:
        dataset: Its name.
        plugin: The plugin's batches.
        builtin: The built-in's batches.
        key: The primary key to match rows by (empty: multisets).
        schemas: The declared schemas (plugin's, built-in's), compared before the batches' own.
    """
    diff = DatasetDiff(dataset, keyed_by=list(key))
    seen: list[pa.Schema | None] = list(schemas)
    digests_by_key: dict[Key, int] = {}
    counted: Counter[int] = Counter()
    for batch in builtin():
        seen[1] = seen[1] or batch.schema
        diff.rows_builtin += batch.num_rows
        digests = row_digests(batch)
        if key:
            for k, d in zip(_keys(batch, key), digests):
                if k in digests_by_key:
                    diff.duplicate_keys += 1
                digests_by_key[k] = d
        else:
            counted.update(digests)
    wanted_keys: list[Key] = []
    wanted_digests: list[int] = []
    for batch in plugin():
        seen[0] = seen[0] or batch.schema
        diff.rows_plugin += batch.num_rows
        digests = row_digests(batch)
        if key:
            if any(k not in batch.schema.names for k in key):
                diff.only_plugin += batch.num_rows
                continue
            for k, d in zip(_keys(batch, key), digests):
                theirs = digests_by_key.pop(k, None)
                if theirs is None:
                    diff.only_plugin += 1
                elif theirs != d:
                    diff.differing += 1
                else:
                    continue
                if len(wanted_keys) < SAMPLES:
                    wanted_keys.append(k)
        else:
            for d in digests:
                if counted[d] > 0:
                    counted[d] -= 1
                    continue
                diff.only_plugin += 1
                if len(wanted_digests) < SAMPLES:
                    wanted_digests.append(d)
    if key:
        diff.only_builtin = len(digests_by_key)
        for k in list(digests_by_key)[: SAMPLES - len(wanted_keys)]:
            wanted_keys.append(k)
    else:
        leftover = +counted
        diff.only_builtin = sum(leftover.values())
        wanted_digests += list(leftover)[: SAMPLES - len(wanted_digests)]
    if seen[0] is not None and seen[1] is not None:
        diff.schema = schema_problems(seen[1], seen[0])
    elif (seen[0] is None) != (seen[1] is None) and (diff.rows_plugin or diff.rows_builtin):
        diff.schema = "one side produced no schema"
    if wanted_keys or wanted_digests:
        _samples(diff, plugin, builtin, key, wanted_keys, wanted_digests)
    return diff


def _fetch(source: Source, key: list[str], keys: set[Key], digests: set[int]) -> dict[Any, dict[str, Any]]:
    found: dict[Any, dict[str, Any]] = {}
    for batch in source():
        row_keys = _keys(batch, key) if key and all(k in batch.schema.names for k in key) else None
        hashes = row_digests(batch) if digests else []
        for i in range(batch.num_rows):
            if row_keys is not None and row_keys[i] in keys and row_keys[i] not in found:
                found[row_keys[i]] = values(batch, i)
            elif digests and hashes[i] in digests and hashes[i] not in found:
                found[hashes[i]] = values(batch, i)
        if len(found) >= len(keys) + len(digests):
            break
    return found


def _samples(diff: DatasetDiff, plugin: Source, builtin: Source, key: list[str], keys: list[Key],
             digests: list[int]) -> None:
    ours = _fetch(plugin, key, set(keys), set(digests))
    theirs = _fetch(builtin, key, set(keys), set(digests))
    for k in keys:
        a, b = ours.get(k), theirs.get(k)
        columns = [c for c in (a or b or {}) if a is not None and b is not None and a.get(c) != b.get(c)]
        for column in columns:
            diff.columns[column] = diff.columns.get(column, 0) + 1
        diff.samples.append(RowDifference({n: repr(v) for n, v in zip(key, k)}, columns, a, b))
    for d in digests:
        diff.samples.append(RowDifference(None, [], ours.get(d), theirs.get(d)))


def key_of(plugin: Dataset | None, builtin: Dataset | None) -> list[str]:
    """The key to match rows by: the built-in's primary key, else the plugin's, if it is a column of both."""
    for dataset in (builtin, plugin):
        if dataset is not None and dataset.primary_key:
            key = list(dataset.primary_key)
            schemas = [d.schema for d in (plugin, builtin) if d is not None and d.schema is not None]
            if all(all(k in s.names for k in key) for s in schemas):
                return key
    return []


__all__ = ["SAMPLES", "DatasetDiff", "RowDifference", "compare", "key_of", "reader_source", "table_source"]
