"""PostgreSQL -> Iceberg through the CLI: incremental runs, modes, failures, snapshots, bad input.

Every test runs ``dativo run job.yaml --json`` on a real server and reads the table back with its own
pyiceberg connection; what a run publishes is judged only by what another client of the catalog sees.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.fixtures.postgres import PASSWORD, PASSWORD_ROLE, PgSchema
from tests.pipelines.conftest import Database, Lake, RunJob, postgres_job

EVENTS = """
CREATE TABLE events (
    id         bigint PRIMARY KEY,
    kind       text NOT NULL,
    amount     numeric(12, 2),
    updated_at timestamptz NOT NULL
);
INSERT INTO events
SELECT g, 'k' || (g % 7), g * 1.25, timestamptz '2024-01-01 00:00:00+00' + (g / 10) * interval '1 minute'
FROM generate_series(1, 2000) AS g;
ANALYZE events;
"""


def events_job(lake: Lake, schema: PgSchema, mode: str = "append", **source: Any) -> dict[str, Any]:
    return postgres_job(
        lake.target("events", mode=mode),
        tables=[schema.table("events")],
        incremental={"cursor": "updated_at"},
        min_split_bytes=1,  # a small table, split as parallelism says
        **source,
    )


def ids(lake: Lake, table: str = "events") -> list[int]:
    return lake.read(table).column("id").to_pylist()


def summary(lake: Lake, table: str = "events") -> dict[str, str]:
    snapshot = lake.table(table).current_snapshot()
    assert snapshot is not None
    return dict(snapshot.summary.additional_properties)


@pytest.mark.parametrize("parallelism", [1, 3])
def test_incremental_runs_load_every_row_once_even_on_cursor_ties(
    pg_schema: PgSchema, local_lake: Lake, run_job: RunJob, parallelism: int
) -> None:
    pg_schema.execute(EVENTS)
    env = {"PG_DSN": pg_schema.dsn}
    job = events_job(local_lake, pg_schema, parallelism=parallelism)

    first = run_job(job, env=env).ok().report
    assert first["rows_written"] == 2000 and ids(local_lake) == list(range(1, 2001))
    assert "updated_at" in summary(local_lake)["dativo.state"]

    # New rows that share the last committed cursor value (ids 1991..2000 have it) with higher keys, rows
    # with a newer cursor, and one old row moved forward: exactly these 16 must arrive, nothing twice.
    pg_schema.execute(
        "INSERT INTO events SELECT g, 'tie', 1, (SELECT max(updated_at) FROM events) "
        "FROM generate_series(2001, 2010) AS g"
    )
    pg_schema.execute(
        "INSERT INTO events SELECT g, 'new', 2, now() FROM generate_series(2011, 2015) AS g"
    )
    pg_schema.execute("UPDATE events SET kind = 'moved', updated_at = now() WHERE id = 5")
    second = run_job(job, env=env).ok().report
    assert second["rows_read"] == 16 and second["rows_written"] == 16
    loaded = ids(local_lake)
    assert len(loaded) == 2016 and sorted(set(loaded)) == list(range(1, 2016))  # 5 twice: append keeps both

    third = run_job(job, env=env).ok().report  # nothing changed: nothing read, nothing committed
    assert third["rows_read"] == 0 and len(ids(local_lake)) == 2016


def test_merge_upserts_changed_rows_and_keeps_counts_equal(
    pg_schema: PgSchema, local_lake: Lake, run_job: RunJob
) -> None:
    pg_schema.execute(EVENTS)
    env = {"PG_DSN": pg_schema.dsn}
    job = events_job(local_lake, pg_schema, mode="merge", parallelism=2)
    run_job(job, env=env).ok()
    pg_schema.execute("UPDATE events SET kind = 'changed', updated_at = now() WHERE id % 100 = 0")
    pg_schema.execute("INSERT INTO events VALUES (5000, 'late', NULL, now())")
    report = run_job(job, env=env).ok().report
    assert report["rows_read"] == 21
    table = local_lake.read("events")
    assert table.column("id").to_pylist() == [*range(1, 2001), 5000]
    kinds = dict(zip(table.column("id").to_pylist(), table.column("kind").to_pylist(), strict=True))
    assert [i for i, k in kinds.items() if k == "changed"] == list(range(100, 2001, 100))
    assert kinds[5000] == "late" and table.column("amount").null_count == 1


def test_overwrite_replaces_the_table_in_one_snapshot(
    pg_schema: PgSchema, local_lake: Lake, run_job: RunJob
) -> None:
    pg_schema.execute(EVENTS)
    env = {"PG_DSN": pg_schema.dsn}
    job = postgres_job(local_lake.target("events", mode="overwrite"), tables=[pg_schema.table("events")])
    run_job(job, env=env).ok()
    pg_schema.execute("DELETE FROM events WHERE id > 10")
    before = local_lake.snapshot_id("events")
    run_job(job, env=env).ok()
    assert ids(local_lake) == list(range(1, 11))
    table = local_lake.table("events")
    assert table.current_snapshot().parent_snapshot_id == before  # type: ignore[union-attr]
    assert table.current_snapshot().summary.operation.value == "overwrite"  # type: ignore[union-attr]


def test_a_failed_run_publishes_nothing_and_the_rerun_loads_once(
    pg_schema: PgSchema, local_lake: Lake, run_job: RunJob
) -> None:
    pg_schema.execute(EVENTS)
    env = {"PG_DSN": pg_schema.dsn}
    job = events_job(local_lake, pg_schema, parallelism=2)
    run_job(job, env=env).ok()
    before = (local_lake.snapshot_id("events"), summary(local_lake)["dativo.state"])
    pg_schema.execute("INSERT INTO events SELECT g, 'new', 1, now() FROM generate_series(2001, 2600) AS g")

    failing = events_job(local_lake, pg_schema, parallelism=2, batch_rows=50)
    failing["source"]["reader"] = {
        "type": "custom",
        "implementation": "tests.pipelines.plugins:FailingPostgresReader",
        "fallback": "fail",
        "options": {"fail_split": "1", "fail_after_batches": 2},
    }
    outcome = run_job(failing, env=env)
    assert outcome.exit_code == 3 and outcome.report["status"] == "failed"
    assert "injected failure" in outcome.output and "pg_to_lake" in outcome.output
    assert (local_lake.snapshot_id("events"), summary(local_lake)["dativo.state"]) == before
    data_dir = Path(local_lake.table("events").location().removeprefix("file://")) / "data"
    referenced = {Path(f.file.file_path.removeprefix("file://")) for f in local_lake.table("events").scan().plan_files()}
    assert set(data_dir.rglob("*.parquet")) == referenced, "the failed run left unreferenced data files"

    assert run_job(job, env=env).ok().report["rows_written"] == 600
    assert ids(local_lake) == list(range(1, 2601))


def test_with_fallback_the_built_in_reader_finishes_the_run(
    pg_schema: PgSchema, local_lake: Lake, run_job: RunJob
) -> None:
    pg_schema.execute(EVENTS)
    job = events_job(local_lake, pg_schema, parallelism=2, batch_rows=50)
    job["source"]["reader"] = {
        "type": "custom",
        "implementation": "tests.pipelines.plugins:FailingPostgresReader",
        "options": {"fail_split": "0", "fail_after_batches": 1},
    }
    outcome = run_job(job, env={"PG_DSN": pg_schema.dsn}).ok()
    assert outcome.report["fallback_used"] is True and "injected failure" in outcome.report["fallback_reason"]
    assert outcome.report["reader"]["implementation"] == "postgres"
    assert ids(local_lake) == list(range(1, 2001))


@pytest.fixture
def busy_table(pg_schema: PgSchema) -> Iterator[threading.Event]:
    """A table whose every row one writer keeps bumping, one committed transaction after another."""
    pg_schema.execute(
        "CREATE TABLE ledger (id integer PRIMARY KEY, version integer NOT NULL);"
        "INSERT INTO ledger SELECT g, 0 FROM generate_series(1, 20000) AS g; ANALYZE ledger"
    )
    stop, bumped = threading.Event(), threading.Event()

    def bump() -> None:
        with psycopg.connect(pg_schema.dsn, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute(f"UPDATE {pg_schema.table('ledger')} SET version = version + 1")
                bumped.set()

    writer = threading.Thread(target=bump, daemon=True)
    writer.start()
    bumped.wait(30)
    yield bumped
    stop.set()
    writer.join(30)


@pytest.mark.parametrize("reader", ["postgres", "postgres-python"])
def test_parallel_splits_read_one_snapshot_under_concurrent_writes(
    busy_table: threading.Event, pg_schema: PgSchema, local_lake: Lake, run_job: RunJob, reader: str
) -> None:
    job = postgres_job(
        local_lake.target("ledger", mode="overwrite"),
        tables=[pg_schema.table("ledger")],
        reader=reader,
        parallelism=4,
        min_split_bytes=1,
        batch_rows=500,
        batch_size_bytes=4096,
    )
    report = run_job(job, env={"PG_DSN": pg_schema.dsn}).ok().report
    assert report["datasets"][0]["splits"] == 4
    table = local_lake.read("ledger")
    assert table.column("id").to_pylist() == list(range(1, 20001))
    versions = set(table.column("version").to_pylist())
    assert len(versions) == 1, f"splits saw different snapshots: versions {sorted(versions)[:10]}"


# --- bad input: a clear message naming the job, a non-zero exit, nothing published -----------------------


def test_a_missing_table_is_a_config_error(pg_schema: PgSchema, local_lake: Lake, run_job: RunJob) -> None:
    job = postgres_job(local_lake.target("t"), tables=[pg_schema.table("nope")])
    outcome = run_job(job, env={"PG_DSN": pg_schema.dsn})
    assert outcome.exit_code == 2
    assert f"{pg_schema.name}.nope" in outcome.output and "pg_to_lake" in outcome.output
    assert "Traceback" not in outcome.output and not local_lake.exists("t")


def test_a_wrong_password_never_shows(database: Database, local_lake: Lake, run_job: RunJob, pg_dsn: str) -> None:
    dsn = psycopg.conninfo.make_conninfo(pg_dsn, user=PASSWORD_ROLE, password="Wr0ng-" + PASSWORD)
    job = postgres_job(local_lake.target("t"), tables=["public.t"])
    outcome = run_job(job, env={"PG_DSN": dsn})
    assert outcome.exit_code != 0 and outcome.report["status"] == "failed"
    assert "password" in outcome.output.lower() and PASSWORD not in outcome.output
    assert "Traceback" not in outcome.output


def test_merge_without_a_primary_key_is_refused(pg_schema: PgSchema, local_lake: Lake, run_job: RunJob) -> None:
    pg_schema.execute("CREATE TABLE nokey (a integer, b text); INSERT INTO nokey VALUES (1, 'x')")
    job = postgres_job(local_lake.target("nokey", mode="merge"), tables=[pg_schema.table("nokey")])
    outcome = run_job(job, env={"PG_DSN": pg_schema.dsn})
    assert outcome.exit_code == 2 and "primary key" in outcome.output
    assert local_lake.snapshot_id("nokey") is None if local_lake.exists("nokey") else True


def test_an_incompatible_column_change_names_the_column(
    pg_schema: PgSchema, local_lake: Lake, run_job: RunJob
) -> None:
    pg_schema.execute("CREATE TABLE t (id integer PRIMARY KEY, code integer); INSERT INTO t VALUES (1, 7)")
    job = postgres_job(local_lake.target("t"), tables=[pg_schema.table("t")])
    run_job(job, env={"PG_DSN": pg_schema.dsn}).ok()
    before = local_lake.snapshot_id("t")
    pg_schema.execute("ALTER TABLE t ALTER COLUMN code TYPE text; INSERT INTO t VALUES (2, 'x')")
    outcome = run_job(job, env={"PG_DSN": pg_schema.dsn})
    assert outcome.exit_code != 0 and "code" in outcome.output and "string" in outcome.output
    assert local_lake.snapshot_id("t") == before


def test_a_new_column_evolves_the_table(pg_schema: PgSchema, local_lake: Lake, run_job: RunJob) -> None:
    pg_schema.execute("CREATE TABLE t (id integer PRIMARY KEY); INSERT INTO t VALUES (1)")
    job = postgres_job(local_lake.target("t"), tables=[pg_schema.table("t")])
    run_job(job, env={"PG_DSN": pg_schema.dsn}).ok()
    pg_schema.execute("ALTER TABLE t ADD COLUMN note text; INSERT INTO t VALUES (2, 'ü')")
    job["target"]["mode"] = "overwrite"
    run_job(job, env={"PG_DSN": pg_schema.dsn}).ok()
    assert local_lake.read("t").to_pylist() == [{"id": 1, "note": None}, {"id": 2, "note": "ü"}]


def test_a_misspelt_key_gets_a_suggestion(local_lake: Lake, run_job: RunJob) -> None:
    job = postgres_job(local_lake.target("t", namespce="raw"), tables=["public.t"])
    outcome = run_job(job, env={"PG_DSN": "host=/nonexistent"})
    assert outcome.exit_code == 2 and "namespce" in outcome.output and "namespace" in outcome.output


def test_the_example_job_runs_on_the_shop(database: Database, workdir: Path, cli: Any) -> None:
    """``examples/jobs/postgres_to_iceberg.yaml`` on a small shop: loads, then merges a day of changes."""
    root = Path(__file__).resolve().parents[2]
    with psycopg.connect(database.dsn, autocommit=True) as conn:
        conn.execute((root / "examples" / "shop" / "schema.sql").read_text())
        conn.execute("SELECT add_orders(3000)")
    job = root / "examples" / "jobs" / "postgres_to_iceberg.yaml"
    env = {"PG_DSN": database.dsn}
    lake = Lake(uri=f"sqlite:///{workdir / '.dativo' / 'catalog.db'}",
                warehouse=(workdir / ".dativo" / "warehouse").as_uri())
    assert cli("run", str(job), env=env).exit_code == 0
    database.execute("UPDATE orders SET status = 'shipped', updated_at = now() WHERE id <= 50")
    database.execute("SELECT add_orders(20)")
    result = cli("run", str(job), env=env)
    assert result.exit_code == 0, result.output
    for name in ("customers", "orders"):
        [(count,)] = database.execute(f"SELECT count(*) FROM {name}")
        assert lake.read(name, namespace="shop").num_rows == count
    shipped = database.execute("SELECT count(*) FROM orders WHERE status = 'shipped'")[0][0]
    orders = lake.read("orders", namespace="shop")
    assert orders.column("status").to_pylist().count("shipped") == shipped
