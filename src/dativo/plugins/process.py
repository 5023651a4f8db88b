"""Starting out-of-process plugins, and reaching running ones.

A job names a plugin process in one of three ways (``docs/plugins/protocol.md``):

- ``implementation: {command: [./bin/reader, --flag], start_timeout_s: 10, env: {TOKEN: "${TOKEN}"}}`` —
  the host starts it (:class:`CommandLauncher`);
- ``implementation: {flight: "grpc://127.0.0.1:8815"}`` — it runs already (:class:`RemoteLauncher`);
- ``implementation: go_postgres`` — an installed package whose entry point is :func:`executable`::

      # dativo_go_postgres/__init__.py
      reader = dativo.plugins.process.executable(Path(__file__).parent / "bin" / "go-postgres")

A started plugin gets ``DATIVO_FLIGHT_SOCKET`` (a socket in a private folder the host made,
:mod:`dativo.plugins.sockets`) and ``DATIVO_PROTOCOL``, and no other environment than ``PATH``, ``HOME``,
``LANG``, ``TMPDIR`` and the ``env`` the job grants it. It must listen on that socket and print its one-line
JSON handshake, naming it, within the start timeout; the host connects there and nowhere else. Its stdout
and stderr go to the job's log line by line, secrets redacted. It dies with the host: ``PR_SET_PDEATHSIG`` on
Linux, and its stdin is a pipe that reaches EOF when the host exits (the SDKs exit then). At the end the host
asks it to ``shutdown``, waits 5 s, then sends SIGTERM, then SIGKILL.

A :class:`Launcher` (:class:`CommandLauncher`, :class:`RemoteLauncher`) is how a
:class:`~dativo.plugins.client.Connection` reaches the plugin; :class:`PluginProcess` is one started process
(its output is read by :class:`~dativo.plugins.output.PluginOutput`).
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import logging
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dativo.api import Role
from dativo.config import FlightEndpoint, PluginCommand
from dativo.errors import PluginFailed, PluginNotFound, SandboxError
from dativo.plugins.client import DEFAULT_CALL_TIMEOUT_S, DEFAULT_STALL_TIMEOUT_S, Launcher
from dativo.plugins.output import PluginOutput
from dativo.plugins.protocol import (
    PROTOCOL_ENV,
    PROTOCOL_VERSION,
    SOCKET_ENV,
    parse_handshake,
    protocol_mismatch,
)
from dativo.plugins.remote import FlightReader, FlightWriter, plugin_class
from dativo.plugins.sockets import SocketFolder, socket_folder
from dativo.secrets import redact

if TYPE_CHECKING:
    from dativo.plugins.sandbox import Sandbox, SandboxRun

DEFAULT_START_TIMEOUT_S = 10.0
SHUTDOWN_GRACE_S = 5.0
TERM_GRACE_S = 3.0
PASSED_ENVIRONMENT = ("PATH", "HOME", "LANG", "TMPDIR")
"""The only host variables an unsandboxed plugin sees (besides the ``env`` the job grants it)."""
_SANDBOX_HINT = "`dativo check` tells whether sandboxing works on this machine (docs/sandbox.md)."


# --- dying with the host ------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_prctl: Any = None
if sys.platform.startswith("linux"):
    try:
        _prctl = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    except (OSError, AttributeError):
        _prctl = None


def _die_with_parent(parent: int, then: Callable[[], None] | None = None) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the kernel SIGKILL the child when the host goes away (Linux).

    ``then`` runs after that in the child (a sandbox's rlimits and cgroups).
    """

    def preexec() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the host died between fork and prctl
            os._exit(1)
        if then is not None:
            then()

    return preexec


# PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, not the process. Plugins are started
# from engine threads that may end long before the plugin should, so every fork happens on this one thread,
# which lives as long as the host.
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dativo-plugin-spawner")
# The last resort at exit; each run's PluginHost stops the processes it started.
_live: weakref.WeakSet[PluginProcess] = weakref.WeakSet()


@atexit.register
def _kill_all() -> None:
    for process in list(_live):
        process.kill()


# --- one process --------------------------------------------------------------------------------------------


def _describe_status(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class PluginProcess:
    """A started plugin process: its output, and its end.

    Use :meth:`start`; the constructor only wraps a ``Popen``.
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        *,
        name: str,
        logger: logging.Logger,
        socket: SocketFolder,
        sandbox: SandboxRun | None = None,
    ) -> None:
        self.popen = popen
        self.name = name
        self.socket = socket
        self.sandbox = sandbox
        self.killed_by_host = False
        assert popen.stdout is not None and popen.stderr is not None
        self.output = PluginOutput(popen.stdout, popen.stderr, name=name, logger=logger)
        self._stopped = False
        _live.add(self)
        if sandbox is not None:
            sandbox.started(self)

    @property
    def logger(self) -> logging.Logger:
        """Where the plugin's output goes."""
        return self.output.logger

    @logger.setter
    def logger(self, logger: logging.Logger) -> None:
        self.output.logger = logger

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        name: str,
        logger: logging.Logger,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        sandbox: Sandbox | None = None,
    ) -> tuple[PluginProcess, str]:
        """Start a plugin and wait for its handshake.

        Args:
            argv: The executable (resolved) and its arguments.
            cwd: Its working directory.
            env: The extra variables the job grants it.
            name: How messages name it.
            logger: The job's logger for this plugin.
            start_timeout_s: How long it may take to print its handshake.
            sandbox: Run it inside this sandbox (:mod:`dativo.plugins.sandbox`).

        Returns:
            The process, and the location to connect to: its socket, once checked
            (:meth:`~dativo.plugins.sockets.SocketFolder.accept`).

        Raises:
            PluginIncompatible: It speaks another protocol version.
            PluginFailed: It cannot be started, exited, printed something else, stayed silent, or named
                another location than its socket.
            SandboxError: The sandbox around it could not be set up.
        """
        socket = socket_folder() if sandbox is None else socket_folder(sandbox.uid, sandbox.gid)
        granted = {**env, SOCKET_ENV: str(socket.path), PROTOCOL_ENV: str(PROTOCOL_VERSION)}
        variables = {key: os.environ[key] for key in PASSED_ENVIRONMENT if key in os.environ} | granted
        run: SandboxRun | None = None
        then: Callable[[], None] | None = None
        try:
            if sandbox is not None:
                run = sandbox.launch(argv, granted, cwd, socket.listen)
                argv, variables, then = run.argv, run.env, run.preexec
            popen = _spawner.submit(
                subprocess.Popen,
                list(argv),
                cwd=str(cwd),
                env=variables,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid(), then),
            ).result()
        except (OSError, subprocess.SubprocessError) as exc:
            socket.remove()
            if run is not None:
                run.finished()
                raise SandboxError(
                    f"the sandbox around plugin {name} could not be set up: {exc}; the plugin was not run",
                    hint=_SANDBOX_HINT,
                ) from None
            raise PluginFailed(
                f"cannot start {shlex.join(argv)}: {exc.strerror or exc}",
                plugin=name,
                stage="load",
                hint="Check that the file is an executable for this machine (chmod +x).",
            ) from None
        process = cls(popen, name=name, logger=logger, socket=socket, sandbox=run)
        try:
            return process, process._await_handshake(start_timeout_s)
        except BaseException as exc:
            process.kill()
            if run is not None and isinstance(exc, PluginFailed) and process.bwrap_failed():
                raise SandboxError(  # bwrap itself refused (a bind, a namespace): never a plugin failure
                    f"the sandbox around plugin {name} did not start: {process.diagnose(0)}; the plugin was "
                    "not run",
                    hint=_SANDBOX_HINT,
                    detail=process.tail_text(),
                ) from None
            raise

    # --- state ----------------------------------------------------------------------------------------------

    def tail(self) -> list[str]:
        """The last lines of the plugin's stderr (redacted)."""
        return self.output.tail()

    def tail_text(self) -> str:
        """The last lines of its stderr as a block for an error's ``detail`` (``""``: it wrote none)."""
        return self.output.tail_text()

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen.poll() is None

    def bwrap_failed(self) -> bool:
        """Whether a sandboxed process ended because the sandbox itself failed (bwrap or setpriv said so)."""
        return self.sandbox is not None and any(line.startswith(("bwrap: ", "setpriv: ")) for line in self.tail())

    def diagnose(self, wait_s: float = 2.0) -> str:
        """Its exit status, for an error message (whose ``detail`` is :meth:`tail_text`, called after this).

        A process whose connection just broke is usually dying: wait a moment for its status, and for its
        last words on stderr.
        """
        try:
            self.popen.wait(wait_s)
        except subprocess.TimeoutExpired:
            pass
        else:
            self.output.last_words(1.0)
        status = _describe_status(self.popen.returncode)
        if self.killed_by_host:
            status = f"{status} (Dativo stopped it)"
        if self.sandbox is not None:
            why = self.sandbox.explain(self.popen.returncode)
            status = f"{status} in its sandbox" + (f": {why}" if why else "")
        return f"the plugin process {status}"

    def _start_failed(self, message: str, hint: str) -> PluginFailed:
        return PluginFailed(message, plugin=self.name, stage="load", hint=hint, detail=self.tail_text())

    def _await_handshake(self, timeout: float) -> str:
        try:
            raw = self.output.handshake(timeout)
        except queue.Empty:
            self.killed_by_host = True
            self.kill()
            raise self._start_failed(
                f"the plugin printed no handshake within {timeout:g} s; {self.diagnose(0)}",
                "A plugin must listen on $DATIVO_FLIGHT_SOCKET, then print its JSON handshake line on stdout "
                "(docs/plugins/protocol.md); raise implementation.start_timeout_s if it is just slow.",
            ) from None
        if raw is None:
            raise self._start_failed(
                f"the plugin ended its output before its handshake; {self.diagnose()}",
                "Run the command by hand to see why it stops; a plugin must print its JSON handshake line "
                "first (docs/plugins/protocol.md).",
            )
        text = raw.decode("utf-8", "replace").strip()
        handshake = parse_handshake(text)
        if handshake is None:
            raise self._start_failed(
                f"the plugin's first line is not its handshake: {redact(text)[:200]!r}; {self.diagnose(0.2)}",
                'A plugin must print {"dativo_flight": 1, "location": ...} as its very first line on stdout, '
                "and anything else only after it (docs/plugins/protocol.md).",
            )
        mismatch = protocol_mismatch(handshake["dativo_flight"])
        if mismatch is not None:
            raise mismatch.with_context(plugin=self.name)
        try:
            return self.socket.accept(handshake.get("location"))
        except ValueError as exc:
            raise self._start_failed(
                f"Dativo refused the plugin's handshake: {redact(str(exc))}; it connects only to the socket "
                f"it gave the plugin, so nothing was sent to the plugin; {self.diagnose(0)}",
                "A started plugin must listen on the Unix socket that $DATIVO_FLIGHT_SOCKET names, then "
                'print "location": "grpc+unix://$DATIVO_FLIGHT_SOCKET" (the SDKs do; '
                "docs/plugins/protocol.md). A plugin that runs on its own is named with implementation: "
                "{flight: grpc://host:port}.",
            ) from None

    # --- the end --------------------------------------------------------------------------------------------
    def _signal(self, sig: signal.Signals) -> None:
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, sig)  # its own session: helpers it started go too
        except (ProcessLookupError, PermissionError):
            try:
                self.popen.send_signal(sig)
            except ProcessLookupError:
                pass

    def _wait(self, seconds: float) -> bool:
        try:
            self.popen.wait(seconds)
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self, shutdown: Callable[[], None] | None = None) -> None:
        """End the process: ``shutdown`` (if given), stdin EOF, 5 s, SIGTERM, 3 s, SIGKILL. Idempotent."""
        if self._stopped:
            return
        if shutdown is not None and self.alive():
            try:
                shutdown()
            except Exception as exc:  # it may have died or hung: the signals below settle it
                self.logger.debug("shutdown of plugin %s failed: %s", self.name, exc)
        self._close_stdin()
        if not self._wait(SHUTDOWN_GRACE_S if shutdown is not None else 0.5):
            self.killed_by_host = True
            self._signal(signal.SIGTERM)
            if not self._wait(TERM_GRACE_S):
                self._signal(signal.SIGKILL)
                self.popen.wait()
        self._finish()

    def kill(self) -> None:
        """SIGKILL the process now (a hung or broken plugin) and clean up. Idempotent."""
        if self._stopped:
            return
        if self.alive():
            self.killed_by_host = True
            self._signal(signal.SIGKILL)
        self._close_stdin()
        self.popen.wait()
        self._finish()

    def _close_stdin(self) -> None:
        try:
            if self.popen.stdin is not None:
                self.popen.stdin.close()
        except OSError:
            pass

    def _finish(self) -> None:
        self._stopped = True
        self.output.finish()
        for stream in (self.popen.stdout, self.popen.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        self.socket.remove()
        if self.sandbox is not None:
            self.sandbox.finished()
        _live.discard(self)


# --- launchers ----------------------------------------------------------------------------------------------


class CommandLauncher(Launcher):
    """Starts the plugin's executable for every connection and owns its process.

    Args:
        argv: The command; a first element with a ``/`` is a path (relative to ``cwd``), otherwise it is
            looked up on ``PATH``.
        cwd: The working directory (the job file's folder); ``None``: the host's, when the plugin starts.
        env: Extra variables for the plugin (the secrets the job grants it).
        name: How messages and reports name the plugin.
        origin: ``process``, or ``entry point`` for a packaged executable.
        sandbox: Start every process inside this sandbox (:mod:`dativo.plugins.sandbox`).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
        origin: str = "process",
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
        stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S,
        sandbox: Sandbox | None = None,
    ) -> None:
        if not argv or not argv[0]:
            raise ValueError("a plugin command needs at least the executable")
        self.argv = [str(a) for a in argv]
        self.cwd = cwd
        self.env = dict(env or {})
        self.name = name or shlex.join(self.argv)
        self.origin = origin
        self.start_timeout_s = start_timeout_s
        self.call_timeout_s = call_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.sandbox = sandbox
        if sandbox is not None:
            self.origin = "sandbox"

    @classmethod
    def for_command(cls, implementation: PluginCommand, *, sandbox: Sandbox | None = None) -> CommandLauncher:
        """The launcher of a job's ``implementation: {command: [...]}``, with its timeouts and ``env``."""
        return cls(
            implementation.command,
            cwd=implementation.cwd(),
            env=implementation.env,
            name=str(implementation),
            start_timeout_s=implementation.start_timeout_s,
            call_timeout_s=implementation.call_timeout_s,
            stall_timeout_s=implementation.stall_timeout_s,
            sandbox=sandbox,
        )

    def executable(self) -> str:
        """The executable's path.

        Raises:
            PluginNotFound: It does not exist, or is not on ``PATH``.
        """
        first = self.argv[0]
        if os.sep in first or (os.altsep and os.altsep in first):
            path = Path(os.path.expanduser(first))
            path = path if path.is_absolute() else self.workdir() / path
            if not path.is_file():
                raise PluginNotFound(
                    f"plugin executable {path} does not exist",
                    plugin=self.name,
                    hint="Build it, or fix implementation.command (a relative path starts at the job file's "
                    "folder).",
                )
            return str(path)
        found = shutil.which(first, path=os.environ.get("PATH"))
        if found is None:
            raise PluginNotFound(
                f"plugin executable '{first}' is not on PATH",
                plugin=self.name,
                hint="Install it, or give its path (./bin/my-plugin) in implementation.command.",
            )
        return found

    def workdir(self) -> Path:
        """The plugin's working directory."""
        return self.cwd if self.cwd is not None else Path.cwd()

    def start(self, role: Role, logger: logging.Logger) -> tuple[str, PluginProcess]:
        """Start a new process of the plugin and return its location."""
        argv = [self.executable(), *self.argv[1:]]
        process, location = PluginProcess.start(
            argv,
            cwd=self.workdir(),
            env=self.env,
            name=self.name,
            logger=logger,
            start_timeout_s=self.start_timeout_s,
            sandbox=self.sandbox,
        )
        return location, process


class RemoteLauncher(Launcher):
    """Connects to a plugin that runs already (``implementation: {flight: grpc://host:port}``)."""

    def __init__(
        self,
        location: str,
        *,
        call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
        stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S,
    ) -> None:
        self.location = location
        self.name = location
        self.origin = "flight"
        self.call_timeout_s = call_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.start_timeout_s = min(call_timeout_s, 10.0)

    def start(self, role: Role, logger: logging.Logger) -> tuple[str, None]:
        """Nothing to start: the location is given."""
        return self.location, None


def launcher_for(implementation: PluginCommand | FlightEndpoint) -> Launcher:
    """The launcher of a job's ``implementation: {command: [...]}`` or ``{flight: ...}``."""
    if isinstance(implementation, PluginCommand):
        return CommandLauncher.for_command(implementation)
    if isinstance(implementation, FlightEndpoint):
        return RemoteLauncher(
            implementation.flight,
            call_timeout_s=implementation.call_timeout_s,
            stall_timeout_s=implementation.stall_timeout_s,
        )
    raise TypeError(f"not a process or flight implementation: {implementation!r}")


def executable(
    path: str | os.PathLike[str],
    *args: str,
    role: Role = "reader",
    env: Mapping[str, str] | None = None,
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
    call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
    stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S,
) -> type[FlightReader] | type[FlightWriter]:
    """The plugin class of an executable shipped in a Python package, for its entry point.

    Nothing starts until a job uses it. The process runs in the host's working directory.

    Args:
        path: The executable (absolute, e.g. ``Path(__file__).parent / "bin" / "go-postgres"``).
        *args: Arguments it is always started with.
        role: ``reader`` or ``writer`` (a plugin that is both has one entry point per role).
        env: Variables it always gets (beyond ``PATH``, ``HOME``, ``LANG``, ``TMPDIR``).

    Returns:
        A :class:`~dativo.plugins.remote.FlightReader` (or ``FlightWriter``) subclass.
    """
    file = Path(path)
    launcher = CommandLauncher(
        [str(file), *args],
        cwd=None,
        env=env,
        name=file.name,
        origin="entry point",
        start_timeout_s=start_timeout_s,
        call_timeout_s=call_timeout_s,
        stall_timeout_s=stall_timeout_s,
    )
    return plugin_class(role, launcher, doc=f"The {role} executable {file}.")
