"""Incremental state travels in the snapshot summary, and a run id is committed at most once."""

from __future__ import annotations

import json

import pyarrow as pa

from dativo.api import Dataset
from tests.writers.iceberg.conftest import MakeWriter
from tests.writers.iceberg.helpers import read, run, table_of, write

ORDERS = Dataset("public.orders", primary_key=("id",))
STATE = {
    "cursor": {"column": "updated_at", "value": "2024-01-02 00:00:00+00", "key_columns": ["id"], "key": ["7"]}
}


def data(*ids: int) -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.int64()), "v": pa.array([str(i) for i in ids], pa.string())})


def test_no_table_means_no_state(make_writer: MakeWriter) -> None:
    assert make_writer().state(ORDERS) is None


def test_state_round_trips_through_the_snapshot_summary(make_writer: MakeWriter) -> None:
    writer = make_writer()
    info = run(writer, ORDERS, data(1, 2), "r1", state=STATE)

    assert make_writer().state(ORDERS) == STATE  # a fresh writer, as the next run would have
    summary = table_of(writer, ORDERS).current_snapshot().summary
    assert summary["dativo.run-id"] == "r1"
    assert summary["dativo.job"] == "t"
    assert json.loads(summary["dativo.state"]) == STATE
    assert info.commit_id == str(table_of(writer, ORDERS).current_snapshot().snapshot_id)


def test_a_commit_without_state_records_none(make_writer: MakeWriter) -> None:
    writer = make_writer()
    run(writer, ORDERS, data(1), "r1", state=STATE)
    run(writer, ORDERS, data(2), "r2", mode="overwrite", state=None)

    assert writer.state(ORDERS) is None


def test_second_commit_of_the_same_run_is_a_no_op(make_writer: MakeWriter) -> None:
    writer = make_writer()
    writer.prepare(ORDERS, data(1).schema, "append")
    files = write(writer, ORDERS, data(1, 2, 3))

    first = writer.commit(ORDERS, [files], STATE, "run-42")
    again = make_writer().commit(ORDERS, [files], STATE, "run-42")

    assert not first.no_op and first.rows == 3
    assert again.no_op and again.commit_id == first.commit_id
    assert read(writer, ORDERS).column("id").to_pylist() == [1, 2, 3]
    assert len(table_of(writer, ORDERS).snapshots()) == 1


def test_a_rerun_is_a_no_op_even_after_later_commits(make_writer: MakeWriter) -> None:
    writer = make_writer()
    first = run(writer, ORDERS, data(1), "r1")
    run(writer, ORDERS, data(2), "r2")

    again = run(writer, ORDERS, data(1), "r1")

    assert again.no_op and again.commit_id == first.commit_id
    assert read(writer, ORDERS).column("id").to_pylist() == [1, 2]


def test_state_skips_snapshots_of_other_writers(make_writer: MakeWriter) -> None:
    ours = make_writer(job="orders_job")
    other = make_writer(job="backfill_job")
    run(ours, ORDERS, data(1), "r1", state=STATE)
    run(other, ORDERS, data(2), "b1", state={"cursor": "other"})
    foreign = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("v", pa.string())])
    table_of(ours, ORDERS).append(pa.table({"id": [3], "v": ["3"]}, schema=foreign))  # not a Dativo writer

    assert ours.state(ORDERS) == STATE
    assert other.state(ORDERS) == {"cursor": "other"}


def test_the_same_run_id_in_another_job_still_commits(make_writer: MakeWriter) -> None:
    run(make_writer(job="a"), ORDERS, data(1), "shared-id")

    info = run(make_writer(job="b"), ORDERS, data(2), "shared-id")

    assert not info.no_op
    assert read(make_writer(), ORDERS).column("id").to_pylist() == [1, 2]


def test_rolling_the_table_back_rolls_the_state_back(make_writer: MakeWriter) -> None:
    writer = make_writer()
    first = run(writer, ORDERS, data(1), "r1", state={"cursor": 1})
    run(writer, ORDERS, data(2), "r2", state={"cursor": 2})

    table = table_of(writer, ORDERS)
    table.manage_snapshots().rollback_to_snapshot(int(first.commit_id)).commit()

    assert writer.state(ORDERS) == {"cursor": 1}
    again = run(writer, ORDERS, data(2), "r2", state={"cursor": 2})  # r2 is no longer in the ancestry
    assert not again.no_op
    assert writer.state(ORDERS) == {"cursor": 2}
