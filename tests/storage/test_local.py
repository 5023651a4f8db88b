"""A store on local disk: the commit point is one rename or one directory exchange, whatever kills it; a
lock per target, a lease per run, and no link is ever followed."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dativo.errors import CommitFailed, ConfigError, ConnectionFailed
from dativo.storage import LEASE, Folder, LinkRefused, LocalStore, exchange, target_problem
from dativo.storage import dirs, local
from tests.storage.helpers import commit, committed_ids, listed_ids, stage

ROOT = Path(__file__).resolve().parents[2]


def beside(folder: Path) -> list[str]:
    """What lies in the folder's parent, but for the target's lock file."""
    return sorted(name for name in os.listdir(folder.parent) if not name.endswith(".dativo.lock"))


def killed(point: str, folder: Path, run_id: str) -> None:
    """Commit run ``run_id`` in another process, SIGKILLed at ``point`` (see :mod:`tests.storage.killing`)."""
    process = subprocess.run([sys.executable, "-m", "tests.storage.killing", point, str(folder), run_id],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert process.returncode == -signal.SIGKILL, process.stderr


@pytest.mark.parametrize("atomic", [True, False], ids=["renameat2", "three-renames"])
def test_exchange_swaps_two_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, atomic: bool) -> None:
    if not atomic:
        monkeypatch.setattr(dirs, "renameat2", None)
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "x").mkdir(parents=True)
    (b / "y").mkdir(parents=True)
    with Folder.open(str(tmp_path)) as folder:
        exchange(folder, "a", "b")
    assert os.listdir(a) == ["y"] and os.listdir(b) == ["x"] and sorted(os.listdir(tmp_path)) == ["a", "b"]


def test_a_kill_before_the_rename_publishes_nothing_and_the_run_can_commit_again(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "items")
    commit(store, "r1", stage(store, "r1", [1]))
    killed("before_rename", tmp_path / "items", "r2")
    assert [r.run_id for r in store.records()] == ["r1"]
    assert committed_ids(store) == listed_ids(store) == [1]
    store.prepare("r2")  # the rerun of the killed run
    commit(store, "r2", stage(store, "r2", [10, 11], [12]))
    assert committed_ids(store) == listed_ids(store) == [1, 10, 11, 12]


def test_a_kill_after_the_exchange_leaves_the_new_content_and_prepare_drops_the_old(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "items")
    commit(store, "r1", stage(store, "r1", [1, 2]))
    inode = (tmp_path / "items").stat().st_ino
    killed("after_exchange", tmp_path / "items", "r2")
    assert committed_ids(store) == listed_ids(store) == [10, 11, 12]  # committed: the exchange is the point
    assert (tmp_path / "items").stat().st_ino != inode
    parked = tmp_path / ".items.dativo-r2"
    assert (parked / "000001-r1").is_dir()  # the replaced content, not yet deleted
    store.prepare("r3")
    assert beside(tmp_path / "items") == ["items"]
    assert committed_ids(store) == [10, 11, 12]


def test_a_kill_between_the_fallbacks_renames_is_rolled_back_by_the_next_run(tmp_path: Path) -> None:
    """Without renameat2 the swap takes three renames: killed after the first, the folder is missing."""
    store = LocalStore(tmp_path / "items")
    commit(store, "r1", stage(store, "r1", [1, 2]))
    files = stage(store, "live", [7])  # another run, still writing: its staging must survive
    killed("between_renames", tmp_path / "items", "r2")
    assert not (tmp_path / "items").exists()  # the kill landed between the renames …
    assert (tmp_path / dirs.parked("items") / "000001-r1").is_dir()  # … with the old content parked
    again = LocalStore(tmp_path / "items")
    again.prepare("r3")
    assert beside(tmp_path / "items") == ["items"]
    assert [r.run_id for r in again.records()] == ["r1"]  # the old content, as before the overwrite
    assert committed_ids(again) == listed_ids(again) == [1, 2]
    assert commit(store, "live", files) == 2  # the other run's staging came back with the folder
    assert committed_ids(again) == listed_ids(again) == [1, 2, 7]
    commit(again, "r3", stage(again, "r3", [9]), mode="overwrite")
    assert committed_ids(again) == listed_ids(again) == [9]


def test_a_kill_after_the_fallbacks_second_rename_keeps_the_new_content(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "items")
    commit(store, "r1", stage(store, "r1", [1, 2]))
    killed("before_last_rename", tmp_path / "items", "r2")
    assert (tmp_path / dirs.parked("items") / "000001-r1").is_dir()
    assert committed_ids(store) == listed_ids(store) == [10, 11, 12]  # committed: the new folder is in place
    store.prepare("r3")
    assert beside(tmp_path / "items") == ["items"]
    assert committed_ids(store) == listed_ids(store) == [10, 11, 12]


def test_prepare_sweeps_stale_staging_and_keeps_a_live_runs(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "items")
    old, young, own = (Path(store.staging(run)) for run in ("crashed", "running", "mine"))
    for folder in (old, young, own):
        folder.mkdir(parents=True)
    hours_ago = time.time() - 7200
    os.utime(old, (hours_ago, hours_ago))
    os.utime(own, (hours_ago, hours_ago))
    store.prepare("mine")
    assert not old.exists() and young.exists() and own.exists()
    assert (own / LEASE).is_file()


def test_staging_whose_lease_is_free_is_swept_at_once(tmp_path: Path) -> None:
    """A run that died (its lease is free) leaves nothing for an hour; a live run's staging stays."""
    dead, alive = LocalStore(tmp_path / "items"), LocalStore(tmp_path / "items")
    stage(dead, "dead", [1])
    stage(alive, "alive", [2])
    dead.close()  # as when its process died: the kernel releases the lock
    LocalStore(tmp_path / "items").prepare("next")
    staging = tmp_path / "items" / "_dativo" / "staging"
    assert sorted(os.listdir(staging)) == ["alive", "next"]
    assert sorted(os.listdir(staging / "alive")) == [LEASE, "part-0-00000.parquet"]


def test_a_second_process_on_the_same_run_id_is_refused(tmp_path: Path) -> None:
    first, second = LocalStore(tmp_path / "items"), LocalStore(tmp_path / "items")
    first.prepare("r1")
    with pytest.raises(OSError, match="in use by a live run r1"):
        second.prepare("r1")
    first.close()
    second.prepare("r1")  # the first one is gone: its staging is taken over


def test_a_commit_waits_for_the_lock_and_fails_clearly_when_it_is_never_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "items")
    files = stage(store, "r1", [1])
    holder = os.open(tmp_path / ".items.dativo.lock", os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another process in the middle of its commit
    monkeypatch.setattr(local, "LOCK_TIMEOUT_S", 0.3)
    try:
        with pytest.raises(CommitFailed, match="is held by another run for more than 0 s") as caught:
            commit(store, "r1", files)
        assert "Nothing was published" in str(caught.value)
    finally:
        os.close(holder)
    assert commit(store, "r1", files) == 1


def test_an_overwrite_never_moves_another_runs_staging_away(tmp_path: Path) -> None:
    writing, overwriting = LocalStore(tmp_path / "items"), LocalStore(tmp_path / "items")
    commit(writing, "r0", stage(writing, "r0", [1]))
    files = stage(writing, "r1", [2])  # staged, not committed yet
    commit(overwriting, "r2", stage(overwriting, "r2", [3]), mode="overwrite")
    assert committed_ids(writing) == listed_ids(writing) == [3]
    assert commit(writing, "r1", files) == 3
    assert committed_ids(writing) == listed_ids(writing) == [2, 3]


@pytest.mark.parametrize("planted", ["items", "items/_dativo", "items/_dativo/staging", "items/_dativo/staging/r2"])
def test_links_where_folders_belong_are_refused_and_never_followed(tmp_path: Path, planted: str) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep")
    hours_ago = time.time() - 7200
    os.utime(victim / "precious.txt", (hours_ago, hours_ago))
    link = tmp_path / planted
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(victim)
    store = LocalStore(tmp_path / "items")
    with pytest.raises(LinkRefused, match=f"{link} is a symbolic link"):
        store.prepare("r2", "overwrite" if planted == "items" else "append")
    with pytest.raises(LinkRefused):
        stage(store, "r2", [1])
    assert os.listdir(victim) == ["precious.txt"] and (victim / "precious.txt").read_text() == "keep"


def test_overwrite_replaces_only_what_dativo_wrote(tmp_path: Path) -> None:
    folder = tmp_path / "items"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    store = LocalStore(folder)
    with pytest.raises(ConfigError, match=r"holds files Dativo did not write \(notes.txt\)"):
        store.prepare("r1", "overwrite")
    store.prepare("r1", "append")  # append only adds a run folder
    commit(store, "r1", stage(store, "r1", [1]))
    with pytest.raises(CommitFailed, match="notes.txt"):  # checked again when the commit replaces the folder
        commit(store, "r2", stage(store, "r2", [2]), mode="overwrite")
    assert (folder / "notes.txt").read_text() == "mine" and committed_ids(store) == [1]
    (folder / "notes.txt").unlink()
    commit(store, "r3", stage(store, "r3", [3]), mode="overwrite")
    assert committed_ids(store) == listed_ids(store) == [3]


@pytest.mark.parametrize(
    ("path", "problem"),
    [("", "empty"), ("/", "root of the file system"), ("/tmp/..", "root of the file system"),
     ("/usr", "top-level folder /usr"), ("~", "the home folder"), (".", "the current folder"),
     ("..", "holds the current folder")],
)
def test_folders_that_cannot_be_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str,
                                        problem: str) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert problem in (target_problem(path) or "")
    with pytest.raises(ValueError, match="cannot be a target"):
        LocalStore(path)
    assert target_problem(str(tmp_path / "home" / "out")) is None


def test_file_urls_and_home_folders_are_understood(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    expected = str(tmp_path / "items")
    assert LocalStore("~/items").root == LocalStore(f"file://{tmp_path}/items").root == expected


def test_check_names_the_folder_that_is_not_writable(tmp_path: Path) -> None:
    LocalStore(tmp_path / "new" / "items").check()
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(ConnectionFailed, match=f"path 'x': folder {locked} is not writable"):
        LocalStore(locked / "items").check("path 'x'")
