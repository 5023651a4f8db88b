"""``dativo maintain``: orphans of killed runs go, old snapshots expire, and the job's state survives."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import Result
from tests.pipelines.conftest import Lake, RunJob


def orders_job(lake: Lake) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "orders_lake",
        "source": {"type": "csv", "path": "data/orders.csv", "incremental": {"cursor": "id"}},
        "target": lake.target("orders"),
    }


def add_orders(workdir: Path, first: int, count: int) -> None:
    with (workdir / "data" / "orders.csv").open("a", encoding="utf-8") as out:
        for i in range(first, first + count):
            out.write(f"{i},C{i},{i}.00,2024-02-01T00:00:00Z\n")


def plant_orphan(lake: Lake, name: str, age_s: float) -> Path:
    """A data file as a killed run leaves it: under the table's data folder, in no snapshot."""
    location = lake.table("orders").location().removeprefix("file://")
    path = Path(location) / "data" / name
    pq.write_table(pa.table({"id": [999]}), path)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_maintain_removes_old_orphans_expires_snapshots_and_keeps_the_state(
    workdir: Path, local_lake: Lake, run_job: RunJob, cli: Callable[..., Result]
) -> None:
    job = orders_job(local_lake)
    run_job(job).ok()
    for round_ in range(3):
        add_orders(workdir, 10 + round_ * 2, 2)
        run_job(job).ok()
    rows = local_lake.read("orders").num_rows
    snapshots = len(local_lake.table("orders").metadata.snapshots)
    assert rows == 9 and snapshots == 4
    old = plant_orphan(local_lake, "killed-run-00000.parquet", age_s=5 * 86400)
    young = plant_orphan(local_lake, "running-00000.parquet", age_s=60)
    (workdir / "job.yaml").write_text(yaml.safe_dump(job))

    dry = cli("maintain", "job.yaml", "--dry-run", "--expire-older-than", "0s", "--retain-last", "1", "--json")
    assert dry.exit_code == 0, dry.output
    [planned] = json.loads(dry.stdout)
    assert planned["dry_run"] and planned["orphan_files"] == [str(old)]
    assert len(planned["expired_snapshots"]) == 3
    assert old.exists() and len(local_lake.table("orders").metadata.snapshots) == 4  # nothing changed

    done = cli("maintain", "job.yaml", "--expire-older-than", "0s", "--retain-last", "1", "--json")
    assert done.exit_code == 0, done.output
    [result] = json.loads(done.stdout)
    assert result["orphan_files"] == [str(old)] and not result["dry_run"]
    assert not old.exists() and young.exists()  # a run in progress keeps its files
    table = local_lake.table("orders")
    assert len(table.metadata.snapshots) == 1
    assert local_lake.read("orders").num_rows == rows  # what readers see is unchanged

    # the files of expired snapshots are gone at the next pass once old enough; the job goes on exactly
    assert run_job(job).ok().report["rows_read"] == 0  # the state survived the expiry
    add_orders(workdir, 100, 3)
    assert run_job(job).ok().report["rows_written"] == 3
    ids = local_lake.read("orders").column("id").to_pylist()
    assert len(ids) == len(set(ids)) == rows + 3


def test_the_newest_commit_of_each_dataset_is_never_expired(
    workdir: Path, local_lake: Lake, run_job: RunJob, cli: Callable[..., Result]
) -> None:
    job = orders_job(local_lake)
    run_job(job).ok()
    add_orders(workdir, 10, 2)
    run_job(job).ok()
    other = {**orders_job(local_lake), "name": "another_job", "source": {"type": "csv", "path": "data/orders.csv"}}
    for _ in range(3):  # another writer's snapshots pile up on top of the job's last commit
        run_job(other, file="other.yaml").ok()
    (workdir / "job.yaml").write_text(yaml.safe_dump(job))
    result = cli("maintain", "job.yaml", "--expire-older-than", "0s", "--retain-last", "1", "--json")
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.stdout)
    # the job's first commit goes; its newest, and the other job's on top of it, stay (its state is found
    # by walking back from the current snapshot)
    assert len(report["expired_snapshots"]) == 1 and len(report["kept_snapshots"]) == 3
    assert run_job(job).ok().report["rows_read"] == 0  # its state is still found


@pytest.mark.parametrize(("args", "message"), [
    (["--orphans-older-than", "5m"], "at least 1 h"),
    (["--expire-older-than", "soon"], "is not a duration"),
    (["--retain-last", "0"], "at least 1"),
])
def test_unsafe_or_wrong_settings_are_refused(
    workdir: Path, local_lake: Lake, cli: Callable[..., Result], args: list[str], message: str
) -> None:
    (workdir / "job.yaml").write_text(yaml.safe_dump(orders_job(local_lake)))
    result = cli("maintain", "job.yaml", *args)
    assert result.exit_code == 2 and message in result.output


def test_a_writer_without_snapshots_says_so(workdir: Path, cli: Callable[..., Result]) -> None:
    (workdir / "job.yaml").write_text(yaml.safe_dump({
        "version": 1, "name": "p", "source": {"type": "csv", "path": "data/orders.csv"},
        "target": {"type": "parquet", "path": "out/p"},
    }))
    result = cli("maintain", "job.yaml")
    assert result.exit_code == 2 and "has nothing to maintain" in result.output
