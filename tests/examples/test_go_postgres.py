"""``go_postgres`` (examples/plugins/go_postgres): the Go reader, run as a Flight plugin process, must read
exactly what the built-in ``postgres`` reader reads.

The binary is built by ``make plugins-go`` (``make test`` does it first); these tests fail, not skip, when it
is missing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from pyiceberg.catalog.sql import SqlCatalog

from dativo.api import Context, Reader
from dativo.errors import ConfigError, ConnectionFailed, PluginFailed
from dativo.readers.postgres import PostgresConfig, PostgresReader
from dativo.plugins.host import PluginHost
from dativo.registry import resolve
from dativo.state import Watermark
from tests.conftest import Result
from tests.fixtures.postgres import PASSWORD, PgSchema
from tests.examples.postgres_readers import assert_same, read_sorted, types_ddl
from tests.readers.postgres.helpers import read_all

try:
    import dativo_go_postgres

    BINARY = Path(dativo_go_postgres.__file__).parent / "bin" / "go_postgres"
    MISSING = "" if os.access(BINARY, os.X_OK) else f"{BINARY} is not built"
except ImportError as exc:  # pragma: no cover - CI builds and installs it before the tests
    MISSING = f"{exc}"

UTC = dt.UTC


@pytest.fixture(autouse=True)
def _built() -> None:
    if MISSING:
        pytest.fail(f"the go_postgres plugin is not installed ({MISSING}); run `make plugins-go`")


# --- the reader as the engine sees it ------------------------------------------------------------------------

MakeReader = Callable[..., Reader]


@pytest.fixture
def make_reader() -> Iterator[MakeReader]:
    """``make_reader(name, dsn, parallelism=1, cursor=None, **settings)``: ``postgres`` or ``go_postgres``, closed
    afterwards (which shuts the plugin process down)."""
    made: list[Reader] = []

    def make(
        name: str, dsn: str, *, parallelism: int = 1, cursor: str | None = None, **settings: Any
    ) -> Reader:
        settings = {"connection": {"dsn": dsn}, **settings}
        ctx = Context(
            job="t", run_id="r", plugin=name, logger=logging.getLogger("t"), settings=settings,
            parallelism=parallelism, cursor=cursor,
        )  # fmt: skip
        if name == "postgres":
            reader: Reader = PostgresReader(PostgresConfig.model_validate(settings), ctx)
        else:
            spec = resolve("reader", name)
            reader = spec.cls(spec.build_config(settings, {}, section="source"), ctx)
        made.append(reader)
        return reader

    yield make
    for reader in made:
        reader.close()


TYPES_DDL = types_ddl(60_000)


@pytest.fixture
def everything(pg_schema: PgSchema) -> PgSchema:
    pg_schema.execute(TYPES_DDL)
    return pg_schema


def test_the_entry_point_starts_the_go_binary() -> None:
    with PluginHost() as host:  # it asks the binary for its spec, then stops it
        spec = host.resolve("reader", "go_postgres")
    assert spec.origin == "entry point"
    assert spec.cls.language == "go"
    assert spec.version == "0.1.0"
    assert spec.cls.plugin_spec["name"] == "go_postgres"


@pytest.mark.parametrize("parallelism", [1, 3])
def test_every_type_reads_exactly_like_the_builtin_reader(
    everything: PgSchema, make_reader: MakeReader, parallelism: int
) -> None:
    tables = [everything.table("everything")]
    go = make_reader("go_postgres", everything.dsn, tables=tables, parallelism=parallelism)
    builtin = make_reader("postgres", everything.dsn, tables=tables, parallelism=parallelism)
    [dataset] = go.discover()
    assert dataset.primary_key == ("id",)
    assert dataset.cursor_candidates == ("id", "i2", "i4", "i8", "d", "ts", "tstz", "o")
    assert len(go.plan(dataset, None)) == parallelism
    expected = read_sorted(builtin)
    assert expected.num_rows == 60_004
    assert_same(read_sorted(go), expected)


def test_spot_values(everything: PgSchema, make_reader: MakeReader) -> None:
    """A few values checked by hand, so the comparison above is not two readers sharing one mistake."""
    reader = make_reader("go_postgres", everything.dsn, tables=[everything.table("everything")])
    first = read_sorted(reader).slice(0, 4)
    assert first.schema.field("i4").nullable is False and first.schema.field("i2").nullable is True
    assert first.schema.field("dec").type == pa.decimal128(12, 2)
    assert first.schema.field("tstz").type == pa.timestamp("us", tz="UTC")
    assert first.schema.field("u").type == pa.uuid()
    assert first.column("d").cast(pa.int32())[0].as_py() == -719_162  # 0001-01-01 (days since 1970)
    assert first.column("t").cast(pa.int64())[3].as_py() == 45_296_789_000  # 12:34:56.789
    rows = {r["id"]: r for r in first.drop_columns(["d", "tstz"]).to_pylist()}  # row 3 is BC: no date
    assert rows[1]["txt"] == "héllo 😀 漢字"
    assert rows[1]["big"] == Decimal("-99999999999999999999999999999999999999")
    assert rows[1]["tiny"] == Decimal("0.99999999999999999999999999999999999999")
    assert rows[1]["ts"] == dt.datetime(1, 1, 1, 0, 0, 0, 1)
    assert rows[1]["jb"] == '{"a": [1, 2], "b": null}'
    assert rows[1]["o"] == 4_000_000_000
    assert first.column("tstz")[0].as_py() == dt.datetime(1900, 1, 1, tzinfo=UTC)
    assert rows[1]["neg"] == Decimal("-12300")
    assert rows[3]["tiny"] == Decimal("-0.00000000000000000000000000000000000001")
    assert rows[3]["free"] == Decimal("-0.000000001")
    assert rows[4]["free"] == Decimal("1.5")
    assert rows[4]["bin"] == bytes.fromhex("ab" * 100_000)
    assert all(v is None for k, v in rows[2].items() if k not in ("id", "i4", "flag"))


def test_a_query_reads_like_the_builtin_reader(everything: PgSchema, make_reader: MakeReader) -> None:
    query = f"SELECT id, dec * 2 AS twice, upper(txt) AS shout, u FROM {everything.table('everything')} WHERE id % 3 = 0"
    go = make_reader("go_postgres", everything.dsn, query=query, parallelism=3)
    builtin = make_reader("postgres", everything.dsn, query=query)
    [dataset] = go.discover()
    assert dataset.name == "query" and all(f.nullable for f in dataset.schema)
    assert_same(read_sorted(go), read_sorted(builtin))


@pytest.mark.parametrize("parallelism", [1, 3])
def test_incremental_reads_match_the_builtin_reader(
    everything: PgSchema, make_reader: MakeReader, parallelism: int
) -> None:
    tables = [everything.table("everything")]

    def both(state: dict | None) -> pa.Table:
        go = make_reader("go_postgres", everything.dsn, tables=tables, cursor="ts", parallelism=parallelism)
        builtin = make_reader("postgres", everything.dsn, tables=tables, cursor="ts", parallelism=parallelism)
        expected = read_sorted(builtin, state)
        assert_same(read_sorted(go, state), expected)
        return expected

    full = both(None)
    [dataset] = make_reader("postgres", everything.dsn, tables=tables).discover()
    assert dataset.schema is not None
    middle = dt.datetime(1900, 1, 1)
    state = Watermark("ts", middle, ("id",), (3,)).to_state(dataset.schema)  # ties broken by the key
    after = both(json.loads(json.dumps(state)))
    assert 0 < after.num_rows < full.num_rows
    assert all(ts is not None and ts >= middle for ts in after.column("ts").to_pylist())
    tstz = Watermark("tstz", dt.datetime(2019, 6, 1, tzinfo=UTC), ("id",), (0,)).to_state(dataset.schema)
    go = make_reader("go_postgres", everything.dsn, tables=tables, cursor="tstz")
    builtin = make_reader("postgres", everything.dsn, tables=tables, cursor="tstz")
    assert_same(read_sorted(go, tstz), read_sorted(builtin, tstz))


def test_a_state_for_another_cursor_is_refused(everything: PgSchema, make_reader: MakeReader) -> None:
    tables = [everything.table("everything")]
    reader = make_reader("go_postgres", everything.dsn, tables=tables, cursor="tstz")
    [dataset] = reader.discover()
    state = {
        "cursor": {"column": "ts", "value": "1900-01-01 00:00:00.000000", "key_columns": ["id"], "key": ["3"]}
    }
    with pytest.raises(ConfigError, match="tracks cursor 'ts', but the job now uses 'tstz'"):
        reader.plan(dataset, state)
    reader = make_reader("go_postgres", everything.dsn, tables=tables, cursor="nope")
    [dataset] = reader.discover()
    with pytest.raises(ConfigError, match="incremental.cursor 'nope' is not a column"):
        reader.plan(dataset, None)


def test_numeric_nan_in_a_decimal_column_names_the_column(
    pg_schema: PgSchema, make_reader: MakeReader
) -> None:
    pg_schema.execute("CREATE TABLE n (id int PRIMARY KEY, amount numeric)")
    pg_schema.execute("INSERT INTO n SELECT g, g FROM generate_series(1, 100000) g")
    pg_schema.execute("INSERT INTO n VALUES (100001, 'NaN')")
    with pytest.raises(PluginFailed) as raised:
        read_all(make_reader("go_postgres", pg_schema.dsn, tables=[pg_schema.table("n")]))
    message = str(raised.value)
    assert "Column amount of" in message and "NaN" in message and "decimal128(38, 9)" in message, message
    # Too many digits for the scale: refused like the built-in reader's cast, never rounded.
    pg_schema.execute("UPDATE n SET amount = 0.0000000001 WHERE id = 100001")
    with pytest.raises(PluginFailed, match="Column amount of .* more digits than decimal128"):
        read_all(make_reader("go_postgres", pg_schema.dsn, tables=[pg_schema.table("n")]))
    with pytest.raises(PluginFailed, match="amount"):
        read_all(make_reader("postgres", pg_schema.dsn, tables=[pg_schema.table("n")]))
    # The numeric option applies as for the built-in reader.
    go = make_reader("go_postgres", pg_schema.dsn, tables=[pg_schema.table("n")], numeric="string")
    builtin = make_reader("postgres", pg_schema.dsn, tables=[pg_schema.table("n")], numeric="string")
    assert_same(read_sorted(go), read_sorted(builtin))


def test_value_guards_of_the_select_name_the_column(pg_schema: PgSchema, make_reader: MakeReader) -> None:
    """The SELECT's own guards (infinite timestamps) fire mid-stream; the error names the column."""
    pg_schema.execute("CREATE TABLE g (id int PRIMARY KEY, seen timestamp)")
    pg_schema.execute("INSERT INTO g SELECT i, '2024-01-01' FROM generate_series(1, 200000) i")
    pg_schema.execute("INSERT INTO g VALUES (200001, 'infinity')")
    reader = make_reader("go_postgres", pg_schema.dsn, tables=[pg_schema.table("g")])
    with pytest.raises(
        PluginFailed, match="column seen holds a date or timestamp that Arrow cannot represent"
    ):
        read_all(reader)


def test_closing_the_reader_stops_the_query_and_its_connection(
    pg_schema: PgSchema, make_reader: MakeReader
) -> None:
    pg_schema.execute("CREATE TABLE big (id int PRIMARY KEY, v text)")
    pg_schema.execute("INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 1000000) g")
    reader = make_reader(
        "go_postgres", pg_schema.dsn, tables=[pg_schema.table("big")], batch_size_bytes=1 << 20
    )
    [dataset] = reader.discover()
    [split] = reader.plan(dataset, None)
    stream = reader.read(split)
    assert 0 < stream.read_next_batch().num_rows < 1_000_000

    def reading() -> int:
        rows = pg_schema.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
            (f'SELECT % FROM "{pg_schema.name}"."big"%',),
        )
        return int(rows[0][0])

    assert reading() == 1
    reader.close()  # as the engine does after a failure elsewhere: the plugin stops, its connection closes
    deadline = time.monotonic() + 10
    while reading() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reading() == 0


def test_a_wrong_password_fails_clearly(
    pg_schema: PgSchema, pg_password_dsn: str, make_reader: MakeReader
) -> None:
    wrong = pg_password_dsn.replace(PASSWORD, "not-the-password")
    reader = make_reader("go_postgres", wrong, tables=[pg_schema.table("x")])
    with pytest.raises(ConnectionFailed) as raised:
        reader.check()
    message = str(raised.value)
    assert "Cannot connect to PostgreSQL" in message and "password" in message.lower()
    assert "not-the-password" not in message and PASSWORD not in message


def test_unknown_settings_and_missing_tables_are_config_errors(
    pg_schema: PgSchema, make_reader: MakeReader
) -> None:
    with pytest.raises(ConfigError, match='source has an unknown key "tabels"'):
        make_reader("go_postgres", pg_schema.dsn, tabels=["x"]).check()
    reader = make_reader("go_postgres", pg_schema.dsn, tables=[pg_schema.table("missing")])
    with pytest.raises(ConfigError, match="does not exist"):
        reader.discover()


def test_the_host_refuses_options_it_does_not_declare() -> None:
    """go_postgres declares no options of its own (additionalProperties: false): the host says so first."""
    with PluginHost() as host:
        spec = host.resolve("reader", "go_postgres")
        with pytest.raises(ConfigError) as raised:
            spec.build_config({"connection": {"dsn": "postgresql://x"}}, {"tables": ["t"]}, section="source")
    assert "source.reader.options.tables: unknown key; no keys are allowed here" in raised.value.message
    assert raised.value.hint == "`dativo plugins info go_postgres` shows the options it accepts."


# --- jobs through the CLI, into a real Iceberg table -----------------------------------------------------------

BENCH_DDL = """
CREATE TABLE orders (
    id bigint PRIMARY KEY, qty smallint, n integer NOT NULL, big bigint, ratio real, price double precision,
    amount numeric(12, 2) NOT NULL, note text, code varchar(12), updated_at timestamptz NOT NULL,
    created timestamp, paid boolean, day date, blob bytea, ref uuid
);
INSERT INTO orders
SELECT g,
       CASE WHEN g % 7 = 0 THEN NULL ELSE (g % 1000)::smallint END,
       g % 100003,
       CASE WHEN g % 5 = 0 THEN NULL ELSE g::bigint * 7919 END,
       CASE WHEN g % 11 = 0 THEN NULL ELSE g / 9.0 END,
       CASE WHEN g % 17 = 0 THEN NULL ELSE g / 7.0 END,
       ((g * 13) % 10000000 / 100.0)::numeric(12, 2),
       CASE WHEN g % 23 = 0 THEN NULL ELSE substr(md5(g::text), 1, 5 + g % 26) END,
       CASE WHEN g % 3 = 0 THEN NULL ELSE 'c-' || (g % 977) END,
       timestamptz '2024-01-01 00:00+00' + (g / 3) * interval '1 minute',
       CASE WHEN g % 9 = 0 THEN NULL ELSE timestamp '2023-06-01' + g * interval '1 second' END,
       CASE WHEN g % 4 = 0 THEN NULL ELSE g % 2 = 0 END,
       CASE WHEN g % 8 = 0 THEN NULL ELSE date '2000-01-01' + g % 9000 END,
       CASE WHEN g % 6 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END,
       CASE WHEN g % 13 = 0 THEN NULL ELSE md5(g::text)::uuid END
FROM generate_series(1, 30000) AS g;
ANALYZE orders;
"""

RunJob = Callable[..., tuple[Result, dict[str, Any]]]


@pytest.fixture
def orders(pg_schema: PgSchema) -> PgSchema:
    pg_schema.execute(BENCH_DDL)
    return pg_schema


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
    name: str,
    schema: PgSchema,
    table: str,
    *,
    reader: str | None = "go_postgres",
    fallback: str = "fail",
    **source: Any,
) -> dict[str, Any]:
    """A PostgreSQL → embedded Iceberg job reading ``table`` with ``reader`` (``None``: the built-in)."""
    section: dict[str, Any] = {
        "type": "postgres",
        "connection": {"dsn": "${PG_DSN}"},
        "tables": [schema.table(table)],
        **source,
    }
    if reader is not None:
        section["reader"] = {"type": "custom", "implementation": reader, "fallback": fallback}
    return {
        "version": 1,
        "name": name,
        "source": section,
        "target": {"type": "iceberg", "namespace": "raw", "table": name, "mode": "append"},
    }


def lake_table(workdir: Path, name: str) -> pa.Table:
    """The Iceberg table as any other client reads it, sorted by id."""
    base = workdir / ".dativo"
    catalog = SqlCatalog(
        "dativo", uri=f"sqlite:///{base / 'catalog.db'}", warehouse=(base / "warehouse").as_uri()
    )
    return catalog.load_table(("raw", name)).scan().to_arrow().sort_by("id")


@pytest.mark.parametrize("parallelism", [1, 3])
def test_jobs_write_the_same_iceberg_table_as_the_builtin_reader(
    orders: PgSchema, run: RunJob, workdir: Path, parallelism: int
) -> None:
    result, report = run(job("by_go", orders, "orders", parallelism=parallelism))
    assert result.exit_code == 0, result.output
    assert report["reader"]["implementation"] == "go_postgres" and report["reader"]["language"] == "go"
    assert report["fallback_used"] is False and report["rows_written"] == 30_000
    result, _ = run(job("by_builtin", orders, "orders", reader=None, parallelism=parallelism))
    assert result.exit_code == 0, result.output
    go, builtin = lake_table(workdir, "by_go"), lake_table(workdir, "by_builtin")
    assert go.schema.equals(builtin.schema), (go.schema, builtin.schema)
    assert go.equals(builtin)


def test_incremental_jobs_read_only_new_rows(orders: PgSchema, run: RunJob, workdir: Path) -> None:
    spec = job("incr", orders, "orders", parallelism=3, incremental={"cursor": "updated_at"})
    result, report = run(spec)
    assert result.exit_code == 0, result.output
    assert report["rows_read"] == 30_000
    # New rows, some sharing the last cursor value (the primary key breaks the tie), and one older change.
    orders.execute("""INSERT INTO orders (id, n, amount, updated_at)
        SELECT g, g, 1.00, (SELECT max(updated_at) FROM orders) + (g % 2) * interval '1 minute'
        FROM generate_series(30001, 30010) AS g""")
    result, report = run(spec)
    assert result.exit_code == 0, result.output
    assert report["rows_read"] == 10
    ids = lake_table(workdir, "incr").column("id").to_pylist()
    assert ids == list(range(1, 30_011))


def test_an_unsupported_column_type_fails_clearly_with_fallback_fail(
    orders: PgSchema, run: RunJob, workdir: Path
) -> None:
    orders.execute("ALTER TABLE orders ADD COLUMN tags integer[] DEFAULT '{1,2}'")
    result, report = run(job("arrays", orders, "orders"))
    assert result.exit_code == 3, result.output  # a plugin error: the plugin cannot read it, the built-in can
    assert report["status"] != "succeeded"
    assert "Column tags of" in result.output and "integer[]" in result.output, result.output
    assert "go_postgres" in result.output
    assert not (workdir / ".dativo" / "warehouse" / "raw" / "arrays").exists() or not lake_table(
        workdir, "arrays"
    )


def test_an_unsupported_column_type_falls_back_to_the_builtin_reader(
    orders: PgSchema, run: RunJob, workdir: Path
) -> None:
    orders.execute("ALTER TABLE orders ADD COLUMN tags integer[] DEFAULT '{1,2}'")
    result, report = run(job("arrays", orders, "orders", fallback="default", parallelism=2))
    assert result.exit_code == 0, result.output
    assert report["fallback_used"] is True
    assert "tags" in report["fallback_reason"], report["fallback_reason"]
    table = lake_table(workdir, "arrays")
    assert table.num_rows == 30_000
    assert table.column("tags")[0].as_py() == [1, 2]
