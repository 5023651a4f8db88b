"""The built-in file readers: csv, jsonl and parquet over files, directories, globs and lists."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dativo.api import Context, Reader
from dativo.errors import ConfigError
from dativo.readers.files import balance, expand
from dativo.registry import resolve
from tests.conftest import read_parquet_dir

UTC = dt.timezone.utc


def make_reader(kind: str, parallelism: int = 1, **settings: Any) -> Reader:
    """A built-in reader configured as a job's ``source`` section would configure it."""
    spec = resolve("reader", kind)
    config = spec.build_config(settings, {}, section="source")
    ctx = Context(job="items", run_id="r1", plugin=kind, logger=logging.getLogger("test"), parallelism=parallelism)
    return spec.cls(config, ctx)


def read_all(reader: Reader) -> pa.Table:
    reader.check()
    (dataset,) = reader.discover()
    splits = reader.plan(dataset, None)
    tables = [pa.RecordBatchReader.from_stream(reader.read(split)).read_all() for split in splits]
    return pa.concat_tables(tables)


def write_csvs(folder: Path, counts: dict[str, int]) -> None:
    """CSV files of ``id,name`` with globally unique ids."""
    next_id = 0
    for name, count in counts.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["id,name"] + [f"{next_id + i},{name}-{i}" for i in range(count)]
        path.write_text("\n".join(lines) + "\n")
        next_id += count


# --- csv ---------------------------------------------------------------------------------------------


def test_csv_types_nulls_and_unicode(workdir: Path) -> None:
    table = read_all(make_reader("csv", path="data/orders.csv"))
    assert table.schema == pa.schema([
        ("id", pa.int64()), ("customer", pa.string()), ("amount", pa.float64()),
        ("updated_at", pa.timestamp("s", tz="UTC")),
    ])
    assert table.to_pydict() == {
        "id": [1, 2, 3],
        "customer": ["Ann", "Bø 😀", None],
        "amount": [10.5, 20.0, None],
        "updated_at": [dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=UTC),
                       dt.datetime(2024, 1, 2, tzinfo=UTC)],
    }


def test_csv_column_types(workdir: Path) -> None:
    reader = make_reader(
        "csv", path="data/orders.csv",
        column_types={"amount": "decimal128(12, 2)", "id": "int32", "updated_at": "timestamp[ms, tz=UTC]"},
    )
    table = read_all(reader)
    assert table.schema.field("amount").type == pa.decimal128(12, 2)
    assert table.schema.field("id").type == pa.int32()
    assert table.schema.field("updated_at").type == pa.timestamp("ms", tz="UTC")
    assert table.column("amount").to_pylist() == [Decimal("10.50"), Decimal("20.00"), None]


def test_csv_dialect_options(workdir: Path) -> None:
    (workdir / "data" / "semi.txt").write_text("1;'a;b';NA\n2;'c';7\n", encoding="latin-1")
    reader = make_reader(
        "csv", path="data/semi.txt", delimiter=";", quote_char="'", header=False,
        column_names=["id", "label", "score"], null_values=["NA"],
    )
    assert read_all(reader).to_pydict() == {"id": [1, 2], "label": ["a;b", "c"], "score": [None, 7]}


def test_csv_encoding(workdir: Path) -> None:
    (workdir / "data" / "latin.csv").write_bytes("id,name\n1,Bjørn\n".encode("latin-1"))
    assert read_all(make_reader("csv", path="data/latin.csv", encoding="latin-1")).column("name").to_pylist() == ["Bjørn"]


def test_csv_batches_are_bounded(workdir: Path) -> None:
    write_csvs(workdir / "data", {"big.csv": 1000})
    reader = make_reader("csv", path="data/big.csv", batch_size=100)
    (dataset,) = reader.discover()
    batches = list(reader.read(reader.plan(dataset, None)[0]))
    assert sum(b.num_rows for b in batches) == 1000
    assert max(b.num_rows for b in batches) <= 100


# --- jsonl and parquet -------------------------------------------------------------------------------


def test_jsonl(workdir: Path) -> None:
    rows = [{"id": 1, "name": "a", "tags": ["x"]}, {"id": 2, "name": None, "tags": []}]
    (workdir / "data" / "items.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    table = read_all(make_reader("jsonl", path="data/items.jsonl"))
    assert table.to_pylist() == rows
    assert table.schema.field("tags").type == pa.list_(pa.string())
    typed = read_all(make_reader("jsonl", path="data/items.jsonl", column_types={"id": "int16"}))
    assert typed.schema.field("id").type == pa.int16() and typed.column("id").to_pylist() == [1, 2]


def test_parquet(workdir: Path) -> None:
    source = pa.table({"id": pa.array([1, 2], pa.int64()), "amount": [1.5, 2.25]})
    pq.write_table(source, workdir / "data" / "a.parquet")
    assert read_all(make_reader("parquet", path="data/a.parquet")).equals(source)
    typed = read_all(make_reader("parquet", path="data/a.parquet", column_types={"amount": "decimal128(10, 2)"}))
    assert typed.column("amount").to_pylist() == [Decimal("1.50"), Decimal("2.25")]


# --- paths -------------------------------------------------------------------------------------------


def test_glob_directory_and_list(workdir: Path) -> None:
    data = workdir / "lake"
    write_csvs(data, {"a.csv": 2, "b.csv": 3, "sub/c.csv": 4, "sub/deeper/d.csv": 1, ".hidden.csv": 50})
    (data / "notes.md").write_text("not data\n")

    def ids(path: Any) -> list[int]:
        return sorted(read_all(make_reader("csv", path=path)).column("id").to_pylist())

    assert ids("lake/*.csv") == list(range(5))
    assert ids("lake/**/*.csv") == list(range(10))
    assert ids(["lake/a.csv", "lake/sub/*.csv"]) == [0, 1, 5, 6, 7, 8]
    write_csvs(data / "_tmp", {"_staging.csv": 50, "e.csv": 50})
    write_csvs(data / ".git", {"f.csv": 50})
    assert ids("lake") == list(range(10))  # a directory: recursive, without hidden, _private or other files
    assert ids(str(data) + "/") == list(range(10))


def test_expand_and_balance(workdir: Path) -> None:
    write_csvs(workdir / "d", {"a.csv": 1, "b.csv": 100, "c.csv": 10, "d.csv": 50, "x.tsv": 1})
    files = expand("d", (".csv",))
    assert files == [os.path.join("d", n) for n in ("a.csv", "b.csv", "c.csv", "d.csv")]
    assert expand(["nowhere/*.csv", "missing.csv"], (".csv",)) == []
    groups = balance(files, 2)
    assert sorted(f for g in groups for f in g) == files
    assert [os.path.join("d", "b.csv")] in groups  # the big file alone, the small ones together
    assert balance(files, 10) == [[f] for f in sorted(files, key=lambda f: -os.path.getsize(f))]
    assert all(g == sorted(g) for g in balance(files, 2))


def test_plan_covers_every_file_once(workdir: Path) -> None:
    write_csvs(workdir / "data", {f"part-{i}.csv": 10 * (i + 1) for i in range(7)})
    reader = make_reader("csv", parallelism=3, path="data/part-*.csv")
    (dataset,) = reader.discover()
    splits = reader.plan(dataset, None)
    assert [s.id for s in splits] == ["0", "1", "2"]
    files = [f for s in splits for f in s.params["files"]]
    assert sorted(files) == sorted(expand("data/part-*.csv", (".csv",))) and len(set(files)) == 7
    assert sorted(read_all(reader).column("id").to_pylist()) == list(range(280))


def test_parallel_files_through_the_engine(workdir: Path, write_job, cli) -> None:
    write_csvs(workdir / "data", {f"p{i}.csv": 100 + i for i in range(6)})
    job = write_job(
        """\
        version: 1
        name: parts
        source: {type: csv, path: "data/p*.csv", parallelism: 4}
        target: {type: parquet, path: out/parts}
        """
    )
    result = cli("run", str(job), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["datasets"][0]["splits"] == 4 and report["rows_written"] == 615
    assert sorted(read_parquet_dir(workdir / "out" / "parts").column("id").to_pylist()) == list(range(615))


# --- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["nowhere/*.csv", "missing.csv", "data/*.jsonl", "empty_dir"])
def test_no_matching_files_is_a_config_error(workdir: Path, path: str) -> None:
    (workdir / "empty_dir").mkdir()
    reader = make_reader("csv", path=path)
    with pytest.raises(ConfigError) as caught:
        reader.check()
    assert f"source.path {path!r} matches no files (relative paths start at {workdir})" in str(caught.value)
    assert caught.value.hint == "Check the path or glob."
    with pytest.raises(ConfigError):
        reader.discover()


def test_bad_column_type_is_a_config_error(workdir: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        make_reader("csv", path="data/orders.csv", column_types={"amount": "money"})
    assert "source.column_types: column 'amount': 'money' is not an Arrow type" in str(caught.value)
    assert "decimal128(12, 2)" in str(caught.value)


def test_column_types_for_a_missing_column(workdir: Path) -> None:
    reader = make_reader("csv", path="data/orders.csv", column_types={"amout": "float64"})
    with pytest.raises(ConfigError, match="source.column_types names 'amout', which is not a column of data/orders.csv"):
        reader.discover()


def test_unknown_reader_key(workdir: Path) -> None:
    with pytest.raises(ConfigError, match="source.delimeter: unknown key; did you mean 'delimiter'?"):
        make_reader("csv", path="data/orders.csv", delimeter=";")
    with pytest.raises(ConfigError, match="source.delimiter: unknown key"):
        make_reader("jsonl", path="data/orders.csv", delimiter=";")
