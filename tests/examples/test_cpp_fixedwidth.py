"""``cpp_fixedwidth`` (examples/plugins/cpp_fixedwidth): the C++ fixed-width reader, checked against pyarrow.

Every test renders a pyarrow table as fixed-width text and expects the plugin to read back exactly that table.
The library is built by ``make plugins-cpp`` (``make test`` does it first); these tests fail, not skip, when
it is missing or older than its sources.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import shutil
import textwrap
import tomllib
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dativo.api import Context, Dataset, Split
from dativo.config import NativeLibrary
from dativo.errors import ConfigError, PluginFailed
from dativo.plugins.native import NativeOptions, NativeReader, library
from dativo.registry import resolve
from tests.conftest import Result

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plugins" / "cpp_fixedwidth"
LIB = EXAMPLE / "build" / "libdativo_fixedwidth.so"
PACKAGED = EXAMPLE / "dativo_fixedwidth" / "libdativo_fixedwidth.so"
SOURCES = [EXAMPLE / "src" / "fixedwidth.cpp", ROOT / "sdk" / "cpp" / "dativo_plugin.h", EXAMPLE / "Makefile"]


@pytest.fixture(scope="module", autouse=True)
def _built() -> None:
    for lib in (LIB, PACKAGED):
        if not lib.is_file():
            pytest.fail(f"{lib.relative_to(ROOT)} is not built; run `make plugins-cpp`")
        stale = [s.name for s in SOURCES if s.stat().st_mtime > lib.stat().st_mtime]
        if stale:
            pytest.fail(f"{lib.relative_to(ROOT)} is older than {', '.join(stale)}; run `make plugins-cpp`")


# --- rendering pyarrow tables as fixed-width text ---------------------------------------------------------

# (name, width, type in the job file, Arrow type); widths are at their edges in the data below
LAYOUT = [
    ("id", 20, "int64", pa.int64()),
    ("flag", 1, "bool", pa.bool_()),
    ("name", 12, "string", pa.string()),
    ("small", 11, "int32", pa.int32()),
    ("amount", 40, "decimal128(38, 10)", pa.decimal128(38, 10)),
    ("ratio", 24, "float64", pa.float64()),
    ("day", 10, "date32", pa.date32()),
    ("mark", 1, "string", pa.string()),
    ("tail", 5, "string", pa.string()),
]
NAMES = ["Ann", "Bø Østergår", "山田 太郎", "Zoë", "e\u0301clair", "Acme Ltd 😀", "x", "twelve chars", "😀😀😀😀😀😀😀😀😀😀😀😀",
         "Ölaf-Mañana", "ß", "a b c"]
MARKS = ["é", "😀", "x", "-", "山"]


def columns(layout: list[tuple[str, int, str, pa.DataType]] = LAYOUT) -> list[dict[str, Any]]:
    """The job's ``columns`` for a layout (``id`` is declared NOT NULL)."""
    return [{"name": n, "width": w, "type": t, **({"nullable": False} if n == "id" else {})} for n, w, t, _ in layout]


def schema(layout: list[tuple[str, int, str, pa.DataType]] = LAYOUT) -> pa.Schema:
    return pa.schema([pa.field(n, a, nullable=n != "id") for n, _, _, a in layout])


def sample(rows: int, *, seed: int = 7, ascii_only: bool = False) -> pa.Table:
    """Random rows with NULLs, unicode, negative numbers and values that fill their columns exactly."""
    rng = random.Random(seed)
    maybe = lambda value: None if rng.random() < 0.12 else value  # noqa: E731
    edge_ids = [-(2**63), 2**63 - 1, 0, -1]
    data: dict[str, list[Any]] = {name: [] for name, *_ in LAYOUT}
    for i in range(rows):
        data["id"].append(edge_ids[i] if i < len(edge_ids) else rng.randint(-(10**15), 10**15))
        data["flag"].append(maybe(rng.random() < 0.5))
        name = rng.choice(NAMES)
        data["name"].append(maybe(name.encode("ascii", "replace").decode() if ascii_only else name))
        data["small"].append(maybe(rng.choice([-(2**31), 2**31 - 1, rng.randint(-999, 999)])))
        digits = rng.randint(0, 28)
        whole = rng.randint(0, 10**digits - 1) if digits else 0
        amount = Decimal(f"{'-' if rng.random() < 0.4 else ''}{whole}.{rng.randint(0, 10**10 - 1):010d}")
        data["amount"].append(maybe(amount))
        data["ratio"].append(maybe(rng.choice([rng.uniform(-1e6, 1e6), -1.7976931348623157e308, 5e-324, 0.1, -0.0])))
        data["day"].append(maybe(rng.choice([dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(1969, 12, 31),
                                             dt.date(2000, 2, 29), dt.date.fromordinal(rng.randint(1, 3_652_059))])))
        data["mark"].append(maybe("x" if ascii_only else rng.choice(MARKS)))
        data["tail"].append(maybe(rng.choice(["ab", "fivec", "z"])))
    return pa.table(data, schema=schema())


def cell(value: Any, name: str, row: int) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.date):
        return value.isoformat() if row % 2 else value.strftime("%Y%m%d").zfill(8)
    return str(value)


def render(table: pa.Table, layout: list[tuple[str, int, str, pa.DataType]] = LAYOUT, *,
           header: bool = False, bytes_units: bool = False, newline: str = "\n") -> bytes:
    """The table as fixed-width text: numbers right-aligned, text left-aligned, trailing blanks cut."""
    size = (lambda s: len(s.encode())) if bytes_units else len
    lines = ["".join(name.upper()[:width].ljust(width) for name, width, *_ in layout)] if header else []
    for row, values in enumerate(table.to_pylist()):
        line = ""
        for name, width, type_text, _ in layout:
            text = cell(values[name], name, row)
            assert size(text) <= width, (name, text)
            pad = " " * (width - size(text))
            line += pad + text if type_text not in ("string", "bool") else text + pad
        lines.append(line.rstrip())  # short lines: the missing columns are null
    return (newline.join(lines) + newline).encode()


# --- driving the reader ----------------------------------------------------------------------------------


@pytest.fixture
def reader() -> Iterator[Callable[..., NativeReader]]:
    """``reader(parallelism=1, **settings)``: the plugin configured like a job's source section.

    The options go to the library as they are (the host's check of its declared schema is skipped), so these
    tests see the library's own checks, which a Dativo that does not read the schema relies on.
    """
    made: list[NativeReader] = []

    def make(parallelism: int = 1, options: dict[str, Any] | None = None, **settings: Any) -> NativeReader:
        cls = library(LIB)
        ctx = Context(job="fw", run_id="r", plugin="fixedwidth", logger=logging.getLogger("t"),
                      settings=settings, parallelism=parallelism)
        instance = cls(NativeOptions.model_validate(options or {}), ctx)
        made.append(instance)
        return instance

    yield make
    for instance in made:
        instance.close()


def read(reader: NativeReader) -> tuple[pa.Table, list[Split]]:
    """Check, discover, plan and read every split, in order."""
    reader.check()
    (dataset,) = reader.discover()
    splits = reader.plan(dataset, None)
    tables = [reader.read(split).read_all() for split in splits]
    return pa.concat_tables(tables), splits


def test_output_equals_the_pyarrow_table(tmp_path: Path, reader) -> None:
    table = sample(500)
    (tmp_path / "data.txt").write_bytes(render(table, header=True))
    got, splits = read(reader(path=str(tmp_path / "data.txt"), columns=columns(), skip_lines=1))
    assert len(splits) == 1
    assert got.schema.equals(schema()), got.schema
    assert got.equals(table), _first_difference(got, table)
    assert got.column("name").null_count > 0 and got.column("amount").null_count > 0


def _first_difference(got: pa.Table, want: pa.Table) -> str:
    for i, (a, b) in enumerate(zip(got.to_pylist(), want.to_pylist(), strict=False)):
        if a != b:
            return f"row {i}: got {a}, want {b}"
    return f"{got.num_rows} rows, want {want.num_rows}"


def test_widths_in_bytes(tmp_path: Path, reader) -> None:
    table = sample(200, seed=3)
    layout = [(n, w * 4 if t == "string" else w, t, a) for n, w, t, a in LAYOUT]  # room for 4-byte characters
    (tmp_path / "data.txt").write_bytes(render(table, layout, bytes_units=True))
    got, _ = read(reader(path=str(tmp_path / "data.txt"), columns=columns(layout), units="bytes"))
    assert got.equals(table), _first_difference(got, table)


def test_crlf_and_a_last_line_without_newline(tmp_path: Path, reader) -> None:
    table = sample(50, seed=5)
    (tmp_path / "data.txt").write_bytes(render(table, newline="\r\n").removesuffix(b"\r\n"))
    got, _ = read(reader(path=str(tmp_path / "data.txt"), columns=columns()))
    assert got.equals(table), _first_difference(got, table)


def test_trim_and_null_values(tmp_path: Path, reader) -> None:
    (tmp_path / "data.txt").write_text("  a  NULL 7\n  b     -  \n", encoding="utf-8")
    layout = [{"name": "s", "width": 5}, {"name": "t", "width": 5}, {"name": "n", "width": 3, "type": "int32"}]
    both, _ = read(reader(path=str(tmp_path / "data.txt"), columns=layout, null_values=["NULL", "-", ""]))
    assert both.to_pydict() == {"s": ["a", "b"], "t": [None, None], "n": [7, None]}
    right, _ = read(reader(path=str(tmp_path / "data.txt"), columns=layout, trim="right"))
    assert right.to_pydict() == {"s": ["  a", "  b"], "t": ["NULL", "   -"], "n": [7, None]}
    none, _ = read(reader(path=str(tmp_path / "data.txt"), columns=layout, trim="none"))
    assert none.column("s").to_pylist() == ["  a  ", "  b  "]
    with pytest.raises(PluginFailed, match=r"line 2, column 'n' \(characters 11-13\): '' is not an int32"):
        read(reader(path=str(tmp_path / "data.txt"), columns=layout, null_values=[]))  # nothing is null


def test_explicit_starts_skip_filler(tmp_path: Path, reader) -> None:
    (tmp_path / "data.txt").write_text("0042XXXXhello\n0043XXXXworld\n", encoding="utf-8")
    layout = [{"name": "word", "start": 8, "width": 5}, {"name": "id", "start": 0, "width": 4, "type": "int64"}]
    got, _ = read(reader(path=str(tmp_path / "data.txt"), columns=layout))
    assert got.to_pydict() == {"word": ["hello", "world"], "id": [42, 43]}


# --- splits ---------------------------------------------------------------------------------------------


def test_every_cut_point_reads_every_line_once(tmp_path: Path, reader) -> None:
    table = sample(12, seed=11)
    data = render(table, newline="\r\n") + b"\n\n"  # blank lines at the end carry no record
    (tmp_path / "data.txt").write_bytes(data)
    fw = reader(path=str(tmp_path / "data.txt"), columns=columns())
    file = str(tmp_path / "data.txt")
    for cut in range(len(data) + 1):
        parts = [fw.read(Split("fw", str(i), {"ranges": [{"file": file, "start": a, "end": b}]})).read_all()
                 for i, (a, b) in enumerate([(0, cut), (cut, len(data))])]
        got = pa.concat_tables(parts)
        assert got.equals(table), f"cut at byte {cut}: {_first_difference(got, table)}"


@pytest.mark.parametrize("parallelism", [2, 3, 8])
def test_parallel_splits_give_the_same_rows(tmp_path: Path, reader, parallelism: int) -> None:
    tables = [sample(300, seed=s) for s in (1, 2, 3)]
    for i, table in enumerate(tables):
        (tmp_path / f"part-{i}.txt").write_bytes(render(table, header=True))
    (tmp_path / "empty.txt").write_bytes(render(sample(0), header=True))
    settings = {"path": str(tmp_path / "*.txt"), "columns": columns(), "skip_lines": 1}
    one, single = read(reader(**settings))
    many, splits = read(reader(parallelism, options={"min_split_bytes": 1}, **settings))
    assert len(single) == 1 and len(splits) >= parallelism
    assert one.equals(pa.concat_tables(tables))
    assert many.equals(one)  # splits are planned in file and byte order


def test_memory_stays_flat_batch_by_batch(tmp_path: Path, reader) -> None:
    (tmp_path / "data.txt").write_bytes(render(sample(1000, seed=2)))
    fw = reader(path=str(tmp_path / "data.txt"), columns=columns(), options={"batch_size": 64})
    (dataset,) = fw.discover()
    (split,) = fw.plan(dataset, None)
    sizes = [batch.num_rows for batch in fw.read(split)]
    assert sizes == [64] * 15 + [40]


# --- errors ---------------------------------------------------------------------------------------------


def record(n: str, d: str, day: str, ok: str) -> str:
    """One line of the layout below: n int64 (6, NOT NULL), d decimal128(5, 2) (8), day date32 (8), ok bool (1)."""
    return f"{n:>6}{d:>8}{day:<8}{ok}"


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        (("12x", "1.50", "20240101", "Y"), "column 'n' (characters 1-6): '12x' is not an int64"),
        (("1", "1.234", "20240101", "Y"), "column 'd' (characters 7-14): '1.234' has more than 2 decimal places"),
        (("1", "9999.99", "20240101", "Y"), "column 'd' (characters 7-14): '9999.99' does not fit decimal128(5, 2)"),
        (("1", "-1.2", "20230229", "Y"),
         "column 'day' (characters 15-22): '20230229' is not a date (YYYY-MM-DD or YYYYMMDD)"),
        (("1", "1.2", "20230228", "m"), "column 'ok' (characters 23-23): 'm' is not a boolean"),
        (("", "1.2", "20240101", "Y"),
         "column 'n' (characters 1-6): the value is empty (or a null value) but the column is declared nullable: false"),
    ],
)
def test_a_bad_value_names_file_line_and_column(tmp_path: Path, reader, fields: tuple[str, ...], needle: str) -> None:
    good = record("1", "-1.50", "20240101", "Y")
    lines = ["HEADER", good, good, good, record(*fields), good]
    (tmp_path / "bad.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    layout = [{"name": "n", "width": 6, "type": "int64", "nullable": False},
              {"name": "d", "width": 8, "type": "decimal128(5, 2)"},
              {"name": "day", "width": 8, "type": "date32"}, {"name": "ok", "width": 1, "type": "bool"}]
    with pytest.raises(PluginFailed) as caught:
        read(reader(path=str(tmp_path / "bad.txt"), columns=layout, skip_lines=1))
    message = str(caught.value)
    assert f"{tmp_path / 'bad.txt'} line 5, {needle}" in message, message
    assert (caught.value.role, caught.value.stage) == ("reader", "read")


def test_a_bad_line_in_a_later_split_has_its_real_line_number(tmp_path: Path, reader) -> None:
    lines = [f"{i:>6}" for i in range(1, 2001)]
    lines[1733] = "  oops"
    (tmp_path / "bad.txt").write_text("\n".join(lines) + "\n")
    fw = reader(4, path=str(tmp_path / "bad.txt"), columns=[{"name": "n", "width": 6, "type": "int64"}],
                options={"min_split_bytes": 1})
    (dataset,) = fw.discover()
    splits = fw.plan(dataset, None)
    assert len(splits) == 4
    list(fw.read(splits[0]))
    with pytest.raises(PluginFailed, match=r"bad.txt line 1734, column 'n' \(characters 1-6\): 'oops' is not an int64"):
        list(fw.read(splits[3]))


def test_invalid_utf8_is_reported(tmp_path: Path, reader) -> None:
    (tmp_path / "bad.txt").write_bytes(b"ok   1\n\xff\xfe   2\n")
    layout = [{"name": "s", "width": 5}, {"name": "n", "width": 1, "type": "int64"}]
    with pytest.raises(PluginFailed, match=r"bad.txt line 2: invalid UTF-8 at byte 1 of the line"):
        read(reader(path=str(tmp_path / "bad.txt"), columns=layout))
    with pytest.raises(PluginFailed, match=r"line 2, column 's' \(bytes 1-5\): the value is not valid UTF-8"):
        read(reader(path=str(tmp_path / "bad.txt"), columns=layout, units="bytes"))


@pytest.mark.parametrize(
    ("settings", "options", "needle"),
    [
        ({"colums": []}, {}, "source.colums: unknown key; did you mean 'columns'?"),
        ({}, {"batch_sise": 5}, "source.reader.options.batch_sise: unknown key; did you mean 'batch_size'?"),
        ({"path": None}, {}, "source.path must be a list of strings, not null"),
        ({"columns": None}, {}, "source.columns must be a non-empty list of {name, width, type} mappings"),
        ({"columns": [{"name": "a", "width": 0}]}, {}, "source.columns[0].width must be between 1 and 1048576 (got 0)"),
        ({"columns": [{"name": "a", "width": 2, "type": "int65"}]}, {},
         "source.columns[0].type: unknown type 'int65'; use one of string, int32, int64"),
        ({"columns": [{"name": "a", "width": 2, "type": "decimal128(40, 2)"}]}, {},
         "source.columns[0].type: decimal128 needs 1 <= precision <= 38"),
        ({"columns": [{"name": "a", "width": 2, "widht": 3}]}, {},
         "source.columns[0].widht: unknown key; did you mean 'width'?"),
        ({"columns": [{"name": "a", "width": 2}, {"name": "a", "width": 1}]}, {},
         "source.columns[1].name: column 'a' is defined twice"),
        ({"primary_key": ["b"]}, {}, "source.primary_key: 'b' is not one of the columns"),
        ({}, {"units": "words"}, "source.reader.options.units must be chars or bytes (got 'words')"),
    ],
)
def test_configuration_errors_name_the_key(reader, settings, options, needle) -> None:
    base = {"path": "data.txt", "columns": [{"name": "a", "width": 2}]}
    with pytest.raises(ConfigError) as caught:
        reader(options=options, **{**base, **settings})
    assert f"the native reader refused its configuration: {needle}" in str(caught.value), str(caught.value)
    assert caught.value.exit_code == 2


def test_a_path_that_matches_nothing_fails_check(tmp_path: Path, reader) -> None:
    fw = reader(path=str(tmp_path / "nothing-*.txt"), columns=[{"name": "a", "width": 2}])
    with pytest.raises(ConfigError, match=r"source.path '.*nothing-\*.txt' matches no files"):
        fw.check()


# --- as users run it ------------------------------------------------------------------------------------


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A work directory with the example job, its data and the built library, laid out as in the repo."""
    for relative in ("examples/jobs/cpp_fixedwidth.yaml", "examples/data/accounts.txt",
                     "examples/plugins/cpp_fixedwidth/build/libdativo_fixedwidth.so"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, tmp_path / relative)
    monkeypatch.chdir(tmp_path)
    return tmp_path


ACCOUNTS = [
    (100001, "Ann Example", Decimal("1520.50"), dt.date(2019, 3, 1), True),
    (100002, "Bø Østergaard", Decimal("-84.10"), dt.date(2020, 1, 15), True),
    (100003, "山田 太郎", Decimal("98000.00"), dt.date(2018, 11, 30), False),
    (100004, None, None, None, None),
    (100005, "Zoë Ölaf-Mañana", Decimal("0.00"), dt.date(2021, 7, 4), True),
    (100006, "Acme Ltd 😀", Decimal("-1250000.75"), dt.date(2016, 2, 29), False),
]


def test_the_example_job_through_the_cli(example: Path, cli: Callable[..., Result]) -> None:
    result = cli("run", "examples/jobs/cpp_fixedwidth.yaml", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["reader"] == {"implementation": "../plugins/cpp_fixedwidth/build/libdativo_fixedwidth.so",
                                "origin": "native", "language": "c++", "version": "1.0.0"}
    assert (report["rows_read"], report["rows_written"], report["fallback_used"]) == (6, 6, False)
    table = pq.read_table(example / "out" / "accounts").sort_by("account_id")
    assert table.schema.field("account_id").nullable is False
    assert str(table.schema.field("balance").type) == "decimal128(12, 2)"
    assert [tuple(row.values()) for row in table.to_pylist()] == ACCOUNTS

    discovered = json.loads(cli("discover", "examples/jobs/cpp_fixedwidth.yaml", "--json").stdout)
    assert discovered[0]["name"] == "accounts_fixedwidth" and discovered[0]["primary_key"] == ["account_id"]


def test_bad_data_fails_the_job_and_publishes_nothing(example: Path, cli: Callable[..., Result]) -> None:
    data = example / "examples" / "data" / "accounts.txt"
    data.write_text(data.read_text(encoding="utf-8").replace("-84.10", "-84,10"), encoding="utf-8")
    job = example / "examples" / "jobs" / "cpp_fixedwidth.yaml"
    job.write_text(job.read_text().replace("fallback: fail", "fallback: default"))  # no built-in to fall back to
    result = cli("run", str(job))
    assert result.exit_code == 3, result.output
    message = " ".join(result.stderr.split())
    for needle in ["job 'accounts_fixedwidth'", "plugin '../plugins/cpp_fixedwidth/build/libdativo_fixedwidth.so'",
                   "examples/data/accounts.txt line 3, column 'balance' (characters 35-48): '-84,10' is not a "
                   "decimal number", "Fix the data or the plugin"]:
        assert needle in message, message
    assert "Traceback" not in result.output
    target = example / "out" / "accounts"
    assert not target.exists() or not [p for p in target.iterdir() if not p.name.startswith("_")]


def test_a_missing_library_falls_back_to_the_builtin_csv_reader(workdir: Path, write_job, cli) -> None:
    job = write_job(textwrap.dedent("""\
        version: 1
        name: orders
        source:
          type: csv
          path: data/orders.csv
          reader: {type: custom, implementation: {lib: build/libdativo_fixedwidth.so}, fallback: default}
        target: {type: parquet, path: out/orders}
        """))
    result = cli("run", str(job), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["fallback_used"] and report["reader"]["implementation"] == "csv"
    assert "native library 'build/libdativo_fixedwidth.so' does not exist" in report["fallback_reason"]
    assert report["rows_written"] == 3


def test_a_misconfigured_job_is_a_config_error_through_the_cli(example: Path, cli: Callable[..., Result]) -> None:
    job = example / "examples" / "jobs" / "cpp_fixedwidth.yaml"
    job.write_text(job.read_text().replace("type: date32", "type: datetime"))
    result = cli("run", str(job))
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert "the native reader refused its configuration: source.columns[3].type: unknown type 'datetime'" in message
    assert "Fix the source section or source.reader.options" in message


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ("{batch_sise: 65536}", "source.reader.options.batch_sise (line 21): unknown key; did you mean 'batch_size'?"),
        ("{batch_size: big}", "source.reader.options.batch_size (line 21): Input should be a valid integer (got 'big')"),
        ("{units: words}", "source.reader.options.units (line 21): must be 'chars' or 'bytes'"),
        ("{columns: [{name: a, widht: 2}]}", "source.reader.options.columns.0.widht (line 21): unknown key; "
                                              "did you mean 'width'?"),
    ],
)
def test_the_host_checks_the_options_the_library_declares(
    example: Path, cli: Callable[..., Result], options: str, needle: str
) -> None:
    job = example / "examples" / "jobs" / "cpp_fixedwidth.yaml"
    job.write_text(job.read_text().replace("options: {batch_size: 65536}", f"options: {options}"))
    result = cli("run", str(job))
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert needle in message, message
    assert "the native reader refused" not in message  # the host checked them: the library never saw them


def _installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example package, installed (its entry point) for this test only."""
    info = tmp_path / "dativo_fixedwidth-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dativo-fixedwidth\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text("[dativo.readers]\nfixedwidth = dativo_fixedwidth:reader\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(EXAMPLE))


def test_plugins_info_shows_the_declared_options(tmp_path: Path, monkeypatch, cli: Callable[..., Result]) -> None:
    _installed(tmp_path, monkeypatch)
    result = cli("plugins", "info", "fixedwidth")
    assert result.exit_code == 0, result.output
    options = json.loads(result.stdout)["options"]
    assert options == library(LIB).Config.model_json_schema()
    assert options["additionalProperties"] is False
    assert set(options["properties"]) == {"path", "columns", "dataset", "batch_size", "units", "trim",
                                          "null_values", "skip_lines", "min_split_bytes", "primary_key",
                                          "cursor_candidates"}  # kKeys of fixedwidth.cpp
    assert options["properties"]["batch_size"]["default"] == 65536


def test_the_package_offers_the_library_as_an_entry_point(tmp_path: Path, monkeypatch) -> None:
    info = tmp_path / "dativo_fixedwidth-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dativo-fixedwidth\nVersion: 1.0.0\n")
    declared = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]["entry-points"]["dativo.readers"]
    assert declared == {"fixedwidth": "dativo_fixedwidth:reader"}
    (info / "entry_points.txt").write_text("[dativo.readers]\nfixedwidth = dativo_fixedwidth:reader\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    spec = resolve("reader", "fixedwidth")
    assert (spec.origin, spec.language, spec.version) == ("entry point", "c++", "1.0.0")
    assert issubclass(spec.cls, NativeReader)
    by_path = resolve("reader", NativeLibrary(lib=str(LIB)))
    assert (by_path.origin, by_path.version) == ("native", "1.0.0")


def test_reader_uses_the_job_name_as_dataset(reader) -> None:
    fw = reader(path="x.txt", columns=[{"name": "a", "width": 1}], primary_key="a")
    assert fw.discover() == [Dataset("fw", schema=pa.schema([("a", pa.string())]), primary_key=("a",))]
