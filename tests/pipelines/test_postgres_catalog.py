"""The Iceberg SQL catalog on PostgreSQL: one job, five jobs at once, and a catalog that refuses or is gone.

The catalog lives in a fresh database on the session's server (``postgresql+psycopg://``), the warehouse in
a local folder. Every table is judged by an independent pyiceberg ``SqlCatalog`` on the same URI, against
what the source tables hold (row count, unique keys, a checksum).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import URL

from dativo.errors import ConnectionFailed

from tests.conftest import subprocess_env
from tests.fixtures.postgres import PASSWORD, PASSWORD_ROLE, PgSchema
from tests.pipelines.conftest import Database, Lake, RunJob, postgres_job



def catalog_uri(dsn: str, database: str, *, user: str | None = None, password: str | None = None) -> str:
    """The SQLAlchemy ``postgresql+psycopg`` URL of ``database`` on the server of the libpq ``dsn``."""
    params = conninfo_to_dict(dsn)
    host = params.get("host")
    url = URL.create(
        "postgresql+psycopg",
        username=user or params.get("user"),
        password=password or params.get("password") or None,
        host=None if host and host.startswith("/") else host,
        port=int(params["port"]) if params.get("port") else None,
        database=database,
        query={"host": host} if host and host.startswith("/") else {},
    )
    return url.render_as_string(hide_password=False)


@pytest.fixture
def pg_lake(database: Database, pg_dsn: str, workdir: Path) -> Lake:
    """A SQL catalog in a fresh database of the session's server, with a local warehouse."""
    uri = catalog_uri(pg_dsn, database.name)
    warehouse = (workdir / "warehouse").as_uri()
    return Lake(uri=uri, warehouse=warehouse, job_catalog={"type": "sql", "uri": uri, "warehouse": warehouse})


ROWS = "SELECT g, g % 97, timestamptz '2024-01-01' + g * interval '1 second' FROM generate_series({}, {}) g"


def create_source(schema: PgSchema, table: str, first: int, last: int) -> None:
    schema.execute(
        f"CREATE TABLE {table} (id bigint PRIMARY KEY, val bigint NOT NULL, updated_at timestamptz NOT NULL)"
    )
    schema.execute(f"INSERT INTO {table} {ROWS.format(first, last)}")
    schema.execute(f"ANALYZE {table}")


def source_fingerprint(schema: PgSchema, *tables: str) -> tuple[int, int, int, int]:
    """(rows, distinct ids, sum of ids, sum of id * val) over the union of ``tables``."""
    union = " UNION ALL ".join(f"SELECT id, val FROM {t}" for t in tables)
    [(rows, keys, ids, checksum)] = schema.execute(
        f"SELECT count(*), count(DISTINCT id), coalesce(sum(id), 0), coalesce(sum(id::numeric * val), 0) "
        f"FROM ({union}) AS u"
    )
    return int(rows), int(keys), int(ids), int(checksum)


def lake_fingerprint(lake: Lake, table: str) -> tuple[int, int, int, int]:
    """The same fingerprint over what another pyiceberg client reads from the table."""
    data = lake.read(table, sort_by=None)
    ids = data.column("id").to_pylist()
    vals = data.column("val").to_pylist()
    return len(ids), len(set(ids)), sum(ids), sum(i * v for i, v in zip(ids, vals, strict=True))


def test_a_job_writes_through_a_postgres_catalog_that_another_client_reads(
    pg_schema: PgSchema, pg_lake: Lake, database: Database, run_job: RunJob
) -> None:
    create_source(pg_schema, "events", 1, 3000)
    job = postgres_job(
        pg_lake.target("events"), tables=[pg_schema.table("events")], incremental={"cursor": "updated_at"}
    )
    env = {"PG_DSN": pg_schema.dsn}
    assert run_job(job, env=env).ok().report["rows_written"] == 3000

    # The catalog's rows are in PostgreSQL, and a client of its own sees the table and its rows.
    assert database.execute("SELECT table_namespace, table_name FROM iceberg_tables WHERE catalog_name = %s",
                            ("dativo",)) == [("raw", "events")]
    assert pg_lake.table("events").location().startswith(pg_lake.warehouse)
    assert lake_fingerprint(pg_lake, "events") == source_fingerprint(pg_schema, "events")
    expected = pg_schema.execute("SELECT id, val, updated_at FROM events ORDER BY id")
    table = pg_lake.read("events")
    got = list(zip(*(table.column(c).to_pylist() for c in ("id", "val", "updated_at")), strict=True))
    assert got == expected

    pg_schema.execute(f"INSERT INTO events {ROWS.format(3001, 3500)}")
    assert run_job(job, env=env).ok().report["rows_written"] == 500
    assert lake_fingerprint(pg_lake, "events") == source_fingerprint(pg_schema, "events")


# name -> (source tables, target table, mode, incremental)
JOBS: dict[str, tuple[str, str, str, bool]] = {
    "orders_append": ("src_orders", "orders", "append", True),
    "users_merge": ("src_users", "users", "merge", True),
    "stock_overwrite": ("src_stock", "stock", "overwrite", False),
    "clicks_eu": ("src_clicks_eu", "clicks", "append", True),  # two jobs, one target table
    "clicks_us": ("src_clicks_us", "clicks", "append", True),
}
TARGETS = {"orders": ["src_orders"], "users": ["src_users"], "stock": ["src_stock"],
           "clicks": ["src_clicks_eu", "src_clicks_us"]}


# Imports first (about a CPU second each), then every process waits for the same moment to start its run.
LAUNCH = (
    "import sys, time\nfrom dativo.cli import main\n"
    "time.sleep(max(0.0, float(sys.argv.pop(1)) - time.time()))\nmain()"
)
Outcomes = dict[str, tuple[int, dict[str, Any], str]]


def run_together(workdir: Path, env: dict[str, str]) -> tuple[Outcomes, float]:
    """Start every job of ``JOBS`` as its own ``dativo run`` process at the same moment; wait for all.

    Returns:
        Each job's exit code, ``--json`` report and output; the seconds from the start to the last exit.
    """
    at = time.time() + 5
    runs = {
        name: subprocess.Popen(
            [sys.executable, "-c", LAUNCH, str(at), "run", f"{name}.yaml", "--json"], cwd=workdir, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name in JOBS
    }
    outcomes = {}
    for name, run in runs.items():
        stdout, stderr = run.communicate(timeout=300)
        try:
            report = json.loads(stdout)
        except json.JSONDecodeError:
            report = {}
        outcomes[name] = (run.returncode, report, stdout + stderr)
    return outcomes, time.time() - at


def test_five_jobs_at_once_on_one_postgres_catalog_land_every_row_once(
    pg_schema: PgSchema, pg_lake: Lake, workdir: Path
) -> None:
    starts = {"src_orders": 1, "src_users": 1, "src_stock": 1, "src_clicks_eu": 1, "src_clicks_us": 1_000_001}
    for table, first in starts.items():
        create_source(pg_schema, table, first, first + 19_999)
    for name, (source, target, mode, incremental) in JOBS.items():
        extra: dict[str, Any] = {"incremental": {"cursor": "updated_at"}} if incremental else {}
        job = postgres_job(pg_lake.target(target, mode=mode), tables=[pg_schema.table(source)], name=name,
                           parallelism=2, **extra)
        (workdir / f"{name}.yaml").write_text(yaml.safe_dump(job, sort_keys=False))
    env = subprocess_env(PG_DSN=pg_schema.dsn)
    # Nothing exists yet: the five jobs race to create the catalog's own tables and the namespace.

    for round_ in range(2):
        outcomes, elapsed = run_together(workdir, env)
        for name, (code, report, output) in outcomes.items():
            assert code == 0 and report.get("status") == "succeeded", f"round {round_}, {name}:\n{output}"
        for target, sources in TARGETS.items():
            expected = source_fingerprint(pg_schema, *sources)
            assert lake_fingerprint(pg_lake, target) == expected, (round_, target)
        print(f"round {round_}: five jobs in {elapsed:.1f} s")

        if round_ == 0:  # new rows everywhere, changed rows for the merge, a smaller snapshot to overwrite
            for table, first in starts.items():
                pg_schema.execute(
                    f"INSERT INTO {table} SELECT g, g % 89, now() FROM generate_series({first + 20_000}, "
                    f"{first + 24_999}) AS g"
                )
            pg_schema.execute("UPDATE src_users SET val = val + 1000, updated_at = now() WHERE id % 10 = 0")
            pg_schema.execute("DELETE FROM src_stock WHERE id BETWEEN 5001 AND 15000")

    # Each incremental round committed once per job: the shared table has one snapshot per run of each.
    snapshots = pg_lake.table("clicks").snapshots()
    jobs = [dict(s.summary.additional_properties).get("dativo.job") for s in snapshots]
    assert sorted(jobs) == ["clicks_eu", "clicks_eu", "clicks_us", "clicks_us"]


@pytest.mark.parametrize("failure", ["wrong password", "unreachable host"])
def test_a_catalog_that_refuses_or_is_unreachable_fails_clearly_without_the_password(
    failure: str, pg_schema: PgSchema, database: Database, workdir: Path, run_job: RunJob,
    request: pytest.FixtureRequest,
) -> None:
    create_source(pg_schema, "events", 1, 10)
    secret = "Wr0ng-Catalog-Pa55word"
    if failure == "wrong password":
        password_dsn = request.getfixturevalue("pg_password_dsn")
        assert secret != PASSWORD
        uri = catalog_uri(password_dsn, database.name, user=PASSWORD_ROLE, password=secret)
    else:
        uri = f"postgresql+psycopg://dativo:{secret}@127.0.0.1:1/catalog?connect_timeout=5"
    catalog = {"type": "sql", "uri": uri, "warehouse": (workdir / "warehouse").as_uri()}
    job = postgres_job({"type": "iceberg", "namespace": "raw", "table": "events", "catalog": catalog},
                       tables=[pg_schema.table("events")])

    began = time.monotonic()
    outcome = run_job(job, env={"PG_DSN": pg_schema.dsn})
    assert time.monotonic() - began < 30
    assert outcome.exit_code == ConnectionFailed.exit_code != 0 and outcome.report["status"] == "failed"
    assert "SQL catalog 'dativo'" in outcome.output, outcome.output
    assert secret not in outcome.output and secret not in json.dumps(outcome.report)
    if failure == "wrong password":
        assert "password authentication failed" in outcome.output, outcome.output
