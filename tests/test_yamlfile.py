"""Strict YAML: one meaning per key, bounded size, depth and alias expansion."""

from __future__ import annotations

import pytest

from dativo.errors import ConfigError
from dativo.yamlfile import MAX_DEPTH, load_document


def test_plain_documents_load_with_their_nodes() -> None:
    node, value = load_document("a: 1\nb: [x, y]\n", "job.yaml")
    assert value == {"a": 1, "b": ["x", "y"]} and node is not None
    assert load_document("", "job.yaml") == (None, None)


def test_duplicate_keys_name_both_lines() -> None:
    with pytest.raises(ConfigError, match=r"line 3: key 'a' is given twice \(first at line 1\)"):
        load_document("a: 1\nb: 2\na: 3\n", "job.yaml")
    with pytest.raises(ConfigError, match="given twice"):
        load_document("x: {k: 1, k: 2}\n", "job.yaml")


def test_merge_keys_may_be_overridden() -> None:
    _, value = load_document("base: &b {k: 1, j: 2}\nx:\n  <<: *b\n  k: 3\n", "job.yaml")
    assert value["x"] == {"k": 3, "j": 2}


def test_aliases_are_fine_until_they_explode() -> None:
    _, value = load_document("a: &a [1, 2]\nb: *a\n", "job.yaml")
    assert value["b"] == [1, 2]
    bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 8)
    )
    with pytest.raises(ConfigError, match="expands to more than"):
        load_document(bomb, "job.yaml")


def test_recursive_aliases_and_depth_are_refused() -> None:
    with pytest.raises(ConfigError, match="refers to itself"):
        load_document("a: &a [1, *a]\n", "job.yaml")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_document("x: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5), "job.yaml")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_document("x: " + "[" * 20000 + "]" * 20000, "job.yaml")


def test_size_and_syntax() -> None:
    with pytest.raises(ConfigError, match="larger than"):
        load_document("a: " + "x" * (1 << 20) + "\n", "job.yaml")
    with pytest.raises(ConfigError, match="not valid YAML at line 2"):
        load_document("a: [\n", "job.yaml")
