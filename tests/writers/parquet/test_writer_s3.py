"""The parquet writer on a real S3 server: the commit log is the commit point, folders follow it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pytest
import yaml

from dativo.api import CommitInfo, Context, Dataset, Split, WrittenFiles
from dativo.errors import CommitFailed, CommitStateUnknown, ConfigError, ConnectionFailed, SchemaMismatch
from dativo.registry import resolve
from dativo.storage import CommitRecord, S3Settings, S3Store
from dativo.writers.parquet import MARKER, ParquetWriter, read_committed
from tests.fixtures.s3 import S3Server
from tests.storage.helpers import RefusingLog

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string())])
ITEMS = Dataset("items", SCHEMA)


@pytest.fixture
def url(s3_bucket: str) -> str:
    return f"s3://{s3_bucket}/lake/items"


def make_writer(server: S3Server, url: str, run_id: str, **options: Any) -> ParquetWriter:
    spec = resolve("writer", "parquet")
    config = spec.build_config({"path": url, "s3": server.settings(), **options}, {}, section="target")
    ctx = Context(job="items", run_id=run_id, plugin="parquet", logger=logging.getLogger("test"))
    return spec.cls(config, ctx)


def stage(writer: ParquetWriter, ids: list[int], mode: str = "append") -> WrittenFiles:
    writer.prepare(ITEMS, SCHEMA, mode)  # type: ignore[arg-type]
    batch = pa.record_batch([pa.array(ids, pa.int64()), pa.array([f"n{i}" for i in ids])], schema=SCHEMA)
    return writer.write(Split("items", "0"), pa.RecordBatchReader.from_batches(SCHEMA, [batch]))


def run(server: S3Server, url: str, run_id: str, ids: list[int], mode: str = "append", state: Any = None) -> CommitInfo:
    writer = make_writer(server, url, run_id)
    return writer.commit(ITEMS, [stage(writer, ids, mode)], state, run_id)


def committed_ids(server: S3Server, url: str) -> list[int]:
    return sorted(read_committed(url, s3=server.settings()).to_table().column("id").to_pylist())


def keys(server: S3Server, url: str) -> list[str]:
    root = url.removeprefix("s3://")
    infos = server.filesystem().get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return sorted(i.path.removeprefix(root + "/") for i in infos if i.type == pafs.FileType.File)


def listed_ids(server: S3Server, url: str) -> list[int]:
    """What a reader that lists the prefix (pyarrow, DuckDB, Spark) sees."""
    table = pads.dataset(url.removeprefix("s3://"), filesystem=server.filesystem(), format="parquet")
    return sorted(table.to_table().column("id").to_pylist())


def test_append_commits_through_the_log_and_fills_run_folders(s3_server: S3Server, url: str) -> None:
    assert run(s3_server, url, "r1", [1, 2], state={"w": 1}) == CommitInfo(commit_id="000001-r1", rows=2)
    assert run(s3_server, url, "r2", [3]).commit_id == "000002-r2"
    assert keys(s3_server, url) == [
        f"000001-r1/{MARKER}", "000001-r1/part-0-00000.parquet",
        f"000002-r2/{MARKER}", "000002-r2/part-0-00000.parquet",
        "_dativo/log/00000000000000000001.json", "_dativo/log/00000000000000000002.json",
    ]
    assert committed_ids(s3_server, url) == listed_ids(s3_server, url) == [1, 2, 3]
    assert make_writer(s3_server, url, "r3").state(ITEMS) is None  # r2 committed no state
    assert run(s3_server, url, "r1", [9]).no_op  # a committed run id again: nothing new
    assert committed_ids(s3_server, url) == [1, 2, 3]


def test_staged_files_are_invisible_and_abort_removes_them(s3_server: S3Server, url: str) -> None:
    run(s3_server, url, "r1", [1])
    writer = make_writer(s3_server, url, "r2")
    written = stage(writer, [2, 3])
    assert written.files[0].startswith(f"{url}/_dativo/staging/r2/")
    assert committed_ids(s3_server, url) == listed_ids(s3_server, url) == [1]
    writer.abort([written])
    assert not [k for k in keys(s3_server, url) if "staging" in k]


def test_overwrite_replaces_every_older_run(s3_server: S3Server, url: str) -> None:
    run(s3_server, url, "r1", [1, 2])
    run(s3_server, url, "r2", [3])
    run(s3_server, url, "r3", [7, 8], mode="overwrite", state={"w": 3})
    assert committed_ids(s3_server, url) == listed_ids(s3_server, url) == [7, 8]
    folders = sorted({k.split("/")[0] for k in keys(s3_server, url) if not k.startswith("_")})
    assert folders == ["000003-r3"]
    assert make_writer(s3_server, url, "r4").state(ITEMS) == {"w": 3}
    run(s3_server, url, "r4", [9])
    assert committed_ids(s3_server, url) == [7, 8, 9]


def test_a_roll_forward_that_keeps_failing_after_the_log_put_is_finished_by_the_next_run(
    s3_server: S3Server, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit point is the log object: files still staged are served from the staging, then moved."""
    run(s3_server, url, "r1", [1])

    def lost(self: S3Store, record: CommitRecord) -> None:
        raise OSError("connection reset")  # the object store went away right after the PUT of the log entry

    monkeypatch.setattr(S3Store, "roll_forward", lost)
    with pytest.raises(CommitStateUnknown, match="run r2 is committed") as caught:
        run(s3_server, url, "r2", [2, 3])
    assert "a reader that lists the prefix sees at most part of it" in str(caught.value)
    assert committed_ids(s3_server, url) == [1, 2, 3]  # committed: read whole, from its staging
    assert listed_ids(s3_server, url) == [1]  # a listing reader never sees a staged file
    monkeypatch.undo()

    writer = make_writer(s3_server, url, "r3")
    writer.prepare(ITEMS, SCHEMA, "append")  # the next run moves r2's files into place
    assert listed_ids(s3_server, url) == committed_ids(s3_server, url) == [1, 2, 3]
    assert not [k for k in keys(s3_server, url) if "staging" in k]


def test_a_failed_log_put_publishes_nothing(s3_server: S3Server, url: str) -> None:
    run(s3_server, url, "r1", [1])
    writer = make_writer(s3_server, url, "r2")
    written = stage(writer, [2])
    target = writer._target("items")
    target.fs = RefusingLog(target.fs)  # type: ignore[assignment]
    with pytest.raises(CommitFailed, match="cannot write commit 2: AWS Error ACCESS_DENIED"):
        writer.commit(ITEMS, [written], None, "r2")
    assert committed_ids(s3_server, url) == listed_ids(s3_server, url) == [1]
    writer.abort([written])
    assert not [k for k in keys(s3_server, url) if "staging" in k]
    assert run(s3_server, url, "r2", [2]).commit_id == "000002-r2"  # a retry commits normally


def test_a_commit_slot_taken_meanwhile_is_never_overwritten(s3_server: S3Server, url: str) -> None:
    run(s3_server, url, "r1", [1])
    writer = make_writer(s3_server, url, "r2")
    written = stage(writer, [2])
    other = {"format": 1, "job": "other", "run_id": "x", "seq": 2, "folder": "000002-x", "mode": "append",
             "rows": 0, "files": [], "schema": "", "state": None}
    log_entry = f"{url.removeprefix('s3://')}/_dativo/log/{2:020d}.json"
    with s3_server.filesystem().open_output_stream(log_entry) as stream:
        stream.write(json.dumps(other).encode())
    # a record computed before the other commit landed: refused, the other commit stays
    target = S3Store(url, S3Settings.model_validate(s3_server.settings()))
    stale = {**other, "job": "items", "run_id": "r2", "folder": "000002-r2", "files": ["part-0-00000.parquet"]}
    with pytest.raises(CommitFailed, match="taken by another run"):
        target.publish(CommitRecord.from_json(stale))
    assert json.loads(s3_server.filesystem().open_input_stream(log_entry).read())["run_id"] == "x"
    # the writer computes its slot when it commits: it takes the next free one
    assert writer.commit(ITEMS, [written], None, "r2").commit_id == "000003-r2"
    assert committed_ids(s3_server, url) == [1, 2]


def test_append_with_another_schema_is_refused(s3_server: S3Server, url: str) -> None:
    run(s3_server, url, "r1", [1])
    writer = make_writer(s3_server, url, "r2")
    with pytest.raises(SchemaMismatch, match="another schema"):
        writer.prepare(ITEMS, pa.schema([("id", pa.string())]), "append")


def test_check_names_a_missing_bucket_and_bad_credentials(s3_server: S3Server, s3_bucket: str) -> None:
    with pytest.raises(ConnectionFailed, match="'no-such-bucket' does not exist"):
        make_writer(s3_server, "s3://no-such-bucket/x", "r1").check()
    secret = "wrong-Secret-0123456789"
    spec = resolve("writer", "parquet")
    settings = {**s3_server.settings(), "secret_access_key": secret}
    config = spec.build_config({"path": f"s3://{s3_bucket}/x", "s3": settings}, {}, section="target")
    writer = spec.cls(config, Context(job="j", run_id="r", plugin="parquet", logger=logging.getLogger("t")))
    with pytest.raises(ConnectionFailed) as caught:
        writer.check()
    assert secret not in str(caught.value) and s3_server.endpoint in str(caught.value)
    make_writer(s3_server, f"s3://{s3_bucket}/x", "r1").check()  # the right credentials pass


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"path": "s3:///prefix"}, "names no bucket"),
        ({"path": "gs://bucket/x"}, "expected a local folder"),
        ({"path": "out", "s3": {"endpoint": "http://localhost:1"}}, "s3 settings need an s3:// path"),
        ({"path": "s3://b/x", "target_file_size_mb": 8192}, "at most 4096"),
    ],
)
def test_bad_storage_settings_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve("writer", "parquet").build_config(options, {}, section="target")


def test_a_job_writes_to_s3_through_the_cli(
    s3_server: S3Server, s3_bucket: str, workdir: Path, write_job: Any, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "in.csv").write_text("id,name\n1,a\n2,b\n")
    settings = s3_server.settings()
    monkeypatch.setenv("S3_SECRET", str(settings.pop("secret_access_key")))
    job = {
        "version": 1,
        "name": "csv_to_s3",
        "source": {"type": "csv", "path": "in.csv"},
        "target": {
            "type": "parquet",
            "path": f"s3://{s3_bucket}/out/{{dataset}}",
            "s3": {**settings, "secret_access_key": "${S3_SECRET}"},
        },
    }
    path = write_job(yaml.safe_dump(job))
    result = cli("run", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert "S3_SECRET" not in result.output and str(s3_server.secret_key) not in result.output
    table = read_committed(f"s3://{s3_bucket}/out/csv_to_s3", s3=s3_server.settings()).to_table()
    assert sorted(table.column("id").to_pylist()) == [1, 2]
