"""The benchmark's own logic (no server): every run must move every row, and goals judge exactly the methods
they name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.methods import Method, all_methods, rows_in_report, rows_printed, rows_problem
from bench.report import GOAL_METHODS, Row, goals
from dativo.report import RunReport
from tests.conftest import subprocess_env

DATIVO = Method("a dativo job", "dativo", lambda s: [], rows_moved=rows_in_report)
PEER = Method("a peer", "peer", lambda s: [], rows_moved=rows_printed)
LIMIT = Method("copy-limit", "limit", lambda s: [])


def report(read: int, written: int) -> str:
    return RunReport(job="bench", run_id="r1", rows_read=read, rows_written=written).to_json()


@pytest.mark.parametrize(("method", "stdout", "problem"), [
    (DATIVO, report(1000, 1000), None),
    (DATIVO, report(1000, 999), "cannot tell how many rows it moved: read 1,000 rows but wrote 999"),
    (DATIVO, report(999, 999), "moved 999 rows, but the table has 1,000"),
    (DATIVO, report(2000, 2000), "moved 2,000 rows, but the table has 1,000"),
    (DATIVO, "", "cannot tell how many rows it moved: no run report on stdout"),
    (PEER, "loading …\n1000\n", None),
    (PEER, "1001\n", "moved 1,001 rows, but the table has 1,000"),
    (PEER, "done\n", "cannot tell how many rows it moved: no row count as the last line of stdout"),
    (LIMIT, "", None),  # psql's stdout is the data: not kept, not counted
])
def test_a_run_counts_only_if_it_moved_every_row(method: Method, stdout: str, problem: str | None) -> None:
    found = rows_problem(method, stdout, 1000)
    assert (found is None) if problem is None else (found or "").startswith(problem), found


def test_the_row_count_is_read_from_what_dativo_run_prints(tmp_path: Path) -> None:
    """What the benchmark parses is the real ``dativo run --quiet --json`` output, nothing else on stdout."""
    (tmp_path / "items.csv").write_text("id,name\n1,a\n2,b\n3,c\n")
    job = {"version": 1, "name": "bench", "source": {"type": "csv", "path": str(tmp_path / "items.csv")},
           "target": {"type": "parquet", "path": str(tmp_path / "out")}}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    done = subprocess.run([str(Path(sys.executable).with_name("dativo")), "run", str(tmp_path / "job.yaml"),
                           "--quiet", "--json"], cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True, timeout=120, check=True)
    assert rows_problem(DATIVO, done.stdout, 3) is None
    assert rows_problem(DATIVO, done.stdout, 4) == "moved 3 rows, but the table has 4"


def row(method: str, group: str, wall_s: float) -> Row:
    return Row(method, group, 3, wall_s, wall_s, 100.0, 1e6 / wall_s, 100 / wall_s, float("nan"), None)


def test_the_built_in_postgres_goal_judges_only_the_in_process_reader() -> None:
    rows = [row("copy-limit", "limit", 1.0), row("postgres p1 → iceberg", "dativo", 2.0),
            row("postgres p2 → iceberg", "dativo", 1.5),
            row("postgres p1 → iceberg, flight", "dativo", 1.1),  # faster, but not what the goal judges
            row("postgres p1 → iceberg, sandboxed", "dativo", 1.2)]
    for r in rows:
        r.x_copy = r.wall_s
    verdicts = {goal: (measured, verdict) for goal, measured, verdict in goals(rows, None)}
    assert verdicts["built-in postgres → iceberg ≤ 1.3x COPY"] == ("1.50x", "not met (by 15%)")
    assert verdicts["Flight boundary ≤ 15% overhead (same reader)"][0] == "-45%"


def test_every_method_a_goal_names_exists() -> None:
    assert set(GOAL_METHODS) <= {m.name for m in all_methods()}
