"""The option tables of the docs state the defaults the configuration models have, so they cannot drift."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from dativo.config import TargetConfig
from dativo.registry import resolve

ROOT = Path(__file__).resolve().parent.parent
PROSE = object()
"""A default the docs describe in words (``job name``, ``embedded`` …): only the key is checked."""

# (file, heading that starts the table's section, role, implementation whose Config the table documents)
TABLES = [
    ("docs/connectors.md", "### `postgres`", "reader", "postgres"),
    ("docs/connectors.md", "### `postgres`", "reader", "postgres-python"),
    ("docs/connectors.md", "### `csv`, `jsonl`, `parquet`", "reader", "csv"),
    ("docs/connectors.md", "### `csv`, `jsonl`, `parquet`", "reader", "jsonl"),
    ("docs/connectors.md", "### `csv`, `jsonl`, `parquet`", "reader", "parquet"),
    ("docs/connectors.md", "### `iceberg`", "writer", "iceberg"),
    ("docs/connectors.md", "### `parquet`", "writer", "parquet"),
    ("examples/plugins/cobol_reader/README.md", "## Options", "reader", "cobol"),
    ("examples/plugins/hsm_writer/README.md", "## Options", "writer", "hsm_encrypted"),
]
_UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
ENGINE_KEYS: dict[str, type[BaseModel]] = {"mode": TargetConfig}


def table(file: str, heading: str) -> list[tuple[list[str], str]]:
    """The ``(keys, default)`` rows of the first ``| key | default | … |`` table after ``heading``."""
    text = (ROOT / file).read_text(encoding="utf-8")
    start = text.index(heading)
    rows: list[tuple[list[str], str]] = []
    for line in text[start:].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) >= 3 and cells[1].lower() == "default":
            rows = []
        elif len(cells) >= 3 and not set(cells[0]) <= {"-"}:
            rows.append((re.findall(r"`([^`]+)`", cells[0]), cells[1]))
        elif rows and not line.startswith("|"):
            break
    assert rows, f"no option table after {heading!r} in {file}"
    return rows


def value(text: str) -> Any:
    """What a default cell says: ``8 MiB``, ``20 000``, ``` `zstd` ```, ``` `[""]` ```, ``required`` …

    Words outside backticks (``job name``, ``embedded``) are :data:`PROSE`.
    """
    text = text.strip()
    quoted = text.startswith("`") and text.endswith("`")
    text = text.strip("`")
    if text == "required":
        return PydanticUndefined
    if text in ("—", "–", "-"):
        return None
    number = re.fullmatch(r"(\d[\d ]*)(?: (KiB|MiB|GiB))?", text)
    if number:
        return int(number[1].replace(" ", "")) * _UNITS.get(number[2] or "", 1)
    if not quoted:
        return PROSE
    try:
        return json.loads(text)
    except ValueError:
        return text


def field_default(model: type[BaseModel], key: str) -> Any:
    """The default of ``key`` (``a.b`` for a nested model's field), ``PydanticUndefined`` if required.

    An engine key documented with a connector's options (a target's ``mode``) is the section's.
    """
    first, _, rest = key.partition(".")
    if first not in model.model_fields and first in ENGINE_KEYS:
        model = ENGINE_KEYS[first]
    assert first in model.model_fields, f"{model.__name__} has no option {first!r}"
    field = model.model_fields[first]
    if rest:
        nested = next(t for t in (field.annotation, *getattr(field.annotation, "__args__", ()))
                      if isinstance(t, type) and issubclass(t, BaseModel))
        return field_default(nested, rest)
    return field.get_default(call_default_factory=True)


@pytest.mark.parametrize(("file", "heading", "role", "name"), TABLES, ids=[f"{t[0]}:{t[3]}" for t in TABLES])
def test_documented_defaults_are_the_models(file: str, heading: str, role: str, name: str) -> None:
    model = resolve(role, name).cls.Config  # type: ignore[arg-type]
    checked = 0
    for keys, default in table(file, heading):
        defaults = [d.strip() for d in default.split(", ")] if len(keys) > 1 else [default]
        for key, cell in zip(keys, defaults if len(defaults) == len(keys) else defaults[:1], strict=False):
            documented = value(cell)
            actual = field_default(model, key)
            if documented is not PROSE:
                assert documented == actual, f"{file}: `{key}` is {cell!r} there, {actual!r} in the code"
                checked += 1
    assert checked >= 3


def test_the_readme_names_every_option_of_the_built_ins() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for role, name, heading in [
        ("reader", "csv", "| `csv` reader |"),
        ("reader", "postgres", "| `postgres`, `postgres-python` readers |"),
        ("writer", "iceberg", "| `iceberg` writer |"),
        ("writer", "parquet", "| `parquet` writer |"),
    ]:
        line = next(line for line in readme.splitlines() if line.startswith(heading))
        keys = re.sub(r"\([^)]*\)", "", line.removeprefix(heading))  # not `sql` in "(`sql` or `rest`)"
        named = {key.partition(".")[0] for key in re.findall(r"`([^`]+)`", keys)}
        options = set(resolve(role, name).cls.Config.model_fields)  # type: ignore[arg-type]
        assert named - options == set(), f"README names options {name} does not have"
        assert options - named == set(), f"README's {name} row misses options"
