"""Running untrusted plugins in a bubblewrap sandbox (``docs/sandbox.md``).

A job asks for it with ``reader.sandbox.enabled: true`` (or ``writer.``). The plugin then always runs out of
process, inside ``bwrap``, and the host talks Arrow Flight to it as to any plugin process
(:mod:`dativo.plugins.process`): a Python plugin (dotted path, entry point or built-in name) is served by
``python -m dativo plugin serve`` *inside* the sandbox, so its code is never imported into the host; an
``implementation: {command: [...]}`` runs inside the sandbox as it is. Native libraries and running
``{flight: ...}`` plugins cannot be sandboxed and are refused.

The sandbox: new user, pid, ipc, uts, cgroup and network namespaces (the host's network only with
``network: true``), uid/gid 65534, no capabilities, a root file system of read-only binds of exactly the
runtime (``/usr``, the Python installation, the venv, the dativo package, the plugin's own files), a private
``/tmp``, the plugin's socket folder, and the job's ``read_paths``/``write_paths``; an environment of only
``PATH``, ``HOME``, ``LANG``, ``TMPDIR``, the protocol variables and the granted ``secrets``; rlimits for
address space, CPU time and open files; a pids cgroup (and a memory cgroup where possible); a wall-clock
timeout; killed with the host.

It fails closed: no bubblewrap, namespaces that cannot be created, or a limit that cannot be enforced is a
:class:`~dativo.errors.SandboxError` before any plugin code runs — never a run without the sandbox.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dativo.config import FlightEndpoint, NativeLibrary, PluginCommand, SandboxConfig
from dativo.errors import PluginNotFound, SandboxError

if TYPE_CHECKING:
    from dativo.plugins.flight import Role
    from dativo.plugins.process import PluginProcess

BWRAP_ENV = "DATIVO_BWRAP"
"""Names the bwrap executable when it is not ``bwrap`` on ``PATH``."""
SANDBOX_UID = 65534  # "nobody": the plugin is never root, even in its own user namespace
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
_PROBE_TIMEOUT_S = 10.0
_INSTALL_HINT = (
    "Install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora/RHEL: dnf install bubblewrap; "
    f"Alpine: apk add bubblewrap), or point ${BWRAP_ENV} at its bwrap executable."
)
_USERNS_HINT = (
    "Allow unprivileged user namespaces: sysctl -w kernel.unprivileged_userns_clone=1 (Debian), "
    "sysctl -w user.max_user_namespaces=15000, or on Ubuntu ≥ 23.10 sysctl -w "
    "kernel.apparmor_restrict_unprivileged_userns=0 (or an AppArmor profile for bwrap); in a container, "
    "run it with a seccomp/AppArmor profile that allows unshare (e.g. docker --security-opt seccomp=unconfined "
    "--security-opt apparmor=unconfined)."
)
_RUNTIME_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_RUNTIME_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime")
_NETWORK_FILES = (
    "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf", "/etc/host.conf",
    "/etc/ssl", "/etc/ca-certificates", "/etc/pki", "/etc/crypto-policies",
)


# --- is sandboxing possible here? ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SandboxStatus:
    """Whether bubblewrap works on this machine.

    Attributes:
        ok: It starts a sandbox with every namespace Dativo uses.
        bwrap: Its path (``None``: not found).
        version: ``bubblewrap 0.8.0`` (empty when unknown).
        reason: Why it does not work (empty when it does).
        hint: How to fix that.
        probe_s: How long the probe took to start and end an empty sandbox.
    """

    ok: bool
    bwrap: str | None
    version: str
    reason: str = ""
    hint: str = ""
    probe_s: float = 0.0

    def error(self, what: str = "the sandbox cannot start") -> SandboxError:
        """The error a job that needs the sandbox fails with."""
        return SandboxError(f"{what}: {self.reason}; the plugin was not run", hint=self.hint)


_probes: dict[str, SandboxStatus] = {}
_probe_lock = threading.Lock()


def _bwrap_path() -> str | None:
    configured = os.environ.get(BWRAP_ENV)
    if configured:
        return configured if os.access(configured, os.X_OK) and Path(configured).is_file() else None
    return shutil.which("bwrap")


def _runtime_binds() -> list[str]:
    """``/usr`` and the top-level library folders: bound read-only, or recreated as the host's symlinks."""
    args: list[str] = []
    for directory in _RUNTIME_DIRS:
        path = Path(directory)
        if path.is_symlink():  # merged /usr: /bin -> usr/bin
            args += ["--symlink", os.readlink(path), directory]
        elif path.is_dir():
            args += ["--ro-bind", directory, directory]
    for file in _RUNTIME_FILES:
        args += ["--ro-bind-try", file, file]
    return args


_NAMESPACES = ["--unshare-all", "--unshare-user", "--die-with-parent", "--new-session",
               "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--cap-drop", "ALL"]


def probe(*, refresh: bool = False) -> SandboxStatus:
    """Start an empty sandbox once (per bwrap executable) and say whether that works, and why not.

    Args:
        refresh: Probe again even if this bwrap was probed already.
    """
    bwrap = _bwrap_path()
    key = bwrap or f"<none:{os.environ.get(BWRAP_ENV, '')}>"
    with _probe_lock:
        if not refresh and key in _probes:
            return _probes[key]
        status = _probe(bwrap)
        _probes[key] = status
        return status


def _probe(bwrap: str | None) -> SandboxStatus:
    if bwrap is None:
        where = f"${BWRAP_ENV} ({os.environ[BWRAP_ENV]}) is not an executable" if os.environ.get(BWRAP_ENV) \
            else "bubblewrap (bwrap) is not installed or not on PATH"
        return SandboxStatus(False, None, "", where, _INSTALL_HINT)
    version = ""
    try:
        out = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S)
        version = out.stdout.strip() or out.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return SandboxStatus(False, bwrap, "", f"{bwrap} cannot be run: {exc}", _INSTALL_HINT)
    true = shutil.which("true", path="/usr/bin:/bin") or "/bin/true"
    argv = [bwrap, *_NAMESPACES, *_runtime_binds(), "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
            true]
    started = time.perf_counter()
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S,
                                stdin=subprocess.DEVNULL, env={"PATH": SANDBOX_PATH})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return SandboxStatus(False, bwrap, version, f"bwrap did not run: {exc}", _USERNS_HINT)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        said = " ".join(result.stderr.split())[:300] or f"exit status {result.returncode}"
        if "namespace" in said.lower() or "permission" in said.lower() or "uid map" in said.lower():
            hint = _USERNS_HINT
        else:
            hint = f"Run `{bwrap} --unshare-all --unshare-user --uid 65534 --ro-bind /usr /usr /usr/bin/true` " \
                "by hand to see what it needs."
        return SandboxStatus(False, bwrap, version, f"{version or 'bwrap'} cannot create the sandbox: {said}",
                             hint, elapsed)
    return SandboxStatus(True, bwrap, version, probe_s=elapsed)


def require() -> SandboxStatus:
    """The working sandbox's status.

    Raises:
        SandboxError: bubblewrap is missing or cannot create the namespaces.
    """
    status = probe()
    if not status.ok:
        raise status.error()
    return status


# --- cgroups: a process limit (fork bombs) and, where possible, memory ----------------------------------------


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per v1 controller (``""`` key: the v2 path)."""
    found: dict[str, str] = {}
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        return found
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            found[controller] = path
    return found


def _child_group(controller: str, own: Mapping[str, str], limit_file: str) -> Path | None:
    """Create a fresh cgroup beside this process's own (v1 controller, else v2) that has ``limit_file``."""
    candidates: list[Path] = []
    if controller in own:
        candidates.append(Path("/sys/fs/cgroup", controller, own[controller].lstrip("/")))
    if "" in own and Path("/sys/fs/cgroup/cgroup.controllers").exists():
        candidates.append(Path("/sys/fs/cgroup", own[""].lstrip("/")))
    for parent in candidates:
        group = parent / f"dativo-sandbox-{uuid.uuid4().hex[:12]}"
        try:
            group.mkdir()
        except OSError:
            continue
        if (group / limit_file).exists():
            return group
        with contextlib.suppress(OSError):
            group.rmdir()
    return None


class _Cgroups:
    """The pids (and memory) cgroups of one sandboxed process; removed when it ends."""

    def __init__(self, max_processes: int | None, memory_mb: int | None) -> None:
        own = _own_cgroups()
        self.groups: list[Path] = []
        self.pids: Path | None = None
        self.memory: Path | None = None
        if max_processes is not None:
            self.pids = _child_group("pids", own, "pids.max")
            if self.pids is not None:
                self.groups.append(self.pids)
                (self.pids / "pids.max").write_text(str(max_processes))
        if memory_mb is not None:
            self.memory = _child_group("memory", own, "memory.limit_in_bytes") or _child_group(
                "memory", own, "memory.max"
            )
            if self.memory is not None:
                self.groups.append(self.memory)
                limit = str(memory_mb * 1024 * 1024)
                for name in ("memory.limit_in_bytes", "memory.max", "memory.memsw.limit_in_bytes",
                             "memory.swap.max"):
                    with contextlib.suppress(OSError):  # swap accounting may be off; the first one matters
                        (self.memory / name).write_text(limit if "swap.max" not in name else "0")
        self._procs = [str(group / "cgroup.procs") for group in self.groups]

    def join(self) -> None:
        """Move the calling (just forked) process into the groups; in ``preexec_fn``, so no plugin code ran."""
        pid = str(os.getpid()).encode()
        for procs in self._procs:
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def out_of_memory(self) -> bool:
        """Whether the memory cgroup killed a process for exceeding its limit."""
        if self.memory is None:
            return False
        for name, key in (("memory.oom_control", "oom_kill"), ("memory.events", "oom_kill")):
            with contextlib.suppress(OSError, ValueError):
                for line in (self.memory / name).read_text().splitlines():
                    field, _, value = line.partition(" ")
                    if field == key and int(value) > 0:
                        return True
        return False

    def remove(self) -> None:
        """Remove the groups (once the sandbox's processes are gone: its pid namespace ends with them)."""
        for group in self.groups:
            deadline = time.monotonic() + 2.0
            while True:
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.02)  # the kernel is still reaping the namespace's processes


def _tasks_of(uid: int) -> int:
    """How many tasks (threads) ``uid`` runs now: RLIMIT_NPROC counts them all, not just the sandbox's."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
    return count


def _pids_cgroups_work() -> bool:
    own = _own_cgroups()
    group = _child_group("pids", own, "pids.max")
    if group is None:
        return False
    with contextlib.suppress(OSError):
        group.rmdir()
    return True


# --- one sandbox ----------------------------------------------------------------------------------------------


class Sandbox:
    """How to confine one plugin's processes: bwrap arguments, rlimits, cgroups and a wall-clock limit.

    Args:
        config: The job's ``sandbox`` block.
        role: ``reader`` or ``writer`` (messages name ``source.reader.sandbox.…``).
        files: The plugin's own files or folders, bound read-only.
        pythonpath: Folders for ``PYTHONPATH`` inside (a Python plugin's import roots; bound read-only).

    Raises:
        SandboxError: bubblewrap does not work, a path to bind does not exist, or ``max_processes`` cannot
            be enforced on this machine.
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
        self.where = f"{'source.reader' if role == 'reader' else 'target.writer'}.sandbox"
        self.status = require()
        self.bwrap = str(self.status.bwrap)
        self.pythonpath = [str(p) for p in pythonpath]
        self.read_only = _runtime_paths() + [Path(p) for p in files] + [Path(p) for p in pythonpath]
        self.read_paths = [self._existing(config.path(p), "read_paths") for p in config.read_paths]
        self.write_paths = [self._existing(config.path(p), "write_paths") for p in config.write_paths]
        self.sockets = [self._existing(p, "network") for p in config.sockets()]
        self.nproc: int | None = None
        if config.max_processes is not None and not _pids_cgroups_work():
            if os.getuid() == 0:  # the kernel never applies RLIMIT_NPROC to root's processes
                raise SandboxError(
                    f"{self.where}.max_processes is {config.max_processes}, but this machine can enforce it "
                    "neither with a pids cgroup (none is writable) nor with RLIMIT_NPROC (Dativo runs as root, "
                    "which it does not bind); the plugin was not run",
                    hint="Give Dativo a writable pids cgroup (cgroup v1 /sys/fs/cgroup/pids, or a delegated "
                    f"cgroup v2 subtree), run it as a non-root user, or set {self.where}.max_processes: null "
                    "to accept no process limit.",
                )
            self.nproc = _tasks_of(os.getuid()) + config.max_processes

    def _existing(self, path: Path, key: str) -> Path:
        if not path.exists():
            raise SandboxError(
                f"{self.where}.{key}: {path} does not exist, so it cannot be bound into the sandbox; "
                "the plugin was not run",
                hint=f"Create it, or fix {self.where}.{key} (a relative path starts at the job file's folder).",
            )
        return path.absolute()

    def describe(self) -> str:
        """A short summary for logs."""
        net = "host network" if self.config.network is True else "no network"
        if self.sockets:
            net += " (+ " + ", ".join(map(str, self.sockets)) + ")"
        return f"{self.status.version}, {net}"

    def launch(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path, socket_dir: Path) -> SandboxRun:
        """Confine one start of the plugin.

        Args:
            argv: The plugin's command (its executable resolved).
            env: The variables the plugin gets (already only the minimal set and what the job grants).
            cwd: Its working directory on the host (used inside only if a bound path covers it).
            socket_dir: The folder of its Flight socket (bound read-write).
        """
        return SandboxRun(self, argv, env, cwd, socket_dir)


def _runtime_paths() -> list[Path]:
    """The Python installation, the venv, and dativo itself: read-only, at the same paths inside."""
    import dativo

    paths = [Path(sys.base_prefix), Path(sys.prefix), Path(dativo.__file__).resolve().parent]
    executable = Path(sys.executable).resolve()
    if not any(executable.is_relative_to(p) for p in paths):
        paths.append(executable)
    return paths


def _covered(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


class SandboxRun:
    """One sandboxed process: its bwrap command line, its ``preexec_fn``, its cgroups and its timeout."""

    def __init__(
        self, sandbox: Sandbox, argv: Sequence[str], env: Mapping[str, str], cwd: Path, socket_dir: Path
    ) -> None:
        self.sandbox = sandbox
        config = sandbox.config
        self.cgroups = _Cgroups(config.max_processes if sandbox.nproc is None else None, config.memory_mb)
        self.expired = False
        self._timer: threading.Timer | None = None
        self.env = self._environment(env)
        self.argv = self._command(argv, cwd, socket_dir)

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
        # the command's own `env:` (a job grants them explicitly), except the host's PATH/HOME/LANG/TMPDIR,
        # which PluginProcess adds for unsandboxed plugins and which name host folders the sandbox lacks
        from dativo.plugins.process import PASSED_ENVIRONMENT

        for key, value in env.items():
            if key not in PASSED_ENVIRONMENT and key not in variables:
                variables[key] = value
        if self.sandbox.pythonpath:
            variables["PYTHONPATH"] = os.pathsep.join(self.sandbox.pythonpath)
        variables.update(config.granted())
        if config.memory_mb is not None:
            variables["DATIVO_SANDBOX_MEMORY_MB"] = str(config.memory_mb)  # named in a MemoryError's message
        return variables

    def _command(self, argv: Sequence[str], cwd: Path, socket_dir: Path) -> list[str]:
        sandbox, config = self.sandbox, self.sandbox.config
        args = [sandbox.bwrap, *_NAMESPACES]
        if config.network is True:
            args.append("--share-net")
        args += _runtime_binds()
        if config.network is True:
            for file in _NETWORK_FILES:
                args += ["--ro-bind-try", file, file]
        # the private /tmp first: every bind below lands on top of it, so a runtime, plugin or path that
        # itself lives under /tmp (a checkout in /tmp, pytest's folders) stays visible
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        bound: list[Path] = []
        for path in sandbox.read_only:
            if path.exists() and not _covered(path, bound):
                args += ["--ro-bind", str(path), str(path)]
                bound.append(path)
        args += ["--bind", str(socket_dir), str(socket_dir)]
        for path in sandbox.read_paths:
            args += ["--ro-bind", str(path), str(path)]
        for path in sandbox.write_paths:
            args += ["--bind", str(path), str(path)]
        for path in sandbox.sockets:
            # bwrap opens its sources as the sandbox's unprivileged user: every folder above the socket must
            # be traversable by others (/run/postgresql is; a data directory of mode 0700 is not)
            args += ["--bind", str(path), str(path)]
        visible = [*bound, *sandbox.read_paths, *sandbox.write_paths]
        args += ["--chdir", str(cwd) if _covered(cwd, visible) else "/tmp"]
        return [*args, "--", *argv]

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

    def started(self, process: PluginProcess) -> None:
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
        """The process ended: disarm the timer, remove the cgroups."""
        if self._timer is not None:
            self._timer.cancel()
        self.cgroups.remove()

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
        return f"a process inside the sandbox was killed by {sig.name}"


# --- resolving a sandboxed implementation ------------------------------------------------------------------


def _import_roots(module: str) -> tuple[list[Path], list[Path]]:
    """The files of a Python plugin's top-level package and the ``sys.path`` folder it is found in.

    ``importlib.util.find_spec`` on the *top-level* name runs only the import system's finders, never the
    package's code (that would import untrusted code into the host).
    """
    top = module.split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise PluginNotFound(
            f"cannot find module '{top}'",
            hint="Install the package that provides it, or fix the dotted path.",
        )
    files: list[Path] = []
    if spec.submodule_search_locations:
        files = [Path(p) for p in spec.submodule_search_locations]
    elif spec.origin and spec.origin not in ("built-in", "frozen"):
        files = [Path(spec.origin)]
    roots = sorted({str(f.parent) for f in files})
    return files, [Path(r) for r in roots]


def _python_target(role: Role, name: str) -> tuple[list[Path], list[Path], str]:
    """What to bind for a Python plugin named as a job names it, found without importing it.

    Returns:
        The plugin's files, its import roots, and its origin (``builtin``, ``entry point``, ``dotted path``).
    """
    from dativo.registry import _BUILTINS, _entry_points

    if ":" in name:
        files, roots = _import_roots(name.partition(":")[0])
        return files, roots, "dotted path"
    if name in _BUILTINS[role]:
        return [], [], "builtin"  # dativo itself is bound anyway
    entry_points = _entry_points(role)  # metadata only: nothing is loaded
    if name in entry_points:
        module = entry_points[name].value.partition(":")[0].strip()
        files, roots = _import_roots(module)
        return files, roots, "entry point"
    if "." in name:
        files, roots = _import_roots(name.rpartition(".")[0])
        return files, roots, "dotted path"
    known = sorted({*_BUILTINS[role], *entry_points})
    raise PluginNotFound(
        f"no {role} named '{name}'",
        plugin=name,
        hint=f"Available: {', '.join(known)}; or name a class as package.module:Class.",
    )


_classes: dict[tuple[Any, ...], type] = {}
_classes_lock = threading.Lock()


def sandboxed_class(
    role: Role,
    implementation: str | NativeLibrary | PluginCommand | FlightEndpoint,
    config: SandboxConfig,
) -> tuple[type, str]:
    """The Flight proxy class of an implementation that runs in the sandbox (one per distinct setting).

    Nothing of the plugin is imported or started here; the registry's validation starts it (inside the
    sandbox) to learn its spec.

    Returns:
        The class and the origin to report.

    Raises:
        SandboxError: The sandbox does not work here, or this kind of implementation cannot be sandboxed.
        PluginNotFound: A Python plugin's package cannot be found.
    """
    from dativo.plugins.flight import plugin_class
    from dativo.plugins.process import CommandLauncher

    where = f"{'source.reader' if role == 'reader' else 'target.writer'}.sandbox.enabled"
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
    settings = (config.model_dump_json(), tuple(sorted(config.granted().items())), str(config.path(".")))
    if isinstance(implementation, PluginCommand):
        key: tuple[Any, ...] = (role, "command", implementation.model_dump_json(), str(implementation.cwd()),
                                settings)
        with _classes_lock:
            if key in _classes:
                return _classes[key], "sandbox"
        probe_launcher = CommandLauncher(implementation.command, cwd=implementation.cwd())
        executable = Path(probe_launcher.executable())  # PluginNotFound if it does not exist
        sandbox = Sandbox(config, role, files=[executable])
        launcher = CommandLauncher.for_command(implementation, sandbox=sandbox)
    else:
        name = implementation.strip()
        key = (role, "python", name, settings)
        with _classes_lock:
            if key in _classes:
                return _classes[key], "sandbox"
        try:
            files, roots, _origin = _python_target(role, name)
        except PluginNotFound as exc:
            raise exc.with_context(plugin=name) from None
        sandbox = Sandbox(config, role, files=files, pythonpath=roots)
        launcher = CommandLauncher(
            [sys.executable, "-m", "dativo", "plugin", "serve", "--role", role, "--name", name, name],
            cwd=config.path("."),
            name=name,
            start_timeout_s=30.0,  # an interpreter, pyarrow and the plugin's imports, on a busy machine
            sandbox=sandbox,
        )
    with _classes_lock:
        cls = _classes.get(key)
        if cls is None:
            cls = _classes[key] = plugin_class(role, launcher, doc=f"The sandboxed {role} {launcher.name}.")
    return cls, "sandbox"


def status_row() -> tuple[str, str, str]:
    """``dativo check``'s row: ``("sandbox", "bubblewrap 0.8.0", "ok")`` or the reason it does not work."""
    status = probe()
    if status.ok:
        return "sandbox", status.version, "ok"
    return "sandbox", status.version or "bubblewrap", f"unavailable: {status.reason}. {status.hint}"
