"""Starting out-of-process plugins, and reaching running ones.

A job names a plugin process in one of three ways (``docs/plugins/protocol.md``):

- ``implementation: {command: [./bin/reader, --flag], start_timeout_s: 10, env: {TOKEN: "${TOKEN}"}}`` —
  the host starts it (:class:`CommandLauncher`);
- ``implementation: {flight: "grpc://127.0.0.1:8815"}`` — it runs already (:class:`RemoteLauncher`);
- ``implementation: go_postgres`` — an installed package whose entry point is :func:`executable`::

      # dativo_go_postgres/__init__.py
      reader = dativo.plugins.process.executable(Path(__file__).parent / "bin" / "go-postgres")

A started plugin gets a private socket directory, ``DATIVO_FLIGHT_SOCKET`` and ``DATIVO_PROTOCOL``, and no
other environment than ``PATH``, ``HOME``, ``LANG``, ``TMPDIR`` and the ``env`` the job grants it. It must
print its one-line JSON handshake within the start timeout. Its stdout and stderr go to the job's log line
by line, secrets redacted. It dies with the host: ``PR_SET_PDEATHSIG`` on Linux, and its stdin is a pipe
that reaches EOF when the host exits (the SDKs exit then). At the end the host asks it to ``shutdown``,
waits 5 s, then sends SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import atexit
import collections
import ctypes
import ctypes.util
import json
import logging
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from dativo.errors import PluginFailed, PluginIncompatible, PluginNotFound, SandboxError
from dativo.plugins.flight import (
    DEFAULT_CALL_TIMEOUT_S,
    DEFAULT_STALL_TIMEOUT_S,
    PROTOCOL_VERSION,
    FlightReader,
    FlightWriter,
    Launcher,
    Role,
    plugin_class,
)
from dativo.secrets import redact

if TYPE_CHECKING:
    from dativo.config import PluginCommand
    from dativo.plugins.sandbox import Sandbox, SandboxRun

DEFAULT_START_TIMEOUT_S = 10.0
SHUTDOWN_GRACE_S = 5.0
TERM_GRACE_S = 3.0
PASSED_ENVIRONMENT = ("PATH", "HOME", "LANG", "TMPDIR")
"""The only host variables a started plugin sees (besides the ``env`` the job grants it)."""
TAIL_LINES = 40
_MAX_LINE = 8192  # a longer line is split; a plugin cannot make the host buffer an endless line
_MAX_HANDSHAKE = 65536
_LOG_LINES_PER_S = 200  # beyond this the plugin's output is counted, not logged (the tail keeps the latest)
_LOG_SECONDS_PER_S = 0.05  # nor more than this share of a second spent in log handlers (a terminal is slow,
#                            and it holds the GIL the engine's threads need)
_LOG_BACKLOG = (
    1000  # lines read but not yet logged; beyond it (a slow log handler) lines are dropped, counted
)
_LOGGED_CHARS = 1000  # a longer line is cut in the log
# "ERROR name: message" (dativo plugin serve, most loggers) or "... level=error ..." (Go's slog, logrus)
_LEVEL = re.compile(r"^\s*(DEBUG|INFO|WARN|WARNING|ERROR|CRITICAL|FATAL)(?::\s*|\s+)")
_LEVEL_KEY = re.compile(r"\blevel=(DEBUG|INFO|WARN|WARNING|ERROR|CRITICAL|FATAL)\b", re.IGNORECASE)
_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
    "FATAL": logging.CRITICAL,
}
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux, 104 on macOS


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
    """A started plugin process: its output pumps, its stderr tail, and its end.

    Use :meth:`start`; the constructor only wraps a ``Popen``.
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        *,
        name: str,
        logger: logging.Logger,
        socket_dir: Path,
        sandbox: SandboxRun | None = None,
    ) -> None:
        self.popen = popen
        self.name = name
        self.logger = logger
        self.socket_dir = socket_dir
        self.sandbox = sandbox
        self.killed_by_host = False
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._handshake: queue.Queue[bytes | None] = queue.Queue(maxsize=1)
        self._window = [0.0, 0, 0, 0.0]  # this second: its start, lines logged, lines dropped, seconds logging
        self._log_lock = threading.Lock()
        # The pumps only read, so the plugin never blocks on a full pipe; logging (which may be slow: a
        # terminal) happens in its own thread, and what it cannot keep up with is dropped and counted.
        self._lines: queue.Queue[tuple[str, str] | None] = queue.Queue(maxsize=_LOG_BACKLOG)
        self._hurry = False
        self._stdout = threading.Thread(
            target=self._pump, args=(popen.stdout, "stdout", True), name="dativo-plugin-stdout", daemon=True
        )
        self._stderr = threading.Thread(
            target=self._pump, args=(popen.stderr, "stderr", False), name="dativo-plugin-stderr", daemon=True
        )
        self._logging = threading.Thread(target=self._log_lines, name="dativo-plugin-log", daemon=True)
        self._stopped = False
        self._stdout.start()
        self._stderr.start()
        self._logging.start()
        _live.add(self)
        if sandbox is not None:
            sandbox.started(self)

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
            The process and the Flight location it listens on.

        Raises:
            PluginIncompatible: It speaks another protocol version.
            PluginFailed: It cannot be started, exited, printed something else, or stayed silent.
            SandboxError: The sandbox around it could not be set up.
        """
        socket_dir = _socket_dir()
        variables = {key: os.environ[key] for key in PASSED_ENVIRONMENT if key in os.environ}
        variables.update(env)
        variables["DATIVO_FLIGHT_SOCKET"] = str(socket_dir / "plugin.sock")
        variables["DATIVO_PROTOCOL"] = str(PROTOCOL_VERSION)
        run: SandboxRun | None = None
        then: Callable[[], None] | None = None
        try:
            if sandbox is not None:
                run = sandbox.launch(argv, variables, cwd, socket_dir)
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
            shutil.rmtree(socket_dir, ignore_errors=True)
            if run is not None:
                run.finished()
                raise SandboxError(
                    f"the sandbox around plugin {name} could not be set up: {exc}; the plugin was not run",
                    hint="`dativo check` tells whether sandboxing works on this machine (docs/sandbox.md).",
                ) from None
            raise PluginFailed(
                f"cannot start {shlex.join(argv)}: {exc.strerror or exc}",
                plugin=name,
                stage="load",
                hint="Check that the file is an executable for this machine (chmod +x).",
            ) from None
        process = cls(popen, name=name, logger=logger, socket_dir=socket_dir, sandbox=run)
        try:
            return process, process._await_handshake(start_timeout_s)
        except BaseException as exc:
            process.kill()
            if run is not None and isinstance(exc, PluginFailed) and process.bwrap_failed():
                raise SandboxError(  # bwrap itself refused (a bind, a namespace): never a plugin failure
                    f"the sandbox around plugin {name} did not start: {process.diagnose(0)}; the plugin was "
                    "not run",
                    hint="`dativo check` tells whether sandboxing works on this machine (docs/sandbox.md).",
                ) from None
            raise

    # --- output ---------------------------------------------------------------------------------------------

    def _pump(self, stream: IO[bytes], which: str, handshake: bool) -> None:
        """Read one of the plugin's pipes line by line until EOF: the plugin never blocks on a full pipe."""
        try:
            while True:
                raw = stream.readline(_MAX_HANDSHAKE if handshake else _MAX_LINE)
                if handshake:
                    self._handshake.put(raw or None)
                    handshake = False
                    if not raw:
                        return
                    continue
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if which == "stderr":
                    self._tail.append(line)  # redacted when read: most lines of a flood are never shown
                try:
                    self._lines.put_nowait((line, which))
                except queue.Full:
                    self._suppress()
        except (OSError, ValueError):  # the pipe was closed under us at the end
            if handshake:
                self._handshake.put(None)

    def _log_lines(self) -> None:
        while True:
            item = self._lines.get()
            if item is None:
                break
            if self._hurry:  # the process is gone and the backlog too long to wait for
                self._suppress()
            else:
                self._log(*item)
        self._report_suppressed()

    def _suppress(self) -> None:
        with self._log_lock:
            self._window[2] += 1

    def _log(self, line: str, which: str) -> None:
        if not line.strip():
            return
        if len(line) > _LOGGED_CHARS:
            line = f"{line[:_LOGGED_CHARS]}… ({len(line) - _LOGGED_CHARS} more characters)"
        match = _LEVEL.match(line)
        if match:
            level, line = _LEVELS[match.group(1).upper()], line[match.end() :]
        else:
            keyed = _LEVEL_KEY.search(line)
            level = _LEVELS[keyed.group(1).upper()] if keyed else logging.INFO
        now = int(time.monotonic())
        if now != self._window[0]:
            self._report_suppressed(now)
        with self._log_lock:
            if self._window[1] >= _LOG_LINES_PER_S or self._window[3] >= _LOG_SECONDS_PER_S:
                self._window[2] += 1
                return
            self._window[1] += 1
        started = time.perf_counter()
        self.logger.log(level, "%s", redact(line), extra={"plugin_stream": which})
        with self._log_lock:
            self._window[3] += time.perf_counter() - started

    def _report_suppressed(self, now: float = 0.0) -> None:
        """Say how many lines the rate limit dropped in the last second; start a new second."""
        with self._log_lock:
            suppressed = self._window[2]
            self._window = [now, 0, 0, 0.0]
        if suppressed:
            self.logger.warning(
                "plugin %s: %d more lines of output were not logged (it wrote faster than the log can take)",
                self.name,
                suppressed,
            )

    def tail(self) -> list[str]:
        """The last lines of the plugin's stderr (redacted)."""
        return [redact(line) for line in list(self._tail)]

    # --- state ----------------------------------------------------------------------------------------------

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen.poll() is None

    def bwrap_failed(self) -> bool:
        """Whether a sandboxed process ended because bubblewrap itself failed (its messages start "bwrap:")."""
        return self.sandbox is not None and any(line.startswith("bwrap: ") for line in self.tail())

    def diagnose(self, wait_s: float = 2.0) -> str:
        """Its exit status and the end of its stderr, for an error message.

        A process whose connection just broke is usually dying: wait a moment for its status, and for its
        last words on stderr.
        """
        try:
            self.popen.wait(wait_s)
        except subprocess.TimeoutExpired:
            pass
        else:
            self._stderr.join(1.0)  # its last words
        status = _describe_status(self.popen.returncode)
        if self.killed_by_host:
            status = f"{status} (Dativo stopped it)"
        if self.sandbox is not None:
            why = self.sandbox.explain(self.popen.returncode)
            status = f"{status} in its sandbox" + (f": {why}" if why else "")
        text = f"the plugin process {status}"
        tail = [line[:300] for line in self.tail()[-10:] if line.strip()]
        if tail:
            text += "; its stderr ended with: " + " | ".join(tail)
        return text

    def _await_handshake(self, timeout: float) -> str:
        try:
            raw = self._handshake.get(timeout=timeout)
        except queue.Empty:
            self.killed_by_host = True
            self.kill()
            raise PluginFailed(
                f"the plugin printed no handshake within {timeout:g} s; {self.diagnose(0)}",
                plugin=self.name,
                stage="load",
                hint="A plugin must listen on $DATIVO_FLIGHT_SOCKET, then print its JSON handshake line on "
                "stdout (docs/plugins/protocol.md); raise implementation.start_timeout_s if it is just slow.",
            ) from None
        if raw is None:
            raise PluginFailed(
                f"the plugin ended its output before its handshake; {self.diagnose()}",
                plugin=self.name,
                stage="load",
                hint="Run the command by hand to see why it stops; a plugin must print its JSON handshake "
                "line first (docs/plugins/protocol.md).",
            )
        text = raw.decode("utf-8", "replace").strip()
        try:
            handshake = json.loads(text)
        except json.JSONDecodeError:
            handshake = None
        if not isinstance(handshake, dict) or "dativo_flight" not in handshake:
            raise PluginFailed(
                f"the plugin's first line is not its handshake: {redact(text)[:200]!r}; {self.diagnose(0.2)}",
                plugin=self.name,
                stage="load",
                hint='A plugin must print {"dativo_flight": 1, "location": ...} as its very first line on '
                "stdout, and anything else only after it (docs/plugins/protocol.md).",
            )
        version = handshake["dativo_flight"]
        if version != PROTOCOL_VERSION:
            raise PluginIncompatible(
                f"the plugin speaks plugin protocol {version}, but this Dativo speaks protocol "
                f"{PROTOCOL_VERSION}",
                plugin=self.name,
                hint=f"Use a build of the plugin for protocol {PROTOCOL_VERSION}, or a Dativo that speaks "
                f"protocol {version}.",
            )
        location = handshake.get("location")
        if not isinstance(location, str) or not re.match(r"^grpc(\+tcp|\+unix|\+tls)?://", location):
            raise PluginFailed(
                f"the plugin's handshake has no valid location: {redact(text)[:200]!r}",
                plugin=self.name,
                stage="load",
                hint='Print "location": "grpc+unix://$DATIVO_FLIGHT_SOCKET" (or grpc://127.0.0.1:PORT).',
            )
        return location

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
        self._stdout.join(2.0)
        self._stderr.join(2.0)
        try:  # the logger gets a second for its backlog, then only counts what is left
            self._lines.put_nowait(None)
        except queue.Full:
            self._hurry = True
            self._lines.put(None)
        self._logging.join(1.0)
        if self._logging.is_alive():
            self._hurry = True
            self._logging.join(5.0)
        for stream in (self.popen.stdout, self.popen.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        if self.sandbox is not None:
            self.sandbox.finished()
        _live.discard(self)


def _socket_dir() -> Path:
    """A private (0700) directory for the plugin's Unix socket, with a path short enough for ``sun_path``."""
    directory = Path(tempfile.mkdtemp(prefix="dativo-plugin-"))
    if len(str(directory / "plugin.sock")) > _SOCKET_PATH_MAX:
        shutil.rmtree(directory, ignore_errors=True)
        directory = Path(tempfile.mkdtemp(prefix="dativo-plugin-", dir="/tmp"))
    return directory


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


# --- plugin classes -----------------------------------------------------------------------------------------

_classes: dict[tuple[Any, ...], type] = {}
_classes_lock = threading.Lock()


def from_config(role: Role, implementation: Any) -> type[FlightReader] | type[FlightWriter]:
    """The plugin class of a job's ``{command: [...]}`` or ``{flight: ...}`` (one per distinct setting).

    Args:
        role: ``reader`` or ``writer``.
        implementation: A :class:`dativo.config.PluginCommand` or :class:`dativo.config.FlightEndpoint`.
    """
    from dativo.config import FlightEndpoint, PluginCommand

    launcher: Launcher
    if isinstance(implementation, PluginCommand):
        key: tuple[Any, ...] = (
            role,
            "process",
            tuple(implementation.command),
            str(implementation.cwd()),
            tuple(sorted(implementation.env.items())),
            implementation.start_timeout_s,
            implementation.call_timeout_s,
            implementation.stall_timeout_s,
        )
        launcher = CommandLauncher.for_command(implementation)
    elif isinstance(implementation, FlightEndpoint):
        key = (
            role,
            "flight",
            implementation.flight,
            implementation.call_timeout_s,
            implementation.stall_timeout_s,
        )
        launcher = RemoteLauncher(
            implementation.flight,
            call_timeout_s=implementation.call_timeout_s,
            stall_timeout_s=implementation.stall_timeout_s,
        )
    else:
        raise TypeError(f"not a process or flight implementation: {implementation!r}")
    # one class per setting: its spec is learnt once, and a start failure is not retried at once
    with _classes_lock:
        cls = _classes.get(key)
        if cls is None:
            cls = _classes[key] = plugin_class(role, launcher)
    return cls


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
        A :class:`~dativo.plugins.flight.FlightReader` (or ``FlightWriter``) subclass.
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
