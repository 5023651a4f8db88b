"""Options declared as JSON Schema (``dativo.plugins.options``): the host checks them as a Python ``Config``.

The first half checks the schema-to-model conversion; the second runs a real Go plugin,
``go_src/sequence`` (the Go SDK's ``Options`` and ``StreamRows``), built once per session.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dativo.config import PluginCommand
from dativo.errors import ConfigError
from dativo.plugins.host import PluginHost
from dativo.plugins.options import PluginOptions, declared
from dativo.plugins.remote import RemoteOptions, described, plugin_class
from dativo.registry import PluginSpec
from dativo.yamlfile import Located
from tests.conftest import Result, read_parquet_dir

GO_SRC = Path(__file__).resolve().parent / "go_src" / "sequence"
O = "source.reader.options."

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["rows"],
    "properties": {
        "rows": {"type": "integer", "minimum": 0, "description": "How many."},
        "batch_size": {"type": "integer", "minimum": 1, "default": 100},
        "ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "units": {"enum": ["chars", "bytes"]},
        "strict": {"type": "boolean"},
        "path": {"type": ["string", "array"], "items": {"type": "string"}},
        "limit": {"type": ["integer", "null"]},
        "columns": {"type": "array", "items": {"$ref": "#/$defs/column"}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "anything": {},
        "pattern": {"type": "string", "pattern": "^[a-z]+$"},  # not checked here: the plugin checks it
        "json": {"type": "string"},  # a name pydantic's BaseModel has: an alias
        "with-dash": {"type": "boolean"},  # not an identifier: an alias
    },
    "$defs": {
        "column": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "width": {"type": "integer", "minimum": 1}},
        }
    },
}


def spec_of(schema: Any, *, language: str = "go") -> PluginSpec:
    """The spec of a remote reader whose plugin published ``schema`` (nothing is started)."""
    cls = plugin_class("reader", SimpleNamespace(name="seq"))  # type: ignore[arg-type]
    spec = {"name": "seq", "version": "1.0.0", "language": language, "roles": ["reader"],
            "api_version": ">=1,<2", "config_schema": schema}
    return PluginSpec("reader", "seq", described(cls, spec), "process", "1.0.0")


def refused(options: dict[str, Any], schema: Any = SCHEMA) -> str:
    with pytest.raises(ConfigError) as caught:
        spec_of(schema).build_config({}, options, section="source")
    assert caught.value.exit_code == 2
    return caught.value.message


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"rows": 1, "batch_sise": 5}, O + "batch_sise: unknown key; did you mean 'batch_size'?"),
        ({}, O + "rows: required key is missing"),
        ({"rows": "5"}, O + "rows: Input should be a valid integer (got '5')"),
        ({"rows": True}, O + "rows: Input should be a valid integer (got True)"),
        ({"rows": 1.5}, O + "rows: Input should be a valid integer (got 1.5)"),
        ({"rows": -1}, O + "rows: Input should be greater than or equal to 0 (got -1)"),
        ({"rows": 1, "ratio": 0}, O + "ratio: Input should be greater than 0 (got 0)"),
        ({"rows": 1, "ratio": 2}, O + "ratio: Input should be less than or equal to 1 (got 2)"),
        ({"rows": 1, "ratio": "x"}, O + "ratio: Input should be a valid number (got 'x')"),
        ({"rows": 1, "units": "words"}, O + "units: must be 'chars' or 'bytes'"),
        ({"rows": 1, "strict": "yes"}, O + "strict: Input should be a valid boolean (got 'yes')"),
        ({"rows": 1, "path": 5}, O + "path: Input should be a string or a list (got 5)"),
        ({"rows": 1, "path": ["a", 5]}, O + "path.1: Input should be a valid string (got 5)"),
        ({"rows": 1, "limit": "x"}, O + "limit: Input should be an integer or null (got 'x')"),
        ({"rows": 1, "columns": [{"name": "a", "widht": 2}]},
         O + "columns.0.widht: unknown key; did you mean 'width'?"),
        ({"rows": 1, "columns": [{"width": 2}]}, O + "columns.0.name: required key is missing"),
        ({"rows": 1, "columns": [{"name": "a", "width": 0}]},
         O + "columns.0.width: Input should be greater than or equal to 1 (got 0)"),
        ({"rows": 1, "labels": {"a": 1}}, O + "labels.a: Input should be a valid string (got 1)"),
        ({"rows": 1, "with_dash": True}, O + "with_dash: unknown key; did you mean 'with-dash'?"),
        ({"rows": 1, "json": 5}, O + "json: Input should be a valid string (got 5)"),
    ],
)
def test_a_declared_schema_is_checked_with_the_messages_of_a_python_config(options, needle) -> None:
    assert needle in refused(options)


def test_the_plugin_gets_the_options_as_written() -> None:
    options = {"rows": 3, "ratio": 1, "limit": None, "path": "a.txt", "columns": [{"name": "a"}],
               "labels": {"k": "v"}, "anything": {"x": [1, {"y": None}]}, "pattern": "NOT lower",
               "json": "j", "with-dash": False}
    config = spec_of(SCHEMA).build_config({}, options, section="source")
    sent = config.model_dump(by_alias=True, exclude_unset=True)
    assert sent == options  # no default filled in, 1 stays an int, nothing renamed
    assert type(sent["ratio"]) is int
    assert spec_of(SCHEMA).cls.Config.model_json_schema() is SCHEMA  # what `dativo plugins info` shows


def test_a_yaml_date_is_a_string() -> None:
    """YAML reads `2024-01-02` as a date; it reaches the plugin as the string it was."""
    schema = {"type": "object", "properties": {"since": {"type": "string"}}}
    config = spec_of(schema).build_config({}, {"since": dt.date(2024, 1, 2)}, section="source")
    assert config.model_dump(by_alias=True, exclude_unset=True) == {"since": dt.date(2024, 1, 2)}


def test_the_line_of_the_key_is_named() -> None:
    options = ("source", "reader", "options")
    loc = Located(Path("job.yaml"), {options: 9, (*options, "batch_sise"): 11})
    with pytest.raises(ConfigError) as caught:
        spec_of(SCHEMA).build_config({}, {"rows": 1, "batch_sise": 2}, section="source", loc=loc)
    assert O + "batch_sise (line 11): unknown key; did you mean 'batch_size'?" in caught.value.message
    assert caught.value.hint == "See the plugin's documentation for the options it accepts."  # a process


@pytest.mark.parametrize(
    ("schema", "options"),
    [
        (None, {"rows": "5", "other": "x"}),
        ({"type": "object"}, {"rows": "5", "other": "x"}),  # the Go SDK's default: any keys
        ({"type": "object", "properties": {"rows": {"type": "integer"}}}, {"rows": 5, "other": "x"}),
        ({"type": "array"}, {"rows": 5}),  # not an object schema: nothing the host can check
        ({"type": "object", "additionalProperties": False, "patternProperties": {"^x-": {}}}, {"x-a": 1}),
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}, "b": {"type": "uuid"},
                                           "c": {"allOf": [{"type": "string"}]}, "d": True}},
         {"a": 1, "b": 2, "c": 3, "d": 4}),
    ],
)
def test_what_is_not_declared_is_allowed(schema: Any, options: dict[str, Any]) -> None:
    config = spec_of(schema).build_config({}, options, section="source")
    assert config.model_dump(by_alias=True, exclude_unset=True) == options


def test_a_closed_object_without_properties_takes_no_keys() -> None:
    schema = {"type": "object", "additionalProperties": False}  # go_postgres: no options of its own
    assert O + "tables: unknown key; no keys are allowed here" in refused({"tables": []}, schema)


def test_a_recursive_schema_is_checked_as_deep_as_it_is_not_recursive() -> None:
    node = {"type": "object", "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "child": {"$ref": "#/$defs/node"}}}
    schema = {"type": "object", "properties": {"tree": {"$ref": "#/$defs/node"}}, "$defs": {"node": node}}
    assert O + "tree.nmae: unknown key; did you mean 'name'?" in refused({"tree": {"nmae": 1}}, schema)
    spec_of(schema).build_config({}, {"tree": {"child": {"anything": 1}}}, section="source")


def test_a_python_plugin_checks_its_own_options() -> None:
    """Its schema comes from a pydantic model that accepts more than the schema says ("5" for an int)."""
    spec = spec_of(SCHEMA, language="python")
    config = spec.build_config({}, {"rows": "5", "unknown": 1}, section="source")
    assert config.model_dump(by_alias=True, exclude_unset=True) == {"rows": "5", "unknown": 1}
    assert spec.cls.Config.model_json_schema() is SCHEMA


def test_declared_leaves_its_base_alone() -> None:
    made = declared(RemoteOptions, SCHEMA)
    assert issubclass(made, RemoteOptions) and issubclass(made, PluginOptions)
    assert RemoteOptions.plugin_schema is None and RemoteOptions.model_fields == {}
    assert set(made.model_fields) >= {"rows", "batch_size"}


# --- a real Go plugin ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sequence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go plugin of go_src/sequence, built with the SDK beside it (a second or two with a warm cache)."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not os.access(go, os.X_OK):
        pytest.fail("these tests build a Go plugin: install Go >= 1.25 (https://go.dev/dl/)")
    binary = tmp_path_factory.mktemp("go") / "sequence"
    command = [go, "build", "-trimpath", "-o", str(binary), "."]
    result = subprocess.run(command, cwd=GO_SRC, capture_output=True, text=True,
                            env={**os.environ, "GOFLAGS": "-buildvcs=false"}, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stderr}"
    return binary


def job(binary: Path, options: str) -> str:
    """A job reading the Go plugin into Parquet; ``options`` are the lines of reader.options (line 10 on)."""
    return textwrap.dedent("""\
        version: 1
        name: numbers
        source:
          type: sequence
          reader:
            type: custom
            implementation: {command: [%s]}
            fallback: fail
            options:
        %s
        target: {type: parquet, path: out/numbers}
        """) % (binary, textwrap.indent(textwrap.dedent(options).strip(), " " * 6))


def test_the_go_plugin_publishes_the_schema_of_its_options_struct(sequence: Path) -> None:
    with PluginHost() as host:
        spec = host.resolve("reader", PluginCommand(command=[str(sequence)]))
    schema = spec.cls.Config.model_json_schema()
    assert spec.language == "go"
    assert schema["required"] == ["rows"] and schema["additionalProperties"] is False
    assert schema["properties"]["batch_size"] == {
        "type": "integer", "minimum": 1, "default": 100, "description": "Rows per Arrow batch."
    }
    assert schema["properties"]["label"]["enum"] == ["even", "odd"]


def test_the_go_plugin_reads_its_rows(
    sequence: Path, write_job, workdir: Path, cli: Callable[..., Result]
) -> None:
    path = write_job(job(sequence, "rows: 250\nbatch_size: 100\nlabel: odd"))
    result = cli("run", str(path), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows_written"] == 250
    assert report["counters"] == {"reader": {"labelled": 125}}  # Counters.Add, sent back by close
    table = read_parquet_dir(workdir / "out" / "numbers").sort_by("n")
    assert table.column("n").to_pylist() == list(range(1, 251))
    assert table.column("label").to_pylist()[:3] == ["odd", None, "odd"]
    assert table.schema.field("n").nullable is False and table.schema.field("label").nullable is True


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ("rows: 10\nbatch_sise: 5", O + "batch_sise (line 11): unknown key; did you mean 'batch_size'?"),
        ("rows: many", O + "rows (line 10): Input should be a valid integer (got 'many')"),
        ("rows: 10\nbatch_size: 0", O + "batch_size (line 11): Input should be greater than or equal to 1"),
        ("rows: 10\nlabel: all", O + "label (line 11): must be 'even' or 'odd'"),
        ("batch_size: 5", O + "rows (line 9): required key is missing"),
    ],
)
def test_the_host_refuses_bad_options_of_a_go_plugin(
    sequence: Path, write_job, cli: Callable[..., Result], options: str, needle: str
) -> None:
    result = cli("run", str(write_job(job(sequence, options))))
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert needle in message, message
    assert f"plugin '{sequence}'" in message
    assert "reader.options has an unknown key" not in message  # the host refused them, not the plugin
    assert "Traceback" not in result.output


def test_the_go_guide_shows_this_plugin() -> None:
    """docs/plugins/go.md's main.go is go_src/sequence/main.go, which the tests above build and run."""
    guide = (GO_SRC.parents[3] / "docs" / "plugins" / "go.md").read_text(encoding="utf-8")
    assert "```go\n" + (GO_SRC / "main.go").read_text(encoding="utf-8") + "```\n" in guide
