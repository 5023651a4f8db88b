"""What a started plugin prints: its handshake line, then log lines, read at once and logged within limits.

Two pump threads only read the plugin's stdout and stderr, so the plugin never blocks on a full pipe; a third
logs what they read, redacted, at the level a line names (``ERROR …``, ``level=warn``), at most
:data:`LOG_LINES_PER_S` lines (and a share of each second) per second. What it cannot keep up with is dropped
and counted. The last :data:`TAIL_LINES` lines of stderr are kept for error messages.
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
LOG_LINES_PER_S = 200  # beyond this the plugin's output is counted, not logged (the tail keeps the latest)
_LOG_SECONDS_PER_S = 0.05  # nor more than this share of a second spent in log handlers (a terminal is slow,
#                            and it holds the GIL the engine's threads need)
_LOG_BACKLOG = (
    1000  # lines read but not yet logged; beyond it (a slow log handler) lines are dropped, counted
)
_LOGGED_CHARS = 1000  # a longer line is cut in the log
_MAX_LINE = 8192  # a longer line is split; a plugin cannot make the host buffer an endless line
_MAX_HANDSHAKE = 65536
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
        """The last lines of the plugin's stderr (redacted)."""
        return [redact(line) for line in list(self._tail)]

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
        level, line = _level(line)
        now = int(time.monotonic())
        if now != self._window[0]:
            self._report_suppressed(now)
        with self._log_lock:
            if self._window[1] >= LOG_LINES_PER_S or self._window[3] >= _LOG_SECONDS_PER_S:
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
