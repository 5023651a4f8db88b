"""Crash safety: a job SIGKILLed at any moment leaves the target at its previous state or the complete new
one, and a rerun converges to exactly the source rows, none lost and none duplicated.

Every run is the real ``dativo run`` CLI in its own process. Kills come from plugins that subclass the
built-ins and SIGKILL their own process at a chosen point (:mod:`tests.fixtures.crashing`), or from this
test killing the process after a random delay. After each kill the target is read like any user would
(pyiceberg, ``pyarrow.parquet``) and compared with what the source held.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
import yaml
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

from tests.fixtures.postgres import PgSchema

ROOT = Path(__file__).resolve().parents[3]
DATIVO = Path(sys.executable).with_name("dativo")
CRASHING = "tests.fixtures.crashing"
KILLED = -signal.SIGKILL

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("amount", pa.decimal128(12, 2)),
        ("note", pa.string()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)
BASE_TIME = "2024-01-01 00:00:00+00"


# --- comparing rows ------------------------------------------------------------------------------------


def canonical(table: pa.Table) -> pa.Table:
    """The four columns in fixed types, sorted by (id, updated_at), in one chunk: comparable with ``equals``."""
    if table.num_columns == 0:
        return SCHEMA.empty_table()
    table = table.select(SCHEMA.names).cast(SCHEMA)
    return table.sort_by([("id", "ascending"), ("updated_at", "ascending")]).combine_chunks()


def distinct(table: pa.Table) -> pa.Table:
    """The distinct rows of ``table`` (a row version read twice counts once)."""
    return canonical(table.group_by(SCHEMA.names, use_threads=False).aggregate([]))


def assert_rows(got: pa.Table, want: pa.Table, what: str) -> None:
    """``got`` holds exactly the rows of ``want``: same ids (none lost, none duplicated), same values."""
    got, want = canonical(got), canonical(want)
    got_ids, want_ids = got.column("id").to_pylist(), want.column("id").to_pylist()
    if got_ids != want_ids:
        lost = sorted(set(want_ids) - set(got_ids))
        extra = sorted(set(got_ids) - set(want_ids))
        doubled = len(got_ids) - len(set(got_ids)) - (len(want_ids) - len(set(want_ids)))
        pytest.fail(
            f"{what}: {got.num_rows} rows, expected {want.num_rows}; lost ids {lost[:10]} ({len(lost)}), "
            f"unexpected ids {extra[:10]} ({len(extra)}), {doubled} more repeated ids than expected"
        )
    if not got.equals(want):
        differs = pc.invert(pc.and_kleene(*[
            pc.fill_null(pc.equal(got.column(c), want.column(c)), pc.and_(pc.is_null(got.column(c)),
                                                                           pc.is_null(want.column(c))))
            for c in ("amount", "updated_at")
        ]))
        sample = got.filter(differs).slice(0, 3).to_pylist() or got.slice(0, 3).to_pylist()
        pytest.fail(f"{what}: same ids, different values, e.g. {sample}")


def watermark_of(rows: pa.Table) -> tuple[Any, Any] | None:
    """The greatest ``(updated_at, id)`` of ``rows``: what the committed incremental state must say."""
    if rows.num_rows == 0:
        return None
    rows = canonical(rows)
    top = pc.max(rows.column("updated_at"))
    ids = rows.filter(pc.equal(rows.column("updated_at"), top)).column("id")
    return top.as_py(), pc.max(ids).as_py()


# --- running the CLI -----------------------------------------------------------------------------------


@dataclass
class Run:
    """One ``dativo run`` process and how it ended."""

    run_id: str
    returncode: int
    stdout: str
    stderr: str

    @property
    def killed(self) -> bool:
        return self.returncode == KILLED

    def report(self) -> dict[str, Any]:
        assert self.returncode == 0, f"run {self.run_id} exited {self.returncode}: {self.stderr[-2000:]}"
        return json.loads(self.stdout)

    def expect_killed(self) -> Run:
        assert self.killed, (
            f"run {self.run_id} should have been SIGKILLed at its kill point but exited {self.returncode} "
            f"(the kill point was never reached): {self.stderr[-2000:]}"
        )
        return self


class Job:
    """A job file in a tmp folder, run by the real CLI in a subprocess."""

    def __init__(self, cwd: Path, env: dict[str, str], source: dict[str, Any], target: dict[str, Any]) -> None:
        self.cwd = cwd
        self.env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.source = source
        self.target = target
        self.runs = 0

    def _file(self, reader: dict[str, Any] | None, writer: dict[str, Any] | None) -> Path:
        source = {**self.source, **({"reader": reader} if reader else {})}
        target = {**self.target, **({"writer": writer} if writer else {})}
        path = self.cwd / "job.yaml"
        path.write_text(yaml.safe_dump({"version": 1, "name": "crash", "source": source, "target": target}))
        return path

    def start(
        self, *, reader: dict[str, Any] | None = None, writer: dict[str, Any] | None = None, run_id: str | None = None
    ) -> tuple[subprocess.Popen[str], str]:
        self.runs += 1
        run_id = run_id or f"run{self.runs:02d}"
        command = [str(DATIVO), "run", str(self._file(reader, writer)), "--json", "--run-id", run_id]
        process = subprocess.Popen(
            command, cwd=self.cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        return process, run_id

    def run(self, *, kill_after_s: float | None = None, **kwargs: Any) -> Run:
        """Run to the end, or SIGKILL the process after ``kill_after_s`` seconds if it still runs."""
        process, run_id = self.start(**kwargs)
        if kill_after_s is not None:
            try:
                process.wait(kill_after_s)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=120)
        return Run(run_id, process.returncode, stdout, stderr)


def custom(implementation: str, **options: Any) -> dict[str, Any]:
    """A ``reader:``/``writer:`` block naming a killing plugin, with no fallback to hide it."""
    return {"type": "custom", "implementation": f"{CRASHING}:{implementation}", "fallback": "fail", "options": options}


# --- PostgreSQL source ---------------------------------------------------------------------------------


class Source:
    """``orders`` (or ``name``) in a private schema; every generation updates some rows and inserts new ones."""

    def __init__(self, pg: PgSchema, rows: int, name: str = "orders") -> None:
        self.pg = pg
        self.name = name
        self.table = pg.table(name)
        self.next_id = rows + 1
        pg.execute(
            f"CREATE TABLE {name} (id bigint PRIMARY KEY, amount numeric(12,2) NOT NULL, note text, "
            "updated_at timestamptz NOT NULL)"
        )
        # every first-generation row has the same cursor value: the primary key breaks the ties
        self._insert(1, rows, 0)
        pg.execute(f"ANALYZE {name}")

    def _insert(self, first: int, last: int, generation: int) -> None:
        self.pg.execute(
            f"INSERT INTO {self.name} SELECT i, (i %% 100000) / 100.0, CASE WHEN i %% 11 = 0 THEN NULL ELSE 'n' || i END, "
            "%s::timestamptz + %s * interval '1 hour' FROM generate_series(%s::bigint, %s) i",
            (BASE_TIME, generation, first, last),
        )

    def mutate(self, generation: int, *, every: int = 5, inserts: int = 2_000) -> None:
        """Update every ``every``-th row and insert ``inserts`` new ones, all with a newer cursor."""
        self.pg.execute(
            f"UPDATE {self.name} SET amount = amount + 1, note = 'g' || %s || ' ' || id, "
            "updated_at = %s::timestamptz + %s * interval '1 hour' WHERE id %% %s = %s",
            (generation, BASE_TIME, generation, every, generation % every),
        )
        self._insert(self.next_id, self.next_id + inserts - 1, generation)
        self.next_id += inserts

    def rows(self) -> pa.Table:
        """Every row, read with COPY (independently of the readers under test)."""
        query = (
            "COPY (SELECT id, amount, note, (extract(epoch FROM updated_at) * 1000000)::bigint AS updated_at "
            f"FROM {self.table}) TO STDOUT (FORMAT csv, HEADER)"
        )
        with psycopg.connect(self.pg.dsn) as conn, conn.cursor() as cursor, cursor.copy(query) as copy:
            data = b"".join(bytes(chunk) for chunk in copy)
        table = pacsv.read_csv(
            io.BytesIO(data),
            convert_options=pacsv.ConvertOptions(
                column_types={"id": pa.int64(), "amount": pa.decimal128(12, 2), "note": pa.string(),
                              "updated_at": pa.int64()},
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
        stamps = table.column("updated_at").cast(pa.timestamp("us", tz="UTC"))
        return canonical(table.set_column(3, "updated_at", stamps))


# --- Iceberg target ------------------------------------------------------------------------------------


@dataclass
class Seen:
    """What a reader of the Iceberg table sees at one moment."""

    snapshot_id: int | None
    parent_id: int | None
    summary: dict[str, str]
    rows: pa.Table
    files: set[str] = field(default_factory=set)  # every file under the table's folder


class Lake:
    """The embedded SQL catalog and local warehouse of the job, read with pyiceberg directly."""

    def __init__(self, root: Path, table: str = "orders") -> None:
        self.table = table
        self.uri = f"sqlite:///{root / 'catalog.db'}"
        self.warehouse = (root / "warehouse").as_uri()
        self.root = root / "warehouse"

    def target(self, mode: str, **settings: Any) -> dict[str, Any]:
        return {
            "type": "iceberg",
            "catalog": {"type": "sql", "uri": self.uri, "warehouse": self.warehouse},
            "namespace": "raw",
            "table": self.table,
            "mode": mode,
            **settings,
        }

    def seen(self) -> Seen:
        catalog = SqlCatalog("dativo", uri=self.uri, warehouse=self.warehouse)  # the name dativo gives it
        try:
            try:
                table = catalog.load_table(("raw", self.table))
            except (NoSuchTableError, NoSuchNamespaceError):
                return Seen(None, None, {}, SCHEMA.empty_table(), self._files())
            snapshot = table.current_snapshot()
            if snapshot is None:
                return Seen(None, None, {}, SCHEMA.empty_table(), self._files())
            summary = {k: str(v) for k, v in (snapshot.summary.additional_properties or {}).items()}
            rows = canonical(table.scan().to_arrow())
            return Seen(snapshot.snapshot_id, snapshot.parent_snapshot_id, summary, rows, self._files())
        finally:
            catalog.engine.dispose()

    def _files(self) -> set[str]:
        return {str(p) for p in self.root.rglob("*") if p.is_file()} if self.root.exists() else set()


def assert_consistent(seen: Seen, incremental: bool) -> None:
    """The snapshot's summary agrees with its content: record count, and the committed watermark."""
    if seen.snapshot_id is None:
        return
    assert int(seen.summary["total-records"]) == seen.rows.num_rows, seen.summary
    state = json.loads(seen.summary["dativo.state"])
    if not incremental:
        assert state is None, state
        return
    cursor = state["cursor"]
    assert (cursor["column"], cursor["key_columns"]) == ("updated_at", ["id"]), cursor
    value = pa.array([cursor["value"]]).cast(pa.timestamp("us", tz="UTC"))[0].as_py()
    assert (value, int(cursor["key"][0])) == watermark_of(seen.rows), "state and content disagree"


def assert_old_or_new(
    lake: Lake, before: Seen, run: Run, expected_new: pa.Table, *, incremental: bool, want: str | None = None
) -> Seen:
    """After ``run`` (killed or not): the table is the previous snapshot, or the run's complete commit."""
    now = lake.seen()
    if now.snapshot_id == before.snapshot_id:
        outcome = "old"
        assert_rows(now.rows, before.rows, f"{run.run_id}: the previous snapshot")
    else:
        outcome = "new"
        assert now.parent_id == before.snapshot_id, "the run published more than one snapshot"
        assert now.summary.get("dativo.run-id") == run.run_id, now.summary
        assert_rows(now.rows, expected_new, f"{run.run_id}: the new snapshot")
    assert_consistent(now, incremental)
    if want is not None:
        assert outcome == want, f"{run.run_id} (exit {run.returncode}) left the {outcome} table, not the {want} one"
    return now


@dataclass
class Scenario:
    """A source, an Iceberg table and the job between them, in one mode."""

    source: Source
    lake: Lake
    job: Job
    mode: str

    @property
    def incremental(self) -> bool:
        return self.mode != "overwrite"

    def expected(self, before: Seen) -> pa.Table:
        """The table after a complete run: append adds the new row versions; the others equal the source."""
        rows = self.source.rows()
        return distinct(pa.concat_tables([before.rows, rows])) if self.mode == "append" else rows


@pytest.fixture
def scenario(request: pytest.FixtureRequest, pg_schema: PgSchema, tmp_path: Path) -> Iterator[Scenario]:
    mode, rows = request.param
    source = Source(pg_schema, rows)
    lake = Lake(tmp_path)
    settings = {
        "type": "postgres",
        "connection": {"dsn": "${PG_DSN}"},
        "tables": [source.table],
        "parallelism": 2,
        "batch_size_bytes": 32 * 1024,
    }
    if mode != "overwrite":
        settings["incremental"] = {"cursor": "updated_at"}
    target = lake.target(mode, target_file_size_bytes=32 * 1024, row_group_size_bytes=16 * 1024)
    yield Scenario(source, lake, Job(tmp_path, {"PG_DSN": pg_schema.dsn}, settings, target), mode)


# --- PostgreSQL -> Iceberg at each kill point ----------------------------------------------------------


@pytest.mark.parametrize(
    "scenario", [("append", 20_000), ("overwrite", 20_000), ("merge", 20_000)], indirect=True, ids=str
)
def test_iceberg_survives_a_kill_at_every_point(scenario: Scenario) -> None:
    lake, job, source = scenario.lake, scenario.job, scenario.source
    check = lambda before, run, **kw: assert_old_or_new(  # noqa: E731
        lake, before, run, scenario.expected(before), incremental=scenario.incremental, **kw
    )

    # the first load dies right after its commit: the table holds all of it, with its state
    empty = lake.seen()
    first = job.run(writer=custom("KillingIcebergWriter", kill_at="after_commit")).expect_killed()
    loaded = check(empty, first, want="new")

    # the same run id again is a no-op: no snapshot, no new file, even though it read and wrote again
    again = job.run(run_id=first.run_id).report()
    assert again["status"] == "succeeded" and again["datasets"][0]["no_op"], again
    assert again["rows_written"] == 0
    after_noop = lake.seen()
    assert after_noop.snapshot_id == loaded.snapshot_id
    assert after_noop.files == loaded.files, f"a no-op run left files: {sorted(after_noop.files - loaded.files)}"

    # kills before the commit leave the previous snapshot, whatever was read or written already
    source.mutate(1)
    check(loaded, job.run(reader=custom("KillingPostgresReader", kill_after_batches=3)).expect_killed(), want="old")
    source.mutate(2)
    killed = job.run(writer=custom("KillingIcebergWriter", kill_at="write", kill_after_batches=4)).expect_killed()
    orphans = check(loaded, killed, want="old").files - loaded.files
    assert any(f.endswith(".parquet") for f in orphans), "the write kill came before any data file was written"
    check(loaded, job.run(writer=custom("KillingIcebergWriter", kill_at="before_commit")).expect_killed(), want="old")
    swap = job.run(writer=custom("KillingIcebergWriter", kill_at="catalog_swap")).expect_killed()
    unpublished = check(loaded, swap, want="old").files - loaded.files
    assert any(f.endswith(".metadata.json") for f in unpublished), "the swap kill came before the metadata"

    # the rerun converges: the table is exactly the source (append: every row version, once)
    final = job.run().report()
    assert final["status"] == "succeeded" and not final["fallback_used"]
    done = check(loaded, Run(final["run_id"], 0, "", ""), want="new")
    current = source.rows()
    if scenario.mode == "append":
        latest = distinct(done.rows).group_by("id").aggregate([("updated_at", "max")])
        assert latest.num_rows == current.num_rows  # and every source version is in the table (checked above)
    else:
        assert_rows(done.rows, current, "after the rerun")


# --- PostgreSQL -> Iceberg, killed at random moments ----------------------------------------------------


@pytest.mark.parametrize("scenario", [("merge", 200_000)], indirect=True, ids=str)
def test_iceberg_survives_kills_at_random_moments(scenario: Scenario) -> None:
    lake, job, source = scenario.lake, scenario.job, scenario.source
    started = time.monotonic()
    first = job.run().report()
    duration = time.monotonic() - started
    before = assert_old_or_new(lake, lake.seen(), Run(first["run_id"], 0, "", ""), source.rows(),
                               incremental=True)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    outcomes = []
    for attempt in range(8):
        source.mutate(attempt + 1, every=2, inserts=5_000)
        expected = scenario.expected(before)
        delay = duration * (0.25 + 0.85 * (attempt + rng.random()) / 8)
        run = job.run(kill_after_s=delay)
        assert run.killed or run.returncode == 0, f"seed {seed}: exit {run.returncode}: {run.stderr[-2000:]}"
        before_id = before.snapshot_id
        before = assert_old_or_new(lake, before, run, expected, incremental=True)
        outcomes.append((round(delay, 2), "killed" if run.killed else "finished",
                         "old" if before.snapshot_id == before_id else "new"))
    assert sum(o[1] == "killed" for o in outcomes) >= 4, f"seed {seed}: too few kills landed: {outcomes}"
    final = job.run().report()
    done = assert_old_or_new(lake, before, Run(final["run_id"], 0, "", ""), source.rows(), incremental=True)
    assert_rows(done.rows, source.rows(), f"seed {seed}, {outcomes}: after the rerun")
