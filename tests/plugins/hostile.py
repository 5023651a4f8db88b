"""Hostile readers, run only inside the sandbox (``tests/plugins/test_sandbox.py``); the host never imports them.

Each attempt reports what it achieved through its data — a row ``(attempt, outcome)`` — so a test asserts on
what the plugin really saw, and cannot pass because the attempt never ran.
"""

from __future__ import annotations

import ctypes
import os
import socket
import sys
import time
from collections.abc import Iterator

import pyarrow as pa
from pydantic import BaseModel

from dativo.api import Reader, Split

SCHEMA = pa.schema([("attempt", pa.string()), ("outcome", pa.string())])


def row(attempt: str, outcome: str) -> pa.RecordBatch:
    """One ``(attempt, outcome)`` row."""
    return pa.record_batch([pa.array([attempt]), pa.array([outcome])], schema=SCHEMA)


class Targets(BaseModel):
    paths: list[str] = []
    names: list[str] = []
    port: int = 0
    mb: int = 0
    max_forks: int = 10_000


class Hostile(Reader):
    """The base: one ``(attempt, outcome)`` table; ``attempts`` yields its rows."""

    Config = Targets
    schema = SCHEMA
    version = "6.6.6"

    def attempts(self) -> Iterator[tuple[str, str]]:
        yield from ()

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        for attempt, outcome in self.attempts():
            yield row(attempt, outcome)


class ReadFiles(Hostile):
    """Reads each of ``paths``: its content, or the error."""

    def attempts(self) -> Iterator[tuple[str, str]]:
        for path in self.config.paths:
            try:
                with open(path, encoding="utf-8", errors="replace") as file:
                    yield path, "READ:" + file.read(10_000)
            except OSError as exc:
                yield path, f"DENIED:{type(exc).__name__}:{exc.strerror}"


class ReadEnv(Hostile):
    """Reports each variable of ``names`` and the whole environment it sees."""

    def attempts(self) -> Iterator[tuple[str, str]]:
        for name in self.config.names:
            yield name, os.environ.get(name, "<unset>")
        yield "environ", " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()))


class Connect(Hostile):
    """Connects to ``127.0.0.1:port`` and to a public address."""

    def attempts(self) -> Iterator[tuple[str, str]]:
        for host in ("127.0.0.1", "1.1.1.1"):
            try:
                with socket.create_connection((host, self.config.port or 53), timeout=2) as conn:
                    conn.sendall(b"exfiltrated\n")
                    yield host, "CONNECTED"
            except OSError as exc:
                yield host, f"DENIED:{type(exc).__name__}:{exc}"


class WriteFiles(Hostile):
    """Writes a file at each of ``paths``."""

    def attempts(self) -> Iterator[tuple[str, str]]:
        for path in self.config.paths:
            try:
                with open(path, "w") as file:
                    file.write("pwned")
                yield path, "WRITTEN"
            except OSError as exc:
                yield path, f"DENIED:{type(exc).__name__}:{exc.strerror}"


class Allocate(Hostile):
    """Allocates ``mb`` MiB and touches every page."""

    def attempts(self) -> Iterator[tuple[str, str]]:
        block = bytearray(self.config.mb * 1024 * 1024)
        for i in range(0, len(block), 4096):
            block[i] = 1
        yield "allocate", f"ALLOCATED:{len(block)}"


class Spin(Hostile):
    """Burns CPU forever."""

    def attempts(self) -> Iterator[tuple[str, str]]:
        n = 0
        while True:
            n += 1
        yield "spin", str(n)  # pragma: no cover


class Sleep(Hostile):
    """Sleeps for an hour."""

    def attempts(self) -> Iterator[tuple[str, str]]:
        time.sleep(3600)
        yield "sleep", "woke up"


class ForkBomb(Hostile):
    """Forks until the kernel refuses (each child sleeps 3 s), then reports how many forks succeeded."""

    def attempts(self) -> Iterator[tuple[str, str]]:
        forks, error = 0, "none"
        while forks < self.config.max_forks:
            try:
                pid = os.fork()
            except OSError as exc:
                error = f"{type(exc).__name__}:{exc.strerror}"
                break
            if pid == 0:
                time.sleep(3)
                os._exit(0)
            forks += 1
        yield "forks", f"{forks}:{error}"


class Segfault(Hostile):
    """Dereferences NULL."""

    def attempts(self) -> Iterator[tuple[str, str]]:
        ctypes.string_at(0)
        yield "segfault", "survived"


class Flood(Hostile):
    """Prints 50 000 lines on stdout and stderr, then yields one honest row."""

    def attempts(self) -> Iterator[tuple[str, str]]:
        line = "x" * 200
        for i in range(50_000):
            print(f"flood {i} {line}")
            print(f"ERROR flood {i} {line}", file=sys.stderr)
        sys.stdout.flush()
        yield "flood", "done"


class WrongSchema(Hostile):
    """Declares ``(attempt, outcome)`` strings but yields an integer column."""

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        yield pa.record_batch([pa.array([1]), pa.array([2])], names=["attempt", "outcome"])
