"""Crash safety of the example writers: ``hsm_encrypted`` (Python, SoftHSM2) and ``go_parquet`` (a Go Flight
plugin process), each SIGKILLed at random moments of 200k-row runs.

Every run is the real ``dativo run`` CLI in its own process (the harness of
:mod:`tests.writers.iceberg.test_crash_safety`); the go_parquet process dies with it (``PR_SET_PDEATHSIG``).
After each kill the target is read with the writer's own reader (``dativo_hsm.read_encrypted`` over
``committed_files``; ``dativo.writers.parquet.read_committed``): it holds the previous content or the
complete new one. A rerun under the last killed run's id, then one more under a new id, converges to exactly
the source row versions, none lost and none duplicated.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from dativo_hsm import committed_files, read_encrypted

from dativo.writers.parquet import read_committed
from tests.examples.test_hsm_writer import writer_options
from tests.fixtures.postgres import PgSchema
from tests.fixtures.softhsm import SoftHsm
from tests.writers.iceberg.test_crash_safety import Job, Run, Source, assert_rows, canonical, distinct

ROWS = 200_000
ATTEMPTS = 6
MIN_KILLS = 3
MAX_ATTEMPTS = 10

# what a target holds now: (the committed data files, their rows)
Committed = tuple[frozenset[str], pa.Table]


def fingerprint(rows: pa.Table) -> tuple[int, int, Any]:
    """(row versions, distinct ids, sum of ``amount``)."""
    return rows.num_rows, len(pc.unique(rows.column("id"))), pc.sum(rows.column("amount")).as_py()


def hsm_target(hsm: SoftHsm, path: Path) -> tuple[dict[str, Any], Callable[[], Committed]]:
    options = writer_options(hsm, str(path), compression="zstd")
    target = {"type": "hsm_encrypted", "mode": "append",
              "writer": {"type": "custom", "implementation": "hsm_encrypted", "fallback": "fail",
                         "options": options}}

    def committed() -> Committed:
        if not path.exists():
            return frozenset(), canonical(pa.table({}))
        files = frozenset(committed_files(str(path)))
        rows = read_encrypted(str(path), pkcs11_library=hsm.library, token_label=hsm.token, pin=hsm.pin)
        return files, canonical(rows)

    return target, committed


def go_target(root: Path, table: str) -> tuple[dict[str, Any], Callable[[], Committed]]:
    target = {"type": "parquet", "path": str(root / "out" / "{dataset}"), "mode": "append",
              "writer": {"type": "custom", "implementation": "go_parquet", "fallback": "fail"}}
    folder = root / "out" / table

    def committed() -> Committed:
        if not folder.exists():
            return frozenset(), canonical(pa.table({}))
        dataset = read_committed(str(folder))
        return frozenset(dataset.files), canonical(dataset.to_table())

    return target, committed


def crash_and_converge(source: Source, job: Job, committed: Callable[[], Committed]) -> None:
    """Load, then mutate every row and SIGKILL the next runs at random moments; check old-or-new each time."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)

    def old_or_new(before: Committed, run: Run) -> Committed:
        now = committed()
        if now[0] == before[0]:
            assert_rows(now[1], before[1], f"seed {seed}, {run.run_id}: the previous content")
            return now
        assert now[0] > before[0], f"seed {seed}, {run.run_id}: committed files were replaced or removed"
        want = distinct(pa.concat_tables([before[1], source.rows()]))  # append: every new row version, once
        assert fingerprint(now[1]) == fingerprint(want), f"seed {seed}, {run.run_id}: (rows, ids, sum)"
        assert_rows(now[1], want, f"seed {seed}, {run.run_id}: the new content")
        return now

    first = job.run().report()
    assert first["rows_written"] == ROWS
    before = old_or_new(committed(), Run(first["run_id"], 0, "", ""))
    assert before[1].num_rows == ROWS
    source.mutate(1, every=1, inserts=5_000)  # every row: each run reads all of them again
    started = time.monotonic()
    second = job.run().report()  # times a whole run, to spread the kills over one
    duration = time.monotonic() - started
    before = old_or_new(before, Run(second["run_id"], 0, "", ""))

    outcomes: list[tuple[float, str, str]] = []
    last_killed: str | None = None
    attempt = kills = 0
    while attempt < ATTEMPTS or (kills < MIN_KILLS and attempt < MAX_ATTEMPTS):
        source.mutate(attempt + 2, every=1, inserts=5_000)
        if attempt < ATTEMPTS:  # spread over the run and a little past its usual end
            delay = duration * (0.2 + 1.2 * (attempt + rng.random()) / ATTEMPTS)
        else:  # the runs were faster than the timed one: aim early
            delay = duration * rng.uniform(0.2, 0.6)
        attempt += 1
        run = job.run(kill_after_s=delay)
        assert run.killed or run.returncode == 0, f"seed {seed}: exit {run.returncode}: {run.stderr[-2000:]}"
        files = before[0]
        before = old_or_new(before, run)
        outcomes.append((round(delay, 2), "killed" if run.killed else "finished",
                         "old" if before[0] == files else "new"))
        if run.killed:
            kills += 1
            last_killed = run.run_id
    assert kills >= MIN_KILLS, f"seed {seed}: too few kills landed: {outcomes}"

    again = job.run(run_id=last_killed).report()
    assert again["status"] == "succeeded", again
    before = old_or_new(before, Run(last_killed or "", 0, "", ""))
    final = job.run().report()
    assert final["rows_written"] == 0, f"seed {seed}, {outcomes}: a converged target took more rows: {final}"
    files, rows = committed()
    assert files == before[0]
    latest = rows.group_by("id").aggregate([("updated_at", "max")])
    current = source.rows()
    assert latest.num_rows == current.num_rows, f"seed {seed}, {outcomes}: ids lost or invented"
    everything = distinct(pa.concat_tables([rows, current]))
    assert_rows(everything, rows, f"seed {seed}, {outcomes}: source rows missing")
    assert rows.num_rows == distinct(rows).num_rows, f"seed {seed}, {outcomes}: a row version written twice"


def test_hsm_writer_survives_kills_at_random_moments(
    pg_schema: PgSchema, softhsm: SoftHsm, tmp_path: Path
) -> None:
    source = Source(pg_schema, ROWS)
    target, committed = hsm_target(softhsm, tmp_path / "vault")
    settings = {"type": "postgres", "connection": {"dsn": "${PG_DSN}"}, "tables": [source.table],
                "parallelism": 2, "incremental": {"cursor": "updated_at"}}
    job = Job(tmp_path, {"PG_DSN": pg_schema.dsn, "HSM_PIN": softhsm.pin}, settings, target)
    crash_and_converge(source, job, committed)


def test_go_parquet_writer_survives_kills_at_random_moments(pg_schema: PgSchema, tmp_path: Path) -> None:
    source = Source(pg_schema, ROWS)
    target, committed = go_target(tmp_path, source.table)
    settings = {"type": "postgres", "connection": {"dsn": "${PG_DSN}"}, "tables": [source.table],
                "parallelism": 3, "incremental": {"cursor": "updated_at"}}
    job = Job(tmp_path, {"PG_DSN": pg_schema.dsn}, settings, target)
    crash_and_converge(source, job, committed)
