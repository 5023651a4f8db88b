"""The job file: validation, ``${…}`` substitution, and errors that point at the YAML line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dativo import secrets
from dativo.config import JobConfig, job_schema, load_job, parse_job
from dativo.errors import ConfigError

MINIMAL = """\
version: 1
name: orders
source:
  type: csv
  path: data/orders.csv
target:
  type: parquet
  path: out/orders
"""


def parse(text: str, **env: str) -> JobConfig:
    return parse_job(textwrap.dedent(text), env=env)


def error_of(text: str, **env: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(text, **env)
    return caught.value


def test_minimal_job_and_defaults() -> None:
    job = parse(MINIMAL)
    assert (job.version, job.name) == (1, "orders")
    assert (job.source.type, job.source.parallelism, job.source.incremental) == ("csv", 1, None)
    assert (job.source.reader.type, job.source.reader.fallback, job.source.reader.options) == ("default", "default", {})
    assert job.source.reader.sandbox.enabled is False
    assert (job.target.type, job.target.mode, job.target.writer.type) == ("parquet", "append", "default")
    assert job.source.settings() == {"path": "data/orders.csv"}
    assert job.target.settings() == {"path": "out/orders"}
    assert job.path is None


def test_full_job() -> None:
    job = parse(
        """\
        version: 1
        name: orders_to_lake
        source:
          type: postgres
          connection: {dsn: "postgresql://u@h/db"}
          tables: [public.orders]
          parallelism: 2
          incremental: {cursor: updated_at}
          reader:
            type: custom
            implementation: rust_postgres
            fallback: fail
            options: {batch_rows: 1000}
            sandbox: {enabled: true}
        target:
          type: iceberg
          namespace: raw
          table: orders
          mode: merge
          writer: {type: default}
        """
    )
    assert job.source.settings() == {"connection": {"dsn": "postgresql://u@h/db"}, "tables": ["public.orders"]}
    assert job.source.incremental is not None and job.source.incremental.cursor == "updated_at"
    assert job.source.reader.implementation == "rust_postgres"
    assert job.source.reader.options == {"batch_rows": 1000}
    assert job.source.reader.sandbox.enabled is True
    assert job.target.settings() == {"namespace": "raw", "table": "orders"}
    assert job.target.mode == "merge"


def test_name_defaults_to_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "nightly_orders.yaml"
    path.write_text(MINIMAL.replace("name: orders\n", ""))
    job = load_job(path)
    assert job.name == "nightly_orders"
    assert job.path == path


# --- errors ------------------------------------------------------------------------------------------


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("version: 1\nname: x\nsource:\n  type: csv\n   path: a\n")
    with pytest.raises(ConfigError, match=r"job.yaml is not valid YAML at line 5, column \d+"):
        load_job(path)


@pytest.mark.parametrize("text", ["just text", "- a\n- b\n", ""])
def test_job_must_be_a_mapping(text: str) -> None:
    assert "must be a YAML mapping with version, name, source and target" in str(error_of(text))


def test_missing_keys() -> None:
    error = error_of("version: 1\nname: orders\nsource: {path: x}\n")
    assert "source.type (line 3): required key is missing" in str(error)
    assert "target (line 1): required key is missing" in str(error)
    assert error.job == "orders" and error.exit_code == 2


def test_unknown_top_level_key_suggests_the_right_one() -> None:
    error = error_of(MINIMAL.replace("target:", "taget:"))
    assert "taget (line 6): unknown key; did you mean 'target'?" in str(error)


def test_unknown_key_without_a_close_match_lists_the_allowed_ones() -> None:
    error = error_of(MINIMAL + "  writer: {type: default, colour: blue}\n")
    assert (
        "target.writer.colour (line 9): unknown key; allowed keys: fallback, implementation, options, sandbox, type"
        in str(error)
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("  incremental: {cursr: ts}", "source.incremental.cursr (line 6): unknown key; did you mean 'cursor'?"),
        ("  incremental: updated_at", "source.incremental (line 6): Input should be a valid dictionary"),
        ("  parallelism: 300", "source.parallelism (line 6): Input should be less than or equal to 256 (got 300)"),
        ("  parallelism: [2]", "source.parallelism (line 6): Input should be a valid integer"),
        ("  reader: {type: custom}",
         "source.reader (line 6): type is custom but no implementation is named; add implementation: <name>"),
        ("  reader: {implementation: acme:Reader}",
         "source.reader (line 6): implementation 'acme:Reader' is named but type is default; set type: custom"),
        ("  reader: {type: custom, implementation: x:Y, fallback: retry}",
         "source.reader.fallback (line 6): must be 'default' or 'fail'"),
        ("  reader: {sandbox: {enabled: maybe}}", "source.reader.sandbox.enabled (line 6): Input should be a valid boolean"),
    ],
)
def test_bad_engine_values_name_the_yaml_path_and_line(line: str, message: str) -> None:
    text = MINIMAL.replace("  path: data/orders.csv\n", f"  path: data/orders.csv\n{line}\n")
    error = error_of(text)
    assert message in str(error)
    assert str(error).startswith("job 'orders': job is invalid: ")
    assert str(error).endswith("See `dativo schema` for every key.")


def test_bad_version_and_name() -> None:
    assert "version (line 1): must be 1" in str(error_of(MINIMAL.replace("version: 1", "version: 2")))
    assert "name (line 2): String should match pattern" in str(error_of(MINIMAL.replace("name: orders", "name: 'my job'")))


def test_line_numbers_follow_the_file(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("# comment\n\n" + MINIMAL.replace("target:\n  type: parquet", "target:\n  type: parquet\n  mode: upsert"))
    with pytest.raises(ConfigError, match=r"target.mode \(line 10\): must be 'append', 'overwrite' or 'merge'"):
        load_job(path)


def test_unreadable_job_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read job file .*missing.yaml: No such file or directory"):
        load_job(tmp_path / "missing.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_job(binary)


# --- substitution ------------------------------------------------------------------------------------


def test_variables_are_substituted_anywhere_in_a_string() -> None:
    job = parse(MINIMAL.replace("out/orders", "${ROOT}/${TABLE}-v2"), ROOT="/lake", TABLE="orders")
    assert job.target.settings()["path"] == "/lake/orders-v2"


def test_variables_inside_nested_values() -> None:
    text = MINIMAL + "  catalog: {uri: '${URI}', hosts: ['${HOST}', b]}\n"
    job = parse(text, URI="sqlite:///c.db", HOST="h1")
    assert job.target.settings()["catalog"] == {"uri": "sqlite:///c.db", "hosts": ["h1", "b"]}


def test_default_is_used_only_when_the_variable_is_unset() -> None:
    text = MINIMAL.replace("out/orders", "${OUT_DIR:-out/default}")
    assert parse(text).target.settings()["path"] == "out/default"
    assert parse(text, OUT_DIR="elsewhere").target.settings()["path"] == "elsewhere"
    assert parse(text, OUT_DIR="").target.settings()["path"] == ""
    assert parse(MINIMAL.replace("out/orders", "${OUT_DIR:-}x")).target.settings()["path"] == "x"


def test_defaults_are_not_secrets() -> None:
    parse(MINIMAL.replace("out/orders", "${OUT_DIR:-warehouse-default-dir}"))
    assert secrets.redact("path warehouse-default-dir") == "path warehouse-default-dir"


def test_substituted_values_are_secrets() -> None:
    parse(MINIMAL.replace("out/orders", "${OUT_DIR}"), OUT_DIR="hunter2-config-secret")
    assert secrets.redact("password is hunter2-config-secret") == "password is ***"


def test_unset_variable_names_it_the_path_the_line_and_the_job(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(MINIMAL.replace("out/orders", "${DATIVO_TEST_NOT_SET}"))
    with pytest.raises(ConfigError) as caught:
        load_job(path, env={})
    assert str(caught.value) == (
        "job 'orders': target.path (line 8): environment variable DATIVO_TEST_NOT_SET is not set. "
        "Export DATIVO_TEST_NOT_SET, or write ${DATIVO_TEST_NOT_SET:-default} to give a default."
    )


@pytest.mark.parametrize("ref", ["${}", "${1ABC}", "${A-B}", "${ spaced name }"])
def test_invalid_reference(ref: str) -> None:
    error = error_of(MINIMAL.replace("out/orders", ref))
    assert "target.path (line 8):" in str(error)
    assert "is not a valid reference. Use ${VAR}, ${VAR:-default} or ${file:/path/to/secret}." in str(error)


def test_file_reference_is_relative_to_the_job_file(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "dsn").write_text("postgresql://app:file-secret-pw@db/app\n")
    path = tmp_path / "job.yaml"
    path.write_text(MINIMAL + "  dsn: ${file:secrets/dsn}\n  dsn_abs: '${file:" + str(tmp_path / "secrets/dsn") + "}'\n")
    job = load_job(path)
    assert job.target.settings()["dsn"] == "postgresql://app:file-secret-pw@db/app"
    assert job.target.settings()["dsn_abs"] == job.target.settings()["dsn"]
    assert "file-secret-pw" not in secrets.redact("dsn=postgresql://app:file-secret-pw@db/app")


def test_missing_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(MINIMAL + "  dsn: ${file:nope.txt}\n")
    with pytest.raises(ConfigError) as caught:
        load_job(path)
    assert f"target.dsn (line 9): cannot read secret file {tmp_path / 'nope.txt'}: No such file or directory" in str(
        caught.value
    )
    assert caught.value.job == "orders"


def test_values_without_references_are_left_alone() -> None:
    job = parse(MINIMAL + "  note: 'costs $5 {not a ref}'\n  count: 3\n")
    assert job.target.settings() == {"path": "out/orders", "note": "costs $5 {not a ref}", "count": 3}


# --- schema ------------------------------------------------------------------------------------------


def test_job_schema() -> None:
    schema = job_schema()
    assert schema["title"] == "JobConfig"
    assert {"source", "target", "name", "version"} <= set(schema["properties"])
    implementation = schema["$defs"]["ImplementationConfig"]["properties"]
    assert implementation["fallback"]["enum"] == ["default", "fail"]
    assert "dotted path" in implementation["implementation"]["description"]


def _with_implementation(implementation: str) -> str:
    return MINIMAL.replace("  path: data/orders.csv\n", f"  path: data/orders.csv\n  reader: {{type: custom, implementation: {implementation}}}\n")


def test_plugin_process_forms(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(_with_implementation('{command: [./bin/reader, "--flag"], env: {TOKEN: "${T}"}}'))
    job = load_job(tmp_path / "job.yaml", env={"T": "granted"})
    command = job.source.reader.implementation
    assert (command.command, command.env, command.cwd()) == (["./bin/reader", "--flag"], {"TOKEN": "granted"}, tmp_path)
    assert (command.start_timeout_s, command.call_timeout_s, command.stall_timeout_s) == (10, 60, 300)
    assert str(command) == "./bin/reader --flag"
    remote = parse(_with_implementation('{flight: "grpc://127.0.0.1:8815", call_timeout_s: 5}')).source.reader.implementation
    assert (str(remote), remote.call_timeout_s) == ("grpc://127.0.0.1:8815", 5)


@pytest.mark.parametrize(
    ("implementation", "message"),
    [
        ("{command: ./bin/reader}", "source.reader.implementation.command (line 6): Input should be a valid list"),
        ("{command: []}", "source.reader.implementation.command (line 6): List should have at least 1 item"),
        ("{command: [x], start_timeout: 3}", "implementation.start_timeout (line 6): unknown key; did you mean "
                                             "'start_timeout_s'?"),
        ("{command: [x], start_timeout_s: 0}", "start_timeout_s (line 6): Input should be greater than 0"),
        ("{command: [x], env: {DATIVO_PROTOCOL: '2'}}", "DATIVO_PROTOCOL is set by Dativo itself"),
        ("{flight: 'http://host:1'}", "implementation.flight (line 6): must be a Flight location"),
        ("{binary: ./x}", "source.reader.implementation (line 6): must be a name (built-in, entry point or "
                          "package.module:Class), {lib: path}, {command: [executable, ...]} or {flight: "),
    ],
)
def test_bad_plugin_process_forms_get_one_clear_error(implementation: str, message: str) -> None:
    error = error_of(_with_implementation(implementation))
    assert message in str(error) and str(error).count("source.reader") == 1, str(error)  # one problem, not one per form
