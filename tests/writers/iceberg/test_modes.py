"""append, overwrite and merge: what a reader of the table sees after each commit."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from decimal import Decimal

import pyarrow as pa
import pytest

from dativo.api import CommitInfo, Dataset, Split
from dativo.errors import CommitFailed, ConfigError
from dativo.writers.iceberg import commit as commits
from dativo.writers.iceberg.files import DataFileWriter, WriteOptions
from tests.writers.iceberg.conftest import MakeWriter
from tests.writers.iceberg.helpers import read, run, table_of, write

ORDERS = Dataset("public.orders", primary_key=("id",))
OPTIONS = WriteOptions(target_file_bytes=1 << 30, row_group_bytes=1 << 26)


def orders(ids: list[int], note: str) -> pa.Table:
    return pa.table(
        {"id": pa.array(ids, pa.int64()), "note": pa.array([f"{note}{i}" for i in ids], pa.string())}
    )


def rows(table: pa.Table) -> list[tuple[object, ...]]:
    return sorted(zip(*(table.column(n).to_pylist() for n in table.column_names), strict=False))


def test_append_adds_rows(make_writer: MakeWriter) -> None:
    writer = make_writer()
    first = run(writer, ORDERS, orders([1, 2], "a"), "r1")
    second = run(writer, ORDERS, orders([2, 3], "b"), "r2")

    assert (first.rows, second.rows) == (2, 2)
    assert first.commit_id != second.commit_id
    assert rows(read(writer, ORDERS)) == [(1, "a1"), (2, "a2"), (2, "b2"), (3, "b3")]
    assert table_of(writer, ORDERS).current_snapshot().summary.operation.value == "append"


def test_overwrite_replaces_every_row_in_one_snapshot(make_writer: MakeWriter) -> None:
    writer = make_writer()
    run(writer, ORDERS, orders([1, 2, 3], "a"), "r1")
    before = len(table_of(writer, ORDERS).snapshots())

    info = run(writer, ORDERS, orders([7], "b"), "r2", mode="overwrite")

    table = table_of(writer, ORDERS)
    assert rows(read(writer, ORDERS)) == [(7, "b7")]
    assert len(table.snapshots()) == before + 1
    assert table.current_snapshot().summary.operation.value == "overwrite"
    assert info.rows == 1 and info.commit_id == str(table.current_snapshot().snapshot_id)


def test_overwrite_with_no_rows_empties_the_table(make_writer: MakeWriter) -> None:
    writer = make_writer()
    run(writer, ORDERS, orders([1, 2], "a"), "r1")

    writer.prepare(ORDERS, orders([], "").schema, "overwrite")
    empty = write(writer, ORDERS, orders([], ""))
    info = writer.commit(ORDERS, [empty], {"cursor": None}, "r2")

    assert empty.files == [] and empty.rows == 0
    assert info.rows == 0 and not info.no_op
    assert read(writer, ORDERS).num_rows == 0
    assert writer.state(ORDERS) == {"cursor": None}


def test_merge_upserts_by_primary_key(make_writer: MakeWriter) -> None:
    writer = make_writer()
    run(writer, ORDERS, orders([1, 2, 3], "a"), "r1")
    run(writer, ORDERS, orders([4, 5], "a"), "r2")

    info = run(writer, ORDERS, orders([2, 5, 6], "b"), "r3", mode="merge")

    assert rows(read(writer, ORDERS)) == [(1, "a1"), (2, "b2"), (3, "a3"), (4, "a4"), (5, "b5"), (6, "b6")]
    assert info.rows == 3
    table = table_of(writer, ORDERS)
    assert table.current_snapshot().summary.operation.value == "overwrite"
    assert table.current_snapshot().summary["dativo.mode"] == "merge"


def test_merge_with_a_composite_key_and_many_splits(make_writer: MakeWriter) -> None:
    dataset = Dataset("public.lines", primary_key=("order_id", "line"))
    first = pa.table({"order_id": [1, 1, 2, 2], "line": [1, 2, 1, 2], "qty": [10, 20, 30, 40]})
    writer = make_writer()
    run(writer, dataset, first, "r1")

    writer.prepare(dataset, first.schema, "merge")
    a = write(writer, dataset, pa.table({"order_id": [1], "line": [2], "qty": [21]}), split="a")
    b = write(writer, dataset, pa.table({"order_id": [2, 3], "line": [1, 1], "qty": [31, 50]}), split="b")
    writer.commit(dataset, [a, b], None, "r2")

    assert rows(read(writer, dataset, sort_by=None)) == [
        (1, 1, 10),
        (1, 2, 21),
        (2, 1, 31),
        (2, 2, 40),
        (3, 1, 50),
    ]


def test_merge_into_an_empty_table_inserts(make_writer: MakeWriter) -> None:
    writer = make_writer()
    run(writer, ORDERS, orders([1, 2], "a"), "r1", mode="merge")

    assert rows(read(writer, ORDERS)) == [(1, "a1"), (2, "a2")]


def test_merge_without_primary_key_is_a_clear_config_error(make_writer: MakeWriter) -> None:
    writer = make_writer()
    keyless = Dataset("public.events")

    with pytest.raises(ConfigError, match="primary key") as error:
        writer.prepare(keyless, orders([1], "a").schema, "merge")

    assert "use mode 'append' or 'overwrite'" in str(error.value)


def test_append_with_no_rows_and_no_new_state_commits_nothing(make_writer: MakeWriter) -> None:
    writer = make_writer()
    first = run(writer, ORDERS, orders([1], "a"), "r1", state={"cursor": {"value": "1"}})
    snapshots = len(table_of(writer, ORDERS).snapshots())

    same_state = run(writer, ORDERS, orders([], "a"), "r2", state={"cursor": {"value": "1"}})
    no_state = run(writer, ORDERS, orders([], "a"), "r3")

    assert same_state.commit_id == no_state.commit_id == first.commit_id
    assert len(table_of(writer, ORDERS).snapshots()) == snapshots


def test_append_with_no_rows_but_new_state_commits_the_state(make_writer: MakeWriter) -> None:
    writer = make_writer()
    run(writer, ORDERS, orders([1], "a"), "r1", state={"cursor": {"value": "1"}})

    info = run(writer, ORDERS, orders([], "a"), "r2", state={"cursor": {"value": "5"}})

    assert info.rows == 0 and info.commit_id == str(table_of(writer, ORDERS).current_snapshot().snapshot_id)
    assert writer.state(ORDERS) == {"cursor": {"value": "5"}}
    assert read(writer, ORDERS).num_rows == 1


def test_commit_takes_the_mode_from_settings_without_prepare(make_writer: MakeWriter, tmp_path) -> None:
    writer = make_writer()
    run(writer, ORDERS, orders([1, 2], "a"), "r1")

    from dativo.writers.iceberg import IcebergWriter
    from tests.writers.iceberg.helpers import context

    ctx = context(tmp_path)
    other = IcebergWriter(writer.config, ctx.__class__(**{**ctx.__dict__, "settings": {"mode": "overwrite"}}))
    files = other.write(
        Split(ORDERS.name, "0"),
        pa.RecordBatchReader.from_batches(orders([9], "z").schema, orders([9], "z").to_batches()),
    )
    other.commit(ORDERS, [files], None, "r2")

    assert rows(read(writer, ORDERS)) == [(9, "z9")]


@pytest.mark.parametrize(
    ("key_type", "keys"),
    [
        (pa.string(), ["a", "ü", "z"]),
        (pa.large_string(), ["a", "b", "c"]),
        (pa.uuid(), [uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=3)]),
        (pa.timestamp("us", tz="UTC"), [dt.datetime(2024, 1, d, tzinfo=dt.UTC) for d in (1, 2, 3)]),
        (pa.date32(), [dt.date(2024, 1, d) for d in (1, 2, 3)]),
        (pa.decimal128(10, 2), [Decimal("1.10"), Decimal("2.20"), Decimal("3.30")]),
    ],
)
def test_merge_matches_keys_of_every_common_type(
    make_writer: MakeWriter, key_type: pa.DataType, keys: list
) -> None:
    dataset = Dataset("public.keyed", primary_key=("k",))
    writer = make_writer()

    def table(ks: list, value: str) -> pa.Table:
        return pa.table({"k": pa.array(ks, key_type), "v": pa.array([value] * len(ks), pa.string())})

    run(writer, dataset, table(keys[:2], "old"), "r1")
    run(writer, dataset, table(keys[1:], "new"), "r2", mode="merge")

    result = read(writer, dataset, sort_by=None)
    assert dict(zip(result.column("k").to_pylist(), result.column("v").to_pylist(), strict=True)) == {
        keys[0]: "old",
        keys[1]: "new",
        keys[2]: "new",
    }
    assert result.num_rows == 3


def test_a_stale_append_is_retried_and_lands_once(make_writer: MakeWriter) -> None:
    writer = make_writer()
    run(writer, ORDERS, orders([1], "a"), "r1")
    stale = table_of(writer, ORDERS)  # loaded before someone else commits
    run(writer, ORDERS, orders([2], "b"), "r2")

    writer.prepare(ORDERS, orders([3], "c").schema, "append")
    files = write(writer, ORDERS, orders([3], "c"))
    info = commits.commit(
        stale,
        files.extra["data_files"],
        mode="append",
        state=None,
        job="t",
        run_id="r3",
        primary_key=("id",),
        new_writer=None,
        reload=lambda: table_of(writer, ORDERS),
        logger=logging.getLogger("t"),
    )

    assert not info.no_op
    assert rows(read(writer, ORDERS)) == [(1, "a1"), (2, "b2"), (3, "c3")]


def test_a_merge_that_lost_a_race_fails_cleanly(make_writer: MakeWriter) -> None:
    writer = make_writer()
    run(writer, ORDERS, orders([1, 2], "a"), "r1")
    stale = table_of(writer, ORDERS)
    run(
        writer, ORDERS, orders([1], "b"), "r2", mode="merge"
    )  # replaces the file the stale merge will replace

    writer.prepare(ORDERS, orders([2], "c").schema, "merge")
    files = write(writer, ORDERS, orders([2], "c"))
    with pytest.raises(CommitFailed, match="refused"):
        commits.commit(
            stale,
            files.extra["data_files"],
            mode="merge",
            state=None,
            job="t",
            run_id="r3",
            primary_key=("id",),
            new_writer=lambda md: DataFileWriter(md, stale.io, OPTIONS, "m"),
            reload=lambda: table_of(writer, ORDERS),
            logger=logging.getLogger("t"),
        )

    assert rows(read(writer, ORDERS)) == [(1, "b1"), (2, "a2")]
    assert not any(
        "r3" in (s.summary.get("dativo.run-id") or "") for s in table_of(writer, ORDERS).snapshots()
    )


def test_a_run_without_rows_or_schema_touches_nothing(make_writer: MakeWriter) -> None:
    writer = make_writer()
    writer.prepare(ORDERS, pa.schema([]), "append")  # what the engine does when no batch ever came

    assert writer.commit(ORDERS, [], {"cursor": None}, "r1") == CommitInfo(commit_id=None, rows=0)
    assert writer.state(ORDERS) is None

    run(writer, ORDERS, orders([1], "a"), "r2", state={"cursor": 1})
    writer.prepare(ORDERS, pa.schema([]), "overwrite")  # an existing table with a required key: no error
    info = writer.commit(ORDERS, [], {"cursor": 1}, "r3")

    assert info.rows == 0 and read(writer, ORDERS).num_rows == 0


def test_errors_inside_commit_are_commit_failures(make_writer: MakeWriter) -> None:
    writer = make_writer()
    run(writer, ORDERS, orders([1], "a"), "r1")
    writer.prepare(ORDERS, orders([2], "b").schema, "append")
    files = write(writer, ORDERS, orders([2], "b"))
    files.extra.clear()  # the commit must read the footers again ...
    files.files.append(files.files[0] + ".missing")  # ... and one of them is gone

    with pytest.raises(CommitFailed, match="before publishing") as error:
        writer.commit(ORDERS, [files], None, "r2")

    assert "job 't'" in str(error.value)
    assert read(writer, ORDERS).column("id").to_pylist() == [1]


def test_commit_reads_the_footers_when_written_files_lost_their_metadata(make_writer: MakeWriter) -> None:
    writer = make_writer()
    writer.prepare(ORDERS, orders([1], "a").schema, "append")
    files = write(writer, ORDERS, orders([1, 2], "a"))
    files.extra.clear()  # as if WrittenFiles had travelled as JSON from another process

    info = writer.commit(ORDERS, [files], None, "r1")

    assert info.rows == 2
    assert rows(read(writer, ORDERS)) == [(1, "a1"), (2, "a2")]
