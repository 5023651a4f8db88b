"""What the kit reads: a reader's output as a closable stream, and rows as digests for order-free comparison.

Rows are compared as multisets of digests, never in their order: a row's digest is a 64-bit BLAKE2b of the
``repr`` of its Python values (exact: ``Decimal('10.50')`` and ``Decimal('10.5')`` differ, ``-0.0`` and
``0.0`` differ, NaN equals NaN), so two reads are compared without holding both tables. The Arrow *types*
are compared separately, as schemas, before any value.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from dativo.streams import describe, schema_difference


class Stream:
    """One split's output, whatever form the reader returned it in, as batches that can be closed early.

    Args:
        output: What ``read(split)`` returned: an object with ``__arrow_c_stream__``, a
            ``RecordBatchReader``, a ``Table``, a ``RecordBatch`` or an iterable of them.

    Raises:
        TypeError: ``output`` is not Arrow data.
    """

    def __init__(self, output: Any) -> None:
        self.output = output
        self.schema: pa.Schema | None = None
        self._reader: pa.RecordBatchReader | None = None
        self._iterator: Iterator[Any] | None = None
        if isinstance(output, pa.RecordBatchReader):
            self._reader = output
        elif isinstance(output, pa.Table):
            self._reader = output.to_reader()
        elif isinstance(output, pa.RecordBatch):
            self._reader = pa.RecordBatchReader.from_batches(output.schema, [output])
        elif hasattr(output, "__arrow_c_stream__"):
            self._reader = pa.RecordBatchReader.from_stream(output)
        elif output is None or isinstance(output, str | bytes | dict) or not hasattr(output, "__iter__"):
            raise TypeError(f"read() returned {describe(output)}, which is not Arrow data")
        else:
            self._iterator = iter(output)
        if self._reader is not None:
            self.schema = self._reader.schema

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        if self._reader is not None:
            yield from self._reader
            return
        assert self._iterator is not None
        for item in self._iterator:
            if not isinstance(item, pa.RecordBatch):
                raise TypeError(f"read() yielded {describe(item)}, not a pyarrow.RecordBatch")
            yield item

    def close(self) -> None:
        """Stop the stream where it is: close the reader, or the generator the plugin returned, and let go of it.

        Letting go matters: closing a ``RecordBatchReader`` made from a Python iterator does not end that
        iterator (its ``finally`` runs when the reader is freed), so the stream holds no reference after this.
        """
        if self._reader is not None:
            self._reader.close()
        close = getattr(self._iterator, "close", None) or getattr(self.output, "close", None)
        if callable(close):
            close()
        self._iterator = None
        self._reader = None
        self.output = None


def row_digests(batch: pa.RecordBatch | pa.Table) -> list[int]:
    """The digest of every row of ``batch``, in order (see the module's docstring)."""
    columns = [column.to_pylist() for column in batch.columns]
    digest = hashlib.blake2b
    return [
        int.from_bytes(digest(repr(row).encode("utf-8", "backslashreplace"), digest_size=8).digest(), "big")
        for row in zip(*columns)
    ] if columns else [0] * batch.num_rows


def values(batch: pa.RecordBatch | pa.Table, row: int) -> dict[str, Any]:
    """One row as ``{column: value}``, values as ``repr`` text (exact, JSON-safe)."""
    return {name: repr(batch.column(i)[row].as_py()) for i, name in enumerate(batch.schema.names)}


def schema_problems(expected: pa.Schema, got: pa.Schema) -> str | None:
    """How ``got`` differs from ``expected``: names, order and types, then nullability; ``None`` if equal."""
    difference = schema_difference(expected, got)
    if difference:
        return difference
    nullability = [
        f"column '{a.name}' is {'nullable' if b.nullable else 'NOT NULL'} where "
        f"{'nullable' if a.nullable else 'NOT NULL'} was expected"
        for a, b in zip(expected, got) if a.nullable != b.nullable
    ]
    return "; ".join(nullability) or None


def batch_problem(batch: pa.RecordBatch, expected: pa.Schema, *, validate: bool) -> str | None:
    """Why ``batch`` does not match ``expected`` (or is malformed), or ``None``."""
    if validate:
        try:
            batch.validate(full=True)
        except pa.ArrowException as exc:
            return f"a malformed batch ({str(exc).splitlines()[0][:200]})"
    difference = schema_difference(expected, batch.schema)
    if difference:
        return difference
    for want, column in zip(expected, batch.columns):
        if not want.nullable and column.null_count:
            return f"column '{want.name}' is declared NOT NULL but a batch has {column.null_count} null(s)"
    return None


@dataclass
class Pass:
    """What one read of a dataset's splits gave.

    Attributes:
        rows: Row digests with their counts.
        count: Rows read.
        bytes: Arrow bytes read.
        batches: Batches read.
        schema: The schema of the first batch (or of the stream), if any.
        problem: The first batch that did not match the expected schema, described.
        kept: The columns asked to be kept (cursor and key), with a ``__kit_digest`` column.
    """

    rows: Counter[int] = field(default_factory=Counter)
    count: int = 0
    bytes: int = 0
    batches: int = 0
    schema: pa.Schema | None = None
    problem: str | None = None
    kept: list[pa.RecordBatch] = field(default_factory=list)

    def kept_table(self) -> pa.Table | None:
        """The kept columns of every row, as one table (``None`` when nothing was kept)."""
        return pa.Table.from_batches(self.kept) if self.kept else None


DIGEST = "__kit_digest"


def read_pass(
    splits: Iterable[Any],
    read: Callable[[Any], Any],
    *,
    expected: pa.Schema | None = None,
    keep: tuple[str, ...] = (),
    validate: bool = True,
    digests: bool = True,
    on_batch: Callable[[Any, pa.RecordBatch], None] | None = None,
) -> Pass:
    """Read every split to its end and digest its rows.

    Args:
        splits: The splits to read.
        read: ``reader.read``.
        expected: The schema every batch must have (else the first batch's); mismatches go to ``problem``.
        keep: Columns to keep for every row (with its digest), e.g. the cursor and the key.
        validate: Check every batch's buffers fully (as the engine does for a plugin's batches).
        digests: Digest the rows (``False``: only count them, for a performance pass).
        on_batch: Called with each split and each of its batches.
    """
    result = Pass(schema=expected)
    for split in splits:
        stream = Stream(read(split))
        try:
            if stream.schema is not None and result.schema is not None and result.problem is None:
                difference = schema_problems(result.schema, stream.schema)
                if difference and len(stream.schema):
                    result.problem = f"the stream of split '{getattr(split, 'id', split)}': {difference}"
            for batch in stream:
                if result.schema is None:
                    result.schema = batch.schema
                if result.problem is None:
                    problem = batch_problem(batch, result.schema, validate=validate)
                    if problem:
                        result.problem = f"split '{getattr(split, 'id', split)}': {problem}"
                result.count += batch.num_rows
                result.bytes += batch.nbytes
                result.batches += 1
                if on_batch is not None:
                    on_batch(split, batch)
                if not digests or not batch.num_rows:
                    continue
                hashes = row_digests(batch)
                result.rows.update(hashes)
                if keep and all(name in batch.schema.names for name in keep):
                    kept = batch.select(list(keep))
                    result.kept.append(kept.append_column(DIGEST, pa.array(hashes, pa.uint64())))
        finally:
            stream.close()
    return result


def multiset_difference(expected: Counter[int], got: Counter[int]) -> tuple[int, int]:
    """``(missing, extra)``: rows of ``expected`` that ``got`` lacks, and rows ``got`` has in excess."""
    missing = sum((expected - got).values())
    extra = sum((got - expected).values())
    return missing, extra


__all__ = [
    "DIGEST",
    "Pass",
    "Stream",
    "batch_problem",
    "multiset_difference",
    "read_pass",
    "row_digests",
    "schema_problems",
    "values",
]
