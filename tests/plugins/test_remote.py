"""Out-of-process plugins (``dativo.plugins.remote``) through the engine: the same rows, the same errors, the same
guarantees as in process."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from pyiceberg.catalog.sql import SqlCatalog

from dativo.config import FlightEndpoint, PluginCommand, load_job
from dativo.engine import Engine
from dativo.errors import (
    CommitFailed,
    CommitStateUnknown,
    ConfigError,
    ConnectionFailed,
    DativoError,
    PluginFailed,
    SchemaMismatch,
)
from dativo.plugins.host import PluginHost
from dativo.report import RunReport
from tests.conftest import read_parquet_dir, source_csv
from tests.plugins.fixtures_flight import ROOT, plugin_children, served, serve_command

PLUGINS = "tests.fixtures.plugins"
FIXTURES = "tests.plugins.fixtures_flight"
ORDER = [("id", "ascending"), ("name", "ascending")]  # SplitReader's splits overlap in id


def job_file(
    workdir: Path,
    reader: Any = None,
    writer: Any = None,
    *,
    options: dict | None = None,
    writer_options: dict | None = None,
    target: dict | None = None,
    fallback: str = "fail",
    parallelism: int = 1,
    name: str = "job.yaml",
) -> Path:
    """A job from data/orders.csv (the conftest's) into out/items, with the given implementations."""
    source: dict[str, Any] = {"type": "csv", "path": "data/orders.csv", "parallelism": parallelism}
    if reader is not None:
        source["reader"] = {
            "type": "custom",
            "implementation": reader,
            "fallback": fallback,
            "options": options or {},
        }
    sink: dict[str, Any] = target or {"type": "parquet", "path": "out/items"}
    if writer is not None:
        sink["writer"] = {
            "type": "custom",
            "implementation": writer,
            "fallback": fallback,
            "options": writer_options or {},
        }
    path = workdir / name
    path.write_text(yaml.safe_dump({"version": 1, "name": "items", "source": source, "target": sink}))
    return path


def run(path: Path, **kwargs: Any) -> RunReport:
    return Engine(load_job(path), **kwargs).run()


def fails(path: Path, error: type[DativoError]) -> DativoError:
    with pytest.raises(error) as caught:
        run(path)
    return caught.value


@pytest.fixture(autouse=True)
def _no_plugin_left_behind() -> Iterator[None]:
    yield
    assert plugin_children() == []


# --- the same rows ------------------------------------------------------------------------------------------


def test_a_reader_out_of_process_reads_exactly_what_it_reads_in_process(workdir: Path) -> None:
    options = {"rows": 999, "batch_size": 64}
    inside = run(
        job_file(
            workdir,
            f"{PLUGINS}:SplitReader",
            options=options,
            parallelism=4,
            target={"type": "parquet", "path": "out/inside"},
        )
    )
    outside = run(job_file(workdir, served(f"{PLUGINS}:SplitReader"), options=options, parallelism=4))
    expected = read_parquet_dir(workdir / "out" / "inside").sort_by(ORDER)
    got = read_parquet_dir(workdir / "out" / "items").sort_by(ORDER)
    assert got.num_rows == 4 * 999 and got.equals(expected)
    assert (outside.rows_read, outside.datasets[0].splits, outside.datasets[0].files) == (4 * 999, 4, 4)
    assert inside.rows_written == outside.rows_written
    assert outside.reader is not None
    assert (outside.reader.origin, outside.reader.language, outside.reader.version) == (
        "process",
        "python",
        "1.2.3",
    )


def lake(workdir: Path, table: str) -> pa.Table:
    base = workdir / ".dativo"
    catalog = SqlCatalog(
        "dativo", uri=f"sqlite:///{base / 'catalog.db'}", warehouse=(base / "warehouse").as_uri()
    )
    return catalog.load_table(("raw", table)).scan().to_arrow().sort_by(ORDER)


def test_into_iceberg_out_of_process_reader_and_writer(workdir: Path) -> None:
    options = {"rows": 300, "batch_size": 50}
    run(
        job_file(
            workdir,
            f"{PLUGINS}:SplitReader",
            options=options,
            parallelism=2,
            target={"type": "iceberg", "namespace": "raw", "table": "inside"},
        )
    )
    report = run(
        job_file(
            workdir,
            served(f"{PLUGINS}:SplitReader"),
            served("iceberg"),
            options=options,
            parallelism=2,
            target={"type": "iceberg", "namespace": "raw", "table": "outside"},
        )
    )
    assert lake(workdir, "outside").equals(lake(workdir, "inside"))
    assert report.rows_written == 1200 and report.commit_id
    assert report.writer is not None and report.writer.origin == "process"


def test_a_writer_out_of_process_commits_atomically_and_once(workdir: Path) -> None:
    path = job_file(workdir, writer=served("parquet", "--role", "writer"))
    report = run(path, run_id="run-1")
    assert report.rows_written == 3 and report.datasets[0].commit_id
    assert read_parquet_dir(workdir / "out" / "items").column("id").to_pylist() == [1, 2, 3]
    again = run(path, run_id="run-1")
    assert again.datasets[0].no_op and again.rows_written == 0
    assert read_parquet_dir(workdir / "out" / "items").num_rows == 3
    assert not [p for p in (workdir / "out" / "items").rglob("*.parquet") if "_dativo" in p.parts]  # aborted


def test_a_reader_failing_mid_stream_into_an_out_of_process_writer_publishes_nothing(workdir: Path) -> None:
    path = job_file(workdir, f"{PLUGINS}:RaisingMidStream", served("parquet", "--role", "writer"))
    error = fails(path, PluginFailed)
    assert error.role == "reader" and "connection reset mid-stream" in str(error)
    assert read_parquet_dir(workdir / "out" / "items").num_rows == 0


def test_a_running_plugin_over_tcp(workdir: Path) -> None:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(
        [*serve_command(f"{PLUGINS}:GoodReader"), "--listen", "grpc://127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=workdir,
    )
    try:
        location = json.loads(process.stdout.readline())["location"]  # type: ignore[union-attr]
        report = run(job_file(workdir, {"flight": location}, options={"rows": 7}))
        assert report.rows_written == 7 and report.reader is not None and report.reader.origin == "flight"
        report = run(job_file(workdir, {"flight": location}, options={"rows": 2}))  # still there: not ours
        assert report.rows_written == 2
    finally:
        process.kill()
        process.wait(10)


def test_the_plugins_spec_describes_the_class(workdir: Path) -> None:
    with PluginHost() as host:  # closing it stops the process started to learn the spec
        spec = host.resolve(
            "reader", PluginCommand(command=serve_command(f"{PLUGINS}:GoodReader"), env={"PYTHONPATH": str(ROOT)})
        )
        assert (spec.origin, spec.language, spec.version, spec.api_version) == (
            "process",
            "python",
            "1.2.3",
            ">=1,<2",
        )
        assert set(spec.cls.Config.model_json_schema()["properties"]) == {"rows", "batch_size"}


def test_a_writer_cannot_be_a_reader(workdir: Path) -> None:
    error = fails(job_file(workdir, served("parquet", "--role", "writer")), DativoError)
    assert "cannot be the reader" in str(error) and "writer" in str(error)


def test_an_entry_point_executable(workdir: Path) -> None:
    report = run(job_file(workdir, f"{FIXTURES}:ExecutableNumbers", options={"rows": 4}))
    assert report.rows_written == 4
    assert report.reader is not None and (report.reader.language, report.reader.version) == (
        "python",
        "2.0.1",
    )


# --- the same errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "stage", "error"),
    [
        ("ConnectionFailed", "check", ConnectionFailed),
        ("ConfigError", "discover", ConfigError),
        ("SchemaMismatch", "plan", SchemaMismatch),
        ("RuntimeError", "read", PluginFailed),
    ],
)
def test_each_error_kind_of_a_reader(workdir: Path, kind: str, stage: str, error: type[DativoError]) -> None:
    caught = fails(
        job_file(workdir, served(f"{FIXTURES}:Raises"), options={"kind": kind, "stage": stage}), error
    )
    assert type(caught) is error
    assert (
        caught.job == "items" and caught.plugin is not None and "fixtures_flight:Raises" in str(caught.plugin)
    )
    assert caught.role == "reader" and caught.stage == stage
    if kind == "RuntimeError":
        assert "read() raised RuntimeError: plain failure" in caught.message
        assert "fallback: default" in str(caught.hint)
    else:
        assert caught.hint and caught.hint in str(caught)
    assert read_parquet_dir(workdir / "out" / "items").num_rows == 0


def test_options_are_validated_by_the_plugin(workdir: Path) -> None:
    caught = fails(job_file(workdir, served(f"{FIXTURES}:Numbers"), options={"rows": "many"}), ConfigError)
    assert "source.reader.options.rows" in str(caught) and caught.job == "items"


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("CommitFailed", CommitFailed),
        ("CommitStateUnknown", CommitStateUnknown),
        ("RuntimeError", CommitStateUnknown),
    ],
)
def test_each_error_kind_of_a_commit(workdir: Path, kind: str, error: type[DativoError]) -> None:
    path = job_file(
        workdir, writer=served(f"{FIXTURES}:StagingParquet"), writer_options={"commit_error": kind}
    )
    caught = fails(path, error)
    assert type(caught) is error and caught.job == "items"
    if kind == "RuntimeError":
        assert "lost the connection while committing" in str(caught) and "--run-id" in str(caught)
    assert read_parquet_dir(workdir / "out" / "items").num_rows == 0


def test_a_schema_mismatch_is_found_by_the_host(workdir: Path) -> None:
    caught = fails(job_file(workdir, served(f"{PLUGINS}:WrongSchema")), SchemaMismatch)
    assert "column 'id' should be int64 but is string" in str(caught)


def test_falls_back_to_the_built_in(workdir: Path) -> None:
    source_csv(workdir, "id", "name")  # the built-in reads what the plugin would have
    path = job_file(
        workdir, served(f"{FIXTURES}:Raises"), options={"kind": "RuntimeError"}, fallback="default"
    )
    report = run(path)
    assert report.fallback_used and "plain failure" in str(report.fallback_reason)
    assert report.reader is not None and report.reader.implementation == "csv"
    assert read_parquet_dir(workdir / "out" / "items").num_rows == 3


def test_secrets_in_the_plugins_output_are_redacted(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("API_TOKEN", "s3cr3t-t0ken-value")
    path = job_file(workdir, served(f"{FIXTURES}:LogsSecret"), options={"token": "${API_TOKEN}"})
    with caplog.at_level(logging.INFO, logger="dativo"):
        run(path)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("dativo.reader")]
    assert any("connecting with token ***" in line for line in lines), lines
    assert any("debug: token=***" in line for line in lines), lines
    assert all("s3cr3t" not in r.getMessage() for r in caplog.records)


def test_the_cli_runs_a_process_plugin(workdir: Path, cli: Callable[..., Any]) -> None:
    path = job_file(workdir, served(f"{PLUGINS}:GoodReader"), options={"rows": 5})
    result = cli("run", str(path), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["reader"]["origin"] == "process" and report["rows_written"] == 5


def test_config_forms() -> None:
    command = PluginCommand(command=["./bin/x", "--flag"], env={"TOKEN": "t"})
    assert (command.start_timeout_s, command.call_timeout_s, command.stall_timeout_s) == (10, 60, 300)
    assert str(command) == "./bin/x --flag"
    assert str(FlightEndpoint(flight="grpc+unix:///tmp/p.sock")) == "grpc+unix:///tmp/p.sock"


def test_a_plugin_that_forbids_fallback_is_not_replaced(workdir: Path) -> None:
    path = job_file(workdir, writer=served(f"{PLUGINS}:SealedFailingWriter"), fallback="default")
    caught = fails(path, PluginFailed)
    assert "disk quota exceeded" in str(caught) and caught.role == "writer"
    assert read_parquet_dir(workdir / "out" / "items").num_rows == 0


def test_plugins_info_shows_the_plugins_own_options(cli: Callable[..., Any]) -> None:
    result = cli("plugins", "info", f"{FIXTURES}:ExecutableNumbers")  # its host stops the plugin it asked
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert (info["language"], info["version"]) == ("python", "2.0.1")
    assert set(info["options"]["properties"]) == {"rows", "batch_size"}


# --- counters ----------------------------------------------------------------------------------------------


def test_what_an_out_of_process_reader_and_writer_counted_reaches_the_report(workdir: Path) -> None:
    report = run(job_file(workdir, served(f"{PLUGINS}:CountingReader"), served(f"{PLUGINS}:CountingWriter"),
                          parallelism=4))
    assert report.rows_written == 20 and report.reader is not None and report.reader.origin == "process"
    assert report.counters == {"reader": {"batches": 12, "rows.seen": 20}, "writer": {"splits_written": 4}}


def test_counters_a_plugin_process_forges_are_bounded(workdir: Path) -> None:
    """The plugin writes past Context.count into what its process answers close with: 5000 names, names
    that are no names, counts that are no counts. The host keeps 100 names and only real counts."""
    report = run(job_file(workdir, served(f"{PLUGINS}:TamperedCounters"), parallelism=4))
    assert report.status == "succeeded" and report.rows_written == 20
    kept = report.counters["reader"]
    assert len(kept) == 100 and kept["batches"] == 12  # the first 100 names in the order sent (sorted)
    assert all(name.startswith("flood.") for name in kept.keys() - {"batches"})
    assert not {"", "../../etc/passwd", "negative", "text", "flag", "huge"} & kept.keys()
    assert any("more than 100 counter names" in w for w in report.warnings)
    assert any("sent 8 counter(s) that are not a name with a count" in w for w in report.warnings), report.warnings


def test_an_answer_larger_than_an_action_may_be_is_refused_unread(workdir: Path) -> None:
    """A plugin process answers plan with 70 MiB of JSON: refused by its size, before it is parsed."""
    error = fails(job_file(workdir, served(f"{PLUGINS}:HugePlan")), PluginFailed)
    assert "the plugin answered 'plan' with 70 MiB, more than the 64 MiB an answer may be" in str(error)


def test_a_write_answer_larger_than_an_answer_may_be_is_refused_unread(workdir: Path) -> None:
    error = fails(job_file(workdir, writer=served(f"{PLUGINS}:HugeWritten")), PluginFailed)
    assert "the plugin's answer to 'write' is " in str(error) and "more than the 64 MiB an answer may be" in \
        str(error), error
    assert read_parquet_dir(workdir / "out" / "items").num_rows == 0  # nothing published
