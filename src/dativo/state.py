"""Incremental state: the cursor watermark a run commits together with its data.

The engine watches every batch that flows past and keeps the greatest ``(cursor, primary key…)`` tuple
it has seen. That watermark is committed by the writer in the same atomic step as the data, so table and
state never disagree. The next run's reader reads only rows strictly after it; the primary key breaks ties
between rows that share a cursor value, so none is lost and none is read twice.

Values travel as JSON through Arrow's own string casts, so any orderable Arrow type (timestamps with time
zones, dates, decimals, integers, strings) round-trips exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dativo.api import State


def state_json(state: State | None) -> str:
    """The canonical JSON of a state, as writers commit it; two states are the same when theirs are."""
    return json.dumps(state, sort_keys=True, separators=(",", ":"), default=str)


def same_state(a: State | None, b: State | None) -> bool:
    """Whether two states would be committed alike (what a compare-and-swap on the state compares)."""
    return state_json(a) == state_json(b)


def _py(value: pa.Scalar) -> Any:
    """A scalar as a Python value that orders like it; nanosecond temporals as ints (``datetime`` stops at µs)."""
    if value.is_valid and getattr(value.type, "unit", None) == "ns":
        return value.value
    return value.as_py()


def _to_text(value: pa.Scalar) -> str | None:
    if not value.is_valid:
        return None
    return pa.array([value], type=value.type).cast(pa.string())[0].as_py()


def _from_text(text: str | None, arrow_type: pa.DataType) -> Any:
    if text is None:
        return None
    return _py(pa.array([text], type=pa.string()).cast(arrow_type)[0])


@dataclass(frozen=True)
class Watermark:
    """The last ``(cursor, key…)`` a committed run read, as Python values of the columns' types.

    Attributes:
        column: The cursor column.
        value: Its greatest value read so far.
        key_columns: The primary-key columns that break ties.
        key: The greatest key among rows whose cursor equals ``value``.
    """

    column: str
    value: Any
    key_columns: tuple[str, ...] = ()
    key: tuple[Any, ...] = ()

    def to_state(self, schema: pa.Schema) -> State:
        """Encode as the JSON-serialisable state a writer commits."""
        columns = (self.column, *self.key_columns)
        values = (self.value, *self.key)
        encoded = [_to_text(pa.scalar(v, type=schema.field(c).type)) for c, v in zip(columns, values)]
        return {
            "cursor": {
                "column": self.column,
                "value": encoded[0],
                "key_columns": list(self.key_columns),
                "key": encoded[1:],
            }
        }

    @classmethod
    def from_state(cls, state: State | None, schema: pa.Schema) -> Watermark | None:
        """Decode the watermark of a committed state; ``None`` if there is none."""
        cursor = (state or {}).get("cursor")
        if not cursor or cursor.get("value") is None:
            return None
        column = cursor["column"]
        key_columns = tuple(cursor.get("key_columns", ()))
        key = tuple(
            _from_text(text, schema.field(name).type) for name, text in zip(key_columns, cursor.get("key", ()))
        )
        return cls(column, _from_text(cursor["value"], schema.field(column).type), key_columns, key)


class WatermarkTracker:
    """Follows the greatest ``(cursor, key…)`` across the batches of a run; thread-safe by merging."""

    def __init__(self, column: str, key_columns: tuple[str, ...]) -> None:
        self.column = column
        self.key_columns = key_columns
        self._best: tuple[Any, ...] | None = None

    def batch_max(self, batch: pa.RecordBatch) -> tuple[Any, ...] | None:
        """The greatest ``(cursor, key…)`` of one batch, found with Arrow compute (no Python row loop)."""
        cursor = batch.column(self.column)
        top = pc.max(cursor)
        if not top.is_valid:
            return None
        result: list[Any] = [_py(top)]
        mask = pc.equal(cursor, top)
        for name in self.key_columns:
            best = pc.max(pc.filter(batch.column(name), mask))
            result.append(_py(best))
            mask = pc.and_(mask, pc.equal(batch.column(name), best))
        return tuple(result)

    def observe(self, batch: pa.RecordBatch) -> None:
        """Merge one batch into the watermark."""
        candidate = self.batch_max(batch)
        if candidate is not None and (self._best is None or candidate > self._best):
            self._best = candidate

    def merge(self, other: WatermarkTracker) -> None:
        """Merge another tracker's watermark (one per split) into this one."""
        if other._best is not None and (self._best is None or other._best > self._best):
            self._best = other._best

    def watermark(self) -> Watermark | None:
        """The watermark seen so far, or ``None`` if no row had a cursor value."""
        if self._best is None:
            return None
        return Watermark(self.column, self._best[0], self.key_columns, tuple(self._best[1:]))
