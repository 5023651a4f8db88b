"""``rust_postgres`` (examples/plugins/rust_postgres) must read exactly what the built-in ``postgres`` reads.

The plugin is a compiled wheel built by ``make plugins`` (``make test`` does it first); these tests fail,
not skip, when it is missing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pyiceberg.catalog.sql import SqlCatalog

from dativo.api import Context, Reader
from dativo.errors import ConnectionFailed, PluginFailed
from dativo.readers.postgres import PostgresConfig, PostgresReader
from dativo.registry import resolve
from dativo.state import Watermark
from tests.conftest import Result
from tests.fixtures.postgres import PASSWORD, PgSchema
from tests.examples.postgres_readers import assert_same, read_sorted, same_values, types_ddl
from tests.readers.postgres.helpers import read_all

try:
    import rust_postgres
    from rust_postgres import RustPostgresReader, native_conninfo

    MISSING = ""
except ImportError as exc:  # pragma: no cover - CI builds the wheel before the tests
    MISSING = f"{exc}"

UTC = dt.UTC
EXAMPLE_JOB = Path(__file__).parents[2] / "examples" / "plugins" / "rust_postgres" / "job.yaml"


@pytest.fixture(autouse=True)
def _installed() -> None:
    if MISSING:
        pytest.fail(f"the rust_postgres plugin is not installed ({MISSING}); run `make plugins-rust`")


MakeReader = Callable[..., Reader]


@pytest.fixture
def make_reader() -> Iterator[MakeReader]:
    """``make_reader(cls, dsn, parallelism=1, cursor=None, **options)``; every reader is closed afterwards."""
    made: list[Reader] = []

    def make(cls: type[Reader], dsn: str, *, parallelism: int = 1, cursor: str | None = None, **options: Any):
        config = PostgresConfig.model_validate({"connection": {"dsn": dsn}, **options})
        logger = logging.getLogger("t")
        ctx = Context("t", "r", cls.__name__, logger, parallelism=parallelism, cursor=cursor)
        reader = cls(config, ctx)
        made.append(reader)
        return reader

    yield make
    for reader in made:
        reader.close()


TYPES_DDL = types_ddl(150_000)


@pytest.fixture
def everything(pg_schema: PgSchema) -> PgSchema:
    pg_schema.execute(TYPES_DDL)
    return pg_schema


def test_the_entry_point_resolves_to_the_rust_reader() -> None:
    spec = resolve("reader", "rust_postgres")
    assert spec.cls is RustPostgresReader
    assert spec.origin == "entry point"
    assert spec.language == "rust"
    assert spec.connector == "postgres"  # the job's postgres keys (connection, tables …) are its config
    assert spec.version == rust_postgres.RustPostgresReader.version


@pytest.mark.parametrize("parallelism", [1, 2])
def test_every_type_reads_exactly_like_the_builtin_reader(
    everything: PgSchema, make_reader: MakeReader, parallelism: int
) -> None:
    tables = [everything.table("everything")]
    rust = make_reader(RustPostgresReader, everything.dsn, tables=tables, parallelism=parallelism)
    builtin = make_reader(PostgresReader, everything.dsn, tables=tables, parallelism=parallelism)
    [dataset] = rust.discover()
    assert len(rust.plan(dataset, None)) == parallelism
    expected = read_sorted(builtin)
    assert expected.num_rows == 150_004
    assert_same(read_sorted(rust), expected)


def test_spot_values(everything: PgSchema, make_reader: MakeReader) -> None:
    """A few values checked by hand, so the comparison above is not two readers sharing one mistake."""
    from decimal import Decimal

    reader = make_reader(RustPostgresReader, everything.dsn, tables=[everything.table("everything")])
    first = read_sorted(reader).slice(0, 4)
    assert first.column("d").cast(pa.int32())[0].as_py() == -719_162  # 0001-01-01 (days since 1970)
    rows = {r["id"]: r for r in first.drop_columns(["d", "tstz"]).to_pylist()}  # row 3 is BC: no date
    assert rows[1]["txt"] == "héllo 😀 漢字"
    assert rows[1]["big"] == Decimal("-99999999999999999999999999999999999999")
    assert rows[1]["tiny"] == Decimal("0.99999999999999999999999999999999999999")
    assert rows[1]["ts"] == dt.datetime(1, 1, 1, 0, 0, 0, 1)
    assert first.column("tstz")[0].as_py() == dt.datetime(1900, 1, 1, tzinfo=UTC)
    assert rows[1]["neg"] == Decimal("-12300")
    assert rows[3]["tiny"] == Decimal("-0.00000000000000000000000000000000000001")
    assert rows[3]["free"] == Decimal("-0.000000001")
    assert rows[4]["free"] == Decimal("1.5")
    assert rows[4]["bin"] == bytes.fromhex("ab" * 100_000)
    assert all(v is None for k, v in rows[2].items() if k not in ("id", "i4"))


@pytest.mark.parametrize("parallelism", [1, 2])
def test_incremental_reads_match_the_builtin_reader(
    everything: PgSchema, make_reader: MakeReader, parallelism: int
) -> None:
    tables = [everything.table("everything")]

    def both(state: dict | None) -> pa.Table:
        rust = make_reader(
            RustPostgresReader, everything.dsn, tables=tables, cursor="ts", parallelism=parallelism
        )
        builtin = make_reader(
            PostgresReader, everything.dsn, tables=tables, cursor="ts", parallelism=parallelism
        )
        expected = read_sorted(builtin, state)
        assert_same(read_sorted(rust, state), expected)
        return expected

    full = both(None)
    [dataset] = make_reader(PostgresReader, everything.dsn, tables=tables).discover()
    assert dataset.schema is not None
    middle = dt.datetime(1900, 1, 1)
    state = Watermark("ts", middle, ("id",), (3,)).to_state(dataset.schema)
    after = both(json.loads(json.dumps(state)))
    assert 0 < after.num_rows < full.num_rows
    assert all(ts is not None and ts >= middle for ts in after.column("ts").to_pylist())


def test_numeric_nan_in_a_decimal_column_names_the_column(
    pg_schema: PgSchema, make_reader: MakeReader
) -> None:
    pg_schema.execute("CREATE TABLE n (id int PRIMARY KEY, amount numeric)")
    pg_schema.execute("INSERT INTO n SELECT g, g FROM generate_series(1, 100000) g")
    pg_schema.execute("INSERT INTO n VALUES (100001, 'NaN')")
    reader = make_reader(RustPostgresReader, pg_schema.dsn, tables=[pg_schema.table("n")])
    with pytest.raises(PluginFailed) as raised:
        read_all(reader)
    message = str(raised.value)
    assert "Column amount of" in message and "NaN" in message and "decimal128(38, 9)" in message, message
    # Too many digits for the scale: refused like the built-in reader's cast, never rounded.
    pg_schema.execute("UPDATE n SET amount = 0.0000000001 WHERE id = 100001")
    with pytest.raises(PluginFailed, match="Column amount of .* fractional digits"):
        read_all(make_reader(RustPostgresReader, pg_schema.dsn, tables=[pg_schema.table("n")]))
    with pytest.raises(PluginFailed, match="amount"):
        read_all(make_reader(PostgresReader, pg_schema.dsn, tables=[pg_schema.table("n")]))


def test_value_guards_of_the_select_name_the_column(pg_schema: PgSchema, make_reader: MakeReader) -> None:
    """The SELECT's own guards (infinite timestamps) fire mid-COPY; the error names the column."""
    pg_schema.execute("CREATE TABLE g (id int PRIMARY KEY, seen timestamp)")
    pg_schema.execute("INSERT INTO g SELECT i, '2024-01-01' FROM generate_series(1, 200000) i")
    pg_schema.execute("INSERT INTO g VALUES (200001, 'infinity')")
    reader = make_reader(RustPostgresReader, pg_schema.dsn, tables=[pg_schema.table("g")])
    with pytest.raises(
        PluginFailed, match="column seen holds a date or timestamp that Arrow cannot represent"
    ):
        read_all(reader)


def test_closing_the_reader_stops_the_rust_thread_and_its_connection(
    pg_schema: PgSchema, make_reader: MakeReader
) -> None:
    """Closing mid-read cancels the COPY: without that, the driver would drain the rest (minutes, here)."""
    pg_schema.execute(
        "CREATE FUNCTION slow(g int) RETURNS boolean LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_sleep(0.001); RETURN true; END $$"
    )
    pg_schema.execute(
        "CREATE VIEW trickle AS "
        "SELECT g AS id, repeat('x', 100) AS v FROM generate_series(1, 200000) g WHERE slow(g)"
    )
    reader = make_reader(
        RustPostgresReader, pg_schema.dsn, tables=[pg_schema.table("trickle")], batch_size_bytes=2000
    )
    [dataset] = reader.discover()
    [split] = reader.plan(dataset, None)
    stream = reader.read(split)
    first = stream.read_next_batch()
    assert 0 < first.num_rows < 100

    def copying() -> int:
        # Any connection whose last statement was this COPY, active or idle: both would be a leak.
        rows = pg_schema.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s AND query LIKE %s",
            ("COPY (SELECT%", f"%{pg_schema.name}%"),
        )
        return int(rows[0][0])

    assert copying() == 1
    reader.close()  # as the engine does after a failure elsewhere: the producer stops at its next batch
    deadline = time.monotonic() + 10
    while copying() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert copying() == 0


def test_a_fresh_reader_with_a_wrong_password_fails_clearly(
    pg_schema: PgSchema, pg_password_dsn: str, make_reader: MakeReader
) -> None:
    """A split read by another process whose DSN has a wrong password: the Rust driver's refusal, redacted."""
    pg_schema.execute("CREATE TABLE t (id int PRIMARY KEY)")
    pg_schema.execute(f"GRANT USAGE ON SCHEMA {pg_schema.name} TO dativo_pw_user")
    pg_schema.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {pg_schema.name} TO dativo_pw_user")
    planner = make_reader(RustPostgresReader, pg_password_dsn, tables=[pg_schema.table("t")])
    [dataset] = planner.discover()
    [split] = planner.plan(dataset, None)
    wrong = make_conninfo(pg_password_dsn, password="Wr0ng-Pa55word")
    reader = make_reader(RustPostgresReader, wrong, tables=[pg_schema.table("t")])
    with pytest.raises(ConnectionFailed) as raised:
        list(reader.read(split))
    message = str(raised.value)
    assert "password authentication failed" in message, message
    assert "Wr0ng-Pa55word" not in message and PASSWORD not in message
    # check() refuses it too, before anything is read.
    with pytest.raises(ConnectionFailed, match="password authentication failed") as raised:
        reader.check()
    assert "Wr0ng-Pa55word" not in str(raised.value)


def test_native_conninfo(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSSLMODE", "PGSERVICE"):
        monkeypatch.delenv(variable, raising=False)
    info = native_conninfo("postgresql://u:it%27s%20secret@/db?host=/tmp/a%20b&client_encoding=UTF8")
    assert info == "user=u password='it\\'s secret' dbname=db host='/tmp/a b' sslmode=disable"
    monkeypatch.setenv("PGPASSWORD", "from-env")
    monkeypatch.setenv("PGPORT", "5433")
    parsed = conninfo_to_dict(native_conninfo("host=h user=u"))
    assert parsed == {"host": "h", "user": "u", "password": "from-env", "port": "5433", "sslmode": "disable"}
    for mode in ("require", "verify-ca", "verify-full"):
        with pytest.raises(PluginFailed, match=f"sslmode={mode}.*does not support"):
            native_conninfo(f"host=h sslmode={mode} password=topsecret")
    with pytest.raises(PluginFailed, match="service"):
        native_conninfo("service=prod")


# --- through the CLI, as a user runs it ---------------------------------------------------------------------


def run(
    cli: Callable[..., Result], workdir: Path, job: dict[str, Any], env: dict[str, str]
) -> tuple[Result, dict]:
    path = workdir / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False), encoding="utf-8")
    result = cli("run", str(path), "--json", env=env)
    try:
        return result, json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"no JSON report (exit {result.exit_code}):\n{result.output}")


def job(
    table: str, *, fallback: str = "fail", target: str | None = None, rust: bool = True, **source: Any
) -> dict:
    """A job reading ``table`` with rust_postgres (or the built-in reader) into the embedded Iceberg lake."""
    section = {"type": "postgres", "connection": {"dsn": "${PG_DSN}"}, "tables": [table], **source}
    if rust:
        section["reader"] = {"type": "custom", "implementation": "rust_postgres", "fallback": fallback}
    sink = {"type": "iceberg", "namespace": "raw", "table": target or table.split(".")[-1], "mode": "append"}
    return {"version": 1, "name": "rust_pg", "source": section, "target": sink}


def lake_table(workdir: Path, table: str) -> pa.Table:
    base = workdir / ".dativo"
    catalog = SqlCatalog(
        "dativo", uri=f"sqlite:///{base / 'catalog.db'}", warehouse=(base / "warehouse").as_uri()
    )
    return catalog.load_table(("raw", table)).scan().to_arrow().sort_by("id")


def test_the_example_job_reads_with_rust_into_the_embedded_iceberg_lake(
    everything: PgSchema, workdir: Path, cli: Callable[..., Result], pg_dsn: str
) -> None:
    table, env = everything.table("everything"), {"PG_DSN": pg_dsn}
    example = yaml.safe_load(EXAMPLE_JOB.read_text(encoding="utf-8"))
    example["source"]["tables"] = [table]
    example["target"]["table"] = "everything"
    result, report = run(cli, workdir, example, env)
    assert result.exit_code == 0, result.output
    assert report["status"] == "succeeded"
    assert report["reader"]["implementation"] == "rust_postgres"
    assert report["reader"]["language"] == "rust"
    assert report["fallback_used"] is False
    assert report["rows_written"] == 150_004

    # What any Iceberg client reads back is what the same job with the built-in reader publishes.
    result, report = run(cli, workdir, job(table, rust=False, target="builtin", parallelism=2), env)
    assert result.exit_code == 0, result.output
    assert report["reader"]["implementation"] == "postgres"
    rust, builtin = lake_table(workdir, "everything"), lake_table(workdir, "builtin")
    assert rust.schema.equals(builtin.schema) and rust.num_rows == builtin.num_rows
    for name in builtin.column_names:
        assert same_values(rust.column(name), builtin.column(name)), f"column {name} differs"


def test_unsupported_columns_fail_or_fall_back(
    pg_schema: PgSchema, workdir: Path, cli: Callable[..., Result], pg_dsn: str
) -> None:
    pg_schema.execute("CREATE TABLE tagged (id int PRIMARY KEY, tags text[], scores int[])")
    pg_schema.execute("INSERT INTO tagged VALUES (1, '{a,b}', '{1}'), (2, NULL, '{}')")
    env = {"PG_DSN": pg_dsn}

    result, report = run(cli, workdir, job(pg_schema.table("tagged")), env)
    assert result.exit_code == 3, result.output
    message = " ".join(result.stderr.split())
    assert "tags (list<item: string>)" in message and "scores (list<item: int32>)" in message, message
    assert "an Arrow type rust_postgres cannot produce" in message and "Traceback" not in result.output

    result, report = run(cli, workdir, job(pg_schema.table("tagged"), fallback="default"), env)
    assert result.exit_code == 0, result.output
    assert report["fallback_used"] is True
    assert "tags" in report["fallback_reason"]
    assert report["reader"]["implementation"] == "postgres"
    assert lake_table(workdir, "tagged").column("tags").to_pylist() == [["a", "b"], None]


def test_a_wrong_password_in_a_job_is_a_clear_error_without_the_password(
    pg_schema: PgSchema, pg_password_dsn: str, workdir: Path, cli: Callable[..., Result]
) -> None:
    wrong = make_conninfo(pg_password_dsn, password="Wr0ng-Pa55word")
    result, report = run(cli, workdir, job(pg_schema.table("nothing")), {"PG_DSN": wrong})
    assert result.exit_code != 0
    assert "password authentication failed" in " ".join(result.stderr.split()), result.output
    assert "Wr0ng-Pa55word" not in result.output and PASSWORD not in result.output
    assert "Traceback" not in result.output


def test_bare_stream_protocol(pg_dsn: str) -> None:
    """The extension's stream is a plain Arrow C stream too: pyarrow can consume it directly."""
    from rust_postgres import _native

    schema = pa.schema([pa.field("n", pa.int64(), nullable=False), ("s", pa.string())])
    query = "SELECT g::int8 AS n, CASE WHEN g % 2 = 0 THEN g::text END AS s FROM generate_series(1, 200000) g"
    info = native_conninfo(make_conninfo(pg_dsn))
    stream = _native.copy_stream(info, [], query, schema, {"dataset": "gen", "batch_rows": 50_000})
    assert pa.schema(stream).equals(schema)
    table = pa.RecordBatchReader.from_stream(stream).read_all()
    assert table.num_rows == 200_000 and table.column("s").null_count == 100_000
    assert [len(b) for b in table.to_batches()] == [50_000] * 4

    divide = "SELECT (1 / (200000 - g))::int8 AS n, NULL::text AS s FROM generate_series(1, 200000) g"
    failing = _native.copy_stream(info, [], divide, schema, {"dataset": "gen"})
    with pytest.raises(pa.ArrowInvalid, match="division by zero"):
        pa.RecordBatchReader.from_stream(failing).read_all()
    with pytest.raises(_native.PostgresError, match="syntax error"):
        _native.copy_stream(info, [], "SELEKT 1", schema, {"dataset": "gen"})
    with psycopg.connect(pg_dsn) as conn:  # the server is still fine
        assert conn.execute("SELECT 1").fetchone() == (1,)
