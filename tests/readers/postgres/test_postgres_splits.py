"""Planning: key-range splits, one consistent snapshot for all splits, incremental reads after a watermark."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import pyarrow as pa
import pytest

from dativo.errors import ConfigError
from dativo.state import Watermark, WatermarkTracker
from tests.fixtures.postgres import PgSchema
from tests.readers.postgres.helpers import read_all, read_split

UTC = dt.UTC


@pytest.fixture
def numbers(pg_schema: PgSchema) -> PgSchema:
    """1000 rows with gaps in the key: ids 1, 3, 5 … 1999 and a dense block 5000..5099."""
    pg_schema.execute("CREATE TABLE numbers (id bigint PRIMARY KEY, label text)")
    pg_schema.execute(
        "INSERT INTO numbers SELECT i, 'n' || i FROM generate_series(1, 1999, 2) i "
        "UNION ALL SELECT i, 'n' || i FROM generate_series(5000, 5099) i"
    )
    return pg_schema


def all_ids(schema: PgSchema) -> list[int]:
    return [r[0] for r in schema.execute("SELECT id FROM numbers ORDER BY id")]


@pytest.mark.parametrize("analyze", [True, False], ids=["with-stats", "no-stats"])
@pytest.mark.parametrize("parallelism", [1, 3, 8])
def test_parallel_splits_cover_every_row_exactly_once(
    numbers: PgSchema, reader_cls, make_reader, parallelism: int, analyze: bool
) -> None:
    if analyze:
        numbers.execute("ANALYZE numbers")
    reader = make_reader(reader_cls, numbers.dsn, tables=[numbers.table("numbers")], parallelism=parallelism)
    [dataset] = reader.discover()
    splits = reader.plan(dataset, None)
    assert len(splits) == parallelism
    assert len({s.id for s in splits}) == parallelism
    for split in splits:
        assert json.loads(json.dumps(dict(split.params))) == dict(split.params)

    per_split = [read_split(reader, s, dataset.schema)["id"].to_pylist() for s in splits]
    counts = Counter(i for ids in per_split for i in ids)
    assert sorted(counts) == all_ids(numbers)
    assert set(counts.values()) == {1}
    if analyze:
        # The histogram puts the cuts where the rows are, despite the gap 2000..5000 in the keys.
        sizes = [len(ids) for ids in per_split]
        assert min(sizes) >= 0.5 * len(counts) / parallelism, sizes


def test_no_integer_key_means_one_split(pg_schema: PgSchema, reader_cls, make_reader) -> None:
    pg_schema.execute("CREATE TABLE composite (a int, b int, PRIMARY KEY (a, b))")
    pg_schema.execute("CREATE TABLE texts (k text PRIMARY KEY)")
    pg_schema.execute("CREATE TABLE nokey (v int)")
    tables = [pg_schema.table(n) for n in ("composite", "texts", "nokey")]
    reader = make_reader(reader_cls, pg_schema.dsn, tables=tables, parallelism=4)
    for dataset in reader.discover():
        assert len(reader.plan(dataset, None)) == 1


def test_tiny_key_span_caps_the_number_of_splits(pg_schema: PgSchema, reader_cls, make_reader) -> None:
    pg_schema.execute("CREATE TABLE two (id int PRIMARY KEY)")
    pg_schema.execute("INSERT INTO two VALUES (7), (8)")
    reader = make_reader(reader_cls, pg_schema.dsn, tables=[pg_schema.table("two")], parallelism=16)
    [dataset] = reader.discover()
    assert len(reader.plan(dataset, None)) == 2
    assert sorted(read_all(reader)["id"].to_pylist()) == [7, 8]


def test_all_splits_read_the_snapshot_taken_at_plan(numbers: PgSchema, reader_cls, make_reader) -> None:
    before = all_ids(numbers)
    reader = make_reader(reader_cls, numbers.dsn, tables=[numbers.table("numbers")], parallelism=3)
    [dataset] = reader.discover()
    splits = reader.plan(dataset, None)

    # Another session changes every range after planning, and commits.
    numbers.execute("INSERT INTO numbers VALUES (0, 'new'), (2, 'new'), (999999, 'new')")
    numbers.execute("DELETE FROM numbers WHERE id IN (1, 1001, 5050)")
    numbers.execute("UPDATE numbers SET label = 'changed'")

    tables = [read_split(reader, s, dataset.schema) for s in splits]
    seen = pa.concat_tables(tables)
    assert sorted(seen["id"].to_pylist()) == before
    assert set(seen["label"].to_pylist()) != {"changed"}
    assert "changed" not in seen["label"].to_pylist()


@pytest.fixture
def events(pg_schema: PgSchema) -> PgSchema:
    pg_schema.execute("CREATE TABLE events (id int PRIMARY KEY, updated_at timestamptz, v text)")
    pg_schema.execute(
        """INSERT INTO events VALUES
           (1, '2024-01-01 00:00+00', 'a'), (2, '2024-01-02 00:00+00', 'b'), (3, '2024-01-02 00:00+00', 'c'),
           (4, '2024-01-02 00:00+00', 'd'), (5, '2024-01-03 00:00+00', 'e'), (6, NULL, 'no cursor')"""
    )
    return pg_schema


def state_after(schema: pa.Schema, value: dt.datetime, key: int) -> dict:
    return Watermark("updated_at", value, ("id",), (key,)).to_state(schema)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_incremental_reads_only_rows_after_the_watermark(
    events: PgSchema, reader_cls, make_reader, parallelism
) -> None:
    reader = make_reader(
        reader_cls, events.dsn, tables=[events.table("events")], cursor="updated_at", parallelism=parallelism
    )
    [dataset] = reader.discover()
    assert dataset.schema is not None

    # First run: no state, everything, including the row whose cursor is NULL.
    assert sorted(read_all(reader)["id"].to_pylist()) == [1, 2, 3, 4, 5, 6]

    # The watermark sits in the middle of three rows that share a cursor value: the key breaks the tie.
    state = state_after(dataset.schema, dt.datetime(2024, 1, 2, tzinfo=UTC), 3)
    assert json.loads(json.dumps(state)) == state
    assert sorted(read_all(reader, state)["id"].to_pylist()) == [4, 5]

    # At the very end: nothing left; the NULL-cursor row is never read again.
    state = state_after(dataset.schema, dt.datetime(2024, 1, 3, tzinfo=UTC), 5)
    assert read_all(reader, state).num_rows == 0


def test_incremental_runs_chain_with_the_engine_tracker(events: PgSchema, reader_cls, make_reader) -> None:
    def run(state: dict | None) -> tuple[list[int], dict | None]:
        reader = make_reader(reader_cls, events.dsn, tables=[events.table("events")], cursor="updated_at")
        [dataset] = reader.discover()
        tracker = WatermarkTracker("updated_at", dataset.primary_key)
        ids: list[int] = []
        for split in reader.plan(dataset, state):
            for batch in reader.read(split):
                tracker.observe(batch)
                ids += batch.column("id").to_pylist()
        reader.close()
        watermark = tracker.watermark()
        return sorted(ids), watermark.to_state(dataset.schema) if watermark else state

    ids, state = run(None)
    assert ids == [1, 2, 3, 4, 5, 6]
    events.execute(
        "INSERT INTO events VALUES (7, '2024-01-03 00:00+00', 'tie'), (8, '2024-02-01 00:00+00', 'later')"
    )
    events.execute("UPDATE events SET updated_at = '2024-03-01 00:00+00', v = 'edited' WHERE id = 1")
    ids, state = run(state)
    assert ids == [1, 7, 8]
    ids, state = run(state)
    assert ids == []


def test_incremental_cursor_must_be_a_column(events: PgSchema, reader_cls, make_reader) -> None:
    reader = make_reader(reader_cls, events.dsn, tables=[events.table("events")], cursor="changed_at")
    [dataset] = reader.discover()
    with pytest.raises(ConfigError, match=r"'changed_at' is not a column of .*events.*updated_at"):
        reader.plan(dataset, None)


def test_state_for_another_cursor_is_refused(events: PgSchema, reader_cls, make_reader) -> None:
    reader = make_reader(reader_cls, events.dsn, tables=[events.table("events")], cursor="id")
    [dataset] = reader.discover()
    assert dataset.schema is not None
    with pytest.raises(ConfigError, match="tracks cursor 'updated_at'"):
        reader.plan(dataset, state_after(dataset.schema, dt.datetime(2024, 1, 1, tzinfo=UTC), 1))


def test_incremental_query(events: PgSchema, reader_cls, make_reader) -> None:
    reader = make_reader(
        reader_cls, events.dsn, query=f"SELECT id, updated_at FROM {events.name}.events", cursor="updated_at"
    )
    [dataset] = reader.discover()
    assert dataset.schema is not None
    state = Watermark("updated_at", dt.datetime(2024, 1, 2, tzinfo=UTC)).to_state(dataset.schema)
    assert read_all(reader, state)["id"].to_pylist() == [5]
