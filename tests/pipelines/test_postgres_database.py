"""A whole database through the CLI: discover it, read it by globs with per-table settings, and fail before
creating anything when one table does not fit the job."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import yaml
from typer.testing import Result

from tests.pipelines.conftest import Database, Lake, RunJob, postgres_job

SAMPLE = """
CREATE SCHEMA sales;
CREATE TABLE public.customer (id int PRIMARY KEY, name text NOT NULL, last_update timestamptz NOT NULL);
INSERT INTO public.customer SELECT g, 'c' || g, timestamptz '2024-01-01' + g * interval '1 min'
  FROM generate_series(1, 500) g;
CREATE TABLE public.film_actor (actor_id int, film_id int, last_update timestamptz NOT NULL,
  PRIMARY KEY (actor_id, film_id));
INSERT INTO public.film_actor SELECT g % 50, g, timestamptz '2024-01-01' + g * interval '1 min'
  FROM generate_series(1, 700) g;
CREATE TABLE public.payment (payment_id bigint, payment_date timestamptz NOT NULL, amount numeric(6,2),
  PRIMARY KEY (payment_id, payment_date)) PARTITION BY RANGE (payment_date);
CREATE TABLE public.payment_p2024_01 PARTITION OF public.payment
  FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE public.payment_p2024_02 PARTITION OF public.payment
  FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO public.payment SELECT g, timestamptz '2024-01-01' + g * interval '10 min', g % 100
  FROM generate_series(1, 8000) g;
CREATE TABLE sales.order_line (order_id int, line int, note text);
INSERT INTO sales.order_line SELECT g / 3, g % 3, 'n' FROM generate_series(1, 90) g;
CREATE VIEW public.customer_list AS SELECT id, name FROM public.customer;
ANALYZE;
"""


def _lake_target(lake: Lake, **extra: Any) -> dict[str, Any]:
    target = lake.target("unused", **extra)
    del target["table"]  # every dataset into a table named after it
    return target


def test_discover_lists_a_whole_database(
    database: Database, workdir, cli: Callable[..., Result]
) -> None:
    database.execute(SAMPLE)
    job = postgres_job({"type": "iceberg"}, dsn=database.dsn)
    (workdir / "job.yaml").write_text(yaml.safe_dump(job))

    listed = cli("discover", "job.yaml", "--json")
    assert listed.exit_code == 0, listed.output
    found = {d["name"]: d for d in json.loads(listed.stdout)}
    assert sorted(found) == ["public.customer", "public.customer_list", "public.film_actor", "public.payment",
                             "sales.order_line"]
    payment = found["public.payment"]
    assert payment["kind"] == "partitioned table" and payment["estimated_rows"] == 8000
    assert payment["details"]["partitions"] == ["public.payment_p2024_01", "public.payment_p2024_02"]
    assert payment["primary_key"] == ["payment_id", "payment_date"]
    assert {"name": "amount", "type": "decimal128(6, 2)", "source_type": "numeric(6,2)", "nullable": True} \
        in payment["columns"]

    human = cli("discover", "job.yaml", env={"COLUMNS": "200"})
    assert human.exit_code == 0, human.output
    lines = {line.split("│")[1].strip(): line for line in human.stdout.splitlines() if line.count("│") > 3}
    assert "partitioned table" in lines["public.payment"] and "~8,000" in lines["public.payment"]
    assert "view" in lines["public.customer_list"]
    assert "id, last_update" in lines["public.customer"]  # cursor candidates are in the human table too
    assert "numeric(6,2)" in human.stdout  # and PostgreSQL's own types


def test_a_table_without_the_cursor_stops_the_job_before_any_table_is_created(
    database: Database, local_lake: Lake, run_job: RunJob
) -> None:
    database.execute(SAMPLE)
    job = postgres_job(_lake_target(local_lake), dsn=database.dsn, tables=["public.*", "sales.*"],
                       exclude=["public.customer_list"], incremental={"cursor": "last_update"})
    failed = run_job(job)
    assert failed.exit_code == 2, failed.output
    assert "'last_update' is not a column of dataset 'public.payment'" in failed.output
    assert "Traceback" not in failed.output
    assert not local_lake.catalog().list_namespaces() or not local_lake.catalog().list_tables("raw")


def test_per_table_settings_read_the_whole_database_exactly_and_incrementally(
    database: Database, local_lake: Lake, run_job: RunJob
) -> None:
    database.execute(SAMPLE)
    tables = [
        "public.*",
        {"name": "public.payment", "cursor": "payment_date"},
        {"name": "public.customer_list", "primary_key": ["id"]},
        {"name": "sales.order_*", "primary_key": ["order_id", "line"]},
    ]
    target = _lake_target(local_lake, datasets={
        "public.payment": {"table": "payments", "partition_by": ["month(payment_date)"]}})
    job = postgres_job(target, dsn=database.dsn, tables=tables,
                       exclude=["sales.order_line", "public.customer_list"],
                       incremental={"cursor": "last_update"}, parallelism=2, min_split_bytes=1)
    first = run_job(job).ok().report
    by_name = {d["name"]: d for d in first["datasets"]}
    assert sorted(by_name) == ["public.customer", "public.film_actor", "public.payment"]
    assert by_name["public.payment"]["splits"] == 2  # a composite key, cut by its first column
    assert by_name["public.film_actor"]["splits"] == 2
    assert local_lake.read("payments", sort_by="payment_id").num_rows == 8000
    assert str(local_lake.table("payments").spec().fields[0].transform) == "month"
    actors = local_lake.read("film_actor", sort_by=None)
    assert actors.num_rows == 700 and len(set(zip(*(actors.column(c).to_pylist()
                                                  for c in ("actor_id", "film_id")), strict=True))) == 700

    database.execute(
        "INSERT INTO public.payment VALUES (8001, '2024-02-28 12:00+00', 1);"
        "UPDATE public.customer SET last_update = '2030-01-01' WHERE id = 7;"
    )
    second = run_job(job).ok().report
    assert {d["name"]: d["rows"] for d in second["datasets"]} == {
        "public.customer": 1, "public.film_actor": 0, "public.payment": 1}
    assert local_lake.read("payments", sort_by="payment_id").num_rows == 8001


def test_a_nullable_cursor_with_nulls_is_warned_about_in_the_run(
    database: Database, local_lake: Lake, run_job: RunJob
) -> None:
    database.execute(
        "CREATE TABLE events (id int PRIMARY KEY, changed timestamptz);"
        "INSERT INTO events SELECT g, CASE WHEN g <= 4 THEN NULL ELSE now() END FROM generate_series(1, 10) g;"
    )
    job = postgres_job(local_lake.target("events"), dsn=database.dsn, tables=["events"],
                       incremental={"cursor": "changed"})
    outcome = run_job(job).ok()
    [warning] = outcome.report["warnings"]
    assert "public.events: 4 row(s) have a NULL changed" in warning
    assert local_lake.read("events").num_rows == 10


def test_a_full_refresh_reconciles_what_incremental_runs_cannot_see(
    database: Database, local_lake: Lake, run_job: RunJob
) -> None:
    database.execute(
        "CREATE TABLE items (id int PRIMARY KEY, note text, changed timestamptz NOT NULL);"
        "INSERT INTO items SELECT g, 'v1', timestamptz '2024-01-01' + g * interval '1 s'"
        "  FROM generate_series(1, 100) g;"
    )
    job = postgres_job(local_lake.target("items"), dsn=database.dsn, tables=["items"],
                       incremental={"cursor": "changed"})
    run_job(job).ok()
    database.execute("DELETE FROM items WHERE id <= 10; UPDATE items SET note = 'v2' WHERE id = 50;")
    assert run_job(job).ok().report["rows_written"] == 0  # invisible to an incremental read

    refreshed = run_job(job, "--full-refresh").ok().report
    assert refreshed["full_refresh"] and refreshed["rows_written"] == 90
    table = local_lake.read("items")
    assert table.column("id").to_pylist() == list(range(11, 101))
    assert table.column("note").to_pylist().count("v2") == 1

    database.execute("INSERT INTO items VALUES (101, 'new', '2030-01-01')")
    after = run_job(job).ok().report  # the refresh committed a fresh watermark: incremental goes on from it
    assert after["rows_written"] == 1
    assert local_lake.read("items").num_rows == 91
