"""Multi-segment files: which REDEFINES alternative each record holds, and the ancestors of hierarchical records.

A segment id field (``segment_field``) is decoded over the whole batch like any field; its trimmed text is
compared with each alternative's ids (``redefine_segment_id_map``) in one ``is_in`` per alternative. For
hierarchical files (``segment_id_levels``) every record gets, per level, the id of the nearest record of that
level before it (itself at its own level), provided no record of a higher level came in between: a forward
fill over record numbers (``maximum.accumulate``), carried from batch to batch.
"""

from __future__ import annotations

import copy

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dativo.errors import ConfigError
from dativo_cobol.codepages import CodePage
from dativo_cobol.copybook import Item, Layout
from dativo_cobol.decoder import Decoder


def field_reader(layout: Layout, name: str, cp: CodePage, option: str) -> Decoder:
    """A decoder of one field at its place in the record (a field outside any OCCURS).

    Raises:
        ConfigError: No such field, or it repeats.
    """
    item = layout.find(name)
    root = layout.root
    if item is None or item.kind == "group" or root is None:
        raise ConfigError(f"options.{option} names {name}, which is not an elementary field of the copybook",
                          hint="Name a PIC field (its COBOL name).")
    if _in_table(root, item):
        raise ConfigError(f"options.{option} names {name}, which is inside an OCCURS table",
                          hint="Name a field that occurs once per record.")
    single = copy.copy(item)
    single.offset = item.absolute
    single.occurs = None
    record = Item(level=0, name="FIELD", line=item.line, selected=[single], children=[single])
    schema = pa.schema([pa.field(single.column, single.arrow_type())])
    return Decoder(Layout(record=record, length=layout.length, schema=schema, root=record), cp, "both", "null")


def _in_table(item: Item, target: Item, inside: bool = False) -> bool:
    if item is target:
        return inside
    return any(_in_table(c, target, inside or item.occurs is not None) for c in item.children)


def segment_values(reader: Decoder, records: np.ndarray, avail: np.ndarray | None) -> pa.Array:
    """The segment id of each record, as trimmed text."""
    batch, _ = reader.decode(records, avail)
    values = batch.column(0)
    if not pa.types.is_string(values.type):
        values = pc.cast(values, pa.string())
    return pc.utf8_trim(values, characters=" \x00")


def active(values: pa.Array, ids: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Per alternative, the records whose segment id is one of its ids."""
    return {name: pc.fill_null(pc.is_in(values, value_set=pa.array(found, pa.string())), False)
            .to_numpy(zero_copy_only=False) for name, found in ids.items()}


class Hierarchy:
    """Generated ``seg_id0`` … columns of one file, read in record order (one split per file).

    Args:
        levels: The segment ids of each level, root first.
        prefix: Put before every generated id.
        file_index: The file's number in the sorted list of files.
    """

    def __init__(self, levels: list[list[str]], prefix: str, file_index: int) -> None:
        self.levels, self.prefix, self.file_index = levels, prefix, file_index
        self.last = [-1] * len(levels)  # record number of the last record of each level so far

    def columns(self, values: pa.Array, first: int) -> list[pa.Array]:
        """The ancestor ids of a batch whose first record is number ``first`` in the file."""
        rows = len(values)
        level = np.full(rows, len(self.levels), np.int64)  # other segments: below the deepest level
        for k in reversed(range(len(self.levels))):
            mask = pc.fill_null(pc.is_in(values, value_set=pa.array(self.levels[k], pa.string())), False)
            level[mask.to_numpy(zero_copy_only=False)] = k
        numbers = first + np.arange(rows, dtype=np.int64)
        out: list[pa.Array] = []
        lasts: list[np.ndarray] = []
        for k in range(len(self.levels)):
            marker = np.where(level == k, numbers, -1)
            last = np.maximum.accumulate(np.concatenate([[self.last[k]], marker]))[1:]
            lasts.append(last)
            # A record of a higher level since the last level-k record ends that ancestry.
            higher = np.max(np.stack(lasts[:k]), axis=0) if k else np.full(rows, -1, np.int64)
            ok = (level >= k) & (last >= 0) & (last > higher)
            text = pc.binary_join_element_wise(
                pa.scalar(f"{self.prefix}{self.file_index}"), pc.cast(pa.array(last), pa.string()), "_")
            out.append(pc.if_else(pa.array(ok), text, pa.scalar(None, pa.string())))
        self.last = [int(last[-1]) if rows else self.last[k] for k, last in enumerate(lasts)]
        return out
