"""The command line as a user meets it: exit codes, one-paragraph errors, reports, and a target left intact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from dativo import __version__
from dativo.api import API_VERSION
from tests.conftest import REPO, Result, read_parquet_dir, subprocess_env

PLUGINS = "tests.fixtures.plugins"
ITEMS = "id,name\n1,a\n2,b\n3,c\n"


def job_dict(
    reader: str | None = None,
    *,
    fallback: str = "fail",
    options: dict[str, Any] | None = None,
    writer: str | None = None,
    writer_fallback: str = "fail",
    writer_options: dict[str, Any] | None = None,
    path: str = "data/items.csv",
    target: str = "out/items",
    mode: str = "append",
) -> dict[str, Any]:
    """A csv → parquet job over data/items.csv, optionally with a custom reader or writer."""
    source: dict[str, Any] = {"type": "csv", "path": path}
    if reader:
        source["reader"] = {"type": "custom", "implementation": reader, "fallback": fallback}
        if options is not None:
            source["reader"]["options"] = options
    sink: dict[str, Any] = {"type": "parquet", "path": target, "mode": mode}
    if writer:
        sink["writer"] = {"type": "custom", "implementation": writer, "fallback": writer_fallback}
        if writer_options is not None:
            sink["writer"]["options"] = writer_options
    return {"version": 1, "name": "items", "source": source, "target": sink}


def dump(job: dict[str, Any]) -> str:
    return yaml.safe_dump(job, sort_keys=False)


def flat(text: str) -> str:
    """Text with rich's line wrapping undone."""
    return " ".join(text.split())


def published(target: Path) -> list[str]:
    """The committed run folders of a parquet target."""
    return sorted(p.name for p in target.iterdir() if not p.name.startswith(("_", "."))) if target.exists() else []


def assert_clean_failure(result: Result, code: int, *needles: str) -> str:
    """The run failed with ``code``, without a traceback, and its message contains every needle."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith("Error:"), result.output
    message = flat(result.stderr)
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


@pytest.fixture
def items(workdir: Path) -> Path:
    """data/items.csv with ids 1-3: the same schema as the test plugins' (id int64, name string)."""
    (workdir / "data" / "items.csv").write_text(ITEMS)
    return workdir / "out" / "items"


@pytest.fixture
def protected(items: Path, write_job: Callable[..., Path], cli: Callable[..., Result]) -> Callable[[], None]:
    """A target holding one committed run; call the result to assert it is still exactly as it was."""
    assert cli("run", str(write_job(dump(job_dict()), "first.yaml")), "-q").exit_code == 0
    before, runs = read_parquet_dir(items), published(items)
    assert before.num_rows == 3

    def unchanged() -> None:
        assert published(items) == runs
        assert read_parquet_dir(items).equals(before)

    return unchanged


# --- configuration errors: exit 2 --------------------------------------------------------------------


def test_malformed_yaml(protected, write_job, cli) -> None:
    job = write_job("version: 1\nname: items\nsource:\n  type: csv\n  path: [data/items.csv\ntarget:\n  type: parquet\n")
    assert_clean_failure(cli("run", str(job)), 2, "job.yaml is not valid YAML at line 6", "Fix the YAML syntax")
    protected()


def test_missing_required_key(protected, write_job, cli) -> None:
    job = write_job("version: 1\nname: items\nsource:\n  type: csv\n  path: data/items.csv\n")
    assert_clean_failure(cli("run", str(job)), 2, "job 'items'", "target", "required key is missing", "dativo schema")
    protected()


def test_unknown_connector_key_suggests_the_right_one(protected, write_job, cli) -> None:
    job = write_job(
        """\
        version: 1
        name: items
        source:
          type: csv
          path: data/items.csv
          paralelism: 2
        target: {type: parquet, path: out/items}
        """
    )
    assert_clean_failure(
        cli("run", str(job)), 2,
        "job 'items'", "plugin 'csv'", "source.paralelism (line 6): unknown key; did you mean 'parallelism'?",
    )
    protected()


def test_unknown_engine_key_suggests_the_right_one(protected, write_job, cli) -> None:
    job = write_job(
        """\
        version: 1
        name: items
        source:
          type: csv
          path: data/items.csv
          reader:
            tpye: custom
        target: {type: parquet, path: out/items}
        """
    )
    assert_clean_failure(
        cli("run", str(job)), 2, "job 'items'", "source.reader.tpye (line 7): unknown key; did you mean 'type'?"
    )
    protected()


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("  parallelism: lots", "source.parallelism (line 6): Input should be a valid integer"),
        ("  batch_size: lots", "source.batch_size (line 6): Input should be a valid integer"),
        ("  parallelism: 0", "source.parallelism (line 6): Input should be greater than or equal to 1"),
        ("  reader: {type: bespoke}", "source.reader.type (line 6): must be 'default' or 'custom'"),
    ],
)
def test_wrong_value_type(protected, write_job, cli, line: str, needle: str) -> None:
    job = write_job(
        f"version: 1\nname: items\nsource:\n  type: csv\n  path: data/items.csv\n{line}\n"
        "target: {type: parquet, path: out/items}\n"
    )
    assert_clean_failure(cli("run", str(job)), 2, "job 'items'", needle)
    protected()


def test_wrong_mode_lists_the_choices(protected, write_job, cli) -> None:
    job = write_job(dump(job_dict(mode="upsert")))
    assert_clean_failure(cli("run", str(job)), 2, "target.mode (line 9): must be 'append', 'overwrite' or 'merge'")
    protected()


def test_unset_variable(protected, write_job, cli) -> None:
    job = write_job(dump(job_dict(path="${DATIVO_TEST_UNSET_PATH}")))
    assert_clean_failure(
        cli("run", str(job)), 2,
        "job 'items'", "source.path (line 5): environment variable DATIVO_TEST_UNSET_PATH is not set",
        "Export DATIVO_TEST_UNSET_PATH, or write ${DATIVO_TEST_UNSET_PATH:-default}",
    )
    protected()


def test_unknown_connector_type(protected, write_job, cli) -> None:
    job = dump(job_dict()).replace("type: csv", "type: cvs")
    assert_clean_failure(
        cli("run", str(write_job(job))), 2,
        "job 'items'", "source.type (line 4): 'cvs' has no built-in reader", "Did you mean 'csv'?",
    )
    protected()


def test_unknown_builtin_implementation(protected, write_job, cli) -> None:
    job = write_job(dump(job_dict("cvs")))
    assert_clean_failure(
        cli("run", str(job)), 3,
        "job 'items'", "plugin 'cvs'", "source.reader.implementation (line 8)", "no reader named 'cvs'",
        "Did you mean 'csv'?",
    )
    protected()


def test_no_matching_files(protected, write_job, cli) -> None:
    job = write_job(dump(job_dict(path="nowhere/*.csv")))
    assert_clean_failure(
        cli("run", str(job)), 2, "job 'items'", "plugin 'csv'", "source.path 'nowhere/*.csv' matches no files"
    )
    protected()


def test_unreadable_job_file(cli, workdir) -> None:
    assert_clean_failure(cli("run", "missing.yaml"), 2, "cannot read job file missing.yaml")


# --- plugin errors: exit 3 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("implementation", "needles"),
    [
        (
            "tests.fixtures.no_such_module:Reader",
            ["cannot import module 'tests.fixtures.no_such_module'", "fix the dotted path"],
        ),
        (
            f"{PLUGINS}:GodReader",
            ["module 'tests.fixtures.plugins' has no attribute 'GodReader'", f"Did you mean '{PLUGINS}:GoodReader'?"],
        ),
        (f"{PLUGINS}:NotAReader", ["is a class NotAReader, not a dativo.api.Reader", "Subclass dativo.api.Reader"]),
        (f"{PLUGINS}:Incomplete", ["Incomplete does not implement read", "Implement read"]),
        (f"{PLUGINS}:FailingWriter", ["is a class FailingWriter, not a dativo.api.Reader"]),
    ],
)
def test_custom_reader_that_cannot_be_loaded(protected, write_job, cli, implementation, needles) -> None:
    job = write_job(dump(job_dict(implementation)))
    assert_clean_failure(
        cli("run", str(job)), 3,
        "job 'items'", f"plugin '{implementation}'", "source.reader.implementation (line 8)", *needles,
    )
    protected()


def test_unsupported_api_version_names_both_versions(protected, write_job, cli) -> None:
    job = write_job(dump(job_dict(f"{PLUGINS}:BadApi")))
    assert_clean_failure(
        cli("run", str(job)), 3,
        f"plugin '{PLUGINS}:BadApi'", "source.reader.implementation (line 8)",
        f"BadApi supports Dativo API >=7,<8, but this Dativo provides API {API_VERSION}", "Upgrade the plugin",
    )
    protected()


@pytest.mark.parametrize(
    ("plugin", "needle"),
    [
        ("RaisingCheck", "check() raised RuntimeError: cannot reach the orders API"),
        ("RaisingDiscover", "discover() raised ValueError: discover exploded"),
        ("RaisingPlan", "plan() raised ZeroDivisionError: plan exploded"),
        ("RaisingRead", "read() raised KeyError: 'read exploded'"),
        ("RaisingMidStream", "read() of dataset 'items' split '0' failed: RuntimeError: connection reset mid-stream"),
        ("NotArrow", "read() yielded dict, not a pyarrow.RecordBatch"),
        ("ReturnsNone", "read() returned NoneType, which is not Arrow data"),
        ("BadPlan", "plan() returned str; it must return a list of dativo.api.Split"),
        ("BadDiscover", "discover() returned dict; it must return a list of dativo.api.Dataset"),
    ],
)
def test_custom_reader_that_fails(protected, write_job, cli, plugin: str, needle: str) -> None:
    job = write_job(dump(job_dict(f"{PLUGINS}:{plugin}")))
    assert_clean_failure(
        cli("run", str(job)), 3, "job 'items'", f"plugin '{PLUGINS}:{plugin}'", needle, "source.reader.fallback"
    )
    protected()


def test_batch_with_another_schema_is_a_schema_mismatch(protected, write_job, cli) -> None:
    job = write_job(dump(job_dict(f"{PLUGINS}:WrongSchema")))
    result = cli("run", str(job), "--json")
    assert_clean_failure(
        result, 3, f"plugin '{PLUGINS}:WrongSchema'", "dataset 'items' split '0': column 'id' should be int64 but is string"
    )
    report = json.loads(result.stdout)
    assert (report["status"], report["error_type"]) == ("failed", "SchemaMismatch")
    assert "column 'id'" in report["error"]
    protected()


def test_failing_custom_writer_without_fallback(protected, write_job, cli) -> None:
    job = write_job(dump(job_dict(writer=f"{PLUGINS}:FailingWriter")))
    assert_clean_failure(
        cli("run", str(job)), 3,
        "job 'items'", f"plugin '{PLUGINS}:FailingWriter'", "write() raised OSError: disk quota exceeded",
        "target.writer.fallback",
    )
    protected()


def test_custom_writer_with_bad_return_value(protected, write_job, cli) -> None:
    job = write_job(dump(job_dict(writer=f"{PLUGINS}:NotWrittenFiles")))
    assert_clean_failure(
        cli("run", str(job)), 3, f"plugin '{PLUGINS}:NotWrittenFiles'", "write() returned list; it must return"
    )
    protected()


def test_sandbox_that_cannot_start_never_runs_unsandboxed(protected, write_job, cli, workdir, monkeypatch) -> None:
    monkeypatch.setenv("DATIVO_BWRAP", str(workdir / "no-such-bwrap"))  # as if bubblewrap were not installed
    job = job_dict(f"{PLUGINS}:GoodReader", fallback="default")
    job["source"]["reader"]["sandbox"] = {"enabled": True}
    assert_clean_failure(
        cli("run", str(write_job(dump(job)))), 3, "the sandbox cannot start", "apt-get install bubblewrap"
    )
    protected()


# --- other exit codes --------------------------------------------------------------------------------


def test_connection_failure_exits_1(protected, write_job, cli) -> None:
    job = write_job(dump(job_dict(f"{PLUGINS}:RefusingCheck")))
    assert_clean_failure(
        cli("run", str(job)), 1, f"plugin '{PLUGINS}:RefusingCheck'", "the orders API refused the credentials",
        "Check the API token.",
    )
    protected()


@pytest.mark.parametrize(
    ("writer", "needle"),
    [
        ("RefusingCommit", "the target refused the commit. Retry the run."),
        ("CrashingCommit", "commit of dataset 'items' raised TimeoutError: the target did not answer"),
    ],
)
def test_commit_failure_exits_4(protected, items, write_job, cli, writer: str, needle: str) -> None:
    job = write_job(dump(job_dict(writer=f"{PLUGINS}:{writer}", writer_options={"path": "out/items"})))
    assert_clean_failure(cli("run", str(job)), 4, "job 'items'", f"plugin '{PLUGINS}:{writer}'", needle)
    protected()


# --- empty input -------------------------------------------------------------------------------------


def test_empty_reader_is_a_valid_run(protected, items, write_job, cli) -> None:
    result = cli("run", str(write_job(dump(job_dict(f"{PLUGINS}:EmptyReader")))), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["status"], report["rows_read"], report["rows_written"]) == ("succeeded", 0, 0)
    assert len(published(items)) == 2
    protected_rows = read_parquet_dir(items)
    assert protected_rows.num_rows == 3


def test_empty_csv_is_a_valid_run_and_does_not_block_later_runs(items, workdir, write_job, cli) -> None:
    (workdir / "data" / "items.csv").write_text("id,name\n")
    job = write_job(dump(job_dict()))
    result = cli("run", str(job), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows_written"] == 0
    assert read_parquet_dir(items).num_rows == 0

    (workdir / "data" / "items.csv").write_text(ITEMS)
    result = cli("run", str(job), "--json")
    assert result.exit_code == 0, result.output
    assert read_parquet_dir(items).column("id").to_pylist() == [1, 2, 3]


# --- fallback ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("implementation", "reason"),
    [
        ("tests.fixtures.no_such_module:Reader", "custom reader failed during load"),
        (f"{PLUGINS}:NotAReader", "custom reader failed during load"),
        (f"{PLUGINS}:BadApi", "custom reader failed during load"),
        (f"{PLUGINS}:RaisingCheck", "custom reader failed during check"),
        (f"{PLUGINS}:RaisingDiscover", "custom reader failed during discover"),
        (f"{PLUGINS}:RaisingRead", "custom reader failed during read"),
        (f"{PLUGINS}:RaisingMidStream", "custom reader failed during read"),
        (f"{PLUGINS}:WrongSchema", "custom reader failed during read"),
        (f"{PLUGINS}:NotArrow", "custom reader failed during read"),
    ],
)
def test_failing_custom_reader_falls_back_to_the_builtin(items, write_job, cli, implementation, reason) -> None:
    job = write_job(dump(job_dict(implementation, fallback="default")))

    result = cli("run", str(job))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    warning = flat(result.stderr)
    assert "WARNING" in warning and reason in warning
    assert "falling back to the built-in reader (source.reader.fallback: default)" in warning
    # exactly the built-in reader's rows: nothing the custom reader wrote before failing
    assert read_parquet_dir(items).sort_by("id").to_pydict() == {"id": [1, 2, 3], "name": ["a", "b", "c"]}

    result = cli("run", str(job), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["fallback_used"] is True
    assert reason in report["fallback_reason"] and implementation in report["fallback_reason"]
    assert report["reader"]["implementation"] == "csv" and report["reader"]["origin"] == "builtin"
    assert report["rows_written"] == 3
    assert read_parquet_dir(items).num_rows == 6


def test_failing_custom_writer_falls_back_to_the_builtin(items, write_job, cli) -> None:
    job = write_job(dump(job_dict(writer=f"{PLUGINS}:FailingWriter", writer_fallback="default")))
    result = cli("run", str(job))
    assert result.exit_code == 0, result.output
    assert "falling back to the built-in writer (target.writer.fallback: default)" in flat(result.stderr)

    result = cli("run", str(job), "--json")
    report = json.loads(result.stdout)
    assert report["fallback_used"] is True
    assert "custom writer failed during write" in report["fallback_reason"]
    assert "disk quota exceeded" in report["fallback_reason"]
    assert report["writer"]["implementation"] == "parquet"
    assert read_parquet_dir(items).num_rows == 6


def test_both_sides_falling_back_gives_both_reasons(items, write_job, cli) -> None:
    job = job_dict(f"{PLUGINS}:RaisingRead", fallback="default", writer=f"{PLUGINS}:FailingWriter",
                   writer_fallback="default")
    result = cli("run", str(write_job(dump(job))), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["reader"]["implementation"], report["writer"]["implementation"]) == ("csv", "parquet")
    assert "custom reader failed" in report["fallback_reason"]
    assert "custom writer failed" in report["fallback_reason"]
    assert read_parquet_dir(items).num_rows == 3


def test_bad_option_of_readme_reader_is_a_config_error_even_with_fallback(protected, write_job, cli) -> None:
    job = write_job(
        """\
        version: 1
        name: items
        source:
          type: csv
          path: data/items.csv
          reader:
            type: custom
            implementation: "tests.fixtures.plugins:OrdersReader"
            fallback: default
            options: {rows: many, batch_size: 65536}
        target: {type: parquet, path: out/items}
        """
    )
    assert_clean_failure(
        cli("run", str(job)), 2,
        "job 'items'", f"plugin '{PLUGINS}:OrdersReader'",
        "source.reader.options.rows (line 10): Input should be a valid integer", "(got 'many')",
    )
    protected()


def test_readme_reader_runs_with_its_options(items, write_job, cli) -> None:
    job = dump(job_dict(f"{PLUGINS}:OrdersReader", options={"rows": 1000, "batch_size": 300}))
    result = cli("run", str(write_job(job.replace("out/items", "out/orders"))), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["rows_read"], report["rows_written"], report["fallback_used"]) == (1000, 1000, False)
    table = read_parquet_dir(items.parent / "orders").sort_by("id")
    assert table.schema.types == [pa.int64(), pa.float64()]
    assert table.column("id").to_pylist() == list(range(1000))
    assert table.column("amount")[999].as_py() == 499.5


# --- the run report ----------------------------------------------------------------------------------


def test_run_json_report(items, write_job, cli) -> None:
    job = write_job(dump(job_dict(f"{PLUGINS}:GoodReader", options={"rows": 7})))
    result = cli("run", str(job), "--json", "--run-id", "report-1")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {
        "job", "status", "rows_read", "rows_written", "bytes_written", "seconds", "rows_per_s", "peak_rss_mb",
        "reader", "writer", "fallback_used", "fallback_reason", "commit_id",
    } <= set(report)
    assert (report["job"], report["run_id"], report["status"]) == ("items", "report-1", "succeeded")
    assert (report["rows_read"], report["rows_written"]) == (7, 7)
    assert report["bytes_written"] == sum(f.stat().st_size for f in items.rglob("*.parquet"))
    assert report["seconds"] > 0 and report["rows_per_s"] > 0 and report["peak_rss_mb"] > 10
    assert report["reader"] == {
        "implementation": f"{PLUGINS}:GoodReader", "origin": "dotted path", "language": "python", "version": "1.2.3"
    }
    assert report["writer"] == {
        "implementation": "parquet", "origin": "builtin", "language": "python", "version": __version__
    }
    assert (report["fallback_used"], report["fallback_reason"]) == (False, None)
    assert report["commit_id"] == "000001-report-1" == published(items)[0]
    assert report["datasets"] == [
        {"name": "items", "rows": 7, "files": 1, "bytes": report["bytes_written"], "splits": 1,
         "commit_id": "000001-report-1", "no_op": False, "state": None}
    ]


def test_run_prints_a_summary(items, write_job, cli) -> None:
    result = cli("run", str(write_job(dump(job_dict()))), "--run-id", "summary-1")
    assert result.exit_code == 0, result.output
    for needle in ("dativo run · items", "succeeded", "3 / 3", "csv (python", "items → 000001-summary-1"):
        assert needle in result.stdout


def test_the_summary_shows_what_the_plugins_counted(items, write_job, cli) -> None:
    job = job_dict(f"{PLUGINS}:CountingReader", writer=f"{PLUGINS}:CountingWriter")
    result = cli("run", str(write_job(dump(job))))
    assert result.exit_code == 0, result.output
    text = flat(result.stdout)
    assert "reader counted │ batches 12, rows.seen 20" in text and "writer counted │ splits_written 4" in text


def test_a_run_without_new_rows_says_it_committed_nothing(workdir, write_job, cli) -> None:
    (workdir / "data" / "items.csv").write_text("id,name,updated_at\n1,a,2024-01-01T00:00:00Z\n")
    job = dump({"version": 1, "name": "items",
                "source": {"type": "csv", "path": "data/items.csv", "incremental": {"cursor": "updated_at"}},
                "target": {"type": "iceberg", "namespace": "demo"}})
    first = cli("run", str(write_job(job)))
    assert first.exit_code == 0, first.output
    snapshot = next(word for word in flat(first.stdout).split() if word.isdigit() and len(word) > 10)
    again = cli("run", str(write_job(job)))  # the cursor has seen every row: nothing new
    assert again.exit_code == 0, again.output
    assert "items: unchanged (no new rows)" in flat(again.stdout) and snapshot not in again.stdout
    assert "dataset 'items': no new rows and no new state: nothing committed, table demo.items unchanged" \
        in flat(again.stderr)


def test_quiet_run_prints_nothing(items, write_job, cli) -> None:
    result = cli("run", str(write_job(dump(job_dict()))), "-q")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")


def test_rerun_with_the_same_run_id_is_a_no_op(items, write_job, cli) -> None:
    job = str(write_job(dump(job_dict())))
    first = json.loads(cli("run", job, "--json", "--run-id", "X").stdout)
    second = cli("run", job, "--json", "--run-id", "X")
    assert second.exit_code == 0, second.output
    report = json.loads(second.stdout)
    assert first["datasets"][0]["no_op"] is False
    assert report["datasets"][0]["no_op"] is True
    assert report["datasets"][0]["commit_id"] == first["commit_id"] == "000001-X"
    assert (report["rows_written"], report["bytes_written"]) == (0, 0)
    assert published(items) == ["000001-X"]
    assert read_parquet_dir(items).num_rows == 3


# --- other commands ----------------------------------------------------------------------------------


def test_check(items, write_job, cli) -> None:
    result = cli("check", str(write_job(dump(job_dict()))), "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[:2] == [
        {"component": "source", "implementation": "csv", "status": "ok"},
        {"component": "target", "implementation": "parquet", "status": "ok"},
    ]
    assert rows[2]["component"] == "sandbox"  # whether this machine can sandbox plugins
    assert rows[2]["status"] == "ok" or rows[2]["status"].startswith("unavailable: ")
    assert not items.exists()


def test_check_reports_why_sandboxing_is_unavailable(items, write_job, cli, workdir, monkeypatch) -> None:
    monkeypatch.setenv("DATIVO_BWRAP", str(workdir / "no-such-bwrap"))
    result = cli("check", str(write_job(dump(job_dict()))), "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)[2]
    assert row["component"] == "sandbox" and row["status"].startswith("unavailable: ")
    assert "no-such-bwrap" in row["status"] and "apt-get install bubblewrap" in row["status"]


def test_check_reports_a_failing_plugin(items, write_job, cli) -> None:
    result = cli("check", str(write_job(dump(job_dict(f"{PLUGINS}:RaisingCheck", fallback="default")))))
    assert_clean_failure(result, 3, f"plugin '{PLUGINS}:RaisingCheck'", "cannot reach the orders API")


def test_check_reports_a_config_error(workdir, write_job, cli) -> None:
    result = cli("check", str(write_job(dump(job_dict(path="nowhere.csv")))))
    assert_clean_failure(result, 2, "source.path 'nowhere.csv' matches no files")


def test_discover_json(workdir, write_job, cli) -> None:
    result = cli("discover", str(write_job(dump(job_dict(path="data/orders.csv")))), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {
            "name": "items",
            "kind": None,
            "estimated_rows": None,
            "primary_key": [],
            "cursor_candidates": [],
            "cursor": None,
            "details": {},
            "columns": [
                {"name": "id", "type": "int64", "source_type": None, "nullable": True},
                {"name": "customer", "type": "string", "source_type": None, "nullable": True},
                {"name": "amount", "type": "double", "source_type": None, "nullable": True},
                {"name": "updated_at", "type": "timestamp[s, tz=UTC]", "source_type": None, "nullable": True},
            ],
        }
    ]


def test_discover_of_a_custom_reader(workdir, write_job, cli) -> None:
    result = cli("discover", str(write_job(dump(job_dict(f"{PLUGINS}:KeyedCursorReader")))), "--json")
    assert result.exit_code == 0, result.output
    (dataset,) = json.loads(result.stdout)
    assert (dataset["primary_key"], dataset["cursor_candidates"]) == (["id"], ["ts"])
    assert [c["name"] for c in dataset["columns"]] == ["id", "ts"]


def test_plugins_list_json(cli) -> None:
    result = cli("plugins", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = {(r["role"], r["name"]): r for r in json.loads(result.stdout)}
    for key, target in [
        (("reader", "csv"), "dativo.readers.files:CsvReader"),
        (("reader", "jsonl"), "dativo.readers.files:JsonlReader"),
        (("reader", "parquet"), "dativo.readers.files:ParquetReader"),
        (("writer", "parquet"), "dativo.writers.parquet:ParquetWriter"),
    ]:
        assert rows[key] == {
            "role": key[0], "name": key[1], "origin": "builtin", "target": target, "version": __version__,
            "language": "python", "api_version": ">=1,<2", "status": "ok",
            "distribution": "", "source": "built-in", "publisher": "", "certification": "", "pinned": False,
            "verified": "", "trust": "trusted",
        }
    assert {("reader", "postgres"), ("writer", "iceberg")} <= set(rows)


def test_plugins_list_table(cli) -> None:
    result = cli("plugins", "list")
    assert result.exit_code == 0, result.output
    assert f"dativo plugins (API {API_VERSION})" in result.stdout and "csv" in result.stdout


LONG_NAME = "acme_orders_from_the_warehouse_replica"


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """A folder for PYTHONPATH with an installed distribution whose reader's entry point has a long name."""
    info = tmp_path / "site" / "acme_warehouse-2.3.4.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-warehouse\nVersion: 2.3.4\n")
    (info / "entry_points.txt").write_text(f"[dativo.readers]\n{LONG_NAME} = {PLUGINS}:GoodReader\n")
    return info.parent


def dativo_at_80_columns(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(COLUMNS="80", PYTHONPATH=os.pathsep.join([str(site), str(REPO)]))
    return subprocess.run([sys.executable, "-m", "dativo", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.parametrize("long_name", [False, True], ids=["table", "too wide for a table"])
def test_plugins_list_keeps_names_whole_at_80_columns(
    installed: Path, tmp_path: Path, long_name: bool
) -> None:
    done = dativo_at_80_columns(installed if long_name else tmp_path, "plugins", "list")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "…" not in done.stdout
    for name in ("postgres-python", "hsm_encrypted", *([LONG_NAME] if long_name else [])):
        assert any(name in line.split() for line in lines), done.stdout  # on one line, not cut or folded
    row = next(line.split() for line in lines if "hsm_encrypted" in line.split())
    assert {"writer", "1.0.0", "python", ">=1,<2", "ok"} <= set(row) and "entry" in row, row  # nor the rest
    if not long_name:
        assert max(len(line) for line in lines) <= 80  # a table, as wide as the terminal
        assert any(line.split()[:2] == ["kind", "name"] for line in lines)


def test_plugins_info_shows_description_and_distribution(installed: Path) -> None:
    done = dativo_at_80_columns(installed, "plugins", "info", LONG_NAME)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["description"] == "Only ``read`` and a declared schema: the smallest useful reader."
    assert (info["origin"], info["distribution"]) == ("entry point", "acme-warehouse")
    assert info["version"] == "2.3.4"
    builtin = json.loads(dativo_at_80_columns(installed, "plugins", "info", "csv").stdout)
    assert builtin["distribution"] == "built-in" and builtin["description"].startswith("Reads CSV files")
    dotted = json.loads(dativo_at_80_columns(installed, "plugins", "info", f"{PLUGINS}:EmptyReader").stdout)
    assert dotted["distribution"] is None and dotted["description"] == ""  # no docstring of its own


def test_schema_is_json_schema_of_the_job_file(cli) -> None:
    result = cli("schema")
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert schema["type"] == "object"
    assert {"version", "name", "source", "target"} <= set(schema["properties"])
    assert {"name", "source", "target"} <= set(schema["required"])
    defs = schema["$defs"]
    source = defs[schema["properties"]["source"]["$ref"].removeprefix("#/$defs/")]
    assert {"type", "reader", "parallelism", "incremental"} <= set(source["properties"])
    assert source["additionalProperties"] is True  # connector keys sit beside the engine's

    json_types = {"object", "array", "string", "number", "integer", "boolean", "null"}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                assert node["$ref"].removeprefix("#/$defs/") in defs, node["$ref"]
            if isinstance(node.get("type"), str):
                assert node["type"] in json_types, node
            for key, value in node.items():
                if key != "properties":
                    walk(value)
                else:
                    for sub in value.values():
                        walk(sub)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema)


def test_version(cli) -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"dativo {__version__} (plugin API {API_VERSION})"


def test_debug_shows_the_plugins_own_traceback(items, write_job, cli) -> None:
    result = cli("run", str(write_job(dump(job_dict(f"{PLUGINS}:RaisingMidStream")))), "--debug")
    assert result.exit_code == 3
    assert "Traceback" in result.stderr
    assert "RuntimeError: connection reset mid-stream" in result.stderr
    assert "plugins.py" in result.stderr  # the plugin's own frame, not only Dativo's


def test_plugins_info_takes_a_module_in_the_current_folder(workdir: Path, cli) -> None:
    (workdir / "flaky_here.py").write_text(
        "from dativo.api import Reader\n\n\nclass Reader(Reader):\n    \"\"\"Flaky on purpose.\"\"\"\n\n"
        "    def read(self, split):\n        return []\n"
    )
    result = cli("plugins", "info", "flaky_here:Reader")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["description"] == "Flaky on purpose."
