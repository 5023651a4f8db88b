"""Discovery: names, schemas, keys and cursor candidates come from the catalog; config errors are clear."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg
import pyarrow as pa
import pytest
from pydantic import ValidationError

from dativo.errors import ConfigError
from dativo.readers.postgres import PostgresConfig
from dativo.state import Watermark
from tests.fixtures.postgres import PgSchema
from tests.readers.postgres.helpers import read_all


def test_discover_reports_schema_keys_nullability_and_cursors(
    pg_schema: PgSchema, reader_cls, make_reader
) -> None:
    pg_schema.execute(
        """CREATE TABLE order_lines (
               line      smallint NOT NULL,
               order_id  bigint NOT NULL,
               sku       text NOT NULL,
               qty       integer,
               price     numeric(9, 2) NOT NULL,
               placed_on date,
               updated   timestamptz NOT NULL DEFAULT now(),
               note      varchar(200),
               PRIMARY KEY (order_id, line)
           )"""
    )
    pg_schema.execute("CREATE VIEW big_lines AS SELECT order_id, qty FROM order_lines WHERE qty > 10")
    reader = make_reader(
        reader_cls, pg_schema.dsn, tables=[pg_schema.table("order_lines"), f'"{pg_schema.name}"."big_lines"']
    )
    lines, view = reader.discover()

    assert lines.name == f"{pg_schema.name}.order_lines"
    assert lines.primary_key == ("order_id", "line")  # key order, not column order
    assert lines.cursor_candidates == ("line", "order_id", "qty", "placed_on", "updated")
    assert lines.schema == pa.schema(
        [
            pa.field("line", pa.int16(), nullable=False),
            pa.field("order_id", pa.int64(), nullable=False),
            pa.field("sku", pa.string(), nullable=False),
            pa.field("qty", pa.int32()),
            pa.field("price", pa.decimal128(9, 2), nullable=False),
            pa.field("placed_on", pa.date32()),
            pa.field("updated", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("note", pa.string()),
        ]
    )
    assert lines.schema.metadata is None

    assert view.name == f"{pg_schema.name}.big_lines"
    assert view.primary_key == ()
    assert view.schema == pa.schema([("order_id", pa.int64()), ("qty", pa.int32())])


def test_unqualified_names_default_to_public(pg_dsn: str, reader_cls, make_reader) -> None:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE public.{name} (id int PRIMARY KEY)")
        conn.execute(f"INSERT INTO public.{name} VALUES (1), (2)")
    try:
        reader = make_reader(reader_cls, pg_dsn, tables=[name.upper()])  # unquoted names fold to lower case
        [dataset] = reader.discover()
        assert dataset.name == f"public.{name}"
        assert read_all(reader)["id"].to_pylist() == [1, 2]
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE public.{name}")


def test_quoted_names_survive_every_step(pg_schema: PgSchema, reader_cls, make_reader) -> None:
    pg_schema.execute(
        'CREATE TABLE "Mixed Case" ("Odd ""col"" %s\'" int PRIMARY KEY, "When" timestamp, "Tags" text[])'
    )
    pg_schema.execute(
        """INSERT INTO "Mixed Case" VALUES (1, '2024-01-01', '{a}'), (2, '2024-01-02', NULL),
           (3, '2024-01-03', '{b,c}')"""
    )
    reader = make_reader(
        reader_cls, pg_schema.dsn, tables=[f'{pg_schema.name}."Mixed Case"'], parallelism=2, cursor="When"
    )
    [dataset] = reader.discover()
    assert dataset.name == f"{pg_schema.name}.Mixed Case"
    assert dataset.primary_key == ('Odd "col" %s\'',)
    assert dataset.schema is not None
    state = Watermark("When", dt.datetime(2024, 1, 1), ('Odd "col" %s\'',), (1,)).to_state(dataset.schema)
    table = read_all(reader, state)
    assert table.to_pylist() == [
        {'Odd "col" %s\'': 2, "When": dt.datetime(2024, 1, 2), "Tags": None},
        {'Odd "col" %s\'': 3, "When": dt.datetime(2024, 1, 3), "Tags": ["b", "c"]},
    ]


def test_missing_table_is_a_config_error_naming_it(pg_schema: PgSchema, reader_cls, make_reader) -> None:
    reader = make_reader(reader_cls, pg_schema.dsn, tables=[pg_schema.table("no_such_table")])
    with pytest.raises(ConfigError, match=rf"{pg_schema.name}\.no_such_table .*does not exist") as caught:
        reader.discover()
    assert caught.value.job == "t"


def test_invalid_table_name_is_a_config_error(pg_dsn: str, reader_cls, make_reader) -> None:
    reader = make_reader(reader_cls, pg_dsn, tables=["a.b.c.d"])
    with pytest.raises(ConfigError, match=r"'a\.b\.c\.d'"):
        reader.discover()


def test_query_is_described_without_running_it(pg_schema: PgSchema, reader_cls, make_reader) -> None:
    pg_schema.execute("CREATE TABLE t (id int PRIMARY KEY, amount numeric(10, 3) NOT NULL, at timestamp)")
    pg_schema.execute("INSERT INTO t VALUES (1, 2.5, '2024-01-01'), (2, 3.25, NULL)")
    reader = make_reader(
        reader_cls,
        pg_schema.dsn,
        query=f"SELECT id, amount*2 AS doubled, at, 'x'::varchar AS tag FROM {pg_schema.name}.t ORDER BY id;",
    )
    [dataset] = reader.discover()
    assert dataset.name == "query"
    assert dataset.primary_key == ()
    assert dataset.cursor_candidates == ("id", "at")
    # Query columns are always nullable; numeric arithmetic loses the typmod, so the option applies.
    assert dataset.schema == pa.schema(
        [
            ("id", pa.int32()),
            ("doubled", pa.decimal128(38, 9)),
            ("at", pa.timestamp("us")),
            ("tag", pa.string()),
        ]
    )
    table = read_all(reader)
    assert table["doubled"].to_pylist() == [pytest.approx(5), pytest.approx(6.5)]
    assert table["tag"].to_pylist() == ["x", "x"]


def test_query_that_does_not_compile_is_a_config_error(pg_dsn: str, reader_cls, make_reader) -> None:
    reader = make_reader(reader_cls, pg_dsn, query="SELECT nope FROM nowhere")
    with pytest.raises(ConfigError, match=r"source\.query cannot be run: .*nowhere"):
        reader.discover()


def test_query_with_duplicate_column_names_is_refused(pg_dsn: str, reader_cls, make_reader) -> None:
    reader = make_reader(reader_cls, pg_dsn, query="SELECT 1 AS a, 2 AS a")
    with pytest.raises(ConfigError, match="several columns named a"):
        reader.discover()


@pytest.mark.parametrize(
    "options",
    [
        {"query": "select 1", "exclude": ["a"]},
        {"tables": [{"name": "a", "cursor": "ts", "unknown": 1}]},
        {"tables": [{"name": "a", "primary_key": []}]},
        {"tables": ["a"], "query": "select 1"},
        {"tables": []},
        {"tables": ["a"], "numeric": "decimal(40,2)"},
        {"tables": ["a"], "numeric": "money"},
        {"tables": ["a"], "parallelism": 2},  # engine keys never reach the reader's Config
    ],
)
def test_config_is_validated(options: dict) -> None:
    with pytest.raises(ValidationError):
        PostgresConfig.model_validate({"connection": {"dsn": "host=x"}, **options})


def test_config_documents_every_field() -> None:
    schema = PostgresConfig.model_json_schema()
    assert all(prop.get("description") for prop in schema["properties"].values())
    assert (
        PostgresConfig.model_validate({"connection": {"dsn": "x=1"}, "tables": ["a"]}).numeric
        == "decimal(38,9)"
    )
