"""``dativo plugin new``: a complete plugin project rendered from a template, outside any checkout.

Templates are package data, one folder per language and kind (``templates/<lang>-<kind>/``, on top of the
files every kind of that language shares, ``templates/<lang>-common/``). Every file ends in ``.tmpl``; the
suffix is dropped, a leading ``dot-`` becomes ``.``, ``_name_`` in a path becomes the plugin's name, and
``{{ key }}`` in a text becomes its value (an unknown key is a template bug and fails loudly).
"""

from __future__ import annotations

import keyword
import os
import re
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from dativo import __version__
from dativo.errors import ConfigError
from dativo.registry import has_builtin
from dativo.scaffold.sdk import go_module, rust_crate, sdk_path

LANGUAGES = ("python", "rust", "go", "cpp")
KINDS = ("reader", "writer")
VERSION = "0.1.0"
"""The version a new plugin starts at (written once, in the file its language's build reads it from)."""

TEMPLATES = Path(__file__).resolve().parent / "templates"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_RESERVED = {"dativo", "pyarrow", "pydantic", "pytest", "typer", "rich", "yaml", "packaging", "tests", "test",
             "main", "src", "lib", "build", "target", "std", "core", "alloc", "go", "cpp", "rust", "python"}
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z][a-z0-9_]*)\s*\}\}")
_UNSUPPORTED: dict[tuple[str, str], str] = {}
"""Combinations of language and kind without a template, and why."""


@dataclass(frozen=True)
class Project:
    """A generated plugin project.

    Attributes:
        name: The plugin's name (its entry point, binary, library or crate).
        language: ``python``, ``rust``, ``go`` or ``cpp``.
        kind: ``reader`` or ``writer``.
        path: The project's folder.
        files: Every file written, relative to ``path``.
    """

    name: str
    language: str
    kind: str
    path: Path
    files: tuple[Path, ...]

    def next_steps(self) -> list[str]:
        """The commands that build, test and run it, as its README gives them."""
        steps = [f"cd {self.path}", "./ci.sh                      # build, install and run its own tests"]
        steps.append("dativo run job.yaml          # run the example job with it (again: nothing new to read)"
                     if self.kind == "reader" else
                     "dativo run job.yaml          # write data/orders.csv with it into out/")
        return steps


def check_name(name: str) -> None:
    """Refuse a name that is not a safe identifier in every language, or that something else owns.

    Raises:
        ConfigError: Saying which rule the name breaks.
    """
    hint = "Use lowercase letters, digits and '_', starting with a letter (up to 40), e.g. orders_api."
    if not _NAME.fullmatch(name) or name.endswith("_") or "__" in name:
        raise ConfigError(f"plugin name {name!r} is not a safe identifier", hint=hint)
    if keyword.iskeyword(name) or name in _RESERVED or name in sys.stdlib_module_names:
        raise ConfigError(f"plugin name {name!r} is taken (a keyword, a Python or Dativo module)",
                          hint="Choose a more specific name, e.g. acme_" + name + ".")
    if has_builtin("reader", name) or has_builtin("writer", name):
        raise ConfigError(f"plugin name {name!r} is the name of a built-in connector",
                          hint=f"Choose another name, e.g. my_{name}; a plugin replaces a built-in by the "
                          "job's implementation: key, not by its name.")


def _check_choice(value: str, choices: tuple[str, ...], option: str) -> None:
    if value not in choices:
        raise ConfigError(f"{option} {value!r} is not one of {', '.join(choices)}",
                          hint=f"Use {option} {'|'.join(choices)}.")


def new_plugin(name: str, language: str, kind: str = "reader", directory: Path | None = None) -> Project:
    """Generate a plugin project.

    Args:
        name: The plugin's name (see :func:`check_name`).
        language: ``python``, ``rust``, ``go`` or ``cpp``.
        kind: ``reader`` or ``writer``.
        directory: Where the project goes (default ``./<name>``); it must not exist, or be empty.

    Returns:
        What was generated.

    Raises:
        ConfigError: A bad name, language or kind, or a folder that is not empty.
    """
    _check_choice(language, LANGUAGES, "--lang")
    _check_choice(kind, KINDS, "--kind")
    check_name(name)
    if (language, kind) in _UNSUPPORTED:
        raise ConfigError(f"there is no {language} {kind} template: {_UNSUPPORTED[language, kind]}")
    target = Path(directory if directory is not None else name).expanduser().absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"{target} already exists and is not an empty folder",
                          hint="Name a new folder with --dir, or remove that one.")
    values = _values(name, language, kind)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{name}-{secrets.token_hex(6)}"
    staging.mkdir()  # beside the target, so that one rename makes the whole project appear
    try:
        files = _render(language, kind, name, values, staging)
        _copy_locks(language, values, staging, files)
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Project(name, language, kind, target, tuple(sorted(files)))


def _values(name: str, language: str, kind: str) -> dict[str, str]:
    major, minor = __version__.split(".")[:2]
    values = {
        "name": name,
        "class_name": "".join(part.capitalize() for part in name.split("_")),
        "kind": kind,
        "kind_class": kind.capitalize(),
        "language": language,
        "version": VERSION,
        "dativo_version": __version__,
        "dativo_requirement": f"dativo>={major}.{minor}",
    }
    if language == "python":
        return values
    sdk = sdk_path(language)
    values["sdk_dir"] = str(sdk)
    if language == "go":
        module = go_module(sdk)
        direct = {"github.com/apache/arrow-go/v18"}
        lines = [f"\t{module.path} v0.0.0"] + [
            f"\t{path} {version}" + ("" if path in direct else " // indirect")
            for path, version, _ in module.requires
        ]
        values.update(go_sdk_module=module.path, go_version=module.go, go_require="\n".join(sorted(lines)),
                      go_sdk_replace=_go_quoted(str(sdk)))
    elif language == "rust":
        crate = rust_crate(sdk)
        values.update(sdk_crate=crate.name, sdk_dir_toml=_toml_quoted(str(sdk)),
                      pyo3_version=crate.dependencies["pyo3"],
                      arrow_version=crate.dependencies["arrow-array"],
                      serde_version=crate.dependencies["serde"],
                      schemars_version=crate.dependencies["schemars"],
                      # a writer's data path encodes CSV with arrow-rs, of the SDK's arrow version; named time
                      # zones (a column of timestamp[us, tz=Europe/Paris]) need the tz database
                      arrow_array_features="" if kind == "reader" else ', features = ["chrono-tz"]',
                      rust_extra_dependencies="" if kind == "reader" else
                      f'\narrow-csv = {{ version = "{crate.dependencies["arrow-array"]}", default-features = false }}')
    return values


def _go_quoted(path: str) -> str:
    return path if re.fullmatch(r"[A-Za-z0-9_./@+~-]+", path) else _toml_quoted(path)


def _toml_quoted(path: str) -> str:
    """A double-quoted string, as TOML and go.mod read it."""
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render(language: str, kind: str, name: str, values: dict[str, str], into: Path) -> list[Path]:
    sources: dict[Path, Path] = {}
    for folder in (TEMPLATES / f"{language}-common", TEMPLATES / f"{language}-{kind}"):
        for source in sorted(folder.rglob("*.tmpl")) if folder.is_dir() else ():
            sources[source.relative_to(folder)] = source  # the kind's own file wins over a shared one
    written = []
    for relative, source in sources.items():
        parts = [part.replace("_name_", name) for part in relative.with_suffix("").parts]
        parts[-1] = "." + parts[-1][4:] if parts[-1].startswith("dot-") else parts[-1]
        path = into.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        template = source.read_text(encoding="utf-8")
        text = _PLACEHOLDER.sub(lambda m, src=source: _value(values, m[1], src), template)
        path.write_text(text, encoding="utf-8")
        if path.suffix == ".sh":
            path.chmod(0o755)
        written.append(path.relative_to(into))
    return written


def _value(values: dict[str, str], key: str, source: Path) -> str:
    if key not in values:
        known = ", ".join(sorted(values))
        raise KeyError(f"template {source} uses {{{{ {key} }}}}, which is not one of {known}")
    return values[key]


def _copy_locks(language: str, values: dict[str, str], into: Path, files: list[Path]) -> None:
    """Start from the SDK's own lock files: the plugin builds with the versions the SDK was tested with."""
    locks = {"go": "go.sum", "rust": "Cargo.lock"}
    if language in locks and (Path(values["sdk_dir"]) / locks[language]).is_file():
        shutil.copyfile(Path(values["sdk_dir"]) / locks[language], into / locks[language])
        files.append(Path(locks[language]))
