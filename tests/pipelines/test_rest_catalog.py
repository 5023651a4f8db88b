"""``dativo run`` into a real Iceberg REST catalog (SeaweedFS, SigV4-signed, an S3 table bucket).

The job gets its keys through ``${ENV}``; the table is read back by a plain pyiceberg client.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.table import Table

from tests.fixtures.s3 import S3Server
from tests.pipelines.conftest import RunJob


def rest_job(server: S3Server, namespace: str) -> dict[str, Any]:
    keys = server.settings(access_key_id="${S3_KEY_ID}", secret_access_key="${S3_SECRET}")
    catalog = server.rest_catalog(s3=keys)
    return {
        "version": 1,
        "name": "orders_rest",
        "source": {"type": "csv", "path": "data/orders.csv", "incremental": {"cursor": "id"}},
        "target": {"type": "iceberg", "namespace": namespace, "table": "orders", "catalog": catalog},
    }


def add_orders(workdir: Path, *ids: int) -> None:
    with (workdir / "data" / "orders.csv").open("a", encoding="utf-8") as out:
        out.writelines(f"{i},C{i},{i}.00,2024-02-01T00:00:00Z\n" for i in ids)


def lake_table(server: S3Server, namespace: str) -> Table:
    return RestCatalog("reader", **server.iceberg_properties()).load_table((namespace, "orders"))


@pytest.fixture
def env(s3_server: S3Server) -> dict[str, str]:
    return {"S3_KEY_ID": s3_server.access_key, "S3_SECRET": s3_server.secret_key}


def test_runs_load_each_row_once_and_a_repeated_run_id_is_a_no_op(
    workdir: Path, s3_server: S3Server, run_job: RunJob, env: dict[str, str]
) -> None:
    namespace = f"cli_{uuid.uuid4().hex[:12]}"
    job = rest_job(s3_server, namespace)

    first = run_job(job, env=env).ok().report
    add_orders(workdir, 10, 11)
    second = run_job(job, env=env).ok().report
    again = run_job(job, "--run-id", second["run_id"], env=env).ok().report

    table = lake_table(s3_server, namespace)
    rows = table.scan().to_arrow().sort_by("id")
    assert rows.column("id").to_pylist() == [1, 2, 3, 10, 11]
    assert rows.column("customer").to_pylist()[:2] == ["Ann", "Bø 😀"]
    assert (first["rows_written"], second["rows_written"]) == (3, 2)
    assert table.current_snapshot().summary["added-records"] == "2"
    assert again["datasets"][0]["no_op"] is True and len(table.snapshots()) == 2
    assert s3_server.secret_key not in str(first) + str(second)


def test_a_wrong_secret_fails_the_run_with_a_clear_message(
    workdir: Path, s3_server: S3Server, run_job: RunJob, env: dict[str, str]
) -> None:
    wrong = "wrong-secret-c0ffee42"

    outcome = run_job(rest_job(s3_server, "raw"), env={**env, "S3_SECRET": wrong})

    assert outcome.exit_code == 1, outcome.output
    assert "REST catalog 'dativo'" in outcome.output and "refused the credentials" in outcome.output
    assert wrong not in outcome.output
