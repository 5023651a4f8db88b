"""Reading a job file's YAML strictly: one meaning per key, bounded size, depth and alias expansion.

A job file may come from anyone who can write to a repository, so the host treats it as untrusted input:
a duplicated key (``enabled: true`` … ``enabled: false``) is an error instead of "the last one wins", and
alias bombs, deep nesting and huge documents are refused before anything is built from them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from dativo.errors import ConfigError

MAX_BYTES = 1 << 20
"""Largest job file accepted."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists."""
MAX_NODES = 100_000
"""Most values the document may expand to once aliases are followed."""
_MERGE = "tag:yaml.org,2002:merge"


def load_document(text: str, name: str) -> tuple[yaml.Node | None, Any]:
    """Parse ``text`` into its node tree (for line numbers) and its Python value.

    Args:
        text: The YAML document.
        name: The file's name, for messages.

    Raises:
        ConfigError: Invalid YAML, a duplicated key, or a document beyond the limits above.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise ConfigError(f"{name} is larger than {MAX_BYTES // 1024} KiB", hint="A job file is a few lines of YAML.")
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
            if node is None:
                return None, None
            _check(node, name)
            return node, loader.construct_document(node)
        except RecursionError:
            raise ConfigError(f"{name} is nested too deeply", hint=f"Nest at most {MAX_DEPTH} levels.") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"{name} is not valid YAML{at}: {problem}", hint="Fix the YAML syntax.") from None
    finally:
        loader.dispose()


def _check(root: yaml.Node, name: str) -> None:
    """Refuse duplicated keys, cycles, and documents too deep or too large once aliases are expanded."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded values, depth)
    active: set[int] = set()

    def visit(node: yaml.Node) -> tuple[int, int]:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError(f"{name} line {node.start_mark.line + 1}: an alias refers to itself",
                              hint="Remove the recursive anchor.")
        active.add(key)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            _no_duplicates(node, name)
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        total, depth = 1, 0
        for child in children:
            size, below = visit(child)
            total += size
            depth = max(depth, below)
            if total > MAX_NODES:
                raise ConfigError(
                    f"{name} expands to more than {MAX_NODES:,} values (aliases)",
                    hint="Use fewer anchors and aliases.",
                )
        if depth + 1 > MAX_DEPTH:
            raise ConfigError(f"{name} is nested too deeply", hint=f"Nest at most {MAX_DEPTH} levels.")
        active.discard(key)
        sizes[key] = (total, depth + 1)
        return sizes[key]

    try:
        visit(root)
    except RecursionError:
        raise ConfigError(f"{name} is nested too deeply", hint=f"Nest at most {MAX_DEPTH} levels.") from None


def _no_duplicates(node: yaml.MappingNode, name: str) -> None:
    seen: dict[str, int] = {}
    for key, _ in node.value:
        if key.tag == _MERGE or not isinstance(key, yaml.ScalarNode):
            continue  # '<<: *base' may be overridden by explicit keys, as YAML's merge keys intend
        line = key.start_mark.line + 1
        if key.value in seen:
            raise ConfigError(
                f"{name} line {line}: key '{key.value}' is given twice (first at line {seen[key.value]})",
                hint="Keep one of them: a duplicated key is refused rather than letting the last one win.",
            )
        seen[key.value] = line


# --- positions, for messages ------------------------------------------------------------------------


def index_lines(node: yaml.Node, prefix: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    """Record in ``out`` the line of every mapping key and list item below ``node``, by YAML path."""
    out.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, str(key.value))
            out[path] = key.start_mark.line + 1
            index_lines(value, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            index_lines(item, (*prefix, str(i)), out)


class Located:
    """Maps YAML paths (``source.reader.options``) to line numbers for messages."""

    def __init__(self, source: Path | None, lines: dict[tuple[str, ...], int]) -> None:
        self.source = source
        self.lines = lines

    def where(self, path: Iterable[str | int]) -> str:
        """``source.reader.options (line 12)``: the path, with the line of it (or of its nearest parent)."""
        parts = tuple(str(p) for p in path)
        dotted = ".".join(parts) or "(top level)"
        while parts and parts not in self.lines:
            parts = parts[:-1]
        line = self.lines.get(parts)
        return f"{dotted} (line {line})" if line else dotted
