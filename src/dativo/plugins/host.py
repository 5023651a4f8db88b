"""The plugins of one run: :class:`PluginHost` resolves them, starts what runs out of process, ends it all.

A run (the engine's ``run``, ``check`` or ``discover``; ``dativo plugins info``) opens one host and closes it
at the end, whatever happened::

    with PluginHost(job="orders") as host:
        spec = host.resolve("reader", job.source.reader.implementation, job.source.reader.sandbox)
        reader = host.instantiate(spec, config, ctx)
        ...

Before anything of a plugin is imported or started, the host asks its :class:`dativo.market.policy.Gate`: a
plugin pinned in the project's ``dativo.lock`` has its installed files verified, an unsigned or untrusted one
is sandboxed with the capabilities its manifest declares or refused (``plugins.policy.unsigned``).

What the host owns, and nothing outside it does:

- the spec of every ``(role, implementation, sandbox)`` it resolved — each is resolved once per host, and a
  failure too is remembered, so asking again (the engine's fallback decision) starts nothing;
- the class of each out-of-process plugin as the plugin described itself over Flight
  (:func:`dativo.plugins.remote.described`), made once per host; no class is ever changed;
- the connection opened to learn that spec, waiting for the instance that uses it (so a job starts its
  plugin once), and every other connection it opened for an instance;
- through those connections, the processes it started (and their sandboxes, which end with them):
  :meth:`close` shuts down whatever is still running.

An executor that runs work elsewhere (threads now, Ray later) asks the host for instances; plugin classes and
their specs are plain values it may pass on.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import BaseModel

from dativo.api import Context, Role
from dativo.config import FlightEndpoint, NativeLibrary, PluginCommand, SandboxConfig
from dativo.errors import DativoError
from dativo.market.lock import Policy
from dativo.market.policy import Gate
from dativo.plugins.client import Connection
from dativo.plugins.process import CommandLauncher, launcher_for
from dativo.plugins.remote import RemotePlugin, described, is_remote, learn_spec, plugin_class
from dativo.plugins.sandbox import sandboxed
from dativo.registry import PluginSpec, resolve, validated

Implementation = str | NativeLibrary | PluginCommand | FlightEndpoint


def _key(role: Role, implementation: Implementation, sandbox: SandboxConfig | None) -> tuple[Any, ...]:
    """What makes two resolutions the same: the role, the implementation and its folder, the sandbox."""
    if isinstance(implementation, str):
        what: tuple[Any, ...] = ("name", implementation.strip())
    elif isinstance(implementation, NativeLibrary):
        what = ("lib", str(implementation.path()), implementation.symbol_prefix)
    elif isinstance(implementation, PluginCommand):
        what = ("command", implementation.model_dump_json(), str(implementation.cwd()))
    else:
        what = ("flight", implementation.model_dump_json())
    box = None
    if sandbox is not None and sandbox.enabled:
        box = (sandbox.model_dump_json(), str(sandbox.path(".")), tuple(sorted(sandbox.granted().items())))
    return role, what, box


class PluginHost:
    """The plugins of one run, and everything they hold (see the module's docstring).

    Args:
        job: The job's name, for the messages of plugins started to learn their spec.
        beside: The job file's folder, where a dotted path's module is also looked for (and where the
            project's ``dativo.lock`` and ``dativo.toml`` are found from).
        policy: The job's ``plugins.policy.unsigned`` (see :mod:`dativo.market.policy`).
    """

    def __init__(self, *, job: str | None = None, beside: Path | None = None, policy: Policy | None = None) -> None:
        self.job = job
        self.beside = beside
        self.gate = Gate(beside, policy)
        self._lock = threading.RLock()
        self._specs: dict[tuple[Any, ...], PluginSpec | DativoError] = {}
        self._resolving: dict[tuple[Any, ...], threading.Lock] = {}  # one per key: two plugins start at once
        self._waiting: dict[type, Connection] = {}
        self._connections: list[Connection] = []
        self._closed = False

    def __enter__(self) -> PluginHost:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    # --- specs ----------------------------------------------------------------------------------------------

    def resolve(
        self, role: Role, implementation: Implementation, sandbox: SandboxConfig | None = None
    ) -> PluginSpec:
        """Find and validate the implementation a job names, once per host.

        An out-of-process plugin is started (or reached) to learn its spec, and the connection waits for
        :meth:`instantiate`.

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
        key = _key(role, implementation, sandbox)
        with self._lock:
            lock = self._resolving.setdefault(key, threading.Lock())
        with lock:  # the same plugin resolves once; another one (the writer) meanwhile, in its own thread
            with self._lock:
                if self._closed:
                    raise RuntimeError("this PluginHost is closed")
                known = self._specs.get(key)
            if isinstance(known, DativoError):
                raise known
            if known is not None:
                return known
            try:
                spec = self._resolve(role, implementation, sandbox)
            except DativoError as exc:
                with self._lock:
                    self._specs[key] = exc
                raise
            with self._lock:
                self._specs[key] = spec
            return spec

    def resolved(
        self, role: Role, implementation: Implementation, sandbox: SandboxConfig | None = None
    ) -> PluginSpec | None:
        """What :meth:`resolve` gave for this, without resolving (``None``: it failed or was not asked)."""
        known = self._specs.get(_key(role, implementation, sandbox))
        return known if isinstance(known, PluginSpec) else None

    def _resolve(
        self, role: Role, implementation: Implementation, sandbox: SandboxConfig | None
    ) -> PluginSpec:
        name = implementation.strip() if isinstance(implementation, str) else str(implementation)
        # before any of its code runs: a pinned plugin is verified, an untrusted one sandboxed or refused
        implementation, sandbox = self.gate.admit(role, implementation, sandbox)
        if sandbox is not None and sandbox.enabled:
            launcher = sandboxed(role, implementation, sandbox, CommandLauncher, beside=self.beside)
            cls = plugin_class(role, launcher, doc=f"The sandboxed {role} {launcher.name}.")
            return self.describe(validated(role, name, cls, "sandbox"))
        if isinstance(implementation, PluginCommand | FlightEndpoint):
            origin = "flight" if isinstance(implementation, FlightEndpoint) else "process"
            cls = plugin_class(role, launcher_for(implementation))
            return self.describe(validated(role, str(implementation), cls, origin))
        return self.describe(resolve(role, implementation, beside=self.beside))

    def describe(self, spec: PluginSpec) -> PluginSpec:
        """``spec`` as the plugin tells it: an out-of-process plugin is asked for its spec over Flight.

        Any other spec is returned as it is. The connection opened to ask waits for :meth:`instantiate`.

        Raises:
            DativoError: The plugin cannot be reached, does not offer the role, or does not fit this Dativo.
        """
        if not is_remote(spec.cls) or spec.cls.plugin_spec is not None:
            return spec
        conn = self._connect(spec.cls, logging.getLogger(f"dativo.{spec.role}.{spec.name}"))
        try:
            complete = spec.with_class(described(spec.cls, learn_spec(conn, spec.role)))
        except BaseException:
            conn.close(shutdown=True)
            raise
        with self._lock:
            self._waiting[complete.cls] = conn
        return complete

    # --- instances ------------------------------------------------------------------------------------------

    def instantiate(self, spec: PluginSpec, config: BaseModel, ctx: Context) -> Any:
        """Create the reader or writer ``spec`` names, with its validated ``config``.

        An out-of-process plugin gets the connection that waits for it (else a new one): its process is the
        one that told its spec. Closing the instance ends that process; :meth:`close` ends any left.

        Raises:
            DativoError: The plugin refused its configuration, or could not be reached.
            Exception: Whatever an in-process plugin's ``__init__`` raised.
        """
        cls = spec.cls
        if not is_remote(cls):
            return cls(config, ctx)
        conn = self._take(cls) or self._connect(cls, ctx.logger)
        return cls(config, ctx, connection=conn)

    def _take(self, cls: type) -> Connection | None:
        with self._lock:
            conn = self._waiting.pop(cls, None)
        if conn is not None and not conn.usable:  # it died or hung while it waited
            conn.close(shutdown=True)
            return None
        return conn

    def _connect(self, cls: type[RemotePlugin], logger: logging.Logger) -> Connection:
        with self._lock:
            if self._closed:
                raise RuntimeError("this PluginHost is closed")
        conn = Connection(cls.launcher, cls.role, logger, job=self.job)
        with self._lock:
            closed = self._closed
            if not closed:
                self._connections.append(conn)
        if closed:  # closed while the plugin started (in another thread): nobody would end its process
            conn.close(shutdown=True)
            raise RuntimeError("this PluginHost is closed")
        return conn

    # --- the end --------------------------------------------------------------------------------------------

    def close(self) -> None:
        """End every connection this host opened, and the processes behind them. Idempotent.

        Instances close their own connections; this ends those nobody used (a spec learnt, then a fallback)
        and those of instances that were never closed.
        """
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
            self._waiting.clear()
        for conn in connections:
            conn.close(shutdown=True)
