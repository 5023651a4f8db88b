"""A full disk under the Iceberg target: the data files, the metadata and the embedded catalog's SQLite file.

Every run is the real ``dativo run`` in its own process on a real tmpfs of a few MiB (as root; elsewhere a
file-size limit stands in for the data-file case). After the fault the table is at its previous snapshot,
the message says the disk is full and what to do, and once there is room again the next run is exact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from pyiceberg.catalog.sql import SqlCatalog

from tests.conftest import subprocess_env
from tests.fixtures import disks
from tests.fixtures.required import unavailable


def dativo(job: Path, cwd: Path, preexec: Any = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dativo", "run", str(job), "--json"], cwd=cwd, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300, preexec_fn=preexec)


def job(folder: Path, name: str, data: Path, catalog: Path, warehouse: Path) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "name": name, "source": {"type": "csv", "path": str(data), "parallelism": 2},
        "target": {"type": "iceberg", "namespace": "raw", "table": "items",
                   "catalog": {"type": "sql", "uri": f"sqlite:///{catalog}", "warehouse": str(warehouse)}},
    }))
    return path


def csv(path: Path, first: int, count: int, note: int = 4) -> Path:
    path.write_text("id,note\n" + "".join(f"{i},{os.urandom(note).hex()}\n" for i in range(first, first + count)))
    return path


def table_ids(catalog: Path, warehouse: Path) -> tuple[int, list[int]]:
    lake = SqlCatalog("dativo", uri=f"sqlite:///{catalog}", warehouse=warehouse.as_uri())
    table = lake.load_table(("raw", "items"))
    return len(table.snapshots()), sorted(table.scan().to_arrow().column("id").to_pylist())


def data_files(warehouse: Path) -> list[Path]:
    return [p for p in warehouse.rglob("*.parquet")]


def test_data_larger_than_the_disk_says_so_and_the_next_run_is_exact(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for n in range(2):  # two splits, each larger than the disk (random text hardly compresses)
        csv(data / f"part{n}.csv", n * 100_000, 40_000, note=48)
    with disks.small_disk(tmp_path / "disk", 3) as (_, limit):
        catalog, warehouse = tmp_path / "disk" / "catalog.db", tmp_path / "disk" / "warehouse"
        big = dativo(job(tmp_path, "big", data, catalog, warehouse), tmp_path, limit)
        assert big.returncode == 1, big.stderr
        message = " ".join(big.stderr.split())
        assert "cannot write: the disk is full" in message and "Free space on the disk that holds the warehouse" \
            in message, message
        assert "Traceback" not in big.stderr and "fallback" not in message
        assert json.loads(big.stdout)["status"] == "failed"
        assert data_files(warehouse) == []  # what the run wrote is deleted

        small = dativo(job(tmp_path, "small", csv(tmp_path / "small.csv", 1, 10), catalog, warehouse), tmp_path,
                       limit)
        assert small.returncode == 0, small.stderr  # at once: nothing the failed run left is in the way
        assert table_ids(catalog, warehouse) == (1, list(range(1, 11)))


def test_a_catalog_that_cannot_grow_fails_the_commit_and_publishes_nothing(tmp_path: Path) -> None:
    first = csv(tmp_path / "first.csv", 1, 1000)
    later = csv(tmp_path / "later.csv", 1001, 1000)
    warehouse = tmp_path / "warehouse"  # room for the data; the catalog's file is on a small disk
    with disks.small_disk(tmp_path / "disk", 1) as (mounted, _):
        if not mounted:
            unavailable("mounting a tmpfs needs root: run the tests as root (CI does)")
        catalog = tmp_path / "disk" / "catalog.db"
        assert dativo(job(tmp_path, "items", first, catalog, warehouse), tmp_path).returncode == 0
        filler = disks.fill(tmp_path / "disk")
        full = dativo(job(tmp_path, "items", later, catalog, warehouse), tmp_path)
        assert full.returncode == 4, full.stderr
        message = " ".join(full.stderr.split())
        assert "the disk is full (the catalog's SQLite file cannot grow)" in message, message
        assert "Free space on the disk that holds the warehouse and the catalog" in message
        assert "Nothing was published" in message and "Traceback" not in full.stderr
        assert table_ids(catalog, warehouse) == (1, list(range(1, 1001)))  # the previous snapshot

        filler.unlink()
        again = dativo(job(tmp_path, "items", later, catalog, warehouse), tmp_path)
        assert again.returncode == 0, again.stderr
        assert table_ids(catalog, warehouse) == (2, list(range(1, 2001)))  # once: none lost, none twice
