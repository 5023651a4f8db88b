"""Finding implementations: built-in names, entry points and dotted paths, validated when loaded.

``implementation:`` is resolved in this order:

1. ``package.module:Class`` — a dotted path with a colon;
2. a built-in name (``csv``, ``postgres``, ``iceberg`` …), imported lazily;
3. an entry point in ``dativo.readers`` / ``dativo.writers`` (installed plugins);
4. ``package.module.Class`` — a dotted path without a colon;
5. ``{lib: path}`` — a native C/C++ library (:mod:`dativo.plugins.native`).

:func:`locate` is that order for names (1–4): it says where an implementation lives without importing it, so
the sandbox can bind a plugin's files without running its code; :func:`resolve` imports what it found.

A dotted path's module is looked up where Python finds installed modules, then in the job file's folder
(``flaky.py`` beside ``job.yaml``: ``implementation: flaky:Reader``), which never shadows an installed one.

A class is checked before any data moves: is it a Reader/Writer, is it complete, does it support this
:data:`dativo.api.API_VERSION`, is its ``Config`` a pydantic model, and do the job's options validate.

Plugins that run out of process (``{command: [...]}``, ``{flight: url}``, anything sandboxed, and an entry
point that names an executable) have a lifecycle — a process, a connection, a spec learnt over Flight — so a
run resolves them through :class:`dativo.plugins.host.PluginHost`, which uses this module for the rest.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.machinery
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version
from pydantic import BaseModel, ValidationError

from dativo import __version__
from dativo.api import API_VERSION, Reader, Role, Writer
from dativo.config import Located, NativeLibrary, describe_validation_error
from dativo.errors import ConfigError, PluginFailed, PluginIncompatible, PluginNotFound, PluginUntrusted, side
from dativo.plugins.native import library

# name -> (dotted path, pip extra that provides its dependencies)
BUILTIN_READERS: dict[str, tuple[str, str | None]] = {
    "csv": ("dativo.readers.files:CsvReader", None),
    "jsonl": ("dativo.readers.files:JsonlReader", None),
    "parquet": ("dativo.readers.files:ParquetReader", None),
    "postgres": ("dativo.readers.postgres:PostgresReader", "postgres"),
    "postgres-python": ("dativo.readers.postgres:PostgresPythonReader", "postgres"),
}
BUILTIN_WRITERS: dict[str, tuple[str, str | None]] = {
    "parquet": ("dativo.writers.parquet:ParquetWriter", None),
    "iceberg": ("dativo.writers.iceberg:IcebergWriter", "iceberg"),
}
_BUILTINS: dict[Role, dict[str, tuple[str, str | None]]] = {"reader": BUILTIN_READERS, "writer": BUILTIN_WRITERS}
_BASES: dict[Role, type] = {"reader": Reader, "writer": Writer}
ENTRY_POINT_GROUPS: dict[Role, str] = {"reader": "dativo.readers", "writer": "dativo.writers"}


@dataclass(frozen=True)
class PluginSpec:
    """A loaded, validated implementation.

    Attributes:
        role: ``reader`` or ``writer``.
        name: How the job (or the built-in table) names it.
        cls: The Reader or Writer class.
        origin: ``builtin``, ``entry point``, ``dotted path``, ``native``, ``process`` or ``flight``.
        version: The plugin's version.
        distribution: The installed distribution whose entry point it is (``""`` for any other origin).
    """

    role: Role
    name: str
    cls: type
    origin: str
    version: str
    distribution: str = ""

    @property
    def builtin(self) -> bool:
        """Whether this is one of Dativo's own implementations."""
        return self.origin == "builtin"

    @property
    def connector(self) -> str | None:
        """The built-in whose connector keys this class's ``Config`` validates, if any.

        A built-in's own name; the class's declared ``connector`` (see :class:`dativo.api.Reader`); for a
        subclass of a built-in (which inherits or extends its Config), that built-in's name; ``None`` for
        any other class.
        """
        if self.builtin:
            return self.name
        declared = getattr(self.cls, "connector", None)
        if isinstance(declared, str) and declared in _BUILTINS[self.role]:
            return declared
        for name, (dotted, _) in _BUILTINS[self.role].items():
            module, _, attr = dotted.partition(":")
            base = getattr(sys.modules.get(module), attr, None)  # a subclass has imported its base already
            if isinstance(base, type) and issubclass(self.cls, base):
                return name
        return None

    def with_class(self, cls: Any) -> PluginSpec:
        """This plugin with the class that describes it better (a remote plugin's, once it told its spec).

        ``cls`` is validated like any class; an entry point keeps its distribution's version.

        Raises:
            PluginIncompatible: ``cls`` does not fit (e.g. the plugin supports another API range).
        """
        version = self.version if self.origin == "entry point" else None
        return validated(self.role, self.name, cls, self.origin, version, self.distribution)

    @property
    def description(self) -> str:
        """The first line of the class's own docstring (``""`` when it has none)."""
        doc = inspect.cleandoc(self.cls.__dict__.get("__doc__") or "")
        return doc.partition("\n")[0].strip()

    @property
    def language(self) -> str:
        """The implementation language the class declares."""
        return str(getattr(self.cls, "language", "python"))

    @property
    def api_version(self) -> str:
        """The API range the class declares."""
        return str(getattr(self.cls, "api_version", ""))

    def build_config(
        self,
        settings: dict[str, Any],
        options: dict[str, Any],
        *,
        section: str,
        loc: Located | None = None,
    ) -> BaseModel:
        """Validate the plugin's ``Config``.

        A built-in's Config describes its connector, so it validates the section's connector keys and the
        options together; so does the Config of a subclass of a built-in (see :attr:`connector`). Any other
        custom plugin's Config validates ``options`` alone.

        Raises:
            ConfigError: Naming the YAML path of each bad key.
        """
        model: type[BaseModel] = self.cls.Config
        block = self.role
        connector = self.connector is not None
        data = {**settings, **options} if connector else dict(options)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                head = str(error["loc"][0]) if error["loc"] else ""
                in_options = not connector or head in options
                prefix = (section, block, "options") if in_options else (section,)
                single = ValidationError.from_exception_data(exc.title, [error])  # type: ignore[list-item]
                extra = () if in_options else ("type", block, "parallelism", "incremental", "mode")
                problems.append(
                    describe_validation_error(single, model, prefix=prefix, loc=loc, extra_fields=extra)
                )
            raise ConfigError(
                "; ".join(problems),
                plugin=self.name,
                hint=self._options_hint(),
            ) from None

    def _options_hint(self) -> str:
        """Where a user finds the options this plugin accepts."""
        if self.builtin:
            return "See the connector's keys in the README."
        if self.origin in ("entry point", "dotted path"):  # names `dativo plugins info` takes
            return f"`dativo plugins info {self.name}` shows the options it accepts."
        return "See the plugin's documentation for the options it accepts."


_NOT_FOUND_HINT = (
    "Install the package that provides it, fix the dotted path, or put the module beside the job file "
    "(flaky.py next to job.yaml: implementation: flaky:Reader)."
)


def _find_top(top: str, beside: Path | None) -> tuple[importlib.machinery.ModuleSpec | None, bool]:
    """The spec of top-level module ``top`` (finders only, no code runs) and whether it is ``beside`` the job."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None and beside is not None:
        spec = importlib.machinery.PathFinder.find_spec(top, [str(beside)])
        return spec, spec is not None
    return spec, False


def _import(dotted: str, *, sep: str, beside: Path | None = None) -> Any:
    module_name, _, attr = dotted.rpartition(sep) if sep == "." else dotted.partition(sep)
    if not module_name or not attr:
        raise PluginNotFound(f"'{dotted}' is not a valid dotted path", hint="Write package.module:Class.")
    _, local = _find_top(module_name.split(".")[0], beside)
    if local and str(beside) not in sys.path:
        sys.path.append(str(beside))  # last: a module beside the job never shadows an installed one
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        raise PluginNotFound(
            f"cannot import module '{module_name}' (no module named '{missing}')", hint=_NOT_FOUND_HINT
        ) from exc
    except Exception as exc:  # the plugin's own import-time code failed
        raise PluginNotFound(
            f"importing module '{module_name}' raised {type(exc).__name__}: {exc}",
            hint="Fix the error in the plugin's module.",
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            found = hasattr(obj, part)  # a package's lazy __getattr__ imports the attribute's module only now
        except ModuleNotFoundError as exc:
            missing = exc.name or module_name
            raise PluginNotFound(
                f"cannot import '{module_name}:{attr}' (no module named '{missing}')", hint=_NOT_FOUND_HINT
            ) from exc
        if not found:
            public = [n for n in dir(module) if not n.startswith("_")]
            guess = difflib.get_close_matches(part, public, n=1)
            raise PluginNotFound(
                f"module '{module_name}' has no attribute '{attr}'",
                hint=f"Did you mean '{module_name}:{guess[0]}'?" if guess else "Check the class name.",
            )
        obj = getattr(obj, part)
    return obj


def _entry_points(role: Role) -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUPS[role])}


@dataclass(frozen=True)
class Location:
    """Where an implementation named by a string lives, found without importing anything of it.

    Attributes:
        role: ``reader`` or ``writer``.
        name: How the job names it.
        origin: ``builtin``, ``entry point`` or ``dotted path``.
        target: What to import: ``module:attr`` (a built-in, an entry point, a path with a colon) or
            ``module.attr`` (a dotted path without one).
        module: The module that holds it.
        entry_point: The entry point, for that origin.
        beside: The job file's folder, where a dotted path's module is also looked for.
    """

    role: Role
    name: str
    origin: str
    target: str
    module: str
    entry_point: metadata.EntryPoint | None = None
    beside: Path | None = None

    def files(self) -> tuple[list[Path], list[Path]]:
        """The files of the plugin's top-level package, and the ``sys.path`` folders it is found in.

        ``importlib.util.find_spec`` on the *top-level* name runs only the import system's finders, never the
        package's code. A built-in has none of its own (it is part of dativo).

        Raises:
            PluginNotFound: The package cannot be found.
        """
        if self.origin == "builtin":
            return [], []
        top = self.module.split(".")[0]
        spec, _ = _find_top(top, self.beside)
        if spec is None:
            raise PluginNotFound(f"cannot find module '{top}'", plugin=self.name, hint=_NOT_FOUND_HINT)
        files: list[Path] = []
        if spec.submodule_search_locations:
            files = [Path(p) for p in spec.submodule_search_locations]
        elif spec.origin and spec.origin not in ("built-in", "frozen"):
            files = [Path(spec.origin)]
        return files, [Path(r) for r in sorted({str(f.parent) for f in files})]


def locate(role: Role, name: str, *, beside: Path | None = None) -> Location:
    """Find the implementation a job names, in the lookup order above, without importing it.

    Args:
        role: ``reader`` or ``writer``.
        name: What the job names.
        beside: The job file's folder: a dotted path's module is also looked for there.

    Raises:
        PluginNotFound: Nothing matches; the message lists what is available.
    """
    name = name.strip()
    if ":" in name:
        return Location(role, name, "dotted path", name, name.partition(":")[0], beside=beside)
    if name in _BUILTINS[role]:
        dotted = _BUILTINS[role][name][0]
        return Location(role, name, "builtin", dotted, dotted.partition(":")[0])
    entry_points = _entry_points(role)  # metadata only: nothing is loaded
    if name in entry_points:
        ep = entry_points[name]
        return Location(role, name, "entry point", ep.value, ep.value.partition(":")[0].strip(), ep)
    if "." in name:
        return Location(role, name, "dotted path", name, name.rpartition(".")[0], beside=beside)
    known = sorted({*_BUILTINS[role], *entry_points})
    guess = difflib.get_close_matches(name, known, n=1)
    hint = f"Did you mean '{guess[0]}'? " if guess else ""
    raise PluginNotFound(
        f"no {role} named '{name}'",
        plugin=name,
        hint=f"{hint}Available: {', '.join(known)}; or name a class as package.module:Class.",
    )


def _validate(role: Role, name: str, cls: Any) -> None:
    base = _BASES[role]
    if not (inspect.isclass(cls) and issubclass(cls, base)):
        what = type(cls).__name__ if not inspect.isclass(cls) else f"class {cls.__name__}"
        raise PluginIncompatible(
            f"'{name}' is a {what}, not a dativo.api.{base.__name__}",
            hint=f"Subclass dativo.api.{base.__name__} and implement its abstract methods.",
        )
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise PluginIncompatible(
            f"{cls.__name__} does not implement {missing}",
            hint=f"Implement {missing} (see dativo.api.{base.__name__}).",
        )
    declared = str(getattr(cls, "api_version", ""))
    try:
        supported = SpecifierSet(declared)
    except InvalidSpecifier:
        raise PluginIncompatible(
            f"{cls.__name__}.api_version '{declared}' is not a version range",
            hint="Declare a PEP 440 range such as '>=1,<2'.",
        ) from None
    if Version(API_VERSION) not in supported:
        raise PluginIncompatible(
            f"{cls.__name__} supports Dativo API {declared}, but this Dativo provides API {API_VERSION}",
            hint="Upgrade the plugin (or Dativo) so their API versions match.",
        )
    config = getattr(cls, "Config", None)
    if not (inspect.isclass(config) and issubclass(config, BaseModel)):
        raise PluginIncompatible(
            f"{cls.__name__}.Config is not a pydantic model",
            hint="Make Config a subclass of pydantic.BaseModel.",
        )


def validated(
    role: Role, name: str, cls: Any, origin: str, version: str | None = None, distribution: str = ""
) -> PluginSpec:
    """The spec of ``cls`` as the ``role`` named ``name``, once it passed every check.

    Args:
        version: The plugin's version, when it is not the class's (a distribution's, for an entry point).
        distribution: The distribution whose entry point it is.

    Raises:
        PluginIncompatible: ``cls`` is not a usable Reader/Writer (the error names ``name``).
    """
    try:
        _validate(role, name, cls)
    except PluginIncompatible as exc:
        raise exc.with_context(plugin=name) from None
    return PluginSpec(role, name, cls, origin, version or str(getattr(cls, "version", "0.0.0")), distribution)


def _load_builtin(role: Role, name: str) -> PluginSpec:
    dotted, extra = _BUILTINS[role][name]
    try:
        cls = _import(dotted, sep=":")
    except PluginNotFound as exc:
        cause = exc.__cause__
        missing = cause.name or "" if isinstance(cause, ModuleNotFoundError) else ""
        if extra and missing and not missing.startswith("dativo"):
            raise PluginNotFound(
                f"built-in {role} '{name}' needs '{missing}', which is not installed",
                plugin=name,
                hint=f"pip install 'dativo[{extra}]'.",
            ) from exc
        raise
    return validated(role, name, cls, "builtin", __version__)


def _load_entry_point(role: Role, ep: metadata.EntryPoint) -> PluginSpec:
    try:
        cls = ep.load()
    except Exception as exc:
        raise PluginNotFound(
            f"entry point '{ep.name}' ({ep.value}) failed to load: {type(exc).__name__}: {exc}",
            plugin=ep.name,
            hint="Reinstall the plugin package, or fix its import error.",
        ) from exc
    dist = ep.dist
    version, distribution = (dist.version, dist.name) if dist else (None, "")
    return validated(role, ep.name, cls, "entry point", version, distribution)


def _load_native(role: Role, native: NativeLibrary) -> PluginSpec:
    try:
        cls = library(native.path(), role=role, symbol_prefix=native.symbol_prefix, name=native.lib)
    except (PluginNotFound, PluginIncompatible) as exc:
        raise exc.with_context(plugin=native.lib) from exc.__cause__
    return validated(role, native.lib, cls, "native")


def load(location: Location) -> PluginSpec:
    """Import and validate what :func:`locate` found.

    Raises:
        PluginNotFound: It cannot be imported (the message says why, with an install hint for a built-in).
        PluginIncompatible: It is not a usable Reader/Writer.
    """
    if location.origin == "builtin":
        return _load_builtin(location.role, location.name)
    if location.entry_point is not None:
        return _load_entry_point(location.role, location.entry_point)
    try:
        cls = _import(location.target, sep=":" if ":" in location.target else ".", beside=location.beside)
    except PluginNotFound as exc:
        raise exc.with_context(plugin=location.name) from exc.__cause__
    return validated(location.role, location.name, cls, location.origin)


def resolve(role: Role, implementation: str | NativeLibrary, *, beside: Path | None = None) -> PluginSpec:
    """Find, import and validate an in-process implementation: a name (see :func:`locate`) or a library.

    Args:
        role: ``reader`` or ``writer``.
        implementation: What the job names.
        beside: The job file's folder: a dotted path's module is also looked for there.

    Raises:
        PluginNotFound: Nothing matches; the message lists what is available.
        PluginIncompatible: Something matches but cannot be used.
        TypeError: ``implementation`` is a plugin process (:class:`dativo.plugins.host.PluginHost` runs it).
    """
    if isinstance(implementation, NativeLibrary):
        return _load_native(role, implementation)
    if not isinstance(implementation, str):
        raise TypeError(
            f"{side(role)}.implementation {implementation} runs out of process: resolve it with "
            "dativo.plugins.host.PluginHost"
        )
    return load(locate(role, implementation, beside=beside))


def has_builtin(role: Role, connector_type: str) -> bool:
    """Whether Dativo has a built-in implementation of ``connector_type`` (without importing it)."""
    return connector_type in _BUILTINS[role]


def builtin_for(role: Role, connector_type: str) -> PluginSpec | None:
    """The built-in implementation of a connector type, or ``None`` if Dativo has none."""
    if connector_type not in _BUILTINS[role]:
        return None
    return _load_builtin(role, connector_type)


@dataclass(frozen=True)
class PluginInfo:
    """One row of ``dativo plugins list``."""

    role: Role
    name: str
    origin: str
    target: str
    version: str
    language: str
    api_version: str
    status: str


def list_plugins(
    describe: Callable[[PluginSpec], PluginSpec] | None = None,
    before_load: Callable[[Role, str], None] | None = None,
) -> list[PluginInfo]:
    """Every built-in and installed implementation, with whether it loads.

    Args:
        describe: Completes a spec that only the plugin can tell (an executable's, asked over Flight:
            :meth:`dativo.plugins.host.PluginHost.describe`); without it such a plugin is shown as its class
            declares it.
        before_load: Called with an installed plugin's role and name before it is imported; what it raises
            marks the plugin unavailable, unimported (a pinned plugin whose files do not match the lock:
            :meth:`dativo.market.policy.Gate.before_load`).
    """
    rows: list[PluginInfo] = []
    roles: tuple[Role, Role] = ("reader", "writer")
    for role in roles:
        sources: list[tuple[str, str, Callable[[], PluginSpec]]] = [
            (name, dotted, lambda r=role, n=name: _load_builtin(r, n))  # type: ignore[misc]
            for name, (dotted, _) in _BUILTINS[role].items()
        ]
        sources += [
            (ep.name, ep.value, lambda r=role, e=ep: _load_entry_point(r, e))  # type: ignore[misc]
            for ep in _entry_points(role).values()
        ]
        for name, target, load_one in sources:
            try:
                if before_load is not None and not (name in _BUILTINS[role] and target == _BUILTINS[role][name][0]):
                    before_load(role, name)
                spec = load_one()
                if describe is not None:
                    spec = describe(spec)
                info = (spec.origin, target, spec.version, spec.language, spec.api_version, "ok")
                rows.append(PluginInfo(role, name, *info))
            except (PluginNotFound, PluginIncompatible, PluginFailed, PluginUntrusted) as exc:
                builtin = name in _BUILTINS[role] and target == _BUILTINS[role][name][0]
                origin = "builtin" if builtin else "entry point"
                rows.append(PluginInfo(role, name, origin, target, "", "", "", f"unavailable: {exc.message}"))
    return rows
