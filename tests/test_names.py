"""The one check for names that become paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from dativo.errors import ConfigError, PluginFailed
from dativo.names import check_plugin_name, check_run_id, inside, name_problem


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
