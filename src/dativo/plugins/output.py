"""What a started plugin prints: its handshake line, then log lines, read at once and logged within limits.

Two pump threads only read the plugin's stdout and stderr, so the plugin never blocks on a full pipe; a third
logs what they read, redacted, at the level a line names (``ERROR …``, ``level=warn``), at most
:data:`LOG_LINES_PER_S` lines (and a share of each second) per second. What it cannot keep up with is dropped
and counted. A crash report on stderr (a Go or Rust panic, a Python traceback, …) is logged at ERROR, its
first :data:`TAIL_LINES` lines whatever the rate (a process's first few reports). The last :data:`TAIL_LINES`
lines of stderr are kept whole (up to :data:`TAIL_LINE_CHARS` characters each) for the error that names a
failed plugin (:meth:`PluginOutput.tail_text`).
"""

from __future__ import annotations

import collections
import logging
import queue
import re
import threading
import time
from typing import IO

from dativo.secrets import redact

TAIL_LINES = 40
TAIL_LINE_CHARS = 500  # a longer line of the tail is cut in an error message
LOG_LINES_PER_S = 200  # beyond this the plugin's output is counted, not logged (the tail keeps the latest)
_LOG_SECONDS_PER_S = 0.05  # nor more than this share of a second spent in log handlers (a terminal is slow,
#                            and it holds the GIL the engine's threads need)
_LOG_BACKLOG = (
    1000  # lines read but not yet logged; beyond it (a slow log handler) lines are dropped, counted
)
_LOGGED_CHARS = 1000  # a longer line is cut in the log
_MAX_LINE = 8192  # a longer line is split; a plugin cannot make the host buffer an endless line
_MAX_HANDSHAKE = 65536
# Crash-report lines logged beyond the rate limit, per process: "panic:" on every line is rate-limited too.
_CRASH_LINES_UNLIMITED = 4 * TAIL_LINES
# "ERROR name: message" (dativo plugin serve, most loggers) or "... level=error ..." (Go's slog, logrus)
_LEVEL = re.compile(r"^\s*(DEBUG|INFO|WARN|WARNING|ERROR|CRITICAL|FATAL)(?::\s*|\s+)")
# The first line of a crash report: Go's runtime and the Go SDK's recovered panics, Rust, Python, C++.
_CRASH = re.compile(
    r"^(panic: |panic in |fatal error: |runtime: |SIG[A-Z]+: |thread '.*' panicked at |"
    r"Traceback \(most recent call last\):|terminate called after throwing)"
)
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


def _cut(line: str, limit: int) -> str:
    """``line``, cut at ``limit`` characters (saying how many more there were)."""
    return line if len(line) <= limit else f"{line[:limit]}… ({len(line) - limit} more characters)"


def _level(line: str) -> tuple[int, str]:
    """The log level a line names, and the line without a leading level word."""
    match = _LEVEL.match(line)
    if match:
        return _LEVELS[match.group(1).upper()], line[match.end() :]
    keyed = _LEVEL_KEY.search(line)
    return (_LEVELS[keyed.group(1).upper()] if keyed else logging.INFO), line


class PluginOutput:
    """The pumps and the logger of one plugin's stdout and stderr.

    Args:
        stdout: The plugin's stdout pipe; its first line is the handshake.
        stderr: Its stderr pipe.
        name: How messages name the plugin.
        logger: Where its lines go (may be replaced while it runs: :attr:`logger`).
    """

    def __init__(self, stdout: IO[bytes], stderr: IO[bytes], *, name: str, logger: logging.Logger) -> None:
        self.name = name
        self.logger = logger
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._stderr_lines = 0
        self._crash_lines = 0  # lines of a crash report still to log at ERROR
        self._unlimited = _CRASH_LINES_UNLIMITED  # crash lines that may still pass the rate limit
        self._handshake: queue.Queue[bytes | None] = queue.Queue(maxsize=1)
        self._window = [
            0.0,
            0,
            0,
            0.0,
        ]  # this second: its start, lines logged, lines dropped, seconds logging
        self._log_lock = threading.Lock()
        self._lines: queue.Queue[tuple[str, str] | None] = queue.Queue(maxsize=_LOG_BACKLOG)
        self._hurry = False
        self._stdout = threading.Thread(
            target=self._pump, args=(stdout, "stdout", True), name="dativo-plugin-stdout", daemon=True
        )
        self._stderr = threading.Thread(
            target=self._pump, args=(stderr, "stderr", False), name="dativo-plugin-stderr", daemon=True
        )
        self._logging = threading.Thread(target=self._log_lines, name="dativo-plugin-log", daemon=True)
        for thread in (self._stdout, self._stderr, self._logging):
            thread.start()

    def handshake(self, timeout: float) -> bytes | None:
        """The plugin's first stdout line (``None``: it closed stdout first).

        Raises:
            queue.Empty: Nothing came within ``timeout`` seconds.
        """
        return self._handshake.get(timeout=timeout)

    def tail(self) -> list[str]:
        """The last :data:`TAIL_LINES` lines of the plugin's stderr (redacted, each cut at
        :data:`TAIL_LINE_CHARS` characters)."""
        return [_cut(redact(line), TAIL_LINE_CHARS) for line in list(self._tail)]

    def tail_text(self) -> str:
        """The tail as a block to show below an error's paragraph: a heading and the lines, indented.

        Returns:
            ``""`` when the plugin wrote nothing on stderr.
        """
        lines = self.tail()
        while lines and not lines[0].strip():
            lines.pop(0)
        if not lines:
            return ""
        total = self._stderr_lines
        heading = (
            f"The last {len(lines)} of the {total:,} lines the plugin wrote to stderr:"
            if total > len(self._tail)  # the tail lost its first lines
            else "What the plugin wrote to stderr:"
        )
        return "\n".join([heading, *(f"    {line}" for line in lines)])

    def last_words(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the rest of stderr (the plugin is ending)."""
        self._stderr.join(timeout)

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
                    self._stderr_lines += 1
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
        if which == "stderr" and _CRASH.match(line):
            self._crash_lines = TAIL_LINES
        crash = which == "stderr" and self._crash_lines > 0
        if crash:
            self._crash_lines -= 1
        if not line.strip():
            return
        line = _cut(line, _LOGGED_CHARS)
        level, line = _level(line)
        if crash:
            level = max(level, logging.ERROR)
        now = int(time.monotonic())
        if now != self._window[0]:
            self._report_suppressed(now)
        with self._log_lock:
            limited = self._window[1] >= LOG_LINES_PER_S or self._window[3] >= _LOG_SECONDS_PER_S
            if limited and crash and self._unlimited > 0:  # a crash report is logged whole (a few of them)
                self._unlimited -= 1
            elif limited:
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
                "plugin %s: %d more lines of output were not logged (it wrote faster than the log can take); "
                "an error of the plugin shows the last %d lines of its stderr",
                self.name,
                suppressed,
                TAIL_LINES,
            )

    def finish(self) -> None:
        """The process ended: read what is left, log the backlog for a second, then only count the rest."""
        self._stdout.join(2.0)
        self._stderr.join(2.0)
        try:
            self._lines.put_nowait(None)
        except queue.Full:
            self._hurry = True
            self._lines.put(None)
        self._logging.join(1.0)
        if self._logging.is_alive():
            self._hurry = True
            self._logging.join(5.0)
