"""Which relations a job reads: the catalog's listing, and ``tables:`` / ``exclude:`` matched against it.

An entry of ``tables:`` is an exact name (resolved by PostgreSQL itself, as ``to_regclass`` does, so any
relation the user can name is allowed, a single partition included) or a glob. A glob has ``*``, ``?`` or
``[…]`` in an unquoted part and matches ``schema.table`` part by part; it leaves out the system schemas and
the partitions of partitioned tables, whose parent reads their rows (matching both would read every row
twice). Unquoted parts fold to lower case as SQL identifiers do; quoted parts are taken literally.

A table matched by several entries takes the settings of each in order (a later entry's ``cursor`` or
``primary_key`` wins); naming the same table exactly twice is a mistake and refused.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import psycopg

from dativo.errors import ConfigError
from dativo.readers.postgres.config import TableSettings

_GLOB = frozenset("*?[")
_SYSTEM = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'"

KINDS = {
    "r": "table",
    "p": "partitioned table",
    "v": "view",
    "m": "materialized view",
    "f": "foreign table",
}
"""The relation kinds (``pg_class.relkind``) whose rows can be read."""

_LIST_SQL = f"""
SELECT c.oid, n.nspname, c.relname, c.relkind,
       (SELECT pn.nspname || '.' || pc.relname
          FROM pg_catalog.pg_inherits i
          JOIN pg_catalog.pg_class pc ON pc.oid = i.inhparent
          JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
         WHERE i.inhrelid = c.oid AND c.relispartition) AS parent,
       CASE WHEN c.relkind = 'p' THEN
              (SELECT sum(greatest(l.reltuples, 0))::bigint FROM pg_catalog.pg_partition_tree(c.oid) t
                 JOIN pg_catalog.pg_class l ON l.oid = t.relid WHERE t.isleaf)
            WHEN c.reltuples >= 0 AND c.relkind IN ('r', 'm') THEN c.reltuples::bigint END AS estimated_rows,
       CASE WHEN c.relkind = 'p' THEN
              (SELECT coalesce(sum(pg_catalog.pg_relation_size(t.relid)), 0)::bigint
                 FROM pg_catalog.pg_partition_tree(c.oid) t WHERE t.isleaf)
            WHEN c.relkind IN ('r', 'm') THEN pg_catalog.pg_relation_size(c.oid) END AS size_bytes,
       CASE WHEN c.relkind = 'p' THEN
              (SELECT coalesce(max(pg_catalog.pg_relation_size(t.relid)), 0)::bigint
                 FROM pg_catalog.pg_partition_tree(c.oid) t WHERE t.isleaf)
            WHEN c.relkind IN ('r', 'm') THEN pg_catalog.pg_relation_size(c.oid) END AS largest_heap
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND (CASE WHEN %(oids)s::oid[] IS NULL
            THEN {_SYSTEM} AND (pg_catalog.has_table_privilege(c.oid, 'SELECT')
                                OR pg_catalog.has_any_column_privilege(c.oid, 'SELECT'))
            ELSE c.oid = ANY(%(oids)s::oid[]) END)
ORDER BY n.nspname, c.relname
"""


@dataclass(frozen=True)
class Listed:
    """One readable relation as the catalog lists it, with the planner's estimates.

    Attributes:
        oid: The relation's oid.
        schema: Its schema.
        name: Its name.
        kind: ``pg_class.relkind`` (see :data:`KINDS`).
        partition_of: ``schema.table`` of the partitioned table it is a partition of, if any.
        estimated_rows: The planner's row estimate (``None`` before the first ANALYZE, and for views).
        size_bytes: On-disk size of its rows (all partitions for a partitioned table; ``None`` for views).
        largest_heap: Size of its largest single heap (a partition's for a partitioned table), which bounds
            the page numbers a ``ctid`` can have.
    """

    oid: int
    schema: str
    name: str
    kind: str
    partition_of: str | None
    estimated_rows: int | None
    size_bytes: int | None
    largest_heap: int | None

    @property
    def dataset(self) -> str:
        """The dataset name, ``schema.table``."""
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class Selected:
    """A relation a job reads, with the settings its ``tables:`` entries give it."""

    listed: Listed
    settings: TableSettings


def list_relations(conn: psycopg.Connection, oids: list[int] | None = None) -> list[Listed]:
    """Every relation the connection may read outside the system schemas, or those of ``oids``."""
    return [Listed(*row) for row in conn.execute(_LIST_SQL, {"oids": oids}).fetchall()]


def _parts(name: str) -> list[tuple[str, bool]]:
    """``name`` cut at unquoted dots, each part as ``(text, quoted)``; unquoted parts fold to lower case."""
    parts: list[tuple[str, bool]] = []
    text, quoted, was_quoted, i = "", False, False, 0
    while i < len(name):
        char = name[i]
        if char == '"':
            if quoted and name[i + 1 : i + 2] == '"':  # "" inside quotes is one "
                text += '"'
                i += 1
            else:
                quoted, was_quoted = not quoted, True
        elif char == "." and not quoted:
            parts.append((text, was_quoted))
            text, was_quoted = "", False
        else:
            text += char if quoted else char.lower()
        i += 1
    parts.append((text, was_quoted))
    return parts


def is_glob(name: str) -> bool:
    """Whether ``name`` has a glob character in an unquoted part."""
    return any(not quoted and _GLOB & set(text) for text, quoted in _parts(name))


def _matcher(pattern: str, where: str) -> tuple[tuple[str, bool], tuple[str, bool]]:
    parts = _parts(pattern)
    if len(parts) == 1:
        parts = [("public", True), parts[0]]
    if len(parts) != 2 or not all(text for text, _ in parts):
        raise ConfigError(
            f"{where} entry {pattern!r} is not a table name or glob",
            hint="Write schema.table, e.g. public.orders, public.* or sales.order_*.",
        )
    return parts[0], parts[1]


def _matches(part: tuple[str, bool], value: str) -> bool:
    text, quoted = part
    return value == text if quoted else fnmatch.fnmatchcase(value, text)


def _glob_matches(pattern: str, listed: Listed, where: str) -> bool:
    schema, table = _matcher(pattern, where)
    return _matches(schema, listed.schema) and _matches(table, listed.name)


def _exact(conn: psycopg.Connection, name: str) -> int:
    """The oid of the relation ``name`` names (unqualified: in schema public)."""
    qualified = name if len(_parts(name)) > 1 else f"public.{name}"
    try:
        with conn.transaction():  # a savepoint: an error must not end the snapshot transaction
            row = conn.execute("SELECT pg_catalog.to_regclass(%s)::oid", (qualified,)).fetchone()
    except psycopg.Error as exc:
        raise ConfigError(f"Table name {name!r} in source.tables is not valid: {exc}") from None
    if row is None or row[0] is None:
        raise ConfigError(
            f"Table {qualified} (from source.tables) does not exist, or is not visible to this user",
            hint="Check the spelling and the schema (`dativo discover` without tables: lists every table); "
            "quote mixed-case names, e.g. 'public.\"Orders\"'.",
        )
    return int(row[0])


def _merged(base: TableSettings, entry: TableSettings) -> TableSettings:
    update = {k: v for k, v in entry.model_dump(exclude={"name"}).items() if v is not None}
    return base.model_copy(update=update)


def select_tables(
    conn: psycopg.Connection, entries: list[TableSettings], exclude: list[str]
) -> list[Selected]:
    """The relations ``entries`` name or match, minus ``exclude``, in the order the entries give.

    Raises:
        ConfigError: A name that does not exist or is not readable, a glob or exclude entry that matches
            nothing, a table named twice, or nothing left to read.
    """
    everything: list[Listed] | None = None
    chosen: dict[int, Selected] = {}
    named: set[int] = set()
    for entry in entries:
        if is_glob(entry.name):
            if everything is None:
                everything = list_relations(conn)
            hits = [r for r in everything if r.partition_of is None and _glob_matches(entry.name, r, "tables")]
            if not hits:
                raise ConfigError(
                    f"source.tables entry {entry.name!r} matches no table this user can read",
                    hint="`dativo discover` without tables: lists every table and view of the database.",
                )
        else:
            oid = _exact(conn, entry.name)
            if oid in named:
                raise ConfigError(f"source.tables lists {entry.name} more than once")
            named.add(oid)
            found = list_relations(conn, [oid])
            if not found:
                kind = conn.execute("SELECT relkind FROM pg_catalog.pg_class WHERE oid = %s", (oid,)).fetchone()
                raise ConfigError(
                    f"{entry.name} (from source.tables) is not a table or view (relkind {kind[0] if kind else '?'!r})"
                )
            hits = found
        for listed in hits:
            previous = chosen.get(listed.oid)
            base = previous.settings if previous else TableSettings(name=listed.dataset)
            chosen[listed.oid] = Selected(listed, _merged(base, entry))
    for pattern in exclude:
        gone = [oid for oid, s in chosen.items() if _glob_matches(pattern, s.listed, "exclude")]
        if not gone:
            raise ConfigError(
                f"source.exclude entry {pattern!r} matches none of the tables source.tables selects",
                hint="Check its spelling against `dativo discover`; an exclude that matches nothing is "
                "usually a typo that lets a table through.",
            )
        for oid in gone:
            del chosen[oid]
    if not chosen:
        raise ConfigError(
            "source.tables and source.exclude leave no table to read",
            hint="`dativo discover` without tables: lists every table and view of the database.",
        )
    return list(chosen.values())


def partitions_of(conn: psycopg.Connection, oid: int) -> tuple[str, ...]:
    """``schema.table`` of the direct partitions of the partitioned table ``oid``."""
    rows = conn.execute(
        "SELECT n.nspname || '.' || c.relname FROM pg_catalog.pg_inherits i "
        "JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE i.inhparent = %s ORDER BY 1",
        (oid,),
    ).fetchall()
    return tuple(r[0] for r in rows)


__all__ = ["KINDS", "Listed", "Selected", "is_glob", "list_relations", "partitions_of", "select_tables"]
