"""The commit protocol, the same on a local folder and on S3 (``store`` runs each test on both)."""

from __future__ import annotations

import json

import pytest

from dativo.errors import CommitFailed
from dativo.names import UnsafeName
from dativo.storage import MARKER, CommitRecord, S3Store, Store
from tests.storage.helpers import commit, committed_ids, keys, listed_ids, reopen, stage


def test_staged_files_are_invisible_until_the_commit(store: Store) -> None:
    store.prepare("r1")
    files = stage(store, "r1", [1, 2], [3])
    assert all(store.path(f).startswith(f"{store.root}/_dativo/staging/r1/") for f in files)
    assert store.records() == [] and committed_ids(store) == [] and listed_ids(store) == []
    commit(store, "r1", files)
    assert committed_ids(store) == listed_ids(store) == [1, 2, 3]
    assert not [k for k in keys(store) if "staging" in k]


def test_commits_take_numbered_slots(store: Store) -> None:
    for n, run_id in enumerate(["a", "b", "c"], start=1):
        store.prepare(run_id)
        assert commit(store, run_id, stage(store, run_id, [n])) == n
    assert [(r.seq, r.run_id, r.folder) for r in store.records()] == [
        (3, "c", "000003-c"), (2, "b", "000002-b"), (1, "a", "000001-a"),
    ]
    assert [k for k in keys(store) if k.endswith(MARKER)] == [f"00000{n}-{r}/{MARKER}" for n, r in
                                                              ((1, "a"), (2, "b"), (3, "c"))]
    assert committed_ids(store) == [1, 2, 3]


def test_the_record_carries_the_writers_fields(store: Store) -> None:
    files = stage(store, "r1", [1])
    done = store.commit(job="j", run_id="r1", mode="append", files=files, rows=1,
                        extra=lambda seq: {"sealed": f"for slot {seq}"})
    (record,) = reopen(store).records()
    assert record == done.record
    assert (record.job, record.rows, record.files, record.extra) == ("j", 1, ("part-0-00000.parquet",),
                                                                      {"sealed": "for slot 1"})


def test_a_committed_run_commits_again_as_a_no_op(store: Store) -> None:
    first = store.commit(job="items", run_id="r1", mode="append", files=stage(store, "r1", [1]), rows=1)
    again = store.commit(job="items", run_id="r1", mode="append", files=stage(store, "r1", [9]), rows=1)
    assert again.no_op and again.record == first.record and not first.no_op
    store.abort("r1", [])
    assert committed_ids(store) == listed_ids(store) == [1]
    assert not [k for k in keys(store) if "staging" in k]


def test_a_second_commit_racing_for_the_same_slot_loses_cleanly(store: Store) -> None:
    """Both runs saw an empty log and chose slot 1; the one that passes the commit point second loses."""
    commit(store, "winner", stage(store, "winner", [1]))
    loser = reopen(store)
    files = stage(loser, "loser", [2])
    late = CommitRecord(job="items", run_id="loser", seq=1, files=("part-0-00000.parquet",))
    with pytest.raises(CommitFailed, match="commit 1 was taken by another run") as caught:
        loser.publish(late)
    assert "one job per target" in str(caught.value.hint)
    assert [(r.seq, r.run_id) for r in store.records()] == [(1, "winner")]
    assert committed_ids(store) == listed_ids(store) == [1]
    assert commit(loser, "loser", files) == 2  # a retry reads the log again and takes the next free slot
    assert committed_ids(store) == listed_ids(store) == [1, 2]


def test_a_commit_missing_a_staged_file_publishes_nothing(store: Store) -> None:
    files = stage(store, "r1", [1], [2])
    store.fs.delete_file(store.path(files[1]))
    with pytest.raises(CommitFailed, match="staged files are missing: part-0-00001.parquet"):
        commit(store, "r1", files)
    assert store.records() == [] and committed_ids(store) == listed_ids(store) == []


def test_files_outside_the_runs_staging_are_refused(store: Store) -> None:
    files = stage(store, "other", [1])
    with pytest.raises(CommitFailed, match="not in run r1's staging"):
        commit(store, "r1", files)
    assert store.records() == []


def test_overwrite_replaces_every_older_run(store: Store) -> None:
    commit(store, "r1", stage(store, "r1", [1, 2]))
    commit(store, "r2", stage(store, "r2", [3]))
    commit(store, "r3", stage(store, "r3", [7, 8]), mode="overwrite")
    assert committed_ids(store) == listed_ids(store) == [7, 8]
    assert sorted({k.split("/")[0] for k in keys(store) if not k.startswith("_")}) == ["000003-r3"]
    assert [r.run_id for r, _ in store.live()] == ["r3"]
    commit(store, "r4", stage(store, "r4", [9]))
    assert committed_ids(store) == listed_ids(store) == [7, 8, 9]


def test_abort_deletes_what_the_run_staged(store: Store) -> None:
    commit(store, "r1", stage(store, "r1", [1]))
    files = stage(store, "r2", [2], [3])
    store.abort("r2", files)
    assert not [k for k in keys(store) if "staging" in k]
    assert committed_ids(store) == listed_ids(store) == [1]


def test_an_empty_run_commits_a_record_without_files(store: Store) -> None:
    commit(store, "r1", [], state={"cursor": 1})
    (record,) = store.records()
    assert record.files == () and record.extra == {"state": {"cursor": 1}}
    assert committed_ids(store) == []


# --- names that could leave the folder ---------------------------------------------------------------


@pytest.mark.parametrize("run_id", ["..", "../x", "a/b", ".hidden", ""])
def test_run_ids_that_could_leave_the_folder_are_refused(store: Store, run_id: str) -> None:
    with pytest.raises(UnsafeName, match="run id"):
        store.staging(run_id)
    with pytest.raises(UnsafeName):
        stage(store, run_id, [1])
    assert keys(store) == []


def test_files_handed_back_from_outside_the_staging_are_never_published_or_deleted(store: Store) -> None:
    commit(store, "r1", stage(store, "r1", [1]))
    (published,) = store.committed_files()
    files = stage(store, "r2", [2])
    for claim in (store.uri(published), f"{store.uri(store.staging('r2'))}/../../../000001-r1/part-0-00000.parquet",
                  f"{store.uri(store.staging('r2'))}/{MARKER}"):
        with pytest.raises(CommitFailed, match="refused to publish"):
            commit(store, "r2", [*files, claim])
        with pytest.raises(UnsafeName, match="refused to delete"):
            store.abort("r2", [*files, claim])
        assert committed_ids(store) == listed_ids(store) == [1]  # the published file is still there
        files = stage(store, "r2", [2])
    store.abort("r2", files)
    assert not [k for k in keys(store) if "staging" in k and not k.endswith(".lease")]


@pytest.mark.parametrize("planted", [b"not json", b"[1, 2]", b'"a string"', b"[" * 200_000 + b"]" * 200_000],
                         ids=["text", "list", "string", "deep"])
def test_a_planted_file_where_a_record_belongs_is_refused_by_name(store: Store, planted: bytes) -> None:
    """Whatever lies where a commit record belongs, even JSON nested past the parser's depth, is refused as
    not a commit record, naming the file: never a stray exception."""
    commit(store, "r1", stage(store, "r1", [1]))
    if isinstance(store, S3Store):
        entry = store.log_entry(2)
    else:
        store.fs.create_dir(f"{store.root}/000002-evil")
        entry = f"{store.root}/000002-evil/{MARKER}"
    with store.fs.open_output_stream(entry) as stream:
        stream.write(planted)
    with pytest.raises(OSError, match="is not a commit record") as caught:
        store.records()
    assert caught.value.filename.endswith(entry.rsplit("/", 2)[-1]) and "000002" in caught.value.filename


def test_a_tampered_record_is_refused_before_any_of_its_names_becomes_a_path(store: Store) -> None:
    commit(store, "r1", stage(store, "r1", [1]))
    tampered = {"format": 1, "job": "items", "run_id": "evil", "seq": 2, "folder": "000002-evil", "mode": "append",
                "rows": 1, "files": ["../000001-r1/part-0-00000.parquet"], "staging": ".."}
    if isinstance(store, S3Store):
        entry = store.log_entry(2)
        tampered["folder"] = "../.."
    else:
        store.fs.create_dir(f"{store.root}/000002-evil")
        entry = f"{store.root}/000002-evil/{MARKER}"
    with store.fs.open_output_stream(entry) as stream:
        stream.write(json.dumps(tampered).encode())
    before = keys(store)
    steps = [store.records, store.committed_files]
    if isinstance(store, S3Store):  # its prepare rolls committed runs forward: it reads the records
        steps.append(lambda: store.prepare("r3"))
    for step in steps:
        with pytest.raises(UnsafeName, match="commit 2 .* is refused"):
            step()
    with pytest.raises(CommitFailed, match="commit 2"):
        commit(store, "r3", stage(store, "r3", [3]))
    assert [k for k in keys(store) if "staging" not in k] == [k for k in before if "staging" not in k]
