"""Finding implementations, and refusing the ones that do not fit before any data moves."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dativo import __version__
from dativo.api import API_VERSION
from dativo.config import parse_job
from dativo.errors import ConfigError, PluginIncompatible, PluginNotFound
from dativo.readers.files import CsvConfig, CsvReader
from dativo.registry import builtin_for, has_builtin, list_plugins, locate, resolve
from dativo.writers.parquet import ParquetWriter
from tests.fixtures import plugins

PLUGINS = "tests.fixtures.plugins"


def test_builtin_by_name() -> None:
    spec = resolve("reader", "csv")
    assert (spec.role, spec.name, spec.cls, spec.origin, spec.version) == ("reader", "csv", CsvReader, "builtin", __version__)
    assert spec.builtin and spec.language == "python" and spec.api_version == ">=1,<2"
    assert resolve("writer", " parquet ").cls is ParquetWriter


def test_dotted_path_with_a_colon_and_without() -> None:
    spec = resolve("reader", f"{PLUGINS}:GoodReader")
    assert (spec.cls, spec.origin, spec.version, spec.builtin) == (plugins.GoodReader, "dotted path", "1.2.3", False)
    assert resolve("reader", f"{PLUGINS}.GoodReader").cls is plugins.GoodReader
    assert resolve("writer", f"{PLUGINS}:MemoryWriter").cls is plugins.MemoryWriter


def test_unknown_name_suggests_and_lists() -> None:
    with pytest.raises(PluginNotFound) as caught:
        resolve("reader", "jsnol")
    message = str(caught.value)
    assert message.startswith("plugin 'jsnol': no reader named 'jsnol'. Did you mean 'jsonl'? Available: ")
    available = message.split("Available: ", 1)[1]
    assert all(f"{name}," in available for name in ("csv", "jsonl", "parquet")) and "package.module:Class" in message
    assert caught.value.exit_code == 3


def test_unknown_writer_name() -> None:
    with pytest.raises(PluginNotFound, match="no writer named 'delta'"):
        resolve("writer", "delta")


def test_missing_module() -> None:
    with pytest.raises(PluginNotFound) as caught:
        resolve("reader", "acme_nowhere.readers:Orders")
    assert caught.value.plugin == "acme_nowhere.readers:Orders"
    assert "cannot import module 'acme_nowhere.readers' (no module named 'acme_nowhere')" in str(caught.value)
    assert "Install the package that provides it, fix the dotted path, or put the module beside" in str(caught.value)


def test_missing_class_suggests_a_close_one() -> None:
    with pytest.raises(PluginNotFound, match=f"has no attribute 'GoodReder'. Did you mean '{PLUGINS}:GoodReader'?"):
        resolve("reader", f"{PLUGINS}:GoodReder")
    with pytest.raises(PluginNotFound, match="has no attribute 'Zzzzzz'. Check the class name."):
        resolve("reader", f"{PLUGINS}:Zzzzzz")


def test_malformed_dotted_path() -> None:
    with pytest.raises(PluginNotFound, match="':GoodReader' is not a valid dotted path. Write package.module:Class."):
        resolve("reader", ":GoodReader")


def test_module_that_raises_when_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "exploding_plugin.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginNotFound) as caught:
        resolve("reader", "exploding_plugin:Reader")
    assert "importing module 'exploding_plugin' raised RuntimeError: boom at import" in str(caught.value)
    assert "Fix the error in the plugin's module." in str(caught.value)


def test_a_lazily_imported_class_with_a_missing_dependency(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A package whose ``__getattr__`` imports the class's module on first use (as dativo.readers.postgres)."""
    package = tmp_path / "lazy_plugin_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import importlib\n\ndef __getattr__(name):\n"
        "    return getattr(importlib.import_module(__name__ + '.impl'), name)\n")
    (package / "impl.py").write_text("import dativo_no_such_driver\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginNotFound, match="no module named 'dativo_no_such_driver'") as caught:
        resolve("reader", "lazy_plugin_pkg:Reader")
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)


def test_module_with_a_missing_dependency(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "needs_dep_plugin.py").write_text("import dativo_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginNotFound, match="no module named 'dativo_no_such_dependency'"):
        resolve("reader", "needs_dep_plugin:Reader")


@pytest.mark.parametrize(
    ("role", "name", "message"),
    [
        ("reader", "NotAReader", f"'{PLUGINS}:NotAReader' is a class NotAReader, not a dativo.api.Reader"),
        ("writer", "GoodReader", f"'{PLUGINS}:GoodReader' is a class GoodReader, not a dativo.api.Writer"),
        ("reader", "SCHEMA", f"'{PLUGINS}:SCHEMA' is a Schema, not a dativo.api.Reader"),
        ("reader", "Incomplete", "Incomplete does not implement read"),
        ("reader", "BadApi", f"BadApi supports Dativo API >=7,<8, but this Dativo provides API {API_VERSION}"),
        ("reader", "BadSpecifier", "BadSpecifier.api_version 'one point oh' is not a version range"),
        ("reader", "ConfigNotModel", "ConfigNotModel.Config is not a pydantic model"),
    ],
)
def test_incompatible_plugins_are_refused_at_load(role, name, message) -> None:
    with pytest.raises(PluginIncompatible) as caught:
        resolve(role, f"{PLUGINS}:{name}")
    assert message in str(caught.value)
    assert caught.value.plugin == f"{PLUGINS}:{name}"
    assert caught.value.hint


def test_builtin_lookup() -> None:
    assert has_builtin("reader", "csv") and has_builtin("writer", "parquet")
    assert not has_builtin("reader", "acme") and not has_builtin("writer", "csv")
    assert builtin_for("reader", "acme") is None
    spec = builtin_for("reader", "jsonl")
    assert spec is not None and spec.origin == "builtin"


# --- options -----------------------------------------------------------------------------------------


JOB = """\
version: 1
name: orders
source:
  type: csv
  path: data/orders.csv
  delimiter: ";;"
  reader:
    type: custom
    implementation: x:Y
    options: {rows: many, batch_size: 2}
target: {type: parquet, path: out}
"""


def test_custom_options_are_validated_by_the_plugins_config() -> None:
    job = parse_job(JOB)
    spec = resolve("reader", f"{PLUGINS}:GoodReader")
    config = spec.build_config(job.source.settings(), {"rows": 3}, section="source")
    assert isinstance(config, plugins.Options) and (config.rows, config.batch_size) == (3, 2)
    with pytest.raises(ConfigError) as caught:
        spec.build_config(job.source.settings(), job.source.reader.options, section="source")
    assert "source.reader.options.rows: Input should be a valid integer" in str(caught.value)
    assert caught.value.plugin == f"{PLUGINS}:GoodReader"
    assert f"`dativo plugins info {PLUGINS}:GoodReader` shows the options it accepts." in str(caught.value)


def test_plugin_without_options_refuses_them() -> None:
    spec = resolve("reader", f"{PLUGINS}:UndeclaredReader")
    with pytest.raises(ConfigError, match="source.reader.options.rows: unknown key"):
        spec.build_config({}, {"rows": 1}, section="source")


def test_builtin_config_validates_the_connector_keys() -> None:
    spec = resolve("reader", "csv")
    config = spec.build_config({"path": "a.csv", "delimiter": ";"}, {}, section="source")
    assert isinstance(config, CsvConfig) and config.delimiter == ";"
    with pytest.raises(ConfigError) as caught:
        spec.build_config({"path": "a.csv", "delimiter": ";;", "paralelism": 2}, {}, section="source")
    message = str(caught.value)
    assert "source.delimiter: String should have at most 1 character" in message
    assert "source.paralelism: unknown key; did you mean 'parallelism'?" in message
    assert caught.value.plugin == "csv"
    with pytest.raises(ConfigError, match="source.path: required key is missing"):
        spec.build_config({}, {}, section="source")


def test_builtin_writer_config() -> None:
    spec = resolve("writer", "parquet")
    with pytest.raises(ConfigError, match="target.compresion: unknown key; did you mean 'compression'?"):
        spec.build_config({"path": "out", "compresion": "zstd"}, {}, section="target")


# --- listing -----------------------------------------------------------------------------------------


def test_list_plugins() -> None:
    rows = {(row.role, row.name): row for row in list_plugins()}
    for key in [("reader", "csv"), ("reader", "jsonl"), ("reader", "parquet"), ("writer", "parquet")]:
        row = rows[key]
        assert (row.origin, row.version, row.language, row.api_version, row.status) == (
            "builtin", __version__, "python", ">=1,<2", "ok"
        )
    assert rows[("reader", "csv")].target == "dativo.readers.files:CsvReader"
    assert {("reader", "postgres"), ("reader", "postgres-python"), ("writer", "iceberg")} <= set(rows)


# --- where a plugin lives ----------------------------------------------------------------------------


def test_locate_finds_without_importing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "located_plugin").mkdir()
    (tmp_path / "located_plugin" / "__init__.py").write_text("raise RuntimeError('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    location = locate("reader", "located_plugin.readers:Orders")
    assert (location.origin, location.module, location.target) == (
        "dotted path", "located_plugin.readers", "located_plugin.readers:Orders"
    )
    files, roots = location.files()
    assert files == [tmp_path / "located_plugin"] and roots == [tmp_path]
    assert "located_plugin" not in sys.modules
    assert locate("reader", "csv").origin == "builtin" and locate("reader", "csv").files() == ([], [])
    assert locate("reader", f"{PLUGINS}.GoodReader").module == PLUGINS
    with pytest.raises(PluginNotFound, match="no reader named 'jsnol'. Did you mean 'jsonl'?"):
        locate("reader", "jsnol")
    with pytest.raises(PluginNotFound, match="cannot find module 'nowhere_at_all'"):
        locate("reader", "nowhere_at_all:Reader").files()


def test_plugin_processes_are_not_resolved_here() -> None:
    from dativo.config import PluginCommand

    with pytest.raises(TypeError, match="PluginHost"):
        resolve("reader", PluginCommand(command=["./bin/x"]))  # type: ignore[arg-type]


FLAKY = '''
import pyarrow as pa
from dativo.api import Reader

class Reader(Reader):
    schema = pa.schema([("id", pa.int64())])

    def read(self, split):
        yield pa.record_batch([pa.array([1, 2, 3], pa.int64())], schema=self.schema)
'''


def test_a_single_file_plugin_beside_the_job_runs_from_any_folder(tmp_path: Path) -> None:
    import json
    import subprocess

    from tests.conftest import subprocess_env

    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "flaky.py").write_text(FLAKY)
    (jobs / "job.yaml").write_text(
        "version: 1\nname: flaky\nsource: {type: flaky_api, reader: {type: custom, implementation: 'flaky:Reader'}}\n"
        "target: {type: parquet, path: out}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([sys.executable, "-m", "dativo", "run", str(jobs / "job.yaml"), "--json"], cwd=elsewhere,
                          env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows_written"] == 3
    assert "flaky" not in sys.modules


def test_a_module_beside_the_job_never_shadows_an_installed_one(tmp_path: Path) -> None:
    (tmp_path / "json.py").write_text(FLAKY)
    with pytest.raises(PluginIncompatible, match="'json:Reader'|json"):
        resolve("reader", "json:JSONDecoder", beside=tmp_path)  # the standard library's json, not ours
    with pytest.raises(PluginNotFound, match="no attribute 'Reader'"):
        resolve("reader", "json:Reader", beside=tmp_path)


def test_a_missing_module_says_where_it_is_looked_for(tmp_path: Path) -> None:
    with pytest.raises(PluginNotFound, match="beside the job file"):
        resolve("reader", "nowhere_mod:Reader", beside=tmp_path)
