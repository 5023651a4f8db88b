"""SQL text: quoting, the SELECT of a split, key ranges, watermark predicates and snapshot statements.

Everything a split runs is decided at plan time and travels in ``Split.params`` as plain SQL, so a split
can be read by a fresh reader in another process.

Value guards. Some values are valid in PostgreSQL but cannot be represented in Arrow (``infinity`` dates
and timestamps, timestamps after year 294246) or would be silently changed by a driver (ADBC wraps them
around; it also flattens multi-dimensional arrays into one list). The SELECT list checks these per row and
makes PostgreSQL itself raise an error whose text starts with ``dativo:`` and names the column; the reader
turns it into a :class:`~dativo.errors.PluginFailed`. The error value is a cast of a message that depends on
the row, so the planner cannot fold it into an error at plan time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dativo.readers.postgres.connect import SESSION_SETTINGS

if TYPE_CHECKING:
    from dativo.readers.postgres.catalog import Column, Relation


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (always, so case and special characters survive)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """Quote a string literal; the ``E''`` form is correct whatever ``standard_conforming_strings`` is."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _fail(column: Column, message: str, detail: str) -> str:
    return (
        f"CAST({quote_literal(f'dativo: column {column.name} {message}')} || {detail} AS {column.sql_type})"
    )


def column_expression(column: Column) -> str:
    """The SELECT-list item that produces ``column`` in its Arrow-ready form, with its value guards."""
    value = quote_ident(column.name)
    if column.cast:
        value = f"{value}::{column.cast}"
    checks: list[tuple[str, str]] = []
    if column.array:
        checks.append(
            (
                f"pg_catalog.array_ndims({value}) > 1",
                _fail(
                    column,
                    "holds a multi-dimensional array, which an Arrow list cannot represent; dimensions: ",
                    f"pg_catalog.array_ndims({value})::text",
                ),
            )
        )
    if column.bounds:
        low, high = (quote_literal(b) for b in column.bounds)
        inside = (
            f"{low} < ALL({value}) AND {high} > ALL({value})"
            if column.array
            else f"{value} > {low} AND {value} < {high}"
        )
        # IS FALSE: NULL values and NULL array elements pass.
        checks.append(
            (
                f"({inside}) IS FALSE",
                _fail(column, "holds a date or timestamp that Arrow cannot represent: ", f"{value}::text"),
            )
        )
    if not checks:
        return f"{value} AS {quote_ident(column.name)}"
    whens = " ".join(f"WHEN {condition} THEN {failure}" for condition, failure in checks)
    return f"CASE {whens} ELSE {value} END AS {quote_ident(column.name)}"


def select(relation: Relation, predicates: Sequence[str | None] = ()) -> str:
    """The SELECT of one split: every column, from ``relation``, where all ``predicates`` hold."""
    items = ", ".join(column_expression(c) for c in relation.columns)
    text = f"SELECT {items} FROM {relation.source}"
    conditions = [p for p in predicates if p]
    if conditions:
        text += " WHERE " + " AND ".join(f"({p})" for p in conditions)
    return text


def key_ranges(
    low: int, high: int, parts: int, histogram: Sequence[int] = ()
) -> list[tuple[int | None, int | None]]:
    """Divide the keys ``low..high`` into at most ``parts`` ranges ``[start, end)``.

    With a ``histogram`` (the planner's equi-depth ``histogram_bounds`` of the key) the cuts follow it, so
    ranges hold about as many rows each even when keys are skewed; without one (table never analysed, or
    too few bounds in the span) the ranges have equal width. The first range has no lower bound and the
    last no upper bound, so together they cover every key whatever the statistics say.
    """
    parts = max(1, min(parts, high - low + 1))
    inside = sorted({b for b in histogram if low < b <= high})
    if len(inside) >= parts - 1 and inside:
        cuts = sorted({inside[len(inside) * i // parts] for i in range(1, parts)})
    else:
        span = high - low + 1
        cuts = [low + span * i // parts for i in range(1, parts)]
    starts: list[int | None] = [None, *cuts]
    ends: list[int | None] = [*cuts, None]
    return list(zip(starts, ends, strict=False))


def _half_open(expression: str, start: str | None, end: str | None) -> str | None:
    """``start <= expression < end``, leaving out a missing bound (``None`` when both are)."""
    parts = [f"{expression} >= {start}"] if start is not None else []
    if end is not None:
        parts.append(f"{expression} < {end}")
    return " AND ".join(parts) or None


def range_predicate(key: str, start: int | None, end: int | None) -> str | None:
    """``start <= key < end`` for one key range (``None`` when the range is unbounded)."""
    return _half_open(quote_ident(key), None if start is None else str(int(start)),
                      None if end is None else str(int(end)))


def page_ranges(pages: int, parts: int) -> list[tuple[int | None, int | None]]:
    """Divide heap pages ``0..pages-1`` into at most ``parts`` ranges ``[start, end)``, open at both ends
    (rows on pages added since the size was taken still fall into the last range)."""
    parts = max(1, min(parts, pages))
    cuts = [pages * i // parts for i in range(1, parts)]
    starts: list[int | None] = [None, *cuts]
    ends: list[int | None] = [*cuts, None]
    return list(zip(starts, ends, strict=False))


def page_predicate(start: int | None, end: int | None) -> str | None:
    """Rows on pages ``start <= page < end``, as a ``ctid`` range (a TID range scan since PostgreSQL 14).

    On a partitioned table the condition applies to each partition's own pages; every row of the snapshot
    has one ``ctid`` in one partition, so the ranges still hold every row exactly once.
    """
    return _half_open("ctid", None if start is None else f"'({int(start)},0)'::tid",
                      None if end is None else f"'({int(end)},0)'::tid")


def null_count(relation: Relation, column: str) -> str:
    """The query for how many rows have a NULL ``column``."""
    return f"SELECT count(*) FROM {relation.source} WHERE {quote_ident(column)} IS NULL"


NULL_FRACTION = """
SELECT null_frac FROM pg_catalog.pg_stats
WHERE schemaname = %s AND tablename = %s AND attname = %s
ORDER BY inherited DESC LIMIT 1
"""
"""The planner's fraction of NULLs in a column (no row before ANALYZE)."""


def after_predicate(columns: Sequence[str], literals: Sequence[str]) -> str:
    """Rows strictly after a watermark: ``(cursor, key…) > (value, key value…)`` as a row comparison.

    ``literals`` are already SQL literals. A NULL cursor never compares greater, so such rows are excluded.
    """
    if len(columns) == 1:
        return f"{quote_ident(columns[0])} > {literals[0]}"
    names = ", ".join(quote_ident(c) for c in columns)
    return f"({names}) > ({', '.join(literals)})"


def min_max(relation: Relation, key: str, predicates: Sequence[str | None] = ()) -> str:
    """The query for the smallest and largest key, to plan key ranges."""
    text = f"SELECT min({quote_ident(key)}), max({quote_ident(key)}) FROM {relation.source}"
    conditions = [p for p in predicates if p]
    if conditions:
        text += " WHERE " + " AND ".join(f"({p})" for p in conditions)
    return text


BEGIN = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
"""Opens the transaction of a split; :func:`snapshot_statements` must follow before anything else."""


HISTOGRAM = """
SELECT histogram_bounds::text FROM pg_catalog.pg_stats
WHERE schemaname = %s AND tablename = %s AND attname = %s
ORDER BY inherited DESC LIMIT 1
"""
"""The planner's histogram of a column (``{b1,b2,…}`` as text, or no row before ANALYZE)."""


def snapshot_statements(snapshot: str) -> list[str]:
    """Statements that follow :data:`BEGIN`: adopt the coordinator's exported snapshot (as ``pg_dump -j``
    does) and fix the session settings that shape the text form of values."""
    settings = ", ".join(
        f"pg_catalog.set_config({quote_literal(k)}, {quote_literal(v)}, true)"
        for k, v in SESSION_SETTINGS.items()
    )
    return [
        f"SET TRANSACTION SNAPSHOT {quote_literal(snapshot)}",
        f"SELECT {settings}",
    ]
