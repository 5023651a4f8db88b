"""Nothing lost, nothing duplicated: the parquet target when runs collide, the disk fills up or S3 dies.

Every run is the real ``dativo run`` CLI in its own process, against real folders, a real tmpfs and a real
SeaweedFS server. Faults come from :mod:`tests.fixtures.faults` (writers that wait at barriers or kill the
S3 server right after the commit point). After each fault the target is read both ways a user can:
through the records (``read_committed``) and by listing the folder (``pyarrow.parquet``).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import yaml

from dativo.writers.parquet import read_committed
from tests.conftest import subprocess_env
from tests.fixtures import disks
from tests.fixtures.s3 import S3Server, start_s3_server

FAULTS = "tests.fixtures.faults"
ROWS = 2_000


def command(job: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "dativo", "run", str(job), "--json", *args]


def dativo(job: Path, *args: str, cwd: Path, preexec: Any = None) -> subprocess.CompletedProcess:
    """``dativo run JOB --json ARGS`` in its own process, as a user runs it."""
    return subprocess.run(command(job, *args), cwd=cwd, env=subprocess_env(), capture_output=True, text=True,
                          timeout=300, preexec_fn=preexec)


def csv(path: Path, first: int, count: int, *, note: str = "n") -> Path:
    path.write_text("id,note\n" + "".join(f"{i},{note}{i}\n" for i in range(first, first + count)))
    return path


def write_job(folder: Path, name: str, source: dict[str, Any], target: dict[str, Any]) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "name": name, "source": source, "target": target}))
    return path


def racing(**options: str) -> dict[str, Any]:
    return {"type": "custom", "implementation": f"{FAULTS}:RacingParquetWriter", "fallback": "fail",
            "options": options}


def listed_ids(folder: Path) -> list[int]:
    """What a reader that lists the folder sees (it skips ``_`` and ``.`` names)."""
    return sorted(pq.read_table(folder).column("id").to_pylist())


def committed_ids(path: str, **s3: Any) -> list[int]:
    table = read_committed(path, **s3).to_table()
    return sorted(table.column("id").to_pylist()) if table.num_columns else []


# --- two runs at once ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["overwrite", "append"])
def test_two_runs_committing_at_the_same_moment_commit_one_after_the_other(tmp_path: Path, mode: str) -> None:
    """Both runs reach their commit, then both commit at once: the target's lock makes the second wait."""
    jobs = {}
    for name, other, first in (("a", "b", 1), ("b", "a", ROWS + 1)):
        source = {"type": "csv", "path": str(csv(tmp_path / f"{name}.csv", first, ROWS))}
        writer = racing(ready=str(tmp_path / f"{name}.ready"), wait_for=str(tmp_path / f"{other}.ready"))
        jobs[name] = write_job(tmp_path, name, source, {"type": "parquet", "path": "out/t", "mode": mode,
                                                        "writer": writer})
    processes = {name: subprocess.Popen(command(job), cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True) for name, job in jobs.items()}
    results = {name: process.communicate(timeout=300) + (process.returncode,)
               for name, process in processes.items()}
    for name, (stdout, stderr, code) in results.items():
        assert code == 0, f"{name}: exit {code}: {stderr}"
        assert json.loads(stdout)["rows_written"] == ROWS
    folder = tmp_path / "out" / "t"
    records = sorted((json.loads(p.read_text()) for p in folder.glob("*/_dativo_commit.json")),
                     key=lambda r: r["seq"])
    if mode == "overwrite":  # the later commit replaced the earlier one, whole
        assert [r["seq"] for r in records] == [2]
        last = records[-1]["job"]
        expected = list(range(1, ROWS + 1)) if last == "a" else list(range(ROWS + 1, 2 * ROWS + 1))
    else:  # both commits, each whole, once
        assert sorted(r["seq"] for r in records) == [1, 2]
        expected = list(range(1, 2 * ROWS + 1))
    assert committed_ids(str(folder)) == listed_ids(folder) == expected  # unique ids, none lost
    for record in records:  # every file a record names exists
        assert all((folder / record["folder"] / name).is_file() for name in record["files"])
    assert not list((folder / "_dativo" / "staging").iterdir())


@pytest.mark.parametrize("mode", ["overwrite", "append"])
def test_an_overwrite_never_moves_the_staging_of_a_run_still_writing(tmp_path: Path, mode: str) -> None:
    """Run b is mid-write when run a's overwrite swaps the folder: b's staging must come along."""
    a = write_job(tmp_path, "a", {"type": "csv", "path": str(csv(tmp_path / "a.csv", 1, ROWS))},
                  {"type": "parquet", "path": "out/t", "mode": "overwrite",
                   "writer": racing(done=str(tmp_path / "a.done"))})
    b = write_job(tmp_path, "b", {"type": "csv", "path": str(csv(tmp_path / "b.csv", ROWS + 1, ROWS))},
                  {"type": "parquet", "path": "out/t", "mode": mode,
                   "writer": racing(pause_in_write=str(tmp_path / "a.done"))})
    writing = subprocess.Popen(command(b), cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    first = dativo(a, cwd=tmp_path)
    _, stderr = writing.communicate(timeout=300)
    assert first.returncode == 0, first.stderr
    assert writing.returncode == 0, stderr
    folder = tmp_path / "out" / "t"
    expected = range(ROWS + 1, 2 * ROWS + 1) if mode == "overwrite" else range(1, 2 * ROWS + 1)
    assert committed_ids(str(folder)) == listed_ids(folder) == list(expected)


# --- a full disk -----------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[tuple[Path, Any]]:
    """A 2 MiB tmpfs (as root), or else a 1 MiB file-size limit for the runs: (folder, preexec_fn)."""
    with disks.small_disk(tmp_path / "disk", 2) as (mounted, limit):
        if not mounted:
            limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20)))
        yield tmp_path / "disk", limit


def test_a_full_disk_says_so_and_leaves_nothing_that_blocks_the_next_run(
    tmp_path: Path, small_disk: tuple[Path, Any]
) -> None:
    disk, limit = small_disk
    data = tmp_path / "data"
    data.mkdir()
    for n in range(2):  # two splits, each larger than the disk (random text hardly compresses)
        rows = "".join(f"{n * 100_000 + i},{os.urandom(48).hex()}\n" for i in range(40_000))
        (data / f"part{n}.csv").write_text("id,note\n" + rows)
    target = {"type": "parquet", "path": str(disk / "out"), "mode": "append"}
    big = write_job(tmp_path, "big", {"type": "csv", "path": str(data), "parallelism": 2}, target)
    result = dativo(big, cwd=tmp_path, preexec=limit)
    assert result.returncode == 1, result.stderr
    message = " ".join(result.stderr.split())
    assert "the disk is full" in message and "Free space on the disk" in message
    assert "Fix the plugin" not in message and "fallback" not in message
    assert not [p for p in disk.rglob("*") if p.is_file() and not p.name.startswith(".")]  # nothing staged left

    small = write_job(tmp_path, "small", {"type": "csv", "path": str(csv(tmp_path / "small.csv", 1, 10))}, target)
    again = dativo(small, cwd=tmp_path, preexec=limit)
    assert again.returncode == 0, again.stderr  # at once, not an hour later
    assert committed_ids(str(disk / "out")) == listed_ids(disk / "out") == list(range(1, 11))
    assert not list((disk / "out" / "_dativo" / "staging").iterdir())


# --- S3: the server dies right after the commit point ------------------------------------------------------


@pytest.fixture
def own_s3(tmp_path: Path) -> Iterator[S3Server]:
    """An S3 server of this test alone (it gets killed)."""
    server = start_s3_server(tmp_path / "weed")
    try:
        yield server
    finally:
        server.stop()


def test_an_s3_server_dying_after_the_commit_is_reported_and_a_rerun_finishes(tmp_path: Path, own_s3: S3Server) -> None:
    bucket = own_s3.create_bucket()
    url = f"s3://{bucket}/lake/items"
    settings = own_s3.settings(connect_timeout=2, request_timeout=5)
    source = {"type": "csv", "path": str(csv(tmp_path / "in.csv", 1, ROWS))}
    writer = {"type": "custom", "implementation": f"{FAULTS}:DyingServerWriter", "fallback": "fail",
              "options": {"server_pid": own_s3.process.pid}}
    dying = write_job(tmp_path, "items", source, {"type": "parquet", "path": url, "s3": settings, "writer": writer})
    run_id = f"r{uuid.uuid4().hex[:8]}"
    result = dativo(dying, "--run-id", run_id, cwd=tmp_path)
    assert result.returncode == 4, result.stderr  # not 0: a listing reader would see part of the run
    message = " ".join(result.stderr.split())
    assert f"run {run_id} is committed" in message and "read_committed" in message
    assert "a reader that lists the prefix sees at most part of it" in message and f"--run-id {run_id}" in message

    own_s3.restart()
    s3 = {"s3": own_s3.settings()}
    assert committed_ids(url, **s3) == list(range(1, ROWS + 1))  # committed: readers of the log see it all
    root = url.removeprefix("s3://")
    listed = pads.dataset(root, filesystem=own_s3.filesystem(), format="parquet")
    assert listed.count_rows() < ROWS  # … a listing reader does not, yet

    plain = write_job(tmp_path, "items", source, {"type": "parquet", "path": url, "s3": settings})
    again = dativo(plain, "--run-id", run_id, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["datasets"][0]["no_op"]
    listed = pads.dataset(root, filesystem=own_s3.filesystem(), format="parquet")
    assert sorted(listed.to_table().column("id").to_pylist()) == committed_ids(url, **s3) == list(range(1, ROWS + 1))
