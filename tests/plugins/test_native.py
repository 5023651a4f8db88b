"""The native (C ABI) plugin loader: version and symbol checks, error translation, memory ownership, jobs.

The libraries are compiled once per session from ``native_src/testplugin.c`` (see its header for the
variants and options). Its ``test_counts`` export says how many of each owned object (reader, writer,
stream, array, schema, error, string) were created and released, so the tests can prove that every release
callback runs exactly once, on success and on every error path.
"""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import shutil
import subprocess
import textwrap
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from dativo.api import CommitInfo, Context, Dataset, Reader, Split, Writer, WrittenFiles
from dativo.config import NativeLibrary, load_job, parse_job
from dativo.engine import Engine
from dativo.errors import (
    CommitFailed,
    CommitStateUnknown,
    ConfigError,
    ConnectionFailed,
    PluginFailed,
    PluginIncompatible,
    PluginNotFound,
)
from dativo.plugins.native import ABI_VERSION, NativeOptions, NativeReader, NativeWriter, library
from dativo.registry import resolve
from tests.conftest import Result, read_parquet_dir, source_csv

ROOT = Path(__file__).resolve().parents[2]
SOURCES = Path(__file__).resolve().parent / "native_src"
VARIANTS = {
    "good": [],
    "abi2": ["-DTEST_ABI_VERSION=2"],
    "no_open": ["-DOMIT_READER_OPEN"],
    "minimal": ["-DMINIMAL"],
    "prefixed": ["-DPREFIX=orders_"],
    "declares": ["-DDECLARES_OPTIONS"],
    "bad_schema": ["-DDECLARES_BAD_OPTIONS"],
}
KINDS = ("reader", "writer", "stream", "array", "schema", "error", "string")
SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), ("name", pa.string())])


@pytest.fixture(scope="session")
def libs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every variant of the test plugin, compiled (warnings are errors) into a session folder."""
    out = tmp_path_factory.mktemp("native")
    built = {}
    jobs = [(name, SOURCES / "testplugin.c", flags) for name, flags in VARIANTS.items()]
    jobs.append(("not_a_plugin", SOURCES / "not_a_plugin.c", []))
    for name, source, flags in jobs:
        target = out / f"lib{name}.so"
        command = ["gcc", "-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared",
                   f"-I{ROOT / 'sdk' / 'cpp'}", *flags, "-o", str(target), str(source)]
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 0, f"{' '.join(command)}\n{result.stderr}"
        built[name] = target
    return built


def counts(path: Path) -> dict[str, tuple[int, int]]:
    """(created, released) of each kind of object, from the library's own counters."""
    values = (ctypes.c_int64 * (2 * len(KINDS)))()
    ctypes.CDLL(str(path)).test_counts(values)  # dlopen returns the handle the loader already holds
    return {kind: (values[2 * i], values[2 * i + 1]) for i, kind in enumerate(KINDS)}


@pytest.fixture
def balanced(libs: dict[str, Path]) -> Iterator[Callable[[], dict[str, int]]]:
    """After the test, every object the good library created during it was released exactly once.

    Calling the fixture's value returns what was created so far (to assert that something happened).
    """
    before = counts(libs["good"])

    def created() -> dict[str, int]:
        now = counts(libs["good"])
        return {kind: now[kind][0] - before[kind][0] for kind in KINDS}

    yield created
    gc.collect()
    after = counts(libs["good"])
    for kind in KINDS:
        made = after[kind][0] - before[kind][0]
        freed = after[kind][1] - before[kind][1]
        assert made == freed, f"{kind}: {made} created, {freed} released"


def context(**overrides: Any) -> Context:
    values: dict[str, Any] = {"job": "things_job", "run_id": "run-1", "plugin": "libgood.so",
                              "logger": logging.getLogger("test")}
    return Context(**{**values, **overrides})


@pytest.fixture
def make(libs: dict[str, Path]) -> Iterator[Callable[..., Any]]:
    """``make(variant, role="reader", options=..., **context)``: an instance, closed after the test."""
    made: list[Any] = []

    def build(variant: str = "good", role: str = "reader", *, options: dict[str, Any] | None = None,
              **ctx: Any) -> Any:
        cls = library(libs[variant], role=role)  # type: ignore[arg-type]
        instance = cls(cls.Config.model_validate(options or {}), context(**ctx))
        made.append(instance)
        return instance

    yield build
    for instance in made:
        instance.close()


def expected(split: int, rows: int) -> pa.Table:
    ids = list(range(split * 1000 + 1, split * 1000 + rows + 1))
    return pa.table({"id": ids, "name": [None if i % 3 == 0 else f"n{i}" for i in ids]}, schema=SCHEMA)


# --- loading -----------------------------------------------------------------------------------------


def test_a_library_becomes_a_reader_class(libs) -> None:
    cls = library(libs["good"])
    assert issubclass(cls, NativeReader) and issubclass(cls, Reader)
    assert (cls.version, cls.language, cls.__name__) == ("2.5.0", "c", "NativeReader[libgood.so]")
    again = library(str(libs["good"]))  # its own class: none is cached, shared or changed
    assert again is not cls and (again.version, again.__name__) == (cls.version, cls.__name__)
    writer = library(libs["good"], role="writer")
    assert issubclass(writer, NativeWriter) and issubclass(writer, Writer)


def test_resolve_a_job_s_library(libs) -> None:
    spec = resolve("reader", NativeLibrary(lib=str(libs["good"])))
    assert (spec.origin, spec.language, spec.version, spec.name) == ("native", "c", "2.5.0", str(libs["good"]))
    assert spec.connector is None and not spec.builtin


def test_relative_library_path_starts_at_the_job_file(tmp_path: Path, libs) -> None:
    (tmp_path / "jobs" / "lib").mkdir(parents=True)
    shutil.copy(libs["good"], tmp_path / "jobs" / "lib" / "libcopy.so")
    job = tmp_path / "jobs" / "job.yaml"
    job.write_text(textwrap.dedent("""\
        version: 1
        name: t
        source: {type: things, reader: {type: custom, implementation: {lib: lib/libcopy.so}}}
        target: {type: parquet, path: out}
        """))
    implementation = load_job(job).source.reader.implementation
    assert isinstance(implementation, NativeLibrary)
    assert implementation.path() == tmp_path / "jobs" / "lib" / "libcopy.so"
    assert resolve("reader", implementation).name == "lib/libcopy.so"


def test_a_library_may_declare_its_options(libs, make) -> None:
    spec = resolve("reader", NativeLibrary(lib=str(libs["declares"])))
    assert spec.cls.Config.model_json_schema()["properties"]["rows"] == {"type": "integer", "minimum": 0}
    with pytest.raises(ConfigError) as caught:  # checked by the host, before reader_new
        spec.build_config({}, {"rwos": 3}, section="source")
    assert "source.reader.options.rwos: unknown key; did you mean 'rows'?" in caught.value.message
    with pytest.raises(ConfigError, match=r"options.rows: Input should be greater than or equal to 0 \(got -1\)"):
        spec.build_config({}, {"rows": -1}, section="source")
    config = spec.build_config({}, {"rows": 3, "batch_size": 2}, section="source")
    reader = spec.cls(config, context())
    try:
        assert reader.read(reader.plan(reader.discover()[0], None)[0]).read_all().num_rows == 3  # as written
    finally:
        reader.close()
    assert library(libs["declares"], role="writer").Config is NativeOptions  # NULL: the writer's are not
    assert library(libs["good"]).Config is NativeOptions


def test_a_declared_schema_must_be_a_json_object(libs) -> None:
    with pytest.raises(PluginIncompatible) as caught:
        library(libs["bad_schema"])
    assert 'dativo_plugin_config_schema("reader") does not return a JSON object' in str(caught.value)


def test_abi_version_mismatch_names_both_versions(libs) -> None:
    with pytest.raises(PluginIncompatible) as caught:
        resolve("reader", NativeLibrary(lib=str(libs["abi2"])))
    message = str(caught.value)
    assert f"was built for Dativo plugin ABI 2, but this Dativo supports plugin ABI {ABI_VERSION}" in message
    assert "Rebuild it against the sdk/cpp/dativo_plugin.h" in message
    assert caught.value.plugin == str(libs["abi2"])


def test_missing_required_function(libs) -> None:
    with pytest.raises(PluginIncompatible, match="does not export dativo_reader_open, which a reader must provide"):
        library(libs["no_open"])
    with pytest.raises(PluginIncompatible) as caught:
        library(libs["minimal"], role="writer")
    assert ("does not export dativo_writer_new, dativo_writer_write, dativo_writer_commit, dativo_writer_release"
            in str(caught.value))
    assert 'extern "C"' in str(caught.value)


def test_a_library_that_is_not_a_plugin(libs) -> None:
    with pytest.raises(PluginIncompatible, match="is not a Dativo plugin: it does not export dativo_abi_version"):
        library(libs["not_a_plugin"])


def test_missing_library_file(tmp_path: Path) -> None:
    native = parse_job(textwrap.dedent("""\
        version: 1
        name: t
        source: {type: things, reader: {type: custom, implementation: {lib: ./build/libnothing.so}}}
        target: {type: parquet, path: out}
        """), source=tmp_path / "job.yaml").source.reader.implementation
    with pytest.raises(PluginNotFound) as caught:
        resolve("reader", native)  # type: ignore[arg-type]
    message = str(caught.value)
    assert f"native library './build/libnothing.so' does not exist (looked for {tmp_path}/build/libnothing.so)" in message
    assert "make plugins-cpp" in message and caught.value.plugin == "./build/libnothing.so"


def test_a_file_that_is_not_a_shared_library(tmp_path: Path) -> None:
    (tmp_path / "libtext.so").write_text("not ELF")
    with pytest.raises(PluginIncompatible, match="cannot be loaded: .*libtext.so"):
        library(tmp_path / "libtext.so")


def test_symbol_prefix(libs, make) -> None:
    with pytest.raises(PluginIncompatible, match="does not export dativo_abi_version"):
        library(libs["prefixed"])
    cls = library(libs["prefixed"], symbol_prefix="orders_")
    assert cls.version == "2.5.0"
    reader = cls(cls.Config(), context())
    try:
        assert reader.read(Split("things")).read_all().equals(expected(0, 5))
    finally:
        reader.close()


# --- reading -----------------------------------------------------------------------------------------


def test_discover_plan_and_read(balanced, make) -> None:
    reader = make(options={"rows": 7, "batch_size": 3, "splits": 3})
    reader.check()
    (dataset,) = reader.discover()
    assert (dataset.name, dataset.primary_key, dataset.cursor_candidates) == ("things", ("id",), ("id",))
    assert dataset.schema.equals(SCHEMA)
    splits = reader.plan(dataset, None)
    assert [(s.dataset, s.id, dict(s.params)) for s in splits] == [
        ("things", f"s{i}", {"split": i}) for i in range(3)
    ]
    for split in splits:
        assert [b.num_rows for b in reader.read(split)] == [3, 3, 1]
    assert reader.read(splits[2]).read_all().equals(expected(2, 7))
    assert balanced()["array"] == 4 * 3 and balanced()["stream"] == 4


def test_a_minimal_library_gets_the_defaults(make) -> None:
    reader = make("minimal", options={"rows": 4})
    reader.check()
    assert reader.discover() == [Dataset(name="things_job")]
    (split,) = reader.plan(Dataset(name="things_job"), None)
    assert (split.id, dict(split.params)) == ("0", {})
    assert reader.read(split).read_all().equals(expected(0, 4))
    assert (reader.language, reader.version) == ("c", "0.0.0")  # no plugin_info: the defaults


def test_streams_outlive_the_reader_and_are_released_once(balanced, make) -> None:
    reader = make(options={"rows": 10, "batch_size": 2})
    full = reader.read(Split("things"))
    partial = reader.read(Split("things"))
    next(iter(partial))
    never = reader.read(Split("things"))
    reader.close()
    reader.close()  # a second close does nothing
    assert full.read_all().num_rows == 10  # the stream is independent of the reader handle
    del partial, never
    gc.collect()
    assert balanced()["stream"] == 3 and balanced()["reader"] == 1


# --- errors -------------------------------------------------------------------------------------------


def test_a_rejected_configuration_is_a_config_error(balanced, make) -> None:
    with pytest.raises(ConfigError) as caught:
        make(options={"reject": "option 'colums' is unknown; did you mean 'columns'?"})
    message = str(caught.value)
    assert message.startswith(
        "the native reader refused its configuration: option 'colums' is unknown; did you mean 'columns'?"
    )
    assert "Fix the source section or source.reader.options in the job file" in message
    assert caught.value.exit_code == 2
    assert balanced()["error"] == 1


@pytest.mark.parametrize(
    ("fail", "call", "error", "stage", "needle"),
    [
        ("new", "new", PluginFailed, "load", "dativo_reader_new() failed with INTERNAL: cannot allocate the reader"),
        ("check", "check", ConfigError, "", "source.path 'nowhere.dat' matches no files"),
        ("check_io", "check", ConnectionFailed, "", "connection refused by db.example:5432 (code 111)"),
        ("discover", "discover", PluginFailed, "discover",
         "dativo_reader_discover() failed with UNKNOWN: catalog unavailable"),
        ("schema", "discover", PluginFailed, "discover",
         "dataset 'things': dativo_reader_schema() failed with NOT_FOUND: no such dataset"),
        ("plan", "plan", PluginFailed, "plan",
         "dativo_reader_plan() failed with INVALID_DATA: cannot plan: table is locked (code 7)"),
        ("silent_plan", "plan", PluginFailed, "plan", "dativo_reader_plan() returned INVALID_DATA without a message"),
        ("open", "read", PluginFailed, "read",
         "dataset 'things' split '0': dativo_reader_open() failed with IO: the server closed the connection (code 7)"),
        ("next", "iterate", PluginFailed, "read", "read() of dataset 'things' split '0' failed: row 3 is corrupt"),
    ],
)
def test_library_errors_become_dativo_errors(balanced, make, fail, call, error, stage, needle) -> None:
    with pytest.raises(error) as caught:
        reader = make(options={"fail": fail, "vendor_code": 7, "batch_size": 2})
        if call == "check":
            reader.check()
        elif call == "discover":
            reader.discover()
        elif call == "plan":
            reader.plan(Dataset("things"), None)
        elif call == "read":
            reader.read(Split("things"))
        elif call == "iterate":
            list(reader.read(Split("things")))
    assert needle in str(caught.value), str(caught.value)
    assert caught.value.hint
    if isinstance(caught.value, PluginFailed):
        assert (caught.value.role, caught.value.stage) == ("reader", stage)
        assert "set source.reader.fallback: default" in str(caught.value)
    assert balanced()["error"] == (0 if fail in ("next", "silent_plan") else 1)


# --- the writer ---------------------------------------------------------------------------------------


def batches(*, fail_after: int | None = None) -> pa.RecordBatchReader:
    def generate() -> Iterator[pa.RecordBatch]:
        for start in (1, 4):
            if fail_after is not None and start > fail_after:
                raise RuntimeError("the source went away")
            yield pa.record_batch([pa.array([start, start + 1, start + 2]), pa.array(["a", None, "ü"])],
                                  schema=SCHEMA)

    return pa.RecordBatchReader.from_batches(SCHEMA, generate())


def test_writer_writes_commits_and_is_idempotent(tmp_path: Path, balanced, make) -> None:
    target = tmp_path / "target"
    dataset = Dataset("things")
    writer = make(role="writer", settings={"path": str(target)}, run_id="run-7")
    writer.check()
    assert writer.state(dataset) is None
    writer.prepare(dataset, SCHEMA, "append")
    written = writer.write(Split("things", "a"), batches())
    assert isinstance(written, WrittenFiles)
    assert (written.dataset, written.split, written.rows) == ("things", "a", 6)
    assert written.files == [str(target / "_staging" / "run-7" / "a.txt")] and written.bytes > 0
    lines = Path(written.files[0]).read_text().splitlines()
    assert lines == ["1\ta", "2\t\\N", "3\tü", "4\ta", "5\t\\N", "6\tü"]
    info = writer.commit(dataset, [written], {"cursor": 6}, "run-7")
    assert info == CommitInfo(commit_id="run-7", rows=6, no_op=False)
    assert (target / "run-7" / "a.txt").exists()
    assert writer.state(dataset) == {"cursor": 6}
    again = writer.commit(dataset, [written], {"cursor": 6}, "run-7")
    assert again.no_op
    assert balanced()["string"] >= 5


def test_writer_abort_deletes_what_it_wrote(tmp_path: Path, make) -> None:
    writer = make(role="writer", settings={"path": str(tmp_path)})
    written = writer.write(Split("things", "b"), batches())
    assert Path(written.files[0]).exists()
    writer.abort([written])
    assert not Path(written.files[0]).exists()


def test_a_failing_source_stream_is_reported_by_the_writer(tmp_path: Path, balanced, make) -> None:
    writer = make(role="writer", settings={"path": str(tmp_path)})
    with pytest.raises(PluginFailed) as caught:
        writer.write(Split("things", "c"), batches(fail_after=1))
    assert "reading the stream failed" in str(caught.value) and "the source went away" in str(caught.value)
    assert (caught.value.role, caught.value.stage) == ("writer", "write")


@pytest.mark.parametrize(
    ("fail", "error", "needle"),
    [
        ("commit", CommitFailed, "the target is read-only. Nothing was published"),
        ("commit_unknown", CommitStateUnknown, "dativo_writer_commit() failed with IO: timeout while renaming"),
    ],
)
def test_commit_failures(tmp_path: Path, balanced, make, fail, error, needle) -> None:
    writer = make(role="writer", options={"fail": fail}, settings={"path": str(tmp_path)})
    with pytest.raises(error) as caught:
        writer.commit(Dataset("things"), [], None, "run-1")
    assert needle in str(caught.value)


@pytest.mark.parametrize("fail", ["write", "write_untouched"])
def test_writer_stream_is_released_even_when_write_fails(tmp_path: Path, balanced, make, fail: str) -> None:
    writer = make(role="writer", options={"fail": fail}, settings={"path": str(tmp_path)})

    def generate() -> Iterator[pa.RecordBatch]:
        yield pa.record_batch([pa.array([1]), pa.array(["x"])], schema=SCHEMA)

    generator = generate()
    alive = weakref.ref(generator)
    source = pa.RecordBatchReader.from_batches(SCHEMA, generator)
    del generator
    with pytest.raises(PluginFailed, match=r"split '0': dativo_writer_write\(\) failed with IO: (disk full|refused)"):
        writer.write(Split("things"), source)
    del source
    gc.collect()
    assert alive() is None  # the exported stream was released (by the plugin, or else the loader)


def test_prepare_borrows_the_schema(tmp_path: Path, balanced, make) -> None:
    writer = make(role="writer", settings={"path": str(tmp_path)})
    writer.prepare(Dataset("things"), SCHEMA, "append")
    with pytest.raises(PluginFailed, match="dativo_writer_prepare\\(\\) failed with NOT_IMPLEMENTED: mode merge"):
        writer.prepare(Dataset("things"), SCHEMA, "merge")
    with pytest.raises(PluginFailed, match="takes \\(int64, utf8\\) only") as caught:
        writer.prepare(Dataset("things"), pa.schema([("x", pa.int8())]), "append")
    assert (caught.value.role, caught.value.stage) == ("writer", "prepare")


# --- whole jobs ---------------------------------------------------------------------------------------


def job_text(lib: Path | str, *, reader_options: str = "{rows: 5, splits: 2}", writer: bool = True,
             source_type: str = "things", fallback: str = "fail") -> str:
    target = (f"target: {{type: things_store, path: out/things, writer: {{type: custom, implementation: "
              f"{{lib: {lib}}}, fallback: fail}}}}") if writer else "target: {type: parquet, path: out/things}"
    return textwrap.dedent(f"""\
        version: 1
        name: things_job
        source:
          type: {source_type}
          path: data/orders.csv
          parallelism: 2
          reader: {{type: custom, implementation: {{lib: {lib}}}, fallback: {fallback}, options: {reader_options}}}
        """) + target + "\n"


def test_a_job_with_a_native_reader_and_writer(workdir: Path, write_job, libs, balanced) -> None:
    report = Engine(load_job(write_job(job_text(libs["good"])))).run()
    assert (report.reader.origin, report.reader.language, report.reader.version) == ("native", "c", "2.5.0")
    assert report.writer.origin == "native" and report.writer.implementation == str(libs["good"])
    assert (report.rows_read, report.rows_written, report.datasets[0].name) == (10, 10, "things")
    (committed,) = [p for p in (workdir / "out" / "things").iterdir() if not p.name.startswith("_")]
    lines = sorted(line for f in committed.iterdir() for line in f.read_text().splitlines())
    assert len(lines) == 10 and "1001\tn1001" in lines and "3\t\\N" in lines
    assert json.loads((workdir / "out" / "things" / "_state.json").read_text()) is None
    assert balanced()["reader"] == 1 and balanced()["writer"] == 1


def test_a_native_reader_into_parquet(workdir: Path, write_job, libs) -> None:
    report = Engine(load_job(write_job(job_text(libs["good"], writer=False)))).run()
    assert report.rows_written == 10
    table = read_parquet_dir(workdir / "out" / "things").sort_by("id")
    assert table.equals(pa.concat_tables([expected(0, 5), expected(1, 5)]))


def test_a_failing_native_reader_falls_back_to_the_builtin(workdir: Path, write_job, libs, balanced) -> None:
    source_csv(workdir, "id", "name")  # the built-in reads what the plugin would have, into its dataset
    text = job_text(libs["good"], reader_options="{fail: next}", writer=False, source_type="csv", fallback="default")
    text = text.replace("path: data/orders.csv", "path: data/orders.csv\n  dataset: things")
    report = Engine(load_job(write_job(text))).run()
    assert report.fallback_used and "row 3 is corrupt" in (report.fallback_reason or "")
    assert report.reader.implementation == "csv"
    assert read_parquet_dir(workdir / "out" / "things").num_rows == 3


def assert_cli_failure(result: Result, code: int, *needles: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    message = " ".join(result.stderr.split())
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"


def test_cli_config_error_from_the_library_wins_over_fallback(workdir: Path, write_job, libs, cli) -> None:
    text = job_text(libs["good"], reader_options="{reject: \"option 'rowz' is unknown\"}", writer=False,
                    source_type="csv", fallback="default")
    assert_cli_failure(
        cli("run", str(write_job(text))), 2,
        "job 'things_job'", f"plugin '{libs['good']}'", "option 'rowz' is unknown", "source.reader.options",
    )
    assert not (workdir / "out").exists()


def test_cli_missing_library_names_job_plugin_and_fix(workdir: Path, write_job, cli) -> None:
    text = job_text("./nowhere/libmissing.so", writer=False)
    assert_cli_failure(
        cli("run", str(write_job(text))), 3,
        "job 'things_job'", "plugin './nowhere/libmissing.so'", "source.reader.implementation (line 7)",
        "native library './nowhere/libmissing.so' does not exist", "make plugins-cpp",
    )


def test_cli_check_and_discover(workdir: Path, write_job, libs, cli) -> None:
    job = str(write_job(job_text(libs["good"], writer=False)))
    result = cli("check", job, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0] == {"component": "source", "implementation": str(libs["good"]), "status": "ok"}
    result = cli("discover", job, "--json")
    (dataset,) = json.loads(result.stdout)
    assert dataset["name"] == "things" and dataset["primary_key"] == ["id"]
    assert dataset["columns"] == [{"name": "id", "type": "int64", "source_type": None, "nullable": False},
                                  {"name": "name", "type": "string", "source_type": None, "nullable": True}]


# --- entry points -------------------------------------------------------------------------------------


def test_a_package_ships_a_library_behind_an_entry_point(tmp_path: Path, libs, monkeypatch) -> None:
    package = tmp_path / "native_things"
    package.mkdir()
    shutil.copy(libs["good"], package / "libthings.so")
    (package / "__init__.py").write_text(
        "from pathlib import Path\n"
        "from dativo.plugins.native import library\n\n"
        'reader = library(Path(__file__).parent / "libthings.so")\n'
    )
    info = tmp_path / "native_things-3.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: native-things\nVersion: 3.0.0\n")
    (info / "entry_points.txt").write_text("[dativo.readers]\nnative_things = native_things:reader\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = resolve("reader", "native_things")
    assert (spec.origin, spec.language, spec.version) == ("entry point", "c", "3.0.0")
    assert issubclass(spec.cls, NativeReader)


# --- the walkthrough in docs/plugins/cpp.md ---------------------------------------------------------


def test_the_cpp_walkthrough_builds_and_runs(workdir: Path, cli) -> None:
    doc = (ROOT / "docs" / "plugins" / "cpp.md").read_text(encoding="utf-8")
    source = doc.split("```cpp\n", 1)[1].split("```", 1)[0]
    job = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    (workdir / "sequence.cpp").write_text(source)
    shell = [block.split("\n", 1)[0] for block in doc.split("```sh\n")[1:]]
    command = next((line for line in shell if line.startswith("g++ ")), shell[0])  # the walkthrough's build
    command = command.replace("sdk/cpp", str(ROOT / "sdk" / "cpp"))  # the include path and nanoarrow.c
    assert command.startswith("g++ ") and "-Wall -Wextra" in command
    result = subprocess.run([*command.split(), "-Werror"], cwd=workdir, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    (workdir / "numbers.yaml").write_text(job)
    result = cli("run", "numbers.yaml", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["reader"] == {"implementation": "./libsequence.so", "origin": "native", "language": "c++",
                                "version": "0.1.0"}
    table = read_parquet_dir(workdir / "out" / "numbers")
    assert table.schema == pa.schema([pa.field("n", pa.int64(), nullable=False)])
    assert table.column("n").to_pylist() == list(range(1, 11))
    (workdir / "numbers.yaml").write_text(job.replace("rows: 10", "rows: -1"))
    assert_cli_failure(cli("run", "numbers.yaml"), 2, "job 'numbers'", "plugin './libsequence.so'",
                       "options rows must be >= 0 and batch_size >= 1 (got -1 and 4)")


def test_plugins_info_takes_a_library_path(libs, cli) -> None:
    result = cli("plugins", "info", str(libs["good"]))
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert (info["origin"], info["language"], info["version"]) == ("native", "c", "2.5.0")
