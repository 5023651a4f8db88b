"""Running untrusted plugins in a bubblewrap sandbox (``docs/sandbox.md``, which also gives the threat model).

A job asks for it with ``reader.sandbox.enabled: true`` (or ``writer.``). The plugin then always runs out of
process, inside ``bwrap``, and the host talks Arrow Flight to it as to any plugin process
(:mod:`dativo.plugins.process`): a Python plugin (dotted path, entry point or built-in name) is served by
``python -m dativo plugin serve`` *inside* the sandbox, so its code is never imported into the host; an
``implementation: {command: [...]}`` runs inside the sandbox as it is. Native libraries and running
``{flight: ...}`` plugins cannot be sandboxed and are refused.

The sandbox, layer by layer: never host root (uid/gid 65534 as root, :mod:`dativo.plugins.bwrap`); no
capabilities and ``no_new_privs``; a seccomp filter (:mod:`dativo.plugins.seccomp`); new pid, ipc, uts,
cgroup and network namespaces (the host's network only with ``network: true``); a read-only root of exactly
the runtime (``/usr``, the Python installation, the venv, the dativo package) and the plugin's own package or
executable, a read-only ``/proc/sys`` and no ``/sys``, a private ``/tmp``, the socket folder, the job's
``read_paths``/``write_paths`` and ``unix:`` socket files; only ``PATH``, ``HOME``, ``LANG``, ``TMPDIR``, the
protocol variables and the granted ``secrets`` in its environment; rlimits, a pids (and memory) cgroup
(:mod:`dativo.plugins.cgroups`), a wall-clock timeout; killed with the host.

It fails closed: no bubblewrap or setpriv, namespaces that cannot be created, a filter that cannot be built,
an empty sandbox whose process does not show every layer (:func:`~dativo.plugins.bwrap.probe`), a grant
that is not what it says, or a limit that cannot be enforced is a :class:`~dativo.errors.SandboxError`
before any plugin code runs — never a run without the sandbox.

:func:`sandboxed` turns what a job names into the launcher of confined processes (the run's
:class:`~dativo.plugins.host.PluginHost` calls it); :class:`Sandbox` is the confinement of one plugin,
:class:`SandboxRun` one confined process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import stat
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import dativo
from dativo.api import Role
from dativo.config import FlightEndpoint, NativeLibrary, PluginCommand, SandboxConfig
from dativo.errors import SandboxError, side
from dativo.plugins import seccomp
from dativo.plugins.bwrap import SANDBOX_PATH, FileTree, command, covered, filter_file, identity, probe, require
from dativo.plugins.cgroups import Cgroups, pids_cgroups_work, tasks_of
from dativo.registry import locate


# --- one sandbox ----------------------------------------------------------------------------------------------


class Sandbox:
    """How to confine one plugin's processes: bwrap arguments, rlimits, cgroups and a wall-clock limit.

    Args:
        config: The job's ``sandbox`` block.
        role: ``reader`` or ``writer`` (messages name ``source.reader.sandbox.…``).
        files: The plugin's own package (its folder, or the file of a top-level module) or executable,
            bound read-only at their own paths: nothing else of the folders they are in.
        pythonpath: Folders for ``PYTHONPATH`` inside (the folders ``files`` are found in; inside, each
            holds only what ``files`` binds).

    Attributes:
        uid: The host uid the plugin runs as (never 0; 65534 when Dativo runs as root).
        gid: Its host gid.

    Raises:
        SandboxError: bubblewrap does not work, a path to bind does not exist or is out of the plugin's
            reach (as root: its mode does not let uid 65534 read it, or write a ``write_paths`` entry), a
            ``unix:`` grant is not one socket file, or the job file lies inside the plugin's package.
    """

    def __init__(
        self,
        config: SandboxConfig,
        role: Role,
        *,
        files: Sequence[Path] = (),
        pythonpath: Sequence[Path] = (),
    ) -> None:
        self.config = config
        self.role = role
        self.where = f"{side(role)}.sandbox"
        self.status = require()
        self.bwrap = str(self.status.bwrap)
        self.who = self.status.who or identity()  # the identity the probe saw work
        self.uid, self.gid = self.who.uid, self.who.gid
        self.pythonpath = [str(p) for p in pythonpath]
        own = [Path(p).absolute() for p in files]
        self._outside_plugin(own)
        self.read_only = [self._reachable(p, "the runtime") for p in _runtime_paths()]
        self.read_only += [self._reachable(p, "the plugin's file") for p in own]
        self.read_paths = [self._reachable(self._existing(config.path(p), "read_paths"), "read_paths")
                           for p in config.read_paths]
        self.write_paths = [self._reachable(self._existing(config.path(p), "write_paths"), "write_paths", True)
                            for p in config.write_paths]
        self.sockets = config.sockets()
        self.socket_binds()
        self.nproc: int | None = None
        if config.max_processes is not None and not pids_cgroups_work():
            # the plugin's uid is never root, so RLIMIT_NPROC binds it (it counts all of that uid's tasks)
            self.nproc = tasks_of(self.uid) + config.max_processes

    def _existing(self, path: Path, key: str) -> Path:
        if not path.exists():
            raise SandboxError(
                f"{self.where}.{key}: {path} does not exist, so it cannot be bound into the sandbox; "
                "the plugin was not run",
                hint=f"Create it, or fix {self.where}.{key} (a relative path starts at the job file's folder).",
            )
        return path.absolute()

    def _reachable(self, path: Path, key: str, write: bool = False) -> Path:
        """``path``, once sure the plugin's uid may read (or write) it: its own mode, owner and group."""
        if not self.who.root_host or not path.exists():
            return path  # not root: the plugin is Dativo's own user; a missing runtime path is skipped
        found = path.stat()
        need = (stat.S_IWOTH if write else stat.S_IROTH) | (stat.S_IXOTH if stat.S_ISDIR(found.st_mode) else 0)
        shift = 6 if found.st_uid == self.uid else 3 if found.st_gid == self.gid else 0
        if (found.st_mode >> shift) & need == need:
            return path
        what = "write to" if write else "read"
        fix = (f"chown {self.uid}:{self.gid} {path}, or chmod o+w" if write
               else f"chmod o+r{'x' if stat.S_ISDIR(found.st_mode) else ''}")
        raise SandboxError(
            f"{self.where}: {key} {path} is mode {stat.filemode(found.st_mode)} (owner uid {found.st_uid}), so the "
            f"sandboxed plugin, which runs as uid {self.uid}, cannot {what} it; the plugin was not run",
            hint=f"Let uid {self.uid} {what} it ({fix} {path}); files the plugin creates belong to uid {self.uid}.",
        )

    def socket_binds(self) -> list[tuple[Path, Path]]:
        """The ``unix:`` grants as ``(socket file, path inside)``, checked again now (they may have changed).

        Raises:
            SandboxError: A grant is no longer exactly one socket file.
        """
        try:
            return [(SandboxConfig.unix_socket(path), path) for path in self.sockets]
        except ValueError as exc:
            raise SandboxError(f"{self.where}.network: {exc}; the plugin was not run",
                               hint=f"Fix {self.where}.network.") from None

    def _outside_plugin(self, files: Sequence[Path]) -> None:
        """Refuse a job file inside the plugin's bound package: the plugin could read it and its secrets."""
        folder = self.config.path(".").absolute()
        for path in files:
            if path.is_dir() and folder.is_relative_to(path):
                raise SandboxError(
                    f"{self.where}: the job file's folder {folder} is inside the plugin's package {path}, which "
                    "is bound into the sandbox, so the plugin could read the job file and the secrets beside "
                    "it; the plugin was not run",
                    hint="Keep job files and ${file:…} secrets outside the plugin's package.",
                )

    def network_hint(self) -> str:
        """What to grant when the plugin inside could not reach a server (a ``ConnectionFailed`` of it)."""
        granted = self.config.network
        if granted is True:
            return ""  # it had the host's network: the sandbox is not why
        now = "no network" if not granted else "only the sockets " + ", ".join(map(str, granted))
        return (f"The plugin runs in the sandbox, which gives it {now}: grant the server in {self.where}.network "
                "(its Unix socket, e.g. ['unix:/run/postgresql/.s.PGSQL.5432'], or true for the host's "
                "network).")

    def describe(self) -> str:
        """A short summary for logs."""
        net = "host network" if self.config.network is True else "no network"
        if self.sockets:
            net += " (+ " + ", ".join(map(str, self.sockets)) + ")"
        return f"{self.status.version}, uid {self.uid}, seccomp, {net}"

    def launch(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path, socket_dir: Path) -> SandboxRun:
        """Confine one start of the plugin.

        Args:
            argv: The plugin's command (its executable resolved).
            env: The variables the plugin gets (already only the minimal set and what the job grants).
            cwd: Its working directory on the host (used inside only if a bound path covers it).
            socket_dir: The folder of its Flight socket (bound read-write; the plugin's uid must own it).

        Raises:
            SandboxError: The seccomp filter cannot be built.
            OSError: Its file cannot be written.
        """
        return SandboxRun(self, argv, env, cwd, socket_dir)


def _runtime_paths() -> list[Path]:
    """The Python installation, the venv, and dativo itself: read-only, at the same paths inside."""
    paths = [Path(sys.base_prefix), Path(sys.prefix), Path(dativo.__file__).resolve().parent]
    executable = Path(sys.executable).resolve()
    if not any(executable.is_relative_to(p) for p in paths):
        paths.append(executable)
    return paths


class SandboxRun:
    """One sandboxed process: its command line, its ``preexec_fn``, its cgroups and its timeout."""

    def __init__(
        self, sandbox: Sandbox, argv: Sequence[str], env: Mapping[str, str], cwd: Path, socket_dir: Path
    ) -> None:
        self.sandbox = sandbox
        config = sandbox.config
        self.expired = False
        self._timer: threading.Timer | None = None
        self.env = self._environment(env)
        self._filter = filter_file(seccomp.program())
        try:
            self.argv = self._command(argv, cwd, socket_dir)
            self.cgroups = Cgroups(config.max_processes if sandbox.nproc is None else None, config.memory_mb)
        except BaseException:
            os.unlink(self._filter)
            raise

    # --- before the start -----------------------------------------------------------------------------------

    def _environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """Exactly what the plugin may see.

        bwrap inherits this environment and passes it on: ``--setenv`` would put the secrets on bwrap's
        command line, which every user of the host can read in ``/proc/PID/cmdline``.
        """
        config = self.sandbox.config
        variables = {"PATH": SANDBOX_PATH, "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
                     "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        for key in ("DATIVO_FLIGHT_SOCKET", "DATIVO_PROTOCOL"):
            if key in env:
                variables[key] = env[key]
        for key, value in env.items():  # the command's own `env:` (a job grants them explicitly)
            if key not in variables:
                variables[key] = value
        if self.sandbox.pythonpath:
            variables["PYTHONPATH"] = os.pathsep.join(self.sandbox.pythonpath)
        variables.update(config.granted())
        if config.memory_mb is not None:
            variables["DATIVO_SANDBOX_MEMORY_MB"] = str(config.memory_mb)  # named in a MemoryError's message
        return variables

    def _command(self, argv: Sequence[str], cwd: Path, socket_dir: Path) -> list[str]:
        sandbox = self.sandbox
        network = sandbox.config.network is True
        tree = FileTree()
        tree.runtime(network)
        bound: list[Path] = []
        for path in sandbox.read_only:
            if path.exists() and not covered(path, bound):
                tree.add("--ro-bind", path, path)
                bound.append(path)
        tree.add("--bind", socket_dir, socket_dir)
        for path in sandbox.read_paths:
            tree.add("--ro-bind", path, path)
        for path in sandbox.write_paths:
            tree.add("--bind", path, path)
        for socket, inside in sandbox.socket_binds():  # right before binding: still exactly one socket file
            tree.add("--bind", socket, inside)
        visible = [*bound, *sandbox.read_paths, *sandbox.write_paths]
        # an unbound working folder becomes the read-only root: a relative path then fails, where in the
        # private /tmp it would be written, thrown away, and the run would report success
        chdir = str(cwd) if covered(cwd, visible) else "/"
        return command(sandbox.bwrap, sandbox.who, tree, network, self._filter, chdir, argv)

    def preexec(self) -> None:
        """In the forked child, before bwrap runs: cgroups and rlimits, inherited by everything inside."""
        config = self.sandbox.config
        self.cgroups.join()
        if config.memory_mb is not None:
            limit = config.memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        if config.cpu_seconds is not None:
            # SIGXCPU at the soft limit names the cause in the exit status; SIGKILL 1 s later if it is ignored
            resource.setrlimit(resource.RLIMIT_CPU, (config.cpu_seconds, config.cpu_seconds + 1))
        if config.max_open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (config.max_open_files, config.max_open_files))
        if self.sandbox.nproc is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (self.sandbox.nproc, self.sandbox.nproc))

    # --- while it runs --------------------------------------------------------------------------------------

    def started(self, process: Confined) -> None:
        """Arm the wall-clock limit of the process's whole lifetime."""
        timeout = self.sandbox.config.timeout_s
        if timeout is None:
            return

        def expire() -> None:
            if process.alive():
                self.expired = True
                process.logger.error("plugin %s exceeded %s.timeout_s (%g s): killing it", process.name,
                                     self.sandbox.where, timeout)
                process.kill()

        self._timer = threading.Timer(timeout, expire)
        self._timer.name = "dativo-sandbox-timeout"
        self._timer.daemon = True
        self._timer.start()

    def finished(self) -> None:
        """The process ended (or never started): disarm the timer, remove the cgroups and the filter's file."""
        if self._timer is not None:
            self._timer.cancel()
        self.cgroups.remove()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._filter)

    def explain(self, returncode: int | None) -> str:
        """What a sandbox limit had to do with the process's end (empty: nothing known)."""
        where, config = self.sandbox.where, self.sandbox.config
        if self.expired:
            return f"it ran longer than {where}.timeout_s ({config.timeout_s:g} s, wall clock)"
        if returncode is None:
            return ""
        number = -returncode if returncode < 0 else returncode - 128 if 128 < returncode < 160 else 0
        try:
            sig = signal.Signals(number) if number else None
        except ValueError:
            sig = None
        if sig is None:
            return ""
        if sig == signal.SIGXCPU:
            return f"it used up {where}.cpu_seconds ({config.cpu_seconds} s of CPU time)"
        if sig == signal.SIGKILL and self.cgroups.out_of_memory():
            return f"it exceeded {where}.memory_mb ({config.memory_mb} MiB) and the kernel killed it"
        if sig == signal.SIGSYS:
            return "it made a system call of another architecture, which the sandbox's seccomp filter forbids"
        return f"a process inside the sandbox was killed by {sig.name}"


# --- a sandboxed implementation ---------------------------------------------------------------------------


class Confined(Protocol):
    """What the wall-clock limit needs of a sandboxed process (``dativo.plugins.process.PluginProcess``)."""

    name: str
    logger: logging.Logger

    def alive(self) -> bool: ...

    def kill(self) -> None: ...


def sandboxed(
    role: Role,
    implementation: str | NativeLibrary | PluginCommand | FlightEndpoint,
    config: SandboxConfig,
    launcher: Any,
    *,
    beside: Path | None = None,
) -> Any:
    """How to start ``implementation`` inside a sandbox: a launcher whose processes are confined.

    Nothing of the plugin is imported or started here. A Python plugin (found by
    :func:`dativo.registry.locate`, which imports nothing) is served by ``dativo plugin serve`` inside the
    sandbox, with only its own package bound; a command runs inside as it is, with its executable bound.

    Args:
        role: ``reader`` or ``writer``.
        implementation: What the job names.
        config: The job's ``sandbox`` block.
        launcher: The launcher class to build (``dativo.plugins.process.CommandLauncher``): its constructor
            and ``for_command`` take a ``sandbox=``; it is passed in, so this module does not import process.
        beside: The job file's folder, where a dotted path's module is also looked for.

    Raises:
        SandboxError: The sandbox does not work here, or this kind of implementation cannot be sandboxed.
        PluginNotFound: A Python plugin's package or a command's executable cannot be found.
    """
    where = f"{side(role)}.sandbox.enabled"
    if isinstance(implementation, NativeLibrary):
        raise SandboxError(
            f"{where} is true, but native library {implementation.lib} would be loaded into the host "
            "process, which no sandbox can confine; the job was not run",
            hint="Wrap the library in a plugin process (implementation: {command: [...]}) or a Python class "
            "that loads it with ctypes (then it is served inside the sandbox), or trust it and set "
            "sandbox.enabled: false.",
        )
    if isinstance(implementation, FlightEndpoint):
        raise SandboxError(
            f"{where} is true, but {implementation.flight} is a plugin that runs already: Dativo does not "
            "start it, so it cannot sandbox it; the job was not run",
            hint="Let Dativo start it with implementation: {command: [...]}, or set sandbox.enabled: false.",
        )
    if isinstance(implementation, PluginCommand):
        executable = Path(launcher.for_command(implementation).executable())  # PluginNotFound if missing
        return launcher.for_command(implementation, sandbox=Sandbox(config, role, files=[executable]))
    location = locate(role, implementation, beside=beside)
    files, roots = location.files()
    name = location.name
    return launcher(
        [sys.executable, "-m", "dativo", "plugin", "serve", "--role", role, "--name", name, name],
        cwd=config.path("."),
        name=name,
        start_timeout_s=30.0,  # an interpreter, pyarrow and the plugin's imports, on a busy machine
        sandbox=Sandbox(config, role, files=files, pythonpath=roots),
    )


def status_row() -> tuple[str, str, str]:
    """``dativo check``'s row: ``("sandbox", "bubblewrap 0.8.0", "ok")`` or the reason it does not work."""
    status = probe()
    if status.ok:
        return "sandbox", status.version, "ok"
    return "sandbox", status.version or "bubblewrap", f"unavailable: {status.reason}. {status.hint}"
