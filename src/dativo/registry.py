"""Finding implementations: built-in names, entry points and dotted paths, validated when loaded.

``implementation:`` is resolved in this order:

1. ``package.module:Class`` — a dotted path with a colon;
2. a built-in name (``csv``, ``postgres``, ``iceberg`` …), imported lazily;
3. an entry point in ``dativo.readers`` / ``dativo.writers`` (installed plugins);
4. ``package.module.Class`` — a dotted path without a colon;
5. ``{lib: path}`` — a native C/C++ library (:mod:`dativo.plugins.native`);
6. ``{command: [...]}`` or ``{flight: url}`` — a plugin process, over Arrow Flight (:mod:`.plugins.process`).

With ``sandbox.enabled`` nothing of the plugin is imported here: every form is sent to
:mod:`dativo.plugins.sandbox`, which serves it out of process inside bubblewrap (or refuses it).

A class is checked before any data moves: is it a Reader/Writer, is it complete, does it support this
:data:`dativo.api.API_VERSION`, is its ``Config`` a pydantic model, and do the job's options validate.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version
from pydantic import BaseModel, ValidationError

from dativo.api import API_VERSION, Reader, Writer
from dativo.config import (
    FlightEndpoint,
    Located,
    NativeLibrary,
    PluginCommand,
    SandboxConfig,
    describe_validation_error,
)
from dativo.errors import ConfigError, PluginFailed, PluginIncompatible, PluginNotFound

Role = Literal["reader", "writer"]

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
    """

    role: Role
    name: str
    cls: type
    origin: str
    version: str

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
        block = "reader" if self.role == "reader" else "writer"
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
                hint=f"`dativo plugins info {self.name}` shows the options it accepts."
                if not self.builtin
                else "See the connector's keys in the README.",
            ) from None


def _import(dotted: str, *, sep: str) -> Any:
    module_name, _, attr = dotted.rpartition(sep) if sep == "." else dotted.partition(sep)
    if not module_name or not attr:
        raise PluginNotFound(f"'{dotted}' is not a valid dotted path", hint="Write package.module:Class.")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        raise PluginNotFound(
            f"cannot import module '{module_name}' (no module named '{missing}')",
            hint="Install the package that provides it, or fix the dotted path.",
        ) from exc
    except Exception as exc:  # the plugin's own import-time code failed
        raise PluginNotFound(
            f"importing module '{module_name}' raised {type(exc).__name__}: {exc}",
            hint="Fix the error in the plugin's module.",
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
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


def _validate(role: Role, name: str, cls: Any) -> None:
    base = _BASES[role]
    if not (inspect.isclass(cls) and issubclass(cls, base)):
        what = type(cls).__name__ if not inspect.isclass(cls) else f"class {cls.__name__}"
        raise PluginIncompatible(
            f"'{name}' is a {what}, not a dativo.api.{base.__name__}",
            hint=f"Subclass dativo.api.{base.__name__} and implement its abstract methods.",
        )
    if _remote(cls):
        cls.describe()  # starts (or reaches) the plugin once to learn its API range, language and version
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


def _remote(cls: Any) -> bool:
    """Whether ``cls`` is an out-of-process plugin's proxy (:mod:`dativo.plugins.flight`)."""
    remote = sys.modules.get("dativo.plugins.flight")  # imported once any such class exists
    return remote is not None and inspect.isclass(cls) and issubclass(cls, remote.RemotePlugin)


def _spec(role: Role, name: str, cls: Any, origin: str, version: str | None = None) -> PluginSpec:
    try:
        _validate(role, name, cls)
    except PluginIncompatible as exc:
        if _remote(cls):
            cls.discard()  # the process started to learn its spec: nothing will use it now
        raise exc.with_context(plugin=name) from None
    return PluginSpec(role, name, cls, origin, version or str(getattr(cls, "version", "0.0.0")))


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
    from dativo import __version__

    return _spec(role, name, cls, "builtin", __version__)


def _load_entry_point(role: Role, ep: metadata.EntryPoint) -> PluginSpec:
    try:
        cls = ep.load()
    except Exception as exc:
        raise PluginNotFound(
            f"entry point '{ep.name}' ({ep.value}) failed to load: {type(exc).__name__}: {exc}",
            plugin=ep.name,
            hint="Reinstall the plugin package, or fix its import error.",
        ) from exc
    version = ep.dist.version if ep.dist else None
    return _spec(role, ep.name, cls, "entry point", getattr(cls, "version", None) if version is None else version)


def _load_native(role: Role, native: NativeLibrary) -> PluginSpec:
    from dativo.plugins.native import library  # ctypes only when a job names a library

    try:
        cls = library(native.path(), role=role, symbol_prefix=native.symbol_prefix, name=native.lib)
    except (PluginNotFound, PluginIncompatible) as exc:
        raise exc.with_context(plugin=native.lib) from exc.__cause__
    return _spec(role, native.lib, cls, "native")


def _load_process(role: Role, implementation: PluginCommand | FlightEndpoint) -> PluginSpec:
    from dativo.plugins.process import from_config  # pyarrow.flight only when a job names a plugin process

    origin = "flight" if isinstance(implementation, FlightEndpoint) else "process"
    return _spec(role, str(implementation), from_config(role, implementation), origin)


def _load_sandboxed(
    role: Role, implementation: str | NativeLibrary | PluginCommand | FlightEndpoint, sandbox: SandboxConfig
) -> PluginSpec:
    from dativo.plugins.sandbox import sandboxed_class  # bubblewrap only when a job asks for it

    name = implementation.strip() if isinstance(implementation, str) else str(implementation)
    cls, origin = sandboxed_class(role, implementation, sandbox)
    return _spec(role, name, cls, origin)


def resolve(
    role: Role,
    implementation: str | NativeLibrary | PluginCommand | FlightEndpoint,
    sandbox: SandboxConfig | None = None,
) -> PluginSpec:
    """Find, import and validate the implementation a job names.

    Args:
        role: ``reader`` or ``writer``.
        implementation: What the job names.
        sandbox: The job's sandbox block; when enabled, the plugin runs (and is validated) inside the
            sandbox and is never imported into this process.

    Raises:
        PluginNotFound: Nothing matches; the message lists what is available.
        PluginIncompatible: Something matches but cannot be used.
        PluginFailed: A plugin process did not start.
        SandboxError: The sandbox was asked for but cannot run this plugin.
    """
    if sandbox is not None and sandbox.enabled:
        return _load_sandboxed(role, implementation, sandbox)
    if isinstance(implementation, NativeLibrary):
        return _load_native(role, implementation)
    if isinstance(implementation, PluginCommand | FlightEndpoint):
        return _load_process(role, implementation)
    name = implementation.strip()
    if ":" in name:
        try:
            return _spec(role, name, _import(name, sep=":"), "dotted path")
        except PluginNotFound as exc:
            raise exc.with_context(plugin=name) from exc.__cause__
    if name in _BUILTINS[role]:
        return _load_builtin(role, name)
    entry_points = _entry_points(role)
    if name in entry_points:
        return _load_entry_point(role, entry_points[name])
    if "." in name:
        try:
            return _spec(role, name, _import(name, sep="."), "dotted path")
        except PluginNotFound as exc:
            raise exc.with_context(plugin=name) from exc.__cause__
    known = sorted({*_BUILTINS[role], *entry_points})
    guess = difflib.get_close_matches(name, known, n=1)
    hint = f"Did you mean '{guess[0]}'? " if guess else ""
    raise PluginNotFound(
        f"no {role} named '{name}'",
        plugin=name,
        hint=f"{hint}Available: {', '.join(known)}; or name a class as package.module:Class.",
    )


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


def list_plugins() -> list[PluginInfo]:
    """Every built-in and installed implementation, with whether it loads."""
    rows: list[PluginInfo] = []
    for role in ("reader", "writer"):
        sources = [(name, dotted, lambda r=role, n=name: _load_builtin(r, n)) for name, (dotted, _) in _BUILTINS[role].items()]  # type: ignore[misc]
        sources += [(ep.name, ep.value, lambda r=role, e=ep: _load_entry_point(r, e)) for ep in _entry_points(role).values()]  # type: ignore[misc]
        for name, target, load in sources:
            try:
                spec = load()
                rows.append(
                    PluginInfo(role, name, spec.origin, target, spec.version, spec.language, spec.api_version, "ok")
                )
            except (PluginNotFound, PluginIncompatible, PluginFailed) as exc:
                origin = "builtin" if name in _BUILTINS[role] and target == _BUILTINS[role][name][0] else "entry point"
                rows.append(PluginInfo(role, name, origin, target, "", "", "", f"unavailable: {exc.message}"))
    return rows
