"""The shape of the package: imports flow one way, no module keeps plugin classes, no private name crosses.

These read ``src/dativo`` as text (``ast``); only :func:`test_every_module_imports_first` runs it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "dativo"
_MUTATORS = {"setdefault", "update", "pop", "popitem", "clear", "__setitem__"}
_MEMOISERS = {"cache", "lru_cache", "cached_property"}


@dataclass
class Module:
    """One module of the package, parsed."""

    name: str
    path: Path
    tree: ast.Module
    top: set[str] = field(default_factory=set)  # modules imported when it is imported (not in functions)
    anywhere: set[str] = field(default_factory=set)  # … and inside functions (not under TYPE_CHECKING)


def _name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.name.split(".")
    if module.path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _targets(module: Module, node: ast.Import | ast.ImportFrom, names: set[str]) -> Iterator[str]:
    """The dativo modules an import statement loads (``from pkg import sub`` loads ``pkg.sub``)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] == "dativo":
                yield max((n for n in names if alias.name == n or alias.name.startswith(n + ".")), key=len)
        return
    source = _absolute(module, node)
    if source.split(".")[0] != "dativo":
        return
    for alias in node.names:
        sub = f"{source}.{alias.name}"
        yield sub if sub in names else source


def _statements(tree: ast.Module, *, functions: bool) -> Iterator[ast.stmt]:
    """Statements that can run: at module level, and inside functions too if ``functions``.

    ``if TYPE_CHECKING:`` blocks never run; an import there is for annotations only.
    """
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not functions:
            continue
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                stack.append(child)


def _modules() -> dict[str, Module]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = Module(_name(path), path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
        modules[module.name] = module
    names = set(modules)
    for module in modules.values():
        top = {id(n) for n in _statements(module.tree, functions=False)}
        for node in _statements(module.tree, functions=True):
            if isinstance(node, ast.Import | ast.ImportFrom):
                found = {t for t in _targets(module, node, names) if t != module.name}
                module.anywhere |= found
                if id(node) in top:
                    module.top |= found
    return modules


MODULES = _modules()


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (``a → b → … → a``), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_checks_see_the_package() -> None:
    assert {"dativo.engine", "dativo.registry", "dativo.plugins.host", "dativo.plugins.protocol"} <= set(
        MODULES
    )
    assert "dativo.plugins.protocol" in MODULES["dativo.plugins.client"].top
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_at_module_level() -> None:
    cycle = _cycle({name: module.top for name, module in MODULES.items()})
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_no_import_cycle_hidden_in_a_function() -> None:
    """An import inside a function is still a dependency: no cycle may hide behind one."""
    cycle = _cycle({name: module.anywhere for name, module in MODULES.items()})
    assert cycle is None, "import cycle through an import inside a function: " + " → ".join(cycle or [])


def test_the_plugin_layers_import_one_way() -> None:
    """The server and the native loader never reach into the host's side of the protocol."""
    host_side = {f"dativo.plugins.{m}" for m in ("client", "remote", "process", "output", "sandbox", "host")}
    for name in (
        "dativo.plugins.protocol",
        "dativo.plugins.serve",
        "dativo.plugins.native",
        "dativo.registry",
    ):
        assert not MODULES[name].anywhere & host_side, (name, sorted(MODULES[name].anywhere & host_side))


def test_every_module_imports_first() -> None:
    """Each module, imported before any other module of dativo, imports (an order-dependent cycle fails)."""
    script = (
        "import importlib, json, sys, traceback\n"
        "failed = {}\n"
        "for name in json.loads(sys.argv[1]):\n"
        "    for loaded in [m for m in sys.modules if m == 'dativo' or m.startswith('dativo.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed[name] = traceback.format_exc(limit=-3)\n"
        "print(json.dumps(failed))\n"
    )
    names = sorted(n for n in MODULES if n != "dativo.__main__")
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(names)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=SRC.parent,
    )
    assert result.returncode == 0, result.stderr
    failed = json.loads(result.stdout.splitlines()[-1])
    assert failed == {}, "\n".join(f"{name}:\n{trace}" for name, trace in failed.items())


# --- no plugin classes kept in module state -----------------------------------------------------------------


def _holds_classes(annotation: ast.expr | None) -> bool:
    """Whether a ``dict[...]``/mapping annotation has classes (``type``, ``type[...]``) as its values."""
    if not isinstance(annotation, ast.Subscript) or not isinstance(annotation.slice, ast.Tuple):
        return False
    value = annotation.slice.elts[-1]
    text = ast.unparse(value)
    return text == "type" or text.startswith("type[")


def _mutated(tree: ast.Module, name: str) -> bool:
    """Whether any function stores into, or calls a mutating method of, the module-level ``name``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store | ast.Del):
            if isinstance(node.value, ast.Name) and node.value.id == name:
                return True
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _MUTATORS
        ):
            if isinstance(node.func.value, ast.Name) and node.func.value.id == name:
                return True
    return False


def _class_caches(module: Module) -> Iterator[str]:
    for node in module.tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            annotation = node.annotation if isinstance(node, ast.AnnAssign) else None
            for target in targets:
                if not isinstance(target, ast.Name):
                    continue
                named = "class" in target.id.lower()
                if (named or _holds_classes(annotation)) and _mutated(module.tree, target.id):
                    yield f"{module.name}.{target.id} (line {node.lineno}) is a module-level cache of classes"
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                called = decorator.func if isinstance(decorator, ast.Call) else decorator
                word = called.attr if isinstance(called, ast.Attribute) else getattr(called, "id", "")
                if word in _MEMOISERS:
                    yield f"{module.name}.{node.name} (line {node.lineno}) memoises its results"


def _class_writes(module: Module) -> Iterator[str]:
    """Attributes written onto a class at run time: ``cls.x = …`` in a classmethod, ``setattr(cls, …)``."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id == "cls":
                yield f"{module.name} line {node.lineno}: cls.{node.attr} is written at run time"
            if isinstance(node.value, ast.Call) and ast.unparse(node.value.func) == "type":
                yield f"{module.name} line {node.lineno}: type(...).{node.attr} is written at run time"
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "setattr" and node.args:
            if isinstance(node.args[0], ast.Name) and node.args[0].id in ("cls", "klass", "plugin_class"):
                yield f"{module.name} line {node.lineno}: setattr on a class"


def test_no_module_keeps_plugin_classes() -> None:
    """Plugin lifecycle lives in a run's PluginHost: no module caches classes, none writes onto one."""
    found = [
        problem for module in MODULES.values() for problem in (*_class_caches(module), *_class_writes(module))
    ]
    assert found == []


def test_the_cache_check_catches_one() -> None:
    tree = ast.parse(
        "_classes: dict[str, type] = {}\n"
        "def load(k):\n    _classes[k] = object\n"
        "TABLE: dict[str, type] = {'a': int}\n"
        "import functools\n@functools.cache\ndef loader(): pass\n"
        "class C:\n    @classmethod\n    def f(cls): cls.version = '1'\n"
    )
    module = Module("dativo.example", PACKAGE / "example.py", tree)
    assert [p.split(" ")[0] for p in _class_caches(module)] == [
        "dativo.example._classes",
        "dativo.example.loader",
    ]
    assert len(list(_class_writes(module))) == 1


# --- no private name crosses a module boundary --------------------------------------------------------------


def _private_uses(module: Module) -> Iterator[str]:
    names = set(MODULES)
    aliases: dict[str, str] = {}  # local name -> dativo module it is bound to
    for node in ast.walk(module.tree):
        if isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            if source.split(".")[0] != "dativo":
                continue
            for alias in node.names:
                if f"{source}.{alias.name}" in names:
                    aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
                elif alias.name.startswith("_") and not alias.name.startswith("__") and source != module.name:
                    yield f"{module.name} line {node.lineno} imports {source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in names and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            private = node.attr.startswith("_") and not node.attr.startswith("__")
            if private and aliases[node.value.id] != module.name:
                yield f"{module.name} line {node.lineno} uses {aliases[node.value.id]}.{node.attr}"


def test_no_private_name_is_imported_from_another_module() -> None:
    found = [problem for module in MODULES.values() for problem in _private_uses(module)]
    assert found == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from dativo.registry import _BUILTINS\n", 1),
        ("from dativo.plugins import process\nprocess._socket_dir()\n", 1),
        ("from dativo.registry import locate\n", 0),
    ],
)
def test_the_private_check_catches_one(source: str, expected: int) -> None:
    module = Module("dativo.example", PACKAGE / "example.py", ast.parse(source))
    assert len(list(_private_uses(module))) == expected


# --- start-up: importing the public face or asking for the version loads no driver --------------------------

DRIVERS = ("pyiceberg", "adbc_driver_manager", "adbc_driver_postgresql", "sqlalchemy", "pyarrow.flight", "psycopg")
"""What a job loads only when it uses it: the Iceberg catalog, ADBC, SQLAlchemy, Flight, psycopg."""


def _loaded_after(code: str) -> tuple[set[str], str]:
    """The modules in ``sys.modules`` after running ``code`` in a fresh interpreter, and what it printed."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=SRC.parent
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stderr.strip().splitlines()[-1])), result.stdout


def _among(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


@pytest.mark.parametrize("module", ["dativo.api", "dativo.cli"])
def test_importing_the_public_face_loads_no_driver(module: str) -> None:
    modules, _ = _loaded_after(f"import {module}")
    assert module in modules
    assert _among(modules, DRIVERS) == []


def test_version_loads_neither_drivers_nor_pyarrow() -> None:
    """``dativo --version`` answers before the command line's own modules are imported."""
    from dativo import version_line

    modules, printed = _loaded_after("sys.argv = ['dativo', '--version']\nfrom dativo.__main__ import main\nmain()")
    assert printed.strip() == version_line()
    assert _among(modules, (*DRIVERS, "pyarrow", "pydantic", "typer", "dativo.cli")) == []


def test_a_reader_built_on_the_postgres_base_loads_no_adbc() -> None:
    """The check sees a driver when one is loaded: the built-in reader's module loads ADBC, the base does not."""
    base, _ = _loaded_after("from dativo.readers.postgres import PostgresReaderBase")
    assert _among(base, ("adbc_driver_manager", "adbc_driver_postgresql")) == []
    builtin, _ = _loaded_after("from dativo.readers.postgres import PostgresReader")
    assert _among(builtin, ("adbc_driver_postgresql",)) != []


@pytest.mark.parametrize(("uri", "loads_sqlalchemy"), [(None, False), ("sqlite+pysqlite:///{dir}/other.db", True)])
def test_the_embedded_catalog_commits_without_sqlalchemy(tmp_path: Path, uri: str | None, loads_sqlalchemy: bool) -> None:
    """Only a catalog named by a SQLAlchemy URL loads SQLAlchemy (about 0.3 s of every run's start-up)."""
    config = f"CatalogConfig(uri={uri.format(dir=tmp_path)!r})" if uri else "None"
    modules, _ = _loaded_after(
        "import pyarrow as pa\n"
        "from dativo.writers.iceberg.catalog import CatalogConfig, open_catalog\n"
        f"catalog = open_catalog({config}, {str(tmp_path)!r}).catalog\n"
        "catalog.create_namespace('raw')\n"
        "catalog.create_table('raw.t', pa.schema([('x', pa.int64())])).append(pa.table({'x': [1]}))\n"
        "assert catalog.load_table('raw.t').scan().to_arrow().num_rows == 1"
    )
    assert bool(_among(modules, ("sqlalchemy",))) is loads_sqlalchemy


def test_the_engine_loads_no_signature_library() -> None:
    """Signatures are checked for locked plugins only: a run of built-in connectors does not import
    cryptography (0.02 s of start-up)."""
    modules, _ = _loaded_after("import dativo.engine")
    assert "dativo.market.policy" in modules
    assert _among(modules, ("cryptography",)) == []
