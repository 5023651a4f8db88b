"""Crash safety around the moments that are not a data commit: creating the table, evolving its schema, and
the gap between two datasets' commits in one run.

Same harness as :mod:`tests.writers.iceberg.test_crash_safety`: the real ``dativo run`` CLI in a subprocess,
SIGKILLed by a plugin from :mod:`tests.fixtures.crashing` at a chosen point, then the table read with
pyiceberg and compared with the source: row count, unique keys and a column checksum, then every value.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog.sql import SqlCatalog

from tests.fixtures.postgres import PgSchema
from tests.writers.iceberg.test_crash_safety import (
    Job,
    Lake,
    Run,
    Seen,
    Source,
    assert_old_or_new,
    assert_rows,
    custom,
)

ROWS = 20_000


def fingerprint(rows: pa.Table, column: str = "amount") -> tuple[int, int, Any]:
    """(row count, distinct ids, sum of ``column``): what must match before the values are compared."""
    total = pc.sum(rows.column(column)).as_py() if rows.num_rows else None
    return rows.num_rows, len(pc.unique(rows.column("id"))), total


def assert_same(got: pa.Table, want: pa.Table, what: str) -> None:
    assert fingerprint(got) == fingerprint(want), f"{what}: (rows, ids, sum of amount) differ"
    assert_rows(got, want, what)


def settings(*tables: Source) -> dict[str, Any]:
    return {
        "type": "postgres",
        "connection": {"dsn": "${PG_DSN}"},
        "tables": [t.table for t in tables],
        "parallelism": 2,
        "batch_size_bytes": 32 * 1024,
        "incremental": {"cursor": "updated_at"},
    }


def iceberg(lake: Lake) -> Any:
    """The table as pyiceberg loads it now (``None`` if it does not exist)."""
    catalog = SqlCatalog("dativo", uri=lake.uri, warehouse=lake.warehouse)
    try:
        return catalog.load_table(("raw", lake.table)) if catalog.table_exists(("raw", lake.table)) else None
    finally:
        catalog.engine.dispose()


# --- table creation and schema evolution ---------------------------------------------------------------


def test_kills_while_creating_and_evolving_the_table(pg_schema: PgSchema, tmp_path: Path) -> None:
    source = Source(pg_schema, ROWS)
    lake = Lake(tmp_path)
    job = Job(tmp_path, {"PG_DSN": pg_schema.dsn}, settings(source),
              lake.target("merge", target_file_size_bytes=32 * 1024))

    def check(before: Seen, run: Run, **kw: Any) -> Seen:
        return assert_old_or_new(lake, before, run, source.rows(), incremental=True, **kw)

    def killed_at(point: str) -> Run:
        return job.run(writer=custom("KillingIcebergWriter", kill_at=point)).expect_killed()

    # creation: before the catalog's create_table nothing exists; after it, an empty table and no snapshot
    empty = lake.seen()
    check(empty, killed_at("before_create"), want="old")
    assert iceberg(lake) is None, "the kill before create_table left a table"
    check(empty, killed_at("after_create"), want="old")
    created = iceberg(lake)
    assert created is not None and created.current_snapshot() is None, "the kill after create_table"
    report = job.run().report()
    loaded = check(empty, Run(report["run_id"], 0, "", ""), want="new")
    assert_same(loaded.rows, source.rows(), "after the rerun that followed the creation kills")

    # evolution: a new column, filled for a third of the rows (which get a newer cursor) and the new rows
    pg_schema.execute("ALTER TABLE orders ADD COLUMN extra text")
    pg_schema.execute(
        "UPDATE orders SET extra = 'x' || id, amount = amount + 2, "
        "updated_at = updated_at + interval '1 day' WHERE id % 3 = 0"
    )
    source.mutate(1)
    pg_schema.execute("UPDATE orders SET extra = 'new ' || id WHERE id > %s", (ROWS,))
    check(loaded, killed_at("before_evolve"), want="old")
    assert "extra" not in iceberg(lake).schema().column_names, "the kill before the schema update"
    check(loaded, killed_at("after_evolve"), want="old")
    assert Counter(iceberg(lake).schema().column_names)["extra"] == 1, "the kill after the schema update"

    report = job.run().report()
    assert report["status"] == "succeeded"
    done = check(loaded, Run(report["run_id"], 0, "", ""), want="new")
    assert_same(done.rows, source.rows(), "after the rerun that followed the evolution kills")
    table = iceberg(lake)
    assert Counter(table.schema().column_names) == Counter(["id", "amount", "note", "updated_at", "extra"])
    got = table.scan(selected_fields=("id", "extra")).to_arrow().sort_by("id")
    want = pg_schema.execute("SELECT id, extra FROM orders ORDER BY id")
    assert list(zip(got.column("id").to_pylist(), got.column("extra").to_pylist())) == want, (
        "the new column's values differ from the source"
    )


# --- two datasets, killed between their commits --------------------------------------------------------


def test_a_kill_between_two_datasets_commits(pg_schema: PgSchema, tmp_path: Path) -> None:
    sources = {name: Source(pg_schema, ROWS, name) for name in ("orders", "refunds")}
    lakes = {name: Lake(tmp_path, name) for name in sources}
    target = lakes["orders"].target("merge", target_file_size_bytes=32 * 1024)
    del target["table"]  # each dataset into its own table, named after it
    job = Job(tmp_path, {"PG_DSN": pg_schema.dsn}, settings(*sources.values()), target)

    def seen() -> dict[str, Seen]:
        return {name: lake.seen() for name, lake in lakes.items()}

    def kill_between(before: dict[str, Seen], generation: int) -> tuple[Run, str, str]:
        """Mutate both sources, run, die after the first commit; return (run, committed, not committed)."""
        for source in sources.values():
            source.mutate(generation)
        run = job.run(writer=custom("KillingIcebergWriter", kill_at="after_commit")).expect_killed()
        moved = [name for name, lake in lakes.items() if lake.seen().snapshot_id != before[name].snapshot_id]
        assert len(moved) == 1, f"{run.run_id}: the kill after the first commit left {moved} committed"
        [first] = moved
        [second] = [name for name in sources if name != first]
        now = assert_old_or_new(lakes[first], before[first], run, sources[first].rows(), incremental=True,
                                want="new")
        assert_old_or_new(lakes[second], before[second], run, sources[second].rows(), incremental=True,
                          want="old")
        assert_same(now.rows, sources[first].rows(), f"{first}, committed before the kill")
        return run, first, second

    report = job.run().report()
    assert [d["no_op"] for d in report["datasets"]] == [False, False], report["datasets"]
    loaded = seen()
    for name, source in sources.items():
        assert_same(loaded[name].rows, source.rows(), f"{name}, first load")

    # the same run id again: the committed dataset is a no-op, the other one commits
    killed, first, second = kill_between(loaded, 1)
    report = job.run(run_id=killed.run_id).report()
    assert report["status"] == "succeeded"
    no_op = {d["name"].rsplit(".", 1)[-1]: d["no_op"] for d in report["datasets"]}
    assert no_op == {first: True, second: False}, report["datasets"]
    after = seen()
    assert after[first].snapshot_id != loaded[first].snapshot_id
    for name, source in sources.items():
        assert_same(after[name].rows, source.rows(), f"{name}, rerun with the killed run's id")
        assert after[name].summary["dativo.run-id"] == killed.run_id

    # a rerun under a new run id converges too: the incremental cursor of each table picks up from its commit
    killed, first, second = kill_between(after, 2)
    report = job.run().report()
    assert report["status"] == "succeeded" and report["run_id"] != killed.run_id
    final = seen()
    for name, source in sources.items():
        assert_same(final[name].rows, source.rows(), f"{name}, rerun with a new run id")
