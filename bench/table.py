"""The reference table: N rows x 50 columns, generated server-side and cached between runs.

bigint id (primary key), 10 integer/bigint, 10 double, 5 numeric(12,2), 10 text of 5-30 characters,
5 timestamptz, 5 boolean, 4 date; a few columns hold NULLs. Values are deterministic functions of the id.

Second shapes show whether tuning fits only the reference table (:data:`SHAPES`): ``narrow`` (id and 9
integer, double and timestamp columns), ``text`` (id and 8 text columns of 20-200 characters, one JSON-like),
and ``empty`` (no rows: what a run costs before any row moves).
"""

from __future__ import annotations

import psycopg

SCHEMA = "bench"


def _columns() -> list[tuple[str, str, str]]:
    """``(name, type, expression over g)`` of every column but the id."""
    cols: list[tuple[str, str, str]] = []
    for i in range(1, 11):
        kind = "integer" if i <= 5 else "bigint"
        mod = 1_000_003 if i <= 5 else 9_000_000_000_000
        cols.append((f"i{i}", kind, f"((g::bigint * {2654435761 + i}) % {mod})::{kind}"))
    for i in range(1, 11):
        expr = f"((g * {i + 3}) % 100003) / 7.0::float8"
        cols.append((f"f{i}", "double precision", f"CASE WHEN g % 17 = {i} THEN NULL ELSE {expr} END"))
    for i in range(1, 6):
        cols.append((f"n{i}", "numeric(12,2)", f"(((g * {i + 11}) % 10000000) / 100.0)::numeric(12,2)"))
    for i in range(1, 11):
        expr = f"substr(md5(g::text || '{i}'), 1, 5 + ((g + {i}) % 26))"
        cols.append((f"s{i}", "text", f"CASE WHEN g % 23 = {i} THEN NULL ELSE {expr} END"))
    for i in range(1, 6):
        expr = f"timestamptz '2020-01-01 00:00:00+00' + ((g * {i}) % 100000000) * interval '1 second'"
        cols.append((f"t{i}", "timestamptz", expr))
    for i in range(1, 6):
        cols.append((f"b{i}", "boolean", f"(g % {i + 1}) = 0"))
    for i in range(1, 5):
        cols.append((f"d{i}", "date", f"date '2000-01-01' + ((g * {i}) % 9000)"))
    return cols


def _narrow() -> list[tuple[str, str, str]]:
    cols = [(f"i{i}", "bigint", f"((g::bigint * {2654435761 + i}) % 9000000000000)::bigint") for i in range(1, 4)]
    cols += [(f"f{i}", "double precision", f"((g * {i + 3}) % 100003) / 7.0::float8") for i in range(1, 4)]
    cols += [(f"t{i}", "timestamptz",
              f"timestamptz '2020-01-01 00:00:00+00' + ((g * {i}) % 100000000) * interval '1 second'")
             for i in range(1, 4)]
    return cols


def _text() -> list[tuple[str, str, str]]:
    cols = []
    for i in range(1, 8):
        expr = f"repeat(md5(g::text || '{i}'), 1 + (g + {i}) % 6)"  # 32-192 characters
        cols.append((f"s{i}", "text", f"CASE WHEN g % 29 = {i} THEN NULL ELSE {expr} END"))
    cols.append(("doc", "text", "'{\"id\": ' || g || ', \"tag\": \"' || md5(g::text) || '\"}'"))
    return cols


SHAPES = {"wide": _columns, "narrow": _narrow, "text": _text}
"""Column generators per table shape; ``empty`` is the wide shape with no rows."""


def table_name(rows: int, shape: str = "wide") -> str:
    """The qualified name of the table of ``shape`` with ``rows`` rows."""
    if shape == "empty":
        return f"{SCHEMA}.empty"
    return f"{SCHEMA}.t_{rows}" if shape == "wide" else f"{SCHEMA}.{shape}_{rows}"


def ensure(dsn: str, rows: int, shape: str = "wide") -> str:
    """Create the table of ``shape`` with ``rows`` rows unless a complete one exists; return its name."""
    name = table_name(rows, shape)
    if shape == "empty":
        rows = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        if exists and exists[0]:
            count = conn.execute(f"SELECT count(*) FROM {name}").fetchone()
            if count and count[0] == rows:
                return name
            conn.execute(f"DROP TABLE {name}")
        cols = SHAPES.get(shape, _columns)()
        ddl = ", ".join(f"{n} {t}" for n, t, _ in cols)
        conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, {ddl})")
        exprs = ", ".join(e for _, _, e in cols)
        step = 1_000_000
        for start in range(1, rows + 1, step):
            end = min(start + step - 1, rows)
            conn.execute(f"INSERT INTO {name} SELECT g, {exprs} FROM generate_series({start}, {end}) AS g")
        conn.execute(f"VACUUM (ANALYZE, FREEZE) {name}")
    return name


def row_count(dsn: str, name: str) -> int:
    """The rows of ``name``: what every method must move."""
    with psycopg.connect(dsn) as conn:
        found = conn.execute(f"SELECT count(*) FROM {name}").fetchone()
    return int(found[0]) if found else 0


def copy_bytes(dsn: str, name: str) -> int:
    """Bytes of ``COPY name TO STDOUT (FORMAT binary)``: the data volume every method moves."""
    total = 0
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY {name} TO STDOUT (FORMAT binary)") as copy:
            for chunk in copy:
                total += len(chunk)
    return total
