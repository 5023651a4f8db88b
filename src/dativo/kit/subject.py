"""The plugin under test: what ``IMPL`` names, how it is configured, and the kit's session that owns it all.

``IMPL`` is anything a job's ``implementation:`` accepts — a built-in name, an entry point, a dotted path,
``{lib: ...}``, ``{command: [...]}``, ``{flight: ...}`` — and, on the command line, a JSON/YAML mapping or
the path of a ``.so``/``.dylib``. It is resolved by the run's :class:`~dativo.plugins.host.PluginHost`
(which uses :mod:`dativo.registry`), configured the way the engine configures a plugin
(:meth:`~dativo.registry.PluginSpec.build_config` with the connector keys and the options, a
:class:`~dativo.api.Context`), and created by :meth:`~dativo.plugins.host.PluginHost.instantiate`: the kit
loads nothing itself.

With a job, the section of the plugin's side (``source`` for a reader, ``target`` for a writer) gives the
connector keys and options. Without one, the kit's ``options`` are the plugin's options (and, for a
built-in or a plugin that declares a ``connector``, its connector keys).

A writer only ever writes into the kit's temporary folder: its location (``path``; an Iceberg catalog) is
replaced by one there, or named with ``{tmp}`` in the options.
"""

from __future__ import annotations

import copy
import logging
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import ValidationError

from dativo.api import Context, Role
from dativo.config import (
    FlightEndpoint,
    JobConfig,
    NativeLibrary,
    PluginCommand,
    SandboxConfig,
    describe_validation_error,
    load_job,
)
from dativo.config import parse_implementation as config_parse_implementation
from dativo.errors import ConfigError, DativoError, PluginIncompatible, PluginNotFound
from dativo.kit.checks import UsageError
from dativo.plugins.host import PluginHost
from dativo.registry import PluginSpec

KIT_JOB = "dativo_kit"
"""The job name plugins see when the kit runs without a job."""
TMP = "{tmp}"
"""Replaced, in a writer's options, by the kit's temporary target folder."""

Impl = str | NativeLibrary | PluginCommand | FlightEndpoint

_SECRET_KEY = re.compile(r"pass(word|wd)?$|^pwd$|secret|token|api_?key|credential", re.IGNORECASE)
_CONNECTION_KEY = re.compile(r"dsn|url|uri|endpoint|conninfo|connection_string|^host$", re.IGNORECASE)
_PATH_KEY = re.compile(r"^(path|paths|file|files|folder|dir|directory|root)$", re.IGNORECASE)
_STORAGE_SCHEMES = ("s3", "file", "gs", "gcs", "abfs", "az", "hdfs")


def parse_implementation(value: Any, *, base: Path | None = None) -> Impl:
    """What ``IMPL`` names (:func:`dativo.config.parse_implementation`), a mistake in it a kit usage error.

    Raises:
        UsageError: ``value`` is none of the forms.
    """
    try:
        return config_parse_implementation(value, base=base)
    except ConfigError as exc:
        raise UsageError(exc.message, hint=exc.hint) from None


def implementation_label(implementation: Impl) -> str:
    """How messages and reports name an implementation."""
    return implementation.strip() if isinstance(implementation, str) else str(implementation)


# --- the session ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogRecord:
    """A log record as the plugin wrote it (nothing redacted: the kit scans it for secrets)."""

    logger: str
    level: str
    message: str


class _Capture(logging.Handler):
    def __init__(self, into: list[LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not the kit's business
            message = str(record.msg)
        with self._guard:
            if len(self.into) < 10_000:
                self.into.append(LogRecord(record.name, record.levelname, message))


class Session:
    """One kit run: its plugin host, its temporary folder, the plugins' logs, and every instance it made.

    Args:
        work_dir: Where the temporary folder is made (default: the system's).
        keep: Keep the temporary folder at the end (for debugging).
    """

    def __init__(self, *, work_dir: Path | None = None, keep: bool = False) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="dativo-kit-", dir=work_dir))
        self.keep = keep
        self.host = PluginHost(job=KIT_JOB)
        self.logs: list[LogRecord] = []
        self.logger = logging.getLogger("dativo.kit.plugin")
        self.run_prefix = uuid.uuid4().hex[:8]
        self._capture = _Capture(self.logs)
        self._instances: list[Any] = []
        self._level = self.logger.level

    def __enter__(self) -> Session:
        logging.getLogger().handlers.insert(0, self._capture)  # before any handler that redacts the record
        self.logger.setLevel(logging.DEBUG)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            for instance in reversed(self._instances):
                self.close(instance)
            self.host.close()
        finally:
            root = logging.getLogger()
            if self._capture in root.handlers:
                root.handlers.remove(self._capture)
            self.logger.setLevel(self._level)
            if not self.keep:
                shutil.rmtree(self.tmp, ignore_errors=True)

    def folder(self, name: str) -> Path:
        """A fresh folder in the temporary folder."""
        path = self.tmp / f"{name}-{uuid.uuid4().hex[:6]}"
        path.mkdir(parents=True)
        return path

    def run_id(self, what: str) -> str:
        """A run id for one check (safe in paths)."""
        return f"kit-{self.run_prefix}-{what}-{uuid.uuid4().hex[:6]}"

    def instance(self, subject: Subject, *, spec: PluginSpec | None = None, settings: dict[str, Any] | None = None,
                 options: dict[str, Any] | None = None, cursor: str | None = None, run_id: str | None = None,
                 work_dir: Path | None = None) -> Any:
        """A new instance of the subject (or of ``spec``), configured as the engine would configure it.

        Args:
            subject: The plugin under test, whose section and context are used.
            spec: Another implementation to create instead (the built-in, a sandboxed one).
            settings: Connector keys instead of the subject's.
            options: Options instead of the subject's.
            cursor: The incremental cursor in the context (default: the subject's).
            run_id: The run id (default: a new one).
            work_dir: The context's scratch folder (default: the kit's).

        Raises:
            ConfigError: The configuration does not validate.
            DativoError: The plugin refused it, or could not be started.
        """
        spec = spec or subject.spec
        settings = subject.settings if settings is None else settings
        options = subject.options if options is None else options
        config = spec.build_config(dict(settings), dict(options), section=subject.section)
        ctx = Context(
            job=subject.job_name,
            run_id=run_id or self.run_id(subject.role),
            plugin=spec.name,
            logger=self.logger.getChild(f"{subject.role}.{spec.name}"),
            settings=dict(settings),
            parallelism=subject.parallelism,
            cursor=subject.cursor if cursor is None else cursor,
            work_dir=str(work_dir or self.tmp / "work"),
        )
        instance = self.host.instantiate(spec, config, ctx)
        self._instances.append(instance)
        return instance

    def close(self, instance: Any) -> None:
        """Close an instance once (closing errors are logged: they are the plugin's, not the kit's)."""
        if instance not in self._instances:
            return
        self._instances.remove(instance)
        try:
            instance.close()
        except Exception as exc:
            self.logger.warning("close() of %s failed: %s", type(instance).__name__, exc)


# --- the subject ---------------------------------------------------------------------------------------------


@dataclass
class Subject:
    """The plugin under test and how it is configured.

    Attributes:
        role: ``reader`` or ``writer``.
        implementation: What ``IMPL`` named.
        spec: Its resolved spec (``None`` until it loaded).
        settings: Connector keys (a job section's, or the options of a connector plugin).
        options: The plugin's own options.
        connector: The connector type: the job section's ``type``, else the one the plugin implements.
        job: The job, if one was given.
        job_name: The job's name (or :data:`KIT_JOB`).
        parallelism: ``ctx.parallelism``.
        cursor: ``ctx.cursor``: the job's incremental cursor, if any.
        sandbox: The sandbox block of its side in the job (else a default one); :func:`sandbox_for` switches
            it on for ``--sandbox``.
        base: The folder relative paths start from.
    """

    role: Role
    implementation: Impl
    spec: PluginSpec | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    connector: str | None = None
    job: JobConfig | None = None
    job_name: str = KIT_JOB
    parallelism: int = 2
    cursor: str | None = None
    sandbox: SandboxConfig | None = None
    base: Path = field(default_factory=Path.cwd)

    @property
    def label(self) -> str:
        """How the report names the plugin."""
        return implementation_label(self.implementation)

    @property
    def section(self) -> str:
        """The job-file section of its side."""
        return "source" if self.role == "reader" else "target"


def load_kit_job(job: str | Path | JobConfig | None) -> JobConfig | None:
    """The job, read and validated (``${VAR}`` substituted) unless it already is.

    Raises:
        ConfigError: The file cannot be read or is invalid.
    """
    if job is None or isinstance(job, JobConfig):
        return job
    return load_job(job)


def resolve(host: PluginHost, implementation: Impl, role: Role | None) -> tuple[Role, PluginSpec]:
    """Resolve ``implementation`` as ``role``, or, without one, as a reader and else as a writer.

    Raises:
        UsageError: Nothing is found under that name (a usage error: exit 2).
        PluginIncompatible: It is found but does not fit (the ``load`` check fails).
        DativoError: It could not be started.
    """
    roles: tuple[Role, ...] = (role,) if role else ("reader", "writer")
    errors: list[DativoError] = []
    for one in roles:
        try:
            return one, host.resolve(one, implementation)
        except (PluginNotFound, PluginIncompatible) as exc:
            errors.append(exc)
    incompatible = [e for e in errors if isinstance(e, PluginIncompatible)]
    fitting = [e for e in incompatible if "not a dativo.api" not in e.message and "cannot be the" not in e.message]
    if fitting or (incompatible and len(roles) == 1):
        raise (fitting or incompatible)[0]
    first = errors[0]
    raise UsageError(
        "; ".join(dict.fromkeys(e.message for e in errors)),
        plugin=implementation_label(implementation),
        hint=first.hint or "Check IMPL, and --kind reader|writer.",
    ) from None


def configure(subject: Subject, options: dict[str, Any] | None) -> None:
    """Fill in the subject's connector keys, options and context from its job (or from ``options``)."""
    job = subject.job
    if job is not None:
        section = job.source if subject.role == "reader" else job.target
        impl = section.reader if subject.role == "reader" else section.writer  # type: ignore[attr-defined]
        subject.settings = section.settings()
        subject.options = dict(options) if options is not None else (
            dict(impl.options) if impl.type == "custom" else {}
        )
        subject.connector = section.type
        subject.job_name = job.name
        subject.parallelism = job.source.parallelism
        subject.cursor = job.source.incremental.cursor if job.source.incremental else None
        if job.path is not None:
            subject.base = job.path.parent.absolute()
        box = impl.sandbox
    else:
        assert subject.spec is not None
        connector = subject.spec.connector
        given = dict(options or {})
        subject.settings, subject.options = (given, {}) if connector else ({}, given)
        subject.connector = connector
        box = SandboxConfig()
    subject.sandbox = box


def sandbox_for(subject: Subject, *, write_paths: Sequence[Path] = ()) -> SandboxConfig:
    """The subject's sandbox block switched on, for ``--sandbox``.

    Without ``read_paths`` of its own, the local files and folders its settings and options name are bound
    read-only; ``write_paths`` are added to the block's (a writer's temporary target).

    Raises:
        ConfigError: The block does not validate once enabled (a secret it grants is not set, a ``unix:``
            grant is not a socket …).
    """
    data = (subject.sandbox or SandboxConfig()).model_dump()
    data["enabled"] = True
    if not data["read_paths"]:
        data["read_paths"] = sorted({str(p) for p in _local_paths({**subject.settings, **subject.options}, subject.base)})
    data["write_paths"] = [*data["write_paths"], *(str(p) for p in write_paths)]
    try:
        return SandboxConfig.model_validate(data, context={"base": subject.base})
    except ValidationError as exc:
        raise ConfigError(f"{subject.section}.{subject.role}.sandbox, enabled, is invalid: "
                          f"{describe_validation_error(exc, SandboxConfig)}") from None


def _local_paths(values: Any, base: Path) -> Iterator[Path]:
    """The existing local files and folders named by ``path``-like keys (a glob: its fixed folder)."""
    if isinstance(values, dict):
        for key, value in values.items():
            items = value if isinstance(value, list) else [value]
            if _PATH_KEY.match(str(key)) and all(isinstance(v, str) for v in items):
                for item in items:
                    if "://" in item:
                        continue
                    path = Path(item).expanduser()
                    path = path if path.is_absolute() else base / path
                    while any(ch in path.name for ch in "*?[") or not path.exists():
                        if path.parent == path:
                            break
                        path = path.parent
                    if path.exists():
                        yield path.absolute()
            else:
                yield from _local_paths(value, base)


# --- configurations the kit makes ----------------------------------------------------------------------------


@dataclass
class Breakage:
    """A configuration the plugin must refuse, and what the kit changed to make it.

    Attributes:
        settings: Connector keys.
        options: Options.
        changes: What was changed, for the reason line (``connection.dsn: a closed port and a fake
            password``).
        planted: Where the fake secret was put.
    """

    settings: dict[str, Any]
    options: dict[str, Any]
    changes: list[str]
    planted: list[str]


def _secret_fields(spec: PluginSpec) -> list[str]:
    model = getattr(spec.cls, "Config", None)
    fields = getattr(model, "model_fields", {}) or {}
    return [name for name in fields if _SECRET_KEY.search(name)]


def broken(spec: PluginSpec, settings: dict[str, Any], options: dict[str, Any], secret: str,
           missing: Path) -> Breakage:
    """A configuration with every connection, credential and path made wrong.

    Connections (``dsn``, ``url``, ``uri`` … values) point at a closed local port and carry ``secret`` as
    their password; credentials (``password``, ``token``, ``secret`` … keys, also those the ``Config``
    declares but the configuration leaves out) become ``secret``; paths point into ``missing`` (a folder
    that cannot exist: under a regular file).
    """
    changes: list[str] = []
    planted: list[str] = []

    def walk(value: Any, where: str, key: str) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, f"{where}.{k}" if where else str(k), str(k)) for k, v in value.items()}
        if isinstance(value, list):
            if _PATH_KEY.match(key) and value and all(isinstance(v, str) and "://" not in v for v in value):
                changes.append(f"{where}: paths that cannot exist")
                return [str(missing / Path(v).name) for v in value]
            return [walk(v, where, key) for v in value]
        if not isinstance(value, str):
            return value
        if _SECRET_KEY.search(key):
            changes.append(f"{where}: a fake secret")
            planted.append(where)
            return secret
        if _CONNECTION_KEY.search(key):
            scheme = value.partition("://")[0].lower() if "://" in value else ""
            if scheme and scheme not in _STORAGE_SCHEMES:
                changes.append(f"{where}: a closed port and a fake password")
                planted.append(where)
                return f"{scheme}://kit:{secret}@127.0.0.1:9/kit"
            if not scheme and "=" in value:
                changes.append(f"{where}: a closed port and a fake password")
                planted.append(where)
                return f"host=127.0.0.1 port=9 user=kit password={secret} dbname=kit connect_timeout=3"
        if _PATH_KEY.match(key) and "://" not in value:
            changes.append(f"{where}: a path that cannot exist")
            return str(missing / (Path(value).name or "missing"))
        return value

    settings = walk(copy.deepcopy(settings), "", "")
    options = walk(copy.deepcopy(options), "", "")
    into = settings if spec.connector is not None else options
    for name in _secret_fields(spec):
        if name not in settings and name not in options:
            into[name] = secret
            changes.append(f"{name}: a fake secret")
            planted.append(name)
    return Breakage(settings, options, changes, planted)


@dataclass
class TemporaryTarget:
    """Where a writer under test writes: the kit's folder, never the job's real target.

    Attributes:
        settings: Connector keys, the location replaced.
        options: Options, ``{tmp}`` replaced.
        path: The target's folder, with ``{dataset}``, when it is a local folder the kit can read back.
        how: What the kit changed, for the report.
    """

    settings: dict[str, Any]
    options: dict[str, Any]
    path: str | None
    how: str


def _replace_tmp(value: Any, tmp: str) -> tuple[Any, bool]:
    if isinstance(value, dict):
        pairs = {k: _replace_tmp(v, tmp) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, any(hit for _, hit in pairs.values())
    if isinstance(value, list):
        items = [_replace_tmp(v, tmp) for v in value]
        return [v for v, _ in items], any(hit for _, hit in items)
    if isinstance(value, str) and TMP in value:
        return value.replace(TMP, tmp), True
    return value, False


def temporary_target(subject: Subject, spec: PluginSpec, folder: Path, *, own_options: bool = True) -> TemporaryTarget:
    """The configuration of ``spec`` (the subject, or the built-in beside it) aimed at ``folder``.

    Args:
        own_options: Use the subject's options (``False``: the built-in's, which has none).

    Raises:
        UsageError: The kit cannot tell where this writer writes: name it with ``{tmp}``.
    """
    settings, hit_s = _replace_tmp(copy.deepcopy(subject.settings), str(folder))
    options, hit_o = _replace_tmp(copy.deepcopy(subject.options) if own_options else {}, str(folder))
    if hit_s or hit_o:
        path = options.get("path", settings.get("path"))
        local = isinstance(path, str) and "://" not in path.removeprefix("file://")
        return TemporaryTarget(settings, options, path.removeprefix("file://") if local else None,
                               f"{TMP} replaced by {folder}")
    fields = getattr(getattr(spec.cls, "Config", None), "model_fields", {}) or {}
    connector = spec.connector
    if "path" in fields or "path" in settings or "path" in options:
        where = options if "path" in options or ("path" not in settings and connector is None) else settings
        where["path"] = str(folder / "{dataset}")
        for key in ("s3",):
            where.pop(key, None)
        return TemporaryTarget(settings, options, where["path"], f"path replaced by {folder}/{{dataset}}")
    if connector == "iceberg" or "catalog" in fields:
        for key in ("catalog", "table", "datasets"):
            settings.pop(key, None)
        return TemporaryTarget(settings, options, None, "an embedded catalog and warehouse in the kit's folder")
    raise UsageError(
        f"the kit cannot tell where the writer {spec.name} writes, so it would not write into a temporary target",
        plugin=spec.name,
        hint=f"Name the location with {TMP} in its options, e.g. --options '{{\"path\": \"{TMP}/out\"}}'.",
    )


__all__ = [
    "KIT_JOB",
    "TMP",
    "Breakage",
    "Impl",
    "LogRecord",
    "Session",
    "Subject",
    "TemporaryTarget",
    "broken",
    "configure",
    "implementation_label",
    "load_kit_job",
    "parse_implementation",
    "resolve",
    "sandbox_for",
    "temporary_target",
]
