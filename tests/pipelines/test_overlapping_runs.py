"""Several source tables into one Iceberg table, and two runs of one job at once: nothing lost, nothing twice.

Both run the real CLI against a real server; the table is judged by another pyiceberg client (row count,
unique keys, a checksum of the ids) against what the source holds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dativo.writers.parquet import read_committed

from tests.conftest import subprocess_env
from tests.fixtures.postgres import PgSchema
from tests.pipelines.conftest import Lake, RunJob, postgres_job


PAYMENTS = """
CREATE TABLE payment_2024_01 (id bigint PRIMARY KEY, amount bigint NOT NULL, updated_at timestamptz NOT NULL);
CREATE TABLE payment_2024_02 (LIKE payment_2024_01 INCLUDING ALL);
INSERT INTO payment_2024_01 SELECT g, g, timestamptz '2024-01-01' + g * interval '1 second'
  FROM generate_series(1, 723) AS g;
INSERT INTO payment_2024_02 SELECT g, g, timestamptz '2024-02-01' + g * interval '1 second'
  FROM generate_series(1001, 3401) AS g;
"""


def source_ids(schema: PgSchema, *tables: str) -> list[int]:
    union = " UNION ALL ".join(f"SELECT id FROM {t}" for t in tables)
    return sorted(r[0] for r in schema.execute(union))


def payments_job(lake: Lake, schema: PgSchema, **source: Any) -> dict[str, Any]:
    return postgres_job(
        lake.target("payments"),
        tables=[schema.table("payment_2024_01"), schema.table("payment_2024_02")],
        incremental={"cursor": "updated_at"},
        **source,
    )


def test_several_tables_into_one_keep_their_own_state_and_every_row(
    pg_schema: PgSchema, local_lake: Lake, run_job: RunJob
) -> None:
    pg_schema.execute(PAYMENTS)
    env = {"PG_DSN": pg_schema.dsn}
    job = payments_job(local_lake, pg_schema)

    first = run_job(job, env=env).ok().report
    expected = source_ids(pg_schema, "payment_2024_01", "payment_2024_02")
    assert first["rows_written"] == 3124 == len(expected)
    assert sorted(local_lake.read("payments").column("id").to_pylist()) == expected
    assert [d["no_op"] for d in first["datasets"]] == [False, False]

    # New rows in the second table only, older than anything in it but newer than the first table's
    # rows: with one shared watermark they would be lost; with a state per source table they arrive.
    pg_schema.execute(
        "INSERT INTO payment_2024_01 SELECT g, g, timestamptz '2024-01-31' FROM generate_series(800, 809) AS g"
    )
    second = run_job(job, env=env).ok().report
    assert second["rows_written"] == 10
    loaded = sorted(local_lake.read("payments").column("id").to_pylist())
    assert loaded == source_ids(pg_schema, "payment_2024_01", "payment_2024_02")

    third = run_job(job, env=env).ok().report  # nothing new anywhere: nothing twice
    assert third["rows_written"] == 0
    assert len(local_lake.read("payments")) == 3134


def test_overwrite_of_several_tables_into_one_keeps_all_of_them(
    pg_schema: PgSchema, local_lake: Lake, run_job: RunJob
) -> None:
    pg_schema.execute(PAYMENTS)
    job = postgres_job(
        local_lake.target("payments", mode="overwrite"),
        tables=[pg_schema.table("payment_2024_01"), pg_schema.table("payment_2024_02")],
    )
    for _ in range(2):
        run_job(job, env={"PG_DSN": pg_schema.dsn}).ok()
        assert sorted(local_lake.read("payments").column("id").to_pylist()) == source_ids(
            pg_schema, "payment_2024_01", "payment_2024_02"
        )


@pytest.mark.parametrize("target", ["iceberg", "parquet"])
def test_two_runs_of_one_incremental_job_at_once_publish_each_row_once(
    pg_schema: PgSchema, local_lake: Lake, workdir: Path, target: str
) -> None:
    pg_schema.execute(
        "CREATE TABLE orders (id bigint PRIMARY KEY, note text, updated_at timestamptz NOT NULL);"
        "INSERT INTO orders SELECT g, repeat('x', 50), timestamptz '2024-01-01' + g * interval '1 second'"
        "  FROM generate_series(1, 40000) AS g;"
    )
    sink = local_lake.target("orders") if target == "iceberg" else {"type": "parquet", "path": "out/orders"}
    job = postgres_job(sink, tables=[pg_schema.table("orders")], incremental={"cursor": "updated_at"},
                       parallelism=2)

    def loaded() -> list[int]:
        if target == "iceberg":
            return local_lake.read("orders").column("id").to_pylist()
        return read_committed(str(workdir / "out" / "orders")).to_table().column("id").to_pylist()

    (workdir / "job.yaml").write_text(yaml.safe_dump(job, sort_keys=False))
    env = subprocess_env(PG_DSN=pg_schema.dsn)
    for attempt in range(3):
        runs = [subprocess.Popen([sys.executable, "-m", "dativo", "run", "job.yaml", "--quiet"], cwd=workdir,
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
        outcomes = [(run.wait(timeout=300), run.communicate()[1]) for run in runs]
        codes = sorted(code for code, _ in outcomes)
        assert codes in ([0, 0], [0, 4]), outcomes
        if codes == [0, 4]:
            loser = next(err for code, err in outcomes if code == 4)
            assert "another run of job 'pg_to_lake' committed" in " ".join(loser.split())
            assert "Nothing was published" in " ".join(loser.split())
        ids = loaded()
        assert len(ids) == len(set(ids)) == 40000 + attempt * 10, (attempt, len(ids), len(set(ids)))
        pg_schema.execute(  # a few new rows for the next pair of runs
            f"INSERT INTO orders SELECT g, 'n', now() FROM generate_series({40001 + attempt * 10}, "
            f"{40010 + attempt * 10}) AS g"
        )
