"""What may run: decided for every plugin a run names, before any code of it is imported or started.

:meth:`Gate.admit` finds the installed distribution behind what a job names (``registry.locate`` and
``importlib.metadata``: nothing is imported) and then:

=====================================================  ===============================================
the plugin                                             what happens
=====================================================  ===============================================
built-in; the user's own code (a module beside the     runs as configured, as always
job or in the project, ``{lib:}``, ``{command:}``);
an installed package that carries no manifest and is
not in ``dativo.lock``
pinned in ``dativo.lock``                              its installed files are hashed and compared with
                                                       the pin first: another version or other files →
                                                       :class:`~dativo.errors.PluginUntrusted` (exit 3)
pinned, signed by a key trusted when it was installed  runs as configured
unsigned, signed by an untrusted key, or not pinned    ``plugins.policy.unsigned``: ``sandbox`` (the
(an installed package with a manifest)                 default) runs it in the sandbox with exactly the
                                                       capabilities its manifest declares; ``refuse``
                                                       refuses it; ``allow`` runs it as configured
=====================================================  ===============================================

The policy is the job's ``plugins.policy.unsigned``, else the project's ``dativo.toml``, else ``sandbox``. A
sandboxed plugin is started as a command inside the sandbox — a Python plugin as ``dativo plugin serve``, a
Go or C++ executable as the manifest's ``start.command`` — with its declared capabilities in
``DATIVO_SANDBOX_CAPABILITIES`` (:mod:`dativo.market.capabilities`), and the job's own sandbox limits
(``cpu_seconds``, ``timeout_s`` …) kept.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import PrivateAttr, ValidationError

from dativo.api import Role
from dativo.config import FlightEndpoint, NativeLibrary, PluginCommand, SandboxConfig, describe_validation_error
from dativo.errors import ConfigError, PluginNotFound, PluginUntrusted, SandboxError
from dativo.market import capabilities
from dativo.market.lock import DEFAULT_POLICY, Pin, Policy, Project, project
from dativo.market.manifest import Manifest
from dativo.market.verify import Installed, check, describe
from dativo.registry import Location, locate

log = logging.getLogger("dativo.market")
Implementation = str | NativeLibrary | PluginCommand | FlightEndpoint
_KEPT_LIMITS = ("cpu_seconds", "timeout_s", "max_open_files", "max_processes")


@dataclass(frozen=True)
class Provenance:
    """Where an installed plugin comes from, for ``dativo plugins list``.

    Attributes:
        distribution: Its distribution's name (``""``: none, e.g. a built-in).
        source: ``built-in``, ``index <url>``, ``installed package`` or ``path``.
        publisher: The fingerprint of the key it was signed with (``""``: unsigned or unknown).
        certification: Its manifest's certification level (``""``: none).
        pinned: Whether ``dativo.lock`` pins it.
        verified: ``"yes"``, ``"no: <why>"`` or ``""`` (not pinned).
        trust: ``trusted``, ``untrusted`` or ``""`` (as today: not a packed plugin).
    """

    distribution: str = ""
    source: str = ""
    publisher: str = ""
    certification: str = ""
    pinned: bool = False
    verified: str = ""
    trust: str = ""


class ConfinedPlugin(PluginCommand):
    """The command that starts an untrusted plugin in its sandbox; messages and reports name the plugin."""

    _name: str = PrivateAttr("")

    def __str__(self) -> str:
        return self._name or super().__str__()


class Gate:
    """The trust decisions of one run (one per :class:`~dativo.plugins.host.PluginHost`).

    Args:
        folder: The job file's folder (its project's ``dativo.lock`` and ``dativo.toml`` are found from
            there); ``None``: the current folder.
        policy: The job's ``plugins.policy.unsigned`` (``None``: not set).
    """

    def __init__(self, folder: Path | None = None, policy: Policy | None = None) -> None:
        self.folder = (folder or Path.cwd()).absolute()
        self.job_policy = policy
        self._project: Project | None = None

    @property
    def project(self) -> Project:
        """The project's lock and settings, read once."""
        if self._project is None:
            self._project = project(self.folder)
        return self._project

    @property
    def policy(self) -> Policy:
        return self.job_policy or self.project.policy or DEFAULT_POLICY

    # --- finding the distribution, importing nothing --------------------------------------------------------

    def distribution(self, role: Role, implementation: Implementation) -> Installed | None:
        """The installed distribution behind what a job names (``None``: a built-in, or the user's own code)."""
        if not isinstance(implementation, str):
            return None
        try:
            location = locate(role, implementation, beside=self.folder)
        except PluginNotFound:
            return None  # resolving it says so, with the names that exist
        return self._of(location)

    def _of(self, location: Location) -> Installed | None:
        if location.origin == "builtin":
            return None
        if location.entry_point is not None:
            dist = location.entry_point.dist
            return describe(dist) if dist is not None else None
        top = location.module.split(".")[0]
        try:
            files, _ = location.files()
        except PluginNotFound:
            return None
        found = {Path(f).resolve() for f in files}
        if not any(next(Path(f).parent.glob("*.dist-info"), None) for f in files):
            return None  # beside the job, in the project, on PYTHONPATH: the user's own code (no metadata scan)
        for name in metadata.packages_distributions().get(top, []):
            try:
                dist = metadata.distribution(name)
            except metadata.PackageNotFoundError:
                continue
            root = Path(str(dist.locate_file("")))
            if found & {(root / top).resolve(), (root / f"{top}.py").resolve()}:
                return describe(dist)
        return None

    # --- the decision ----------------------------------------------------------------------------------------

    def admit(
        self, role: Role, implementation: Implementation, sandbox: SandboxConfig | None
    ) -> tuple[Implementation, SandboxConfig | None]:
        """How to run what a job names, under the lock and the trust policy (see the module's docstring).

        Returns:
            The implementation and sandbox to use: the job's own, or a sandboxed command.

        Raises:
            PluginUntrusted: A pinned plugin is not what the lock pins, or the policy refuses the plugin.
            SandboxError: The policy sandboxes a plugin that cannot be sandboxed (a native library).
            ConfigError: The capabilities its manifest declares cannot be granted here (a secret not set).
        """
        found = self.distribution(role, implementation)
        if found is None:
            return implementation, sandbox
        pin = self.project.lock.get(found.name)
        if pin is None and found.manifest is None:
            return implementation, sandbox  # a package installed by hand, as before manifests: as configured
        if pin is not None:
            check(pin, self.project.lock.path, found)
            if pin.trusted:
                return implementation, sandbox
        name = str(implementation).strip()
        why = self._untrusted_reason(found, pin)
        policy = self.policy
        if policy == "allow":
            log.warning("%s %s (%s %s) %s; plugins.policy.unsigned is allow: running it as configured", role,
                        name, found.name, found.version, why)
            return implementation, sandbox
        if policy == "refuse":
            raise PluginUntrusted(
                f"{found.name} {found.version} {why}, and plugins.policy.unsigned is refuse; nothing of it was "
                "imported or started",
                plugin=name,
                hint="Install it from an index with a trusted publisher key (dativo plugin install NAME --trust KEY), "
                "or set plugins.policy.unsigned to sandbox (runs it confined) or allow.",
            )
        manifest = found.manifest
        if manifest is None:
            raise PluginUntrusted(f"{found.name} {found.version} {why}, and it declares no capabilities, so the "
                                  "sandbox cannot run it", plugin=name,
                                  hint="Install a version packed by `dativo plugin pack`, or trust it.")
        box = self._confine(role, name, manifest, sandbox)
        command = self._command(role, name, manifest, found)
        log.warning("%s %s (%s %s) %s: it runs only in the sandbox, with the capabilities its manifest declares "
                    "(plugins.policy.unsigned: sandbox)", role, name, found.name, found.version, why)
        return command, box

    @staticmethod
    def _untrusted_reason(found: Installed, pin: Pin | None) -> str:
        if pin is None:
            return "is not pinned in dativo.lock, so who published it is unknown"
        if pin.publisher:
            return "is signed by a publisher key that was not trusted when it was installed"
        return "is not signed"

    def _confine(self, role: Role, name: str, manifest: Manifest, job: SandboxConfig | None) -> SandboxConfig:
        declared = manifest.capabilities
        sockets = [n for n in declared.network if n.startswith("unix:")]
        network: bool | list[str] = False
        if len(sockets) < len(declared.network):
            network = True  # host:port cannot be filtered: the host's network (docs/sandbox.md)
            log.warning("%s %s declares network %s: the sandbox cannot filter TCP by host, so it gets the host's "
                        "network", role, name, ", ".join(declared.network))
        elif sockets:
            network = sockets
        base = self.folder
        existing = lambda paths: [p for p in paths if (Path(p) if Path(p).is_absolute() else base / p).exists()]  # noqa: E731
        data: dict[str, Any] = {
            "enabled": True, "network": network, "read_paths": existing(declared.read_paths),
            "write_paths": existing(declared.write_paths), "secrets": list(declared.secrets),
        }
        if declared.memory_mb is not None:
            data["memory_mb"] = declared.memory_mb
        if job is not None:
            data.update({k: getattr(job, k) for k in _KEPT_LIMITS if k in job.model_fields_set})
        try:
            return SandboxConfig.model_validate(data, context={"base": base})
        except ValidationError as exc:
            raise ConfigError(
                f"{manifest.name} {manifest.version} declares capabilities its sandbox cannot grant here: "
                f"{describe_validation_error(exc, SandboxConfig, prefix=('capabilities',))}",
                plugin=name,
                hint="Set the secrets it declares in the environment, or trust the plugin.",
            ) from None

    def _command(self, role: Role, name: str, manifest: Manifest, found: Installed) -> PluginCommand:
        start = manifest.start
        if start.command:
            argv = [str(found.root / start.command[0]), *start.command[1:]]
        elif start.library and manifest.language != "python" and not start.entry_point:
            raise SandboxError(
                f"{manifest.name} {manifest.version} is untrusted and must run in the sandbox, but it is native "
                f"library {start.library}, which would be loaded into the host process; nothing of it was loaded",
                plugin=name,
                hint="Trust it (install it with a trusted publisher key) or set plugins.policy.unsigned: allow.",
            )
        else:
            argv = [sys.executable, "-m", "dativo", "plugin", "serve", "--role", role, "--name", name, name]
        env = {capabilities.ENV: capabilities.encode(name, manifest.capabilities.model_dump(mode="json"))}
        command = ConfinedPlugin.model_validate({"command": argv, "env": env, "start_timeout_s": 30.0},
                                                context={"base": self.folder})
        command._name = name
        return command

    # --- for `dativo plugins list` ----------------------------------------------------------------------------

    def provenance(self, role: Role, name: str) -> Provenance:
        """Where the plugin ``name`` comes from, whether it is pinned and verified (imports nothing)."""
        try:
            location = locate(role, name, beside=self.folder)
        except PluginNotFound:
            return Provenance()
        if location.origin == "builtin":
            return Provenance(source="built-in", trust="trusted")
        try:
            found = self._of(location)
        except PluginUntrusted as exc:
            return Provenance(source="installed package", verified=f"no: {exc.message}", trust="untrusted")
        if found is None:
            return Provenance(source="path")
        certification = found.manifest.certification.level if found.manifest and found.manifest.certification else ""
        pin = self.project.lock.get(found.name)
        if pin is None:
            trust = "untrusted" if found.manifest is not None else ""
            return Provenance(found.name, "installed package", "", certification, False, "", trust)
        try:
            check(pin, self.project.lock.path, found)
            verified = "yes"
        except PluginUntrusted as exc:
            verified = f"no: {exc.message}"
        from dativo.market.sign import PublicKey  # cryptography (0.02 s), for a locked plugin only

        publisher = PublicKey.parse(pin.publisher).fingerprint if pin.publisher else ""
        trust = "trusted" if pin.trusted and verified == "yes" else "untrusted"
        return Provenance(found.name, f"index {pin.index}" if pin.index else "lock", publisher,
                          certification or pin.certification, True, verified, trust)

    def before_load(self, role: Role, name: str) -> None:
        """Refuse to import what a job would not run in this process (``plugins list`` calls it).

        Raises:
            PluginUntrusted: A pinned plugin whose files do not match the lock, or an untrusted one that the
                policy does not ``allow`` (a job runs it only in the sandbox, or not at all).
        """
        found = self.distribution(role, name)
        if found is None:
            return
        pin = self.project.lock.get(found.name)
        if pin is not None:
            check(pin, self.project.lock.path, found)
            if pin.trusted:
                return
        elif found.manifest is None:
            return
        if self.policy != "allow":
            raise PluginUntrusted(
                f"{found.name} {found.version} {self._untrusted_reason(found, pin)}: not imported here; a job "
                f"{'refuses it' if self.policy == 'refuse' else 'runs it only in the sandbox'} "
                f"(plugins.policy.unsigned: {self.policy})",
                plugin=name,
            )
