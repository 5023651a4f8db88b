"""bubblewrap on this machine: who a sandboxed plugin is, a sandbox's command line, and the probe.

- :class:`Identity` — the host uid a plugin runs as, never 0 (:func:`identity`): run as root, Dativo has bwrap
  set the sandbox up without a user namespace (one would map the plugin to host root) and ``setpriv`` drop
  to uid/gid 65534 inside; run as another user, bwrap's user namespace maps the plugin to that user.
- :class:`FileTree` and :func:`command` — the ``sh -c … bwrap … [setpriv …] plugin`` command line: ``sh``
  opens the seccomp program (:mod:`dativo.plugins.seccomp`) on the fd bwrap reads it from.
- :func:`probe` — starts an empty sandbox once and checks that its process shows every layer (uid, no
  capabilities, ``no_new_privs``, seccomp mode 2, no user namespace as root); :func:`require` turns a failure
  into the :class:`~dativo.errors.SandboxError` a job fails with.

:mod:`dativo.plugins.sandbox` builds on these to confine one plugin.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dativo.errors import SandboxError
from dativo.plugins import seccomp

BWRAP_ENV = "DATIVO_BWRAP"
"""Names the bwrap executable when it is not ``bwrap`` on ``PATH``."""
SANDBOX_UID = 65534  # "nobody": the plugin is never root, on the host or in its own namespace
SANDBOX_GID = 65534
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
_PROBE_TIMEOUT_S = 10.0
_FILTER_FD = 3
_WITH_FILTER = f'exec "$@" {_FILTER_FD}<"$0"'
"""``sh -c`` script that runs bwrap with the seccomp program open on fd 3 (``subprocess`` closes every other)."""
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
_SETPRIV_HINT = "Install util-linux's setpriv (Debian/Ubuntu: apt-get install util-linux) into /usr/bin."
_RUNTIME_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_RUNTIME_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime")
_NETWORK_FILES = (
    "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf", "/etc/host.conf",
    "/etc/ssl", "/etc/ca-certificates", "/etc/pki", "/etc/crypto-policies",
)


# --- who the plugin is ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """Who a sandboxed plugin is on the host.

    Attributes:
        uid: The host uid its processes run as (never 0).
        gid: Their host gid; they have no supplementary groups.
        setpriv: When Dativo runs as root: the ``setpriv`` that drops to ``uid``/``gid`` inside the sandbox,
            after bwrap (as root, without a user namespace) has set it up. ``None``: Dativo is not root, and
            bwrap's user namespace maps the plugin to Dativo's own uid.
    """

    uid: int
    gid: int
    setpriv: str | None = None

    @property
    def root_host(self) -> bool:
        """Whether Dativo runs as root (and the plugin as :data:`SANDBOX_UID`)."""
        return self.setpriv is not None

    def bwrap_options(self, network: bool) -> list[str]:
        """bwrap's namespaces and capabilities for this identity."""
        common = ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        if not self.root_host:
            return ["--unshare-all", "--unshare-user", *(["--share-net"] if network else []),
                    "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID), *common]
        # setpriv needs these three for a moment; it drops them, and the bounding set, before the plugin runs
        setup = [arg for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP") for arg in ("--cap-add", cap)]
        return ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try",
                *([] if network else ["--unshare-net"]), *common, *setup]

    def drop(self) -> list[str]:
        """The command prefix, inside the sandbox, that becomes this identity (empty: bwrap did)."""
        if self.setpriv is None:
            return []
        return [self.setpriv, f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]


def identity() -> Identity:
    """The identity of this host's sandboxed plugins.

    Raises:
        SandboxError: Dativo runs as root and ``setpriv`` is missing.
    """
    if os.geteuid() != 0:
        return Identity(os.getuid(), os.getgid())
    setpriv = shutil.which("setpriv", path="/usr/bin:/bin")
    if setpriv is None:
        raise SandboxError("Dativo runs as root and setpriv is not installed, so the sandboxed plugin would run "
                           "as host root", hint=_SETPRIV_HINT)
    return Identity(SANDBOX_UID, SANDBOX_GID, setpriv)


# --- the command line -------------------------------------------------------------------------------------


def covered(path: Path, roots: Sequence[Path]) -> bool:
    """Whether ``path`` is one of ``roots`` or inside one."""
    return any(path == root or path.is_relative_to(root) for root in roots)


class FileTree:
    """bwrap's file system arguments.

    Every folder on the way to a bind is made first, mode 0755, so the unprivileged plugin can pass
    through it whatever the host's folder's mode (only what is bound is visible in it).
    """

    def __init__(self) -> None:
        self.args: list[str] = []
        self._made: set[Path] = {Path("/"), Path("/tmp")}
        self._bound: list[Path] = []  # what is under these comes from the host (or the kernel)

    def add(self, option: str, source: str | Path, dest: str | Path) -> None:
        """``--ro-bind``, ``--bind``, ``--ro-bind-try`` or ``--symlink`` ``source`` at ``dest``."""
        for parent in reversed(Path(dest).parents):
            if parent not in self._made and not covered(parent, self._bound):
                self.args += ["--perms", "0755", "--dir", str(parent)]
                self._made.add(parent)
        self.args += [option, str(source), str(dest)]
        self._bound.append(Path(dest))

    def runtime(self, network: bool) -> None:
        """``/usr`` and the top-level library folders (read-only, or the host's symlinks), ``/proc``
        (``/proc/sys`` read-only), ``/dev``, a private ``/tmp``; no ``/sys``."""
        for directory in _RUNTIME_DIRS:
            path = Path(directory)
            if path.is_symlink():  # merged /usr: /bin -> usr/bin
                self.add("--symlink", os.readlink(path), directory)
            elif path.is_dir():
                self.add("--ro-bind", directory, directory)
        for file in (*_RUNTIME_FILES, *(_NETWORK_FILES if network else ())):
            self.add("--ro-bind-try", file, file)
        # the private /tmp before the binds below: they land on top of it, so a runtime, plugin or path that
        # itself lives under /tmp (a checkout in /tmp, pytest's folders) stays visible
        self.args += ["--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys", "--dev", "/dev",
                      "--perms", "1777", "--tmpfs", "/tmp"]
        self._bound += [Path("/proc"), Path("/dev")]


def command(bwrap: str, who: Identity, tree: FileTree, network: bool, program_file: str, chdir: str,
            argv: Sequence[str]) -> list[str]:
    """The command line of one sandbox: ``argv`` run as ``who`` in ``tree``, with the seccomp program in
    ``program_file`` (see :func:`filter_file`), in the folder ``chdir``; the root read-only."""
    return ["/bin/sh", "-c", _WITH_FILTER, program_file, bwrap, *who.bwrap_options(network),
            "--seccomp", str(_FILTER_FD), *tree.args, "--remount-ro", "/", "--chdir", chdir, "--",
            *who.drop(), *argv]


def filter_file(program: bytes) -> str:
    """A private file holding the seccomp program (removed by the caller once the sandbox has started)."""
    fd, path = tempfile.mkstemp(prefix="dativo-seccomp-", suffix=".bpf")
    with os.fdopen(fd, "wb") as file:
        file.write(program)
    return path


# --- is sandboxing possible here? ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SandboxStatus:
    """Whether bubblewrap works on this machine.

    Attributes:
        ok: It starts a sandbox with every layer Dativo uses, and its process shows them.
        bwrap: Its path (``None``: not found).
        version: ``bubblewrap 0.8.0`` (empty when unknown).
        reason: Why it does not work (empty when it does).
        hint: How to fix that.
        probe_s: How long the probe took to start and end an empty sandbox.
        who: The identity it was probed with, which every sandbox then uses.
    """

    ok: bool
    bwrap: str | None
    version: str
    reason: str = ""
    hint: str = ""
    probe_s: float = 0.0
    who: Identity | None = None

    def error(self, what: str = "the sandbox cannot start") -> SandboxError:
        """The error a job that needs the sandbox fails with."""
        return SandboxError(f"{what}: {self.reason}; the plugin was not run", hint=self.hint)


_probes: dict[tuple[Any, ...], SandboxStatus] = {}
_probe_lock = threading.Lock()


def _bwrap_path() -> str | None:
    configured = os.environ.get(BWRAP_ENV)
    if configured:
        return configured if os.access(configured, os.X_OK) and Path(configured).is_file() else None
    return shutil.which("bwrap")


def probe(*, refresh: bool = False) -> SandboxStatus:
    """Start an empty sandbox once (per bwrap, identity and filter) and say whether that works, and why not.

    Args:
        refresh: Probe again even if this combination was probed already.
    """
    bwrap = _bwrap_path()
    try:
        who, program = identity(), seccomp.program()
    except SandboxError as exc:
        return SandboxStatus(False, bwrap, "", exc.message, exc.hint or "")
    key = (bwrap or f"<none:{os.environ.get(BWRAP_ENV, '')}>", who, program)
    with _probe_lock:
        if not refresh and key in _probes:
            return _probes[key]
        status = _probe(bwrap, who, program)
        _probes[key] = status
        return status


def _probe(bwrap: str | None, who: Identity, program: bytes) -> SandboxStatus:
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
    tree = FileTree()
    tree.runtime(network=False)
    program_file = filter_file(program)
    argv = command(bwrap, who, tree, False, program_file, "/", ["cat", "/proc/self/status", "/proc/self/uid_map"])
    started = time.perf_counter()
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S,
                                stdin=subprocess.DEVNULL, env={"PATH": SANDBOX_PATH})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return SandboxStatus(False, bwrap, version, f"bwrap did not run: {exc}", _USERNS_HINT)
    finally:
        os.unlink(program_file)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        said = " ".join(result.stderr.split())[:300] or f"exit status {result.returncode}"
        if "setpriv" in said:
            hint = _SETPRIV_HINT
        elif "namespace" in said.lower() or "permission" in said.lower() or "uid map" in said.lower():
            hint = _USERNS_HINT
        else:
            hint = f"Run `{bwrap} --unshare-all --unshare-user --uid 65534 --ro-bind /usr /usr /usr/bin/true` " \
                "by hand to see what it needs."
        return SandboxStatus(False, bwrap, version, f"{version or 'bwrap'} cannot create the sandbox: {said}",
                             hint, elapsed)
    wrong = confinement_problems(result.stdout, who)
    if wrong:
        return SandboxStatus(False, bwrap, version, f"the sandbox's process {'; '.join(wrong)}",
                             f"Report this with the output of `{bwrap} --version` and `uname -a`.", elapsed)
    return SandboxStatus(True, bwrap, version, probe_s=elapsed, who=who)


def confinement_problems(shown: str, who: Identity) -> list[str]:
    """What is wrong with a sandboxed process, judged by its ``/proc/self/status`` and ``uid_map`` (empty:
    nothing).

    Inside, a plugin is uid/gid 65534 whoever runs Dativo. As root, that must also be its host uid: it must
    not be in a user namespace (bwrap run by root maps 65534 to host root).
    """
    lines = [line.partition(":") for line in shown.splitlines()]
    values = {key: value.split() for key, colon, value in lines if colon}
    maps = [[int(n) for n in key.split()] for key, colon, _ in lines
            if not colon and len(key.split()) == 3 and key.replace(" ", "").isdigit()]
    expected = {
        "Uid": ([str(SANDBOX_UID)] * 4, f"runs as uid {{}} instead of {SANDBOX_UID}"),
        "Gid": ([str(SANDBOX_GID)] * 4, f"runs as gid {{}} instead of {SANDBOX_GID}"),
        "CapEff": (["0000000000000000"], "has capabilities {}"),
        "CapPrm": (["0000000000000000"], "may raise capabilities {}"),
        "NoNewPrivs": (["1"], "has no_new_privs {} instead of 1"),
        "Seccomp": (["2"], "has seccomp mode {} instead of 2 (a filter)"),
    }
    wrong = [message.format(" ".join(values.get(key, ["<missing>"])))
             for key, (want, message) in expected.items() if values.get(key) != want]
    if who.root_host and maps != [[0, 0, 4294967295]]:
        host = [outside + SANDBOX_UID - inside for inside, outside, count in maps if 0 <= SANDBOX_UID - inside < count]
        wrong.append(f"is in a user namespace where uid {SANDBOX_UID} is host uid {host[0] if host else '<none>'}")
    return wrong


def require() -> SandboxStatus:
    """The working sandbox's status.

    Raises:
        SandboxError: bubblewrap is missing or cannot create the namespaces.
    """
    status = probe()
    if not status.ok:
        raise status.error()
    return status
