"""A database as users have one: several schemas, a partitioned table, views, tables without a key,
nullable cursors. Discovery of the whole database, globs and exclude, per-table settings, and parallel
splits for any table."""

from __future__ import annotations

import logging

import pytest

from dativo.api import Context
from dativo.errors import ConfigError
from dativo.readers.postgres import PostgresConfig, PostgresReader
from tests.fixtures.postgres import PgSchema
from tests.readers.postgres.helpers import read_all, read_split


@pytest.fixture
def shop(pg_schema: PgSchema) -> PgSchema:
    """A small shop in ``pg_schema``: a partitioned payment table keyed (id, day), a link table without an
    integer key, a table without any key, a view, a materialized view, and a nullable cursor."""
    pg_schema.execute(
        """
        CREATE TABLE customer (id int PRIMARY KEY, name text NOT NULL, last_update timestamptz);
        INSERT INTO customer SELECT g, 'c' || g, CASE WHEN g % 10 = 0 THEN NULL
                                              ELSE timestamptz '2024-01-01' + g * interval '1 hour' END
          FROM generate_series(1, 300) g;
        CREATE TABLE payment (id bigint, day date, amount numeric(8,2), PRIMARY KEY (id, day))
          PARTITION BY RANGE (day);
        CREATE TABLE payment_2024_01 PARTITION OF payment FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
        CREATE TABLE payment_2024_02 PARTITION OF payment FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
        INSERT INTO payment SELECT g, date '2024-01-01' + (g % 59), g / 100.0 FROM generate_series(1, 4000) g;
        CREATE TABLE film_actor (actor text, film text, PRIMARY KEY (actor, film));
        INSERT INTO film_actor SELECT 'a' || g, 'f' || (g * 7) FROM generate_series(1, 3000) g;
        CREATE TABLE log_line (at timestamptz NOT NULL, line text);
        INSERT INTO log_line SELECT timestamptz '2024-01-01' + g * interval '1 s', repeat('x', 200)
          FROM generate_series(1, 2000) g;
        CREATE VIEW customer_names AS SELECT id, name FROM customer;
        CREATE MATERIALIZED VIEW payment_totals AS SELECT day, sum(amount) AS total FROM payment GROUP BY day;
        CREATE TABLE tmp_scratch (x int);
        ANALYZE;
        """
    )
    return pg_schema


def _names(datasets) -> list[str]:  # type: ignore[no-untyped-def]
    return [d.name for d in datasets]


def test_without_tables_every_relation_of_the_database_is_discovered(shop: PgSchema, make_reader) -> None:
    reader = make_reader(PostgresReader, shop.dsn)
    found = {d.name: d for d in reader.discover()}
    ours = {name.split(".", 1)[1]: d for name, d in found.items() if name.startswith(shop.name + ".")}
    # the parent reads its partitions: they are not datasets of their own
    assert sorted(ours) == ["customer", "customer_names", "film_actor", "log_line", "payment",
                            "payment_totals", "tmp_scratch"]
    assert not any(n.startswith(("pg_catalog.", "information_schema.")) for n in found)
    payment = ours["payment"]
    assert payment.details["kind"] == "partitioned table"
    assert payment.details["partitions"] == [shop.table("payment_2024_01"), shop.table("payment_2024_02")]
    assert payment.primary_key == ("id", "day")
    assert payment.estimated_rows == 4000
    assert ours["customer_names"].details["kind"] == "view"
    assert ours["customer_names"].estimated_rows is None
    assert ours["payment_totals"].details["kind"] == "materialized view"
    assert ours["customer"].details["source_types"] == {
        "id": "integer", "name": "text", "last_update": "timestamp with time zone"}
    assert ours["customer"].cursor_candidates == ("id", "last_update")


def test_globs_and_exclude_select_tables(shop: PgSchema, make_reader, reader_cls) -> None:
    reader = make_reader(reader_cls, shop.dsn, tables=[shop.table("*")],
                         exclude=[shop.table("tmp_*"), shop.table("customer_names")])
    assert _names(reader.discover()) == [shop.table(n) for n in
                                         ("customer", "film_actor", "log_line", "payment", "payment_totals")]
    reader = make_reader(reader_cls, shop.dsn, tables=[shop.table("pay*"), shop.table("customer")])
    assert _names(reader.discover()) == [shop.table("payment"), shop.table("payment_totals"),
                                         shop.table("customer")]
    # an exact name may still name a single partition
    reader = make_reader(reader_cls, shop.dsn, tables=[shop.table("payment_2024_02")])
    [partition] = reader.discover()
    assert partition.details["partition_of"] == shop.table("payment")
    assert read_all(reader).num_rows == sum(1 for g in range(1, 4001) if g % 59 >= 31)


@pytest.mark.parametrize(("tables", "exclude", "message"), [
    (["{s}.nothing_*"], [], "matches no table"),
    (["{s}.*"], ["{s}.typo_*"], "matches none of the tables"),
    (["{s}.customer", "{s}.CUSTOMER"], [], "more than once"),
    (["{s}.*"], ["{s}.*"], "leave no table to read"),
    (["{s}.a.*"], [], "not a table name or glob"),
    (["{s}.a.b"], [], "is not valid"),
    ([{"name": "{s}.customer", "cursor": "updated"}], [], "'updated', which it does not have"),
])
def test_selection_mistakes_are_config_errors(shop: PgSchema, make_reader, tables, exclude, message) -> None:
    def fill(entry):  # type: ignore[no-untyped-def]
        if isinstance(entry, dict):
            return {**entry, "name": entry["name"].format(s=shop.name)}
        return entry.format(s=shop.name)

    reader = make_reader(PostgresReader, shop.dsn, tables=[fill(t) for t in tables],
                         exclude=[fill(e) for e in exclude])
    with pytest.raises(ConfigError, match=message):
        reader.discover()


def test_per_table_settings_override_the_job_defaults(shop: PgSchema, make_reader, reader_cls) -> None:
    reader = make_reader(reader_cls, shop.dsn, cursor="last_update", tables=[
        shop.table("*"),
        {"name": shop.table("customer_names"), "primary_key": ["id"]},
        {"name": shop.table("log_*"), "cursor": "at"},
    ], exclude=[shop.table("tmp_scratch")])
    found = {d.name.split(".", 1)[1]: d for d in reader.discover()}
    assert found["customer_names"].primary_key == ("id",)
    assert found["log_line"].cursor == "at"
    assert found["customer"].cursor is None  # the job's cursor applies
    [split] = reader.plan(found["log_line"], None)
    assert split.params["sql"]  # planned with its own cursor, no complaint about last_update


@pytest.mark.parametrize("table", ["payment", "film_actor", "log_line"])
def test_any_table_splits_in_parallel_and_every_row_is_read_once(
    shop: PgSchema, make_reader, reader_cls, table: str
) -> None:
    # payment: a composite key whose first column is an integer, over partitions; film_actor: a text key;
    # log_line: no key at all. The last two are cut by page ranges.
    reader = make_reader(reader_cls, shop.dsn, tables=[shop.table(table)], parallelism=3)
    [dataset] = reader.discover()
    splits = reader.plan(dataset, None)
    assert len(splits) == 3, [s.params["sql"] for s in splits]
    if table != "payment":
        assert all("ctid" in s.params["sql"] for s in splits)
    parts = [read_split(reader, s, dataset.schema) for s in splits]
    assert all(part.num_rows for part in parts)  # the work is really spread
    expected = shop.execute(f"SELECT count(*) FROM {table}")[0][0]
    rows = [tuple(r.values()) for part in parts for r in part.to_pylist()]
    assert len(rows) == expected and len(set(rows)) == expected


def test_a_small_table_is_one_split_whatever_the_parallelism(shop: PgSchema, reader_cls) -> None:
    config = PostgresConfig.model_validate({"connection": {"dsn": shop.dsn}, "tables": [shop.table("customer")]})
    reader = reader_cls(config, Context(job="t", run_id="r", plugin="p", logger=logging.getLogger("t"),
                                        parallelism=8))
    try:
        [dataset] = reader.discover()
        assert len(reader.plan(dataset, None)) == 1
    finally:
        reader.close()


def test_rows_with_a_null_cursor_are_counted_in_a_warning(
    shop: PgSchema, make_reader, reader_cls, caplog: pytest.LogCaptureFixture
) -> None:
    reader = make_reader(reader_cls, shop.dsn, tables=[shop.table("customer")], cursor="last_update")
    [customer] = reader.discover()
    with caplog.at_level(logging.WARNING):
        reader.plan(customer, None)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{shop.table('customer')}: 30 row(s) have a NULL last_update" in warning
    assert "--full-refresh" in warning
