"""The one check for names that become paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from dativo.errors import ConfigError, PluginFailed
from dativo.names import UnsafeName, check_name, check_plugin_name, check_run_id, inside, join, name_problem


@pytest.mark.parametrize("name", ["public.orders", "orders", "Orders_2024-01", "ä漢字", "a..b"])
def test_ordinary_names_pass(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "a\\b", ".hidden", "x\x00y", "x\x1b[2J", "a" * 256, 3])
def test_names_that_could_leave_their_folder_are_refused(name: object) -> None:
    assert name_problem(name) is not None
    with pytest.raises(PluginFailed, match="dataset name") as caught:
        check_plugin_name(name, "dataset name", role="reader", stage="discover")
    assert (caught.value.role, caught.value.stage) == ("reader", "discover")
    assert "\x1b" not in str(caught.value) and "\x00" not in str(caught.value)


@pytest.mark.parametrize("run_id", ["abc", "0f3e", "run-1_2", "a" * 128])
def test_valid_run_ids(run_id: str) -> None:
    assert check_run_id(run_id) == run_id


@pytest.mark.parametrize("run_id", ["", "-x", "_x", "a:b", "a+b", "a/b", "../x", "a b", "a" * 129, "é"])
def test_invalid_run_ids(run_id: str) -> None:
    with pytest.raises(ConfigError, match="not a valid run id"):
        check_run_id(run_id)


def test_inside_does_not_follow_a_final_link(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "victim").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "victim")
    assert inside(tmp_path / "root", tmp_path / "root" / "link")  # the link itself lies inside
    assert not inside(tmp_path / "root", tmp_path / "root" / "link" / "file")  # what it points to does not
    assert not inside(tmp_path / "root", tmp_path / "root" / ".." / "victim")
    assert inside(tmp_path / "root", tmp_path / "root")


def test_join_builds_paths_only_from_safe_names(tmp_path: Path) -> None:
    assert join("bucket/lake", "_dativo", "staging", "r1", what="run id") == "bucket/lake/_dativo/staging/r1"
    for name in ("..", "../x", "a/b", ".lease", ""):
        with pytest.raises(UnsafeName, match="run id"):
            join("bucket/lake", "_dativo", name, what="run id")
    assert check_name("orders", "dataset name") == "orders"


def test_join_refuses_a_local_path_that_a_link_leads_out(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "victim").mkdir()
    (tmp_path / "root" / "_dativo").symlink_to(tmp_path / "victim")
    root = str(tmp_path / "root")
    assert join(root, "_dativo", "staging") == f"{root}/_dativo/staging"  # lexically fine …
    with pytest.raises(UnsafeName, match="leads out of"):
        join(root, "_dativo", "staging", local=True)  # … but the link leads out
    assert join(root, "_dativo", local=True) == f"{root}/_dativo"  # the link itself lies inside
