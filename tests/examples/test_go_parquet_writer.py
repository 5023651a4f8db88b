"""``go_parquet`` (examples/plugins/go_parquet_writer): the Go writer, run as a Flight plugin process, writes a
Parquet dataset that holds exactly the source rows, commits each run atomically, and is idempotent per run id.

The binary is built by ``make plugins-go`` (``make test`` does it first); these tests fail, not skip, when it
is missing.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from dativo.plugins.host import PluginHost
from dativo.writers.parquet import MARKER, read_committed
from tests.conftest import Result
from tests.fixtures.postgres import PgSchema

try:
    import dativo_go_parquet

    BINARY = Path(dativo_go_parquet.__file__).parent / "bin" / "go_parquet_writer"
    MISSING = "" if os.access(BINARY, os.X_OK) else f"{BINARY} is not built"
except ImportError as exc:  # pragma: no cover - CI builds and installs it before the tests
    MISSING = f"{exc}"

ROWS = 20_000


@pytest.fixture(autouse=True)
def _built() -> None:
    if MISSING:
        pytest.fail(f"the go_parquet plugin is not installed ({MISSING}); run `make plugins-go`")


@pytest.fixture
def orders(pg_schema: PgSchema) -> PgSchema:
    pg_schema.execute(f"""
        CREATE TABLE orders (
            id bigint PRIMARY KEY, customer text, amount numeric(12, 2) NOT NULL, qty integer,
            ratio double precision, paid boolean, day date, ref uuid, updated_at timestamptz NOT NULL
        );
        INSERT INTO orders
        SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'customer ' || (g % 313) || ' ✓' END,
               (g * 1.25)::numeric(12, 2), CASE WHEN g % 5 = 0 THEN NULL ELSE g % 100 END, g / 3.0,
               g % 2 = 0, date '2024-01-01' + g % 365, md5(g::text)::uuid,
               timestamptz '2024-01-01 00:00+00' + g * interval '1 second'
        FROM generate_series(1, {ROWS}) AS g;
        ANALYZE orders;
    """)
    return pg_schema


COLUMNS = ["id", "customer", "amount", "qty", "ratio", "paid", "day", "ref", "updated_at"]


def source_rows(schema: PgSchema) -> list[tuple[Any, ...]]:
    """The source rows as psycopg returns them, by id."""
    with psycopg.connect(schema.dsn) as conn:
        return conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM {schema.table('orders')} ORDER BY id"
        ).fetchall()


def written_rows(table: pa.Table) -> list[tuple[Any, ...]]:
    """The rows of a written table as Python values (uuids as ``uuid.UUID``, like psycopg), by id."""
    table = table.sort_by("id")
    values = [table.column(name).to_pylist() for name in COLUMNS]
    ref = COLUMNS.index("ref")
    values[ref] = [
        None if v is None else uuid.UUID(bytes=v) for v in table.column("ref").cast(pa.binary(16)).to_pylist()
    ]
    return list(zip(*values, strict=True))


RunJob = Callable[..., tuple[Result, dict[str, Any]]]


@pytest.fixture
def run(workdir: Path, cli: Callable[..., Result], pg_dsn: str) -> RunJob:
    """``run(job, *args)``: write the job and ``dativo run --json`` it; returns (result, report)."""

    def invoke(spec: dict[str, Any], *args: str) -> tuple[Result, dict[str, Any]]:
        path = workdir / f"{spec['name']}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
        result = cli("run", str(path), "--json", *args, env={"PG_DSN": pg_dsn})
        try:
            report = json.loads(result.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"no JSON report (exit {result.exit_code}):\n{result.output}")
        return result, report

    return invoke


def job(
    schema: PgSchema,
    *,
    name: str = "to_go_parquet",
    fallback: str = "fail",
    reader: str | None = None,
    source: dict[str, Any] | None = None,
    **target: Any,
) -> dict[str, Any]:
    """PostgreSQL ``orders`` → go_parquet into ``./out/{dataset}`` (absolute: a plugin process started for an
    earlier test may be reused, and it keeps the working directory it was started in), three splits."""
    section: dict[str, Any] = {
        "type": "postgres",
        "connection": {"dsn": "${PG_DSN}"},
        "tables": [schema.table("orders")],
        "parallelism": 3,
        **(source or {}),
    }
    if reader is not None:
        section["reader"] = {"type": "custom", "implementation": reader, "fallback": "fail"}
    else:
        section["min_split_bytes"] = 1  # a small table, split as parallelism says
    return {
        "version": 1,
        "name": name,
        "source": section,
        "target": {
            "type": "parquet",
            "path": str(Path.cwd() / "out" / "{dataset}"),
            "mode": "append",
            "writer": {"type": "custom", "implementation": "go_parquet", "fallback": fallback},
            **target,
        },
    }


def committed_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("_")) if folder.exists() else []


def test_the_entry_point_starts_the_go_binary() -> None:
    with PluginHost() as host:  # it asks the binary for its spec, then stops it
        spec = host.resolve("writer", "go_parquet")
    assert spec.origin == "entry point"
    assert spec.cls.language == "go"
    assert spec.version == "0.1.0"


@pytest.mark.parametrize("reader", [None, "go_postgres"])
def test_the_dataset_equals_the_source_and_a_rerun_is_a_no_op(
    orders: PgSchema, run: RunJob, workdir: Path, reader: str | None
) -> None:
    result, report = run(job(orders, reader=reader), "--run-id", "first")
    assert result.exit_code == 0, result.output
    assert report["writer"]["implementation"] == "go_parquet" and report["writer"]["language"] == "go"
    assert report["fallback_used"] is False and report["rows_written"] == ROWS
    folder = workdir / "out" / orders.table("orders")
    assert committed_folders(folder) == ["000001-first"]
    files = sorted((folder / "000001-first").glob("*.parquet"))
    assert len(files) == 3  # one per split
    assert pq.ParquetFile(files[0]).metadata.row_group(0).column(0).compression == "ZSTD"

    # Any Parquet reader sees the committed rows (and nothing of _dativo/); Dativo's own reader agrees.
    written = pq.read_table(folder)
    assert written.num_rows == ROWS
    assert written.schema.field("amount").type == pa.decimal128(12, 2)
    assert written.schema.field("updated_at").type == pa.timestamp("us", tz="UTC")
    assert written.schema.field("id").nullable is False
    assert written_rows(written) == source_rows(orders)
    assert read_committed(str(folder)).to_table().num_rows == ROWS

    # The same run id again: the commit is a no-op, the folder unchanged, and no staged file lingers.
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    result, report = run(job(orders, reader=reader), "--run-id", "first")
    assert result.exit_code == 0, result.output
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == before
    assert committed_folders(folder) == ["000001-first"]
    assert not any((folder / "_dativo").rglob("*.parquet"))
    assert pq.read_table(folder).num_rows == ROWS

    # A new run appends a second folder.
    result, _ = run(job(orders, reader=reader), "--run-id", "second")
    assert result.exit_code == 0, result.output
    assert committed_folders(folder) == ["000001-first", "000002-second"]
    assert pq.read_table(folder).num_rows == 2 * ROWS


def test_incremental_state_comes_from_the_newest_commit(orders: PgSchema, run: RunJob, workdir: Path) -> None:
    spec = job(orders, name="incremental", source={"incremental": {"cursor": "updated_at"}})
    result, report = run(spec)
    assert result.exit_code == 0, result.output
    assert report["rows_written"] == ROWS
    folder = workdir / "out" / orders.table("orders")
    [first] = committed_folders(folder)
    record = json.loads((folder / first / MARKER).read_text())
    assert record["job"] == "incremental" and record["rows"] == ROWS
    assert record["state"]["cursor"]["column"] == "updated_at"

    orders.execute("""INSERT INTO orders (id, amount, updated_at)
        SELECT g, 1, timestamptz '2030-01-01 00:00+00' FROM generate_series(100001, 100005) AS g""")
    result, report = run(spec)
    assert result.exit_code == 0, result.output
    assert report["rows_read"] == 5
    result, report = run(spec)  # nothing new
    assert result.exit_code == 0, result.output
    assert report["rows_read"] == 0
    ids = pq.read_table(folder).column("id").to_pylist()
    assert sorted(ids) == [*range(1, ROWS + 1), *range(100001, 100006)]


def test_a_failed_run_publishes_nothing(orders: PgSchema, run: RunJob, workdir: Path) -> None:
    """The reader fails mid-run (an infinite timestamp): the writer's files are aborted, nothing is committed."""
    orders.execute("ALTER TABLE orders ADD COLUMN seen timestamp")
    orders.execute(f"UPDATE orders SET seen = 'infinity' WHERE id = {ROWS}")
    result, report = run(job(orders, reader="go_postgres"))
    assert result.exit_code == 3, result.output
    assert "column seen holds a date or timestamp" in result.output
    folder = workdir / "out" / orders.table("orders")
    assert committed_folders(folder) == []
    assert not folder.exists() or not any((folder / "_dativo").rglob("*.parquet"))


def test_overwrite_is_refused_or_falls_back_to_the_builtin_writer(
    orders: PgSchema, run: RunJob, workdir: Path
) -> None:
    result, _ = run(job(orders, name="overwrite", mode="overwrite"))
    assert result.exit_code == 3, result.output
    assert "go_parquet" in result.output and "overwrite" in result.output
    result, report = run(job(orders, name="overwrite", mode="overwrite", fallback="default"))
    assert result.exit_code == 0, result.output
    assert report["fallback_used"] is True and "overwrite" in report["fallback_reason"]
    # The built-in writer keeps the same layout, so the folder reads the same way.
    folder = workdir / "out" / orders.table("orders")
    assert pq.read_table(folder).num_rows == ROWS


def test_unknown_settings_are_config_errors(orders: PgSchema, run: RunJob) -> None:
    result, _ = run(job(orders, compresion="zstd"))
    assert result.exit_code == 2, result.output
    assert "compresion" in result.output
