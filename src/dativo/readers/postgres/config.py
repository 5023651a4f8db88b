"""Options shared by the ``postgres`` and ``postgres-python`` readers.

Both readers accept the same model, so a job can switch between them by changing only ``implementation``.
The engine keys ``parallelism`` and ``incremental`` never reach this model: they arrive as
``Context.parallelism`` and ``Context.cursor``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_DECIMAL = re.compile(r"^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$")


@dataclass(frozen=True)
class NumericPolicy:
    """How ``numeric`` columns without a usable precision are read.

    Attributes:
        kind: ``decimal`` (exact, errors on values that do not fit), ``string`` (exact text) or
            ``float64`` (explicitly approximate).
        precision: Decimal precision when ``kind == "decimal"``.
        scale: Decimal scale when ``kind == "decimal"``.
    """

    kind: Literal["decimal", "string", "float64"]
    precision: int = 0
    scale: int = 0


class Connection(BaseModel):
    """Where the PostgreSQL server is."""

    model_config = ConfigDict(extra="forbid")

    dsn: str = Field(
        description="libpq connection string: a URI (postgresql://user:pass@host:5432/db) or "
        "key=value pairs (host=... dbname=...). Use ${ENV} references for secrets."
    )


class TableSettings(BaseModel):
    """One entry of ``tables:`` with settings of its own; the job-level values are the defaults."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The table (schema.table) or a glob of tables (sales.order_*).")
    cursor: str | None = Field(
        default=None,
        description="This table's incremental cursor, instead of source.incremental.cursor; setting it makes "
        "the table incremental even when the job is not.",
    )
    primary_key: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Columns that identify a row, for views and tables declared without a primary key (used "
        "for splits, merge and cursor tie-breaks); replaces the declared key.",
    )


TableEntry = str | TableSettings


class PostgresConfig(BaseModel):
    """Options of the built-in PostgreSQL readers (``postgres`` and ``postgres-python``)."""

    model_config = ConfigDict(extra="forbid")

    connection: Connection = Field(description="How to reach the server.")
    tables: list[TableEntry] | None = Field(
        default=None,
        min_length=1,
        description="Tables, views or materialized views to read, as schema.table, or globs of them "
        "(public.*, sales.order_?); unqualified names are looked up in schema public. Unquoted names fold to "
        'lower case as in SQL; quote mixed-case names ("Orders"). An entry may be a mapping {name, cursor, '
        "primary_key} with settings of its own. A glob skips the partitions of a partitioned table (its "
        "parent reads them) and the system schemas. Without tables and query, every table and view the "
        "connection can read is read (what `dativo discover` lists).",
    )
    exclude: list[str] = Field(
        default_factory=list,
        description="Tables or globs to leave out of what tables: selects (e.g. public.tmp_*, audit.*).",
    )
    query: str | None = Field(
        default=None,
        description="A single SELECT to read instead of tables; read as one dataset named 'query', in one "
        "split. At most one of tables and query.",
    )
    min_split_bytes: int = Field(
        default=32 * 1024 * 1024,
        gt=0,
        description="With parallelism above 1, a table is cut into at most one split per this many bytes of "
        "its on-disk size (so a small table is one split, one file).",
    )
    numeric: str = Field(
        default="decimal(38,9)",
        description="Arrow type for numeric columns declared without precision (or with precision above 38): "
        "'decimal(P,S)' with P <= 38 (exact; a value with more digits, NaN or Infinity stops the read with "
        "an error naming the column), 'string' (exact decimal text, NaN/Infinity kept as text) or 'float64' "
        "(approximate, chosen explicitly; NaN/Infinity become float NaN/inf).",
    )
    batch_size_bytes: int | None = Field(
        default=None,
        gt=0,
        description="postgres reader (and rust_postgres, go_postgres): target size of one Arrow record batch in "
        "bytes, passed to the ADBC driver as adbc.postgresql.batch_size_hint_bytes; by default sized from the "
        "job's memory_mb (a sixteenth of each split's share, 1-8 MiB).",
    )
    batch_rows: int = Field(
        default=20_000,
        gt=0,
        description="postgres-python reader: rows fetched per round trip from the server-side cursor, and "
        "rows per record batch.",
    )
    connect_timeout: int = Field(
        default=10,
        gt=0,
        description="Seconds to wait for a connection; applied unless the DSN sets connect_timeout itself.",
    )

    @field_validator("numeric")
    @classmethod
    def _check_numeric(cls, value: str) -> str:
        text = value.strip().lower()
        if text in ("string", "float64"):
            return text
        match = _DECIMAL.match(text)
        if match:
            precision, scale = int(match.group(1)), int(match.group(2))
            if 1 <= precision <= 38 and scale <= precision:
                return f"decimal({precision},{scale})"
        raise ValueError("must be 'decimal(P,S)' with 1 <= P <= 38 and 0 <= S <= P, 'string' or 'float64'")

    @field_validator("query")
    @classmethod
    def _strip_query(cls, value: str | None) -> str | None:
        # The query is wrapped as a subquery, where a trailing semicolon is a syntax error.
        if value is None:
            return None
        text = value.strip().rstrip(";").strip()
        if not text:
            raise ValueError("must not be empty")
        return text

    @model_validator(mode="after")
    def _one_source(self) -> PostgresConfig:
        if self.tables is not None and self.query is not None:
            raise ValueError("set at most one of 'tables' and 'query'")
        if self.query is not None and self.exclude:
            raise ValueError("'exclude' applies to tables, not to a query")
        return self

    @property
    def table_entries(self) -> list[TableSettings]:
        """``tables:`` as settings (a bare name is an entry without settings); every table if omitted."""
        entries = self.tables if self.tables is not None else ["*.*"]
        return [e if isinstance(e, TableSettings) else TableSettings(name=e) for e in entries]

    @property
    def numeric_policy(self) -> NumericPolicy:
        """The parsed :attr:`numeric` option."""
        if self.numeric in ("string", "float64"):
            return NumericPolicy(self.numeric)  # type: ignore[arg-type]
        match = _DECIMAL.match(self.numeric)
        assert match is not None  # guaranteed by the validator
        return NumericPolicy("decimal", int(match.group(1)), int(match.group(2)))
