"""The job file: parsing, ``${VAR}`` substitution, validation, and errors that point at the YAML.

A job file is YAML validated by the pydantic models below. The engine's own keys are declared here; the
connector keys of ``source`` and ``target`` (``path``, ``connection``, ``catalog`` …) belong to the
connector and are validated by its built-in implementation's ``Config`` when the plugins are loaded
(:mod:`dativo.registry`). Every error names the YAML path and line and, for a typo, the key meant.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dativo import secrets
from dativo.budget import DEFAULT_MEMORY_MB, MiB
from dativo.errors import ConfigError
from dativo.substitution import substitute
from dativo.yamlfile import Located, index_lines, load_document

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


_UNIX_GRANT = re.compile(r"^unix:(?P<path>/.*|\S.*)$")


class SandboxConfig(_Strict):
    """Isolation of an untrusted implementation (bubblewrap, docs/sandbox.md). Never silently downgraded."""

    enabled: bool = Field(False, description="Run the implementation in a sandbox, out of process.")
    network: bool | list[Annotated[str, Field(min_length=1)]] = Field(
        False,
        description="false: no network at all (a private loopback only); true: the host's network; a list of "
        "`unix:/path/to/socket` entries: still no network, but these Unix socket files (e.g. PostgreSQL's "
        "/run/postgresql/.s.PGSQL.5432) are reachable, each bound alone. TCP allow-lists (host:port) are not "
        "supported: use true.",
    )
    memory_mb: int | None = Field(
        4096, ge=64, description="Address-space limit (RLIMIT_AS) and, where cgroups allow, memory limit, in MiB."
    )
    cpu_seconds: int | None = Field(
        3600, ge=1, description="CPU time each sandboxed process may use (RLIMIT_CPU), in seconds."
    )
    timeout_s: float | None = Field(
        None, gt=0, description="Wall-clock limit of the whole plugin process lifetime, in seconds."
    )
    max_open_files: int | None = Field(1024, ge=16, description="Open file descriptors (RLIMIT_NOFILE).")
    max_processes: int | None = Field(
        256, ge=8,
        description="Processes and threads the sandbox may hold at once (a pids cgroup; RLIMIT_NPROC for a "
        "non-root host). null: no limit.",
    )
    read_paths: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="Files or folders the plugin may read (read-only); relative to the job file's folder.",
    )
    write_paths: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="Files or folders the plugin may read and write; relative to the job file's folder.",
    )
    secrets: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default_factory=list,
        description="Names of environment variables (secrets) passed to the plugin; it sees no other host "
        "variable.",
    )
    _base: Path | None = PrivateAttr(None)
    _granted: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("network")
    @classmethod
    def _unix_only(cls, network: bool | list[str], info: ValidationInfo) -> bool | list[str]:
        if isinstance(network, list):
            base = (info.context or {}).get("base")
            for entry in network:
                match = _UNIX_GRANT.match(entry)
                if not match:
                    raise ValueError(
                        f"'{entry}' is not a unix:/path entry; the sandbox cannot filter TCP by host and port "
                        "(use network: true for the host's network, or bind a Unix socket: "
                        "unix:/run/postgresql/.s.PGSQL.5432)"
                    )
                if info.data.get("enabled"):
                    path = Path(os.path.expanduser(match.group("path")))
                    cls.unix_socket(path if path.is_absolute() or base is None else Path(base) / path)
        return network

    @staticmethod
    def unix_socket(path: Path) -> Path:
        """The socket file a ``unix:`` grant names, resolved: what the sandbox binds (read-write, that file only).

        The ``network`` validator applies this rule when the job is loaded; the sandbox again right before
        it binds the socket.

        Raises:
            ValueError: ``path`` is missing, a symbolic link, or not a socket (a folder would bind every file
                in it, ``unix:/`` the host's whole file system).
        """
        try:
            found = os.lstat(path)
            real = Path(os.path.realpath(path))
            target = os.lstat(real)
        except OSError as exc:
            raise ValueError(f"unix:{path} cannot be granted: {exc.strerror or exc}") from None
        if stat.S_ISLNK(found.st_mode):
            raise ValueError(f"unix:{path} is a symbolic link; grant the socket it points to, by its own path")
        if not stat.S_ISSOCK(found.st_mode) or not stat.S_ISSOCK(target.st_mode):
            kind = "a folder" if stat.S_ISDIR(found.st_mode) else "not a socket"
            raise ValueError(
                f"unix:{path} is {kind}; a unix: grant names one socket file (e.g. "
                "unix:/run/postgresql/.s.PGSQL.5432), which is bound into the sandbox and nothing else"
            )
        return real

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> SandboxConfig:
        context = info.context or {}
        base = context.get("base")  # the job file's folder, when parse_job knows it
        self._base = Path(base).absolute() if base is not None else None
        env = context.get("env")
        env = os.environ if env is None else env
        for name in self.secrets if self.enabled else ():
            if name not in env:
                raise ValueError(f"secret '{name}' is not set in the environment; the sandbox cannot pass it")
            self._granted[name] = env[name]
            if env[name]:
                secrets.register(env[name])  # never in logs, errors or reports
        return self

    def path(self, entry: str) -> Path:
        """A ``read_paths``/``write_paths``/``unix:`` entry as an absolute path (relative: the job's folder)."""
        file = Path(os.path.expanduser(entry))
        if file.is_absolute():
            return file
        return (self._base if self._base is not None else Path.cwd()) / file

    def sockets(self) -> list[Path]:
        """The Unix socket files the ``network`` list grants."""
        if not isinstance(self.network, list):
            return []
        return [self.path(m.group("path")) for m in map(_UNIX_GRANT.match, self.network) if m]

    def granted(self) -> dict[str, str]:
        """The secrets the plugin gets: name to value (read when the job was loaded)."""
        return dict(self._granted)


class NativeLibrary(_Strict):
    """A C or C++ shared library implementing the C ABI of ``sdk/cpp/dativo_plugin.h``."""

    lib: str = Field(
        min_length=1, description="The .so/.dylib file: absolute, or relative to the job file's folder."
    )
    symbol_prefix: str = Field(
        "dativo_", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Prefix of the library's exported functions."
    )
    _base: Path | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _remember_base(self, info: ValidationInfo) -> NativeLibrary:
        base = (info.context or {}).get("base")  # the job file's folder, when parse_job knows it
        self._base = Path(base).absolute() if base is not None else None
        return self

    def path(self) -> Path:
        """The library file, a relative ``lib`` resolved against the job file's folder."""
        file = Path(os.path.expanduser(self.lib))
        return file if file.is_absolute() or self._base is None else self._base / file

    def __str__(self) -> str:
        return self.lib


class _PluginTimeouts(_Strict):
    """Deadlines of an out-of-process plugin: a hung plugin fails the job (or falls back), never hangs it."""

    call_timeout_s: float = Field(
        60.0, gt=0, le=86400,
        description="Deadline of each call to the plugin (check, discover, plan, commit …), in seconds.",
    )
    stall_timeout_s: float = Field(
        300.0, gt=0, le=86400,
        description="Longest wait for the plugin on a data stream (its next batch, or its acceptance of "
        "ours), in seconds.",
    )


class PluginCommand(_PluginTimeouts):
    """A plugin process the host starts; it speaks Arrow Flight (docs/plugins/protocol.md)."""

    command: list[Annotated[str, Field(min_length=1)]] = Field(
        min_length=1,
        description="The executable and its arguments; a relative path starts at the job file's folder, "
        "which is also the plugin's working directory.",
    )
    start_timeout_s: float = Field(
        10.0, gt=0, le=600, description="Seconds the plugin may take to print its handshake."
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Variables the plugin gets besides PATH, HOME, LANG and TMPDIR (it sees nothing else of "
        "the host's environment); a `${VAR}` value is a secret granted to it.",
    )
    _base: Path | None = PrivateAttr(None)

    @field_validator("env")
    @classmethod
    def _variable_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"'{name}' is not a valid environment variable name")
            if name in ("DATIVO_FLIGHT_SOCKET", "DATIVO_PROTOCOL"):
                raise ValueError(f"{name} is set by Dativo itself")
        return env

    @model_validator(mode="after")
    def _remember_base(self, info: ValidationInfo) -> PluginCommand:
        base = (info.context or {}).get("base")  # the job file's folder, when parse_job knows it
        self._base = Path(base).absolute() if base is not None else None
        return self

    def cwd(self) -> Path:
        """The plugin's working directory: the job file's folder (else the current one)."""
        return self._base if self._base is not None else Path.cwd()

    def __str__(self) -> str:
        return shlex.join(self.command)


class FlightEndpoint(_PluginTimeouts):
    """A plugin that runs already and serves Arrow Flight; Dativo connects to it and manages no process."""

    flight: str = Field(
        description="Its Flight location: grpc://host:port, grpc+tls://host:port or grpc+unix:///a/socket.",
    )

    @field_validator("flight")
    @classmethod
    def _location(cls, flight: str) -> str:
        if not re.fullmatch(r"grpc(\+tcp|\+tls|\+unix)?://\S+", flight):
            raise ValueError("must be a Flight location: grpc://host:port, grpc+tls://host:port or "
                             "grpc+unix:///path/to/socket")
        return flight

    def __str__(self) -> str:
        return self.flight


def _implementation_form(value: Any) -> str | None:
    """Which form of ``implementation`` a value is, by its key: a bad one gets that form's errors only."""
    if isinstance(value, str):
        return "form:name"
    for form, model in (("lib", NativeLibrary), ("command", PluginCommand), ("flight", FlightEndpoint)):
        if isinstance(value, model) or (isinstance(value, dict) and form in value):
            return f"form:{form}"
    return None


Implementation = Annotated[
    Annotated[str, Tag("form:name")]
    | Annotated[NativeLibrary, Tag("form:lib")]
    | Annotated[PluginCommand, Tag("form:command")]
    | Annotated[FlightEndpoint, Tag("form:flight")],
    Discriminator(
        _implementation_form,
        custom_error_type="implementation_form",
        custom_error_message="must be a name (built-in, entry point or package.module:Class), {lib: path}, "
        "{command: [executable, ...]} or {flight: grpc://host:port}",
    ),
]
"""The forms of ``implementation:``; the ``form:`` tags are dropped from error paths."""


def parse_implementation(value: Any, *, base: Path | None = None) -> str | NativeLibrary | PluginCommand | FlightEndpoint:
    """An implementation given as text (a command-line argument), validated as a job's ``implementation:`` is.

    Args:
        value: A name, a mapping, a JSON/YAML mapping's text, the path of a shared library, or an already
            validated implementation.
        base: The folder relative paths start from (the job file's, else the current one).

    Raises:
        ConfigError: ``value`` is none of the forms.
    """
    if isinstance(value, NativeLibrary | PluginCommand | FlightEndpoint):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ConfigError(
                    f"IMPL {text!r} is neither a name nor a JSON/YAML mapping: {str(exc).splitlines()[0]}",
                    hint="Write e.g. '{lib: ./libreader.so}' or '{command: [./reader]}'.",
                ) from None
        elif re.search(r"\.(so|dylib|dll)(\.\d+)*$", text):
            value = {"lib": text}
        else:
            value = text
    try:
        return TypeAdapter(Implementation).validate_python(value, context={"base": base or Path.cwd()})
    except ValidationError as exc:
        raise ConfigError(
            f"IMPL is invalid: {describe_validation_error(exc, BaseModel)}",
            hint="IMPL is what a job's implementation: accepts: a built-in name, an entry point, "
            "package.module:Class, {lib: ./lib.so}, {command: [...]} or {flight: grpc://host:port}.",
        ) from None


class ImplementationConfig(_Strict):
    """Which code reads or writes: the built-in one, or the user's."""

    type: Literal["default", "custom"] = Field(
        "default", description="`default`: the built-in implementation of the connector type; `custom`: yours."
    )
    implementation: Implementation | None = Field(
        None,
        description="With type custom: a built-in name, an entry point (group dativo.readers / dativo.writers), "
        "a dotted path `package.module:Class`, a native library `{lib: ./libreader.so}`, a plugin process "
        "`{command: [./bin/reader]}` or a running plugin `{flight: grpc://host:port}`.",
    )
    fallback: Literal["default", "fail"] = Field(
        "default",
        description="When the custom implementation fails before the commit: rerun with the built-in one "
        "(`default`) or stop the job (`fail`).",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="The implementation's own options, validated by its Config model."
    )
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)

    @model_validator(mode="after")
    def _implementation_matches_type(self) -> ImplementationConfig:
        if self.type == "custom" and not self.implementation:
            raise ValueError("type is custom but no implementation is named; add implementation: <name>")
        if self.type == "default" and self.implementation:
            raise ValueError(
                f"implementation '{self.implementation}' is named but type is default; set type: custom"
            )
        return self


class IncrementalConfig(_Strict):
    """Read only what is new since the last committed run."""

    cursor: str = Field(description="A column that grows with every change (e.g. updated_at).")


class _Section(BaseModel):
    """A source or target: engine keys declared here, connector keys kept as extras."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="Connector type, e.g. csv, postgres, parquet, iceberg.")

    def settings(self) -> dict[str, Any]:
        """The connector keys of this section (everything the engine does not own)."""
        return dict(self.model_extra or {})


class SourceConfig(_Section):
    """Where data comes from. Connector keys (path, connection, tables …) sit beside these."""

    reader: ImplementationConfig = Field(default_factory=ImplementationConfig)
    parallelism: int = Field(1, ge=1, le=256, description="Splits read and written at once.")
    incremental: IncrementalConfig | None = None


class TargetConfig(_Section):
    """Where data goes. Connector keys (path, catalog, table …) sit beside these."""

    writer: ImplementationConfig = Field(default_factory=ImplementationConfig)
    mode: Literal["append", "overwrite", "merge"] = Field(
        "append", description="append rows, replace the table, or upsert by primary key."
    )


class PolicyConfig(_Strict):
    """What may run of the installed plugins (docs/plugins/publishing.md)."""

    unsigned: Literal["sandbox", "refuse", "allow"] | None = Field(
        None,
        description="An installed plugin package that is unsigned, signed by an untrusted key or not pinned in "
        "dativo.lock: `sandbox` runs it only in the sandbox with the capabilities its manifest declares, "
        "`refuse` refuses it, `allow` runs it as configured. Unset: the project's dativo.toml, else sandbox.",
    )


class PluginsConfig(_Strict):
    """How the job treats installed plugins."""

    policy: PolicyConfig = Field(default_factory=PolicyConfig)


_RAY_ADDRESS = re.compile(r"^(auto|ray://[^\s/:]+:\d{1,5}|[^\s/:]+:\d{1,5})$")
_RESOURCE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/\-]*$")


class ExecutorConfig(_Strict):
    """Where the splits run: threads of this process, or tasks on a Ray cluster (docs/scaling.md)."""

    type: Literal["local", "ray"] = Field(
        "local", description="`local`: threads in the `dativo run` process; `ray`: one Ray task per split."
    )
    address: str | None = Field(
        None,
        description="With type ray: the cluster to join, `auto` (the cluster this machine belongs to, or "
        "$RAY_ADDRESS), `host:port` (its head's GCS) or `ray://host:port` (Ray Client). Unset: auto.",
    )
    max_retries: int = Field(
        3, ge=0, le=100,
        description="With type ray: how often a split whose worker process or node died is run again.",
    )
    resources: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict,
        description="With type ray: what each split task reserves, e.g. {CPU: 1, memory: 2147483648} or a "
        "custom resource of your nodes. Unset: {CPU: 1}.",
    )
    runtime_env: dict[str, Any] | None = Field(
        None,
        description="With type ray: the Ray runtime_env of the run (e.g. {pip: [my-plugin==1.2]} or "
        "{py_modules: [./plugins]}), how a Python plugin reaches workers that do not have it installed.",
    )
    shared_paths: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="With type ray: absolute folders every node mounts at the same place (NFS, a cluster file "
        "system); a local target or source path inside one is accepted.",
    )

    @field_validator("address")
    @classmethod
    def _address_form(cls, address: str | None) -> str | None:
        if address is not None and not _RAY_ADDRESS.match(address.strip()):
            raise ValueError(
                f"'{address}' is not a Ray cluster address; use auto, host:port (the head's GCS port, "
                "6379 by default) or ray://host:port (Ray Client, 10001 by default)"
            )
        return address.strip() if address is not None else None

    @field_validator("resources")
    @classmethod
    def _resource_names(cls, resources: dict[str, float]) -> dict[str, float]:
        for name in resources:
            if not _RESOURCE.match(name):
                raise ValueError(f"'{name}' is not a Ray resource name (letters, digits, _ . : / -)")
        return resources

    @field_validator("shared_paths")
    @classmethod
    def _absolute(cls, paths: list[str]) -> list[str]:
        for path in paths:
            if not os.path.isabs(os.path.expanduser(path)):
                raise ValueError(f"'{path}' is not an absolute path; a shared folder has the same absolute "
                                 "path on every node")
        return paths

    @model_validator(mode="after")
    def _ray_only(self) -> ExecutorConfig:
        if self.type == "local":
            given = [k for k in ("address", "runtime_env") if getattr(self, k) is not None]
            given += [k for k in ("resources", "shared_paths") if getattr(self, k)]
            if given:
                raise ValueError(f"{', '.join(given)}: only for executor type ray; set type: ray "
                                 "or remove them")
        return self

    def overridden(self, type: str | None = None, address: str | None = None) -> ExecutorConfig:
        """This executor with the command line's ``--executor`` and ``--address`` applied.

        Raises:
            ConfigError: The result is invalid (an unknown type, a malformed address, ``--address`` with
                the local executor).
        """
        values = self.model_dump(exclude_unset=True)
        if type is not None:
            values["type"] = type
            if type == "local":  # the file's Ray settings do not apply to a local run
                values = {"type": "local"}
        if address is not None:
            values["address"] = address
        try:
            return ExecutorConfig.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(
                f"--executor/--address: {describe_validation_error(exc, ExecutorConfig)}",
                hint="Use --executor local, or --executor ray with --address auto, host:port or ray://host:port.",
            ) from None


class JobConfig(_Strict):
    """One ingestion job: a source, a target, and how to move data between them."""

    version: Literal[1] = Field(1, description="Job file format version.")
    name: str = Field(pattern=_NAME, description="The job's name: used in messages, state and reports.")
    source: SourceConfig
    target: TargetConfig
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    memory_mb: int = Field(
        DEFAULT_MEMORY_MB,
        ge=16,
        le=1 << 20,
        description="Memory budget of the run's buffers in MiB, shared by all splits: it sizes record batches, "
        "read-ahead and row groups, and is a Go plugin's soft memory limit (README: Memory).",
    )
    _path: Path | None = PrivateAttr(None)

    @property
    def memory_bytes(self) -> int:
        """``memory_mb`` in bytes."""
        return self.memory_mb * MiB

    @property
    def path(self) -> Path | None:
        """The file this job was read from, if any."""
        return self._path


# --- validation errors ------------------------------------------------------------------------------


def _models_in(annotation: Any, tag: str | None = None) -> list[type[BaseModel]]:
    """The models an annotation allows (through Optional, unions, Annotated); with ``tag``, that member's."""
    found: list[type[BaseModel]] = []

    def walk(node: Any, tags: tuple[str, ...]) -> None:
        if get_origin(node) is Annotated:
            inner, *metadata = get_args(node)
            walk(inner, (*tags, *(m.tag for m in metadata if isinstance(m, Tag))))
        elif isinstance(node, type) and issubclass(node, BaseModel):
            if tag is None or tag in tags:
                found.append(node)
        else:
            for arg in get_args(node):
                walk(arg, tags)

    walk(annotation, ())
    return found


def _fields_at(model: type[BaseModel], path: tuple[str | int, ...]) -> list[str]:
    """Names of the fields allowed at ``path`` inside ``model`` (for "did you mean").

    ``path`` is an error location: a ``form:…`` part after a field picks that member of a tagged union, and
    a list position is skipped (the items' model is the list's). Fields are named as the YAML names them
    (their alias, if they have one).
    """
    current: Any = model
    parts = [str(p) for p in path]
    while parts:
        part = parts.pop(0)
        fields = _keys(current)
        if part.isdigit() and part not in fields:
            continue
        if part not in fields:
            return []
        tag = parts.pop(0) if parts and parts[0].startswith("form:") else None
        candidates = _models_in(fields[part].annotation, tag)
        if not candidates:
            return []
        current = candidates[0]
    return list(_keys(current))


def _keys(model: Any) -> dict[str, Any]:
    """A model's fields by the key the YAML uses for each."""
    fields = getattr(model, "model_fields", None) or {}
    return {field.alias or name: field for name, field in fields.items()}


def describe_validation_error(
    exc: ValidationError,
    model: type[BaseModel],
    *,
    prefix: tuple[str, ...] = (),
    loc: Located | None = None,
    extra_fields: Iterable[str] = (),
) -> str:
    """Turn a pydantic error into lines a person can act on: YAML path, line, and the likely fix."""
    loc = loc or Located(None, {})
    problems = []
    for error in exc.errors():
        raw = tuple(str(p) for p in error["loc"] if not str(p).startswith("function-after"))
        path = tuple(p for p in raw if not p.startswith("form:"))  # union tags mean nothing in the YAML
        where = loc.where((*prefix, *path))
        kind = error["type"]
        if kind == "extra_forbidden":
            allowed = [*_fields_at(model, raw[:-1]), *extra_fields]
            guess = difflib.get_close_matches(path[-1], allowed, n=1, cutoff=0.6)
            hint = (f"did you mean '{guess[0]}'?" if guess else
                    f"allowed keys: {', '.join(sorted(allowed))}" if allowed else "no keys are allowed here")
            problems.append(f"{where}: unknown key; {hint}")
        elif kind == "missing":
            problems.append(f"{where}: required key is missing")
        elif kind in {"literal_error", "enum"}:
            problems.append(f"{where}: {error['msg'].replace('Input should be', 'must be')}")
        else:
            got = error.get("input")
            shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}{shown}")
    return "; ".join(problems)


# --- loading ----------------------------------------------------------------------------------------


def parse_job(text: str, *, source: Path | None = None, env: Mapping[str, str] | None = None) -> JobConfig:
    """Parse and validate a job from YAML text.

    Args:
        text: The YAML document.
        source: The file it came from (relative ``${file:…}`` paths resolve against its folder).
        env: Variables for ``${VAR}``; defaults to the process environment.

    Raises:
        ConfigError: With the YAML path, line, and what to change.
    """
    name = str(source) if source else "job"
    node, raw = load_document(text, name)
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{name} must be a YAML mapping with version, name, source and target",
            hint="See `dativo schema` for the job file format.",
        )
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        index_lines(node, (), lines)
    loc = Located(source, lines)
    base = source.parent if source else Path.cwd()
    if source and "name" not in raw:
        raw["name"] = source.stem
    job_name = raw.get("name") if isinstance(raw.get("name"), str) and "${" not in raw["name"] else None
    try:
        raw = substitute(raw, (), os.environ if env is None else env, base, loc)
    except ConfigError as exc:
        raise exc.with_context(job=job_name) from None
    try:
        job = JobConfig.model_validate(raw, context={"base": base, "env": env})
    except ValidationError as exc:
        job_name = raw.get("name") if isinstance(raw.get("name"), str) else None
        raise ConfigError(
            f"{name} is invalid: {describe_validation_error(exc, JobConfig, loc=loc)}",
            job=job_name,
            hint="See `dativo schema` for every key.",
        ) from None
    job._path = source
    return job


def load_job(path: str | Path, *, env: Mapping[str, str] | None = None) -> JobConfig:
    """Read, substitute and validate the job file at ``path``.

    Raises:
        ConfigError: If the file cannot be read or is invalid.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read job file {file}: {exc.strerror}", hint="Check the path.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"job file {file} is not UTF-8 text", hint="Save it as UTF-8.") from None
    return parse_job(text, source=file, env=env)


def job_locator(job: JobConfig) -> Located:
    """Line positions of ``job``'s file, for messages about connector keys validated later."""
    if job.path is None:
        return Located(None, {})
    lines: dict[tuple[str, ...], int] = {}
    try:
        node, _ = load_document(job.path.read_text(encoding="utf-8"), str(job.path))
    except (OSError, ConfigError):
        return Located(job.path, {})
    if node is not None:
        index_lines(node, (), lines)
    return Located(job.path, lines)


def job_schema() -> dict[str, Any]:
    """The JSON Schema of the job file."""
    return JobConfig.model_json_schema()
