"""A store on S3 (a real SeaweedFS): the log object is the commit point, the roll-forward follows it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
import pytest

from dativo.errors import CommitFailed, CommitStateUnknown, ConnectionFailed
from dativo.storage import MARKER, S3Settings, S3Store
from tests.fixtures.s3 import S3Server
from tests.storage.helpers import RefusingLog, commit, committed_ids, keys, listed_ids, stage

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def s3(s3_server: S3Server, s3_bucket: str) -> S3Store:
    return S3Store(f"s3://{s3_bucket}/lake/items", S3Settings.model_validate(s3_server.settings()))


def killed(point: str, store: S3Store, server: S3Server, run_id: str) -> None:
    """Commit run ``run_id`` in another process, SIGKILLed at ``point`` (see :mod:`tests.storage.killing`)."""
    process = subprocess.run(
        [sys.executable, "-m", "tests.storage.killing", point, store.location, run_id,
         json.dumps(server.settings())],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr


def test_the_log_object_is_the_commit_and_the_run_folder_follows(s3: S3Store) -> None:
    commit(s3, "r1", stage(s3, "r1", [1], [2]))
    assert keys(s3) == [
        f"000001-r1/{MARKER}", "000001-r1/part-0-00000.parquet", "000001-r1/part-0-00001.parquet",
        "_dativo/log/00000000000000000001.json",
    ]
    with s3.fs.open_input_stream(s3.log_entry(1)) as stream:
        assert json.loads(stream.read())["files"] == ["part-0-00000.parquet", "part-0-00001.parquet"]


@pytest.mark.parametrize("point", ["after_put", "mid_copy"])
def test_a_kill_after_the_put_is_rolled_forward_by_the_next_run(
    s3: S3Store, s3_server: S3Server, point: str
) -> None:
    commit(s3, "r1", stage(s3, "r1", [1]))
    killed(point, s3, s3_server, "r2")
    assert [r.run_id for r in s3.records()] == ["r2", "r1"]
    assert committed_ids(s3) == [1, 10, 11, 12]  # committed: read whole, partly from its staging
    assert set(listed_ids(s3)) <= {1, 10, 11}  # a listing reader sees at most the files copied so far
    s3.prepare("r3")
    assert committed_ids(s3) == listed_ids(s3) == [1, 10, 11, 12]
    assert not [k for k in keys(s3) if "staging" in k]
    assert [k for k in keys(s3) if k.startswith("000002-r2/")] == [
        f"000002-r2/{MARKER}", "000002-r2/part-0-00000.parquet", "000002-r2/part-0-00001.parquet",
    ]


def test_an_interrupted_overwrite_drops_the_replaced_folders_on_the_next_run(s3: S3Store) -> None:
    commit(s3, "r1", stage(s3, "r1", [1]))
    files = stage(s3, "r2", [2])

    def lost(record: object) -> None:
        raise OSError("connection reset")  # the object store went away right after the PUT

    s3.roll_forward = lost  # type: ignore[method-assign]
    with pytest.raises(CommitStateUnknown, match="run r2 is committed") as caught:
        commit(s3, "r2", files, mode="overwrite")
    assert "sees the replaced data and at most part of the new" in str(caught.value)
    assert "--run-id r2" in str(caught.value.hint)
    del s3.roll_forward
    assert committed_ids(s3) == [2] and listed_ids(s3) == [1]  # a listing reader still sees the old run
    s3.prepare("r3")
    assert committed_ids(s3) == listed_ids(s3) == [2]


def test_a_failed_put_publishes_nothing(s3: S3Store) -> None:
    files = stage(s3, "r1", [1])
    real = s3.fs
    s3.fs = RefusingLog(real)  # type: ignore[assignment]
    with pytest.raises(CommitFailed, match="cannot write commit 1: AWS Error ACCESS_DENIED"):
        commit(s3, "r1", files)
    s3.fs = real
    assert s3.records() == [] and committed_ids(s3) == listed_ids(s3) == []
    assert commit(s3, "r1", files) == 1  # the staging is intact: a retry commits


def test_a_failed_put_that_cannot_be_read_back_is_a_commit_of_unknown_state(s3: S3Store) -> None:
    files = stage(s3, "r1", [1])
    records = s3.records()
    s3.fs = RefusingLog(s3.fs, reads_fail=True)  # type: ignore[assignment]
    s3.records = lambda: records  # type: ignore[method-assign]  # the log was read before the network went
    with pytest.raises(CommitStateUnknown, match="outcome cannot be read back"):
        commit(s3, "r1", files)


def test_check_names_a_missing_bucket_and_never_a_secret(s3_server: S3Server) -> None:
    with pytest.raises(ConnectionFailed, match="bucket 'no-such-bucket' does not exist"):
        S3Store("s3://no-such-bucket/x", S3Settings.model_validate(s3_server.settings())).check()
    secret = "wrong-Secret-0123456789"
    bad = S3Settings.model_validate(s3_server.settings(secret_access_key=secret))
    with pytest.raises(ConnectionFailed) as caught:
        S3Store(f"s3://{s3_server.create_bucket()}/x", bad).check()
    assert secret not in str(caught.value) and s3_server.endpoint in str(caught.value)
