"""Hostile readers, run only inside the sandbox (``tests/plugins/test_sandbox.py``); the host never imports them.

Each attempt reports what it achieved through its data — a row ``(attempt, outcome)`` — so a test asserts on
what the plugin really saw, and cannot pass because the attempt never ran.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import socket
import sys
import threading
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
    text: str = ""


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


class Privileges(Hostile):
    """Reports who it is: the credential lines of its ``/proc/self/status``, its uid map, its open files."""

    def attempts(self) -> Iterator[tuple[str, str]]:
        with open("/proc/self/status") as file:
            status = dict(line.rstrip("\n").split(":\t", 1) for line in file if ":\t" in line)
        for key in ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs",
                    "Seccomp"):
            yield key, " ".join(status.get(key, "<missing>").split())
        with open("/proc/self/uid_map") as file:
            yield "uid_map", " ".join(file.read().split())
        targets = []
        for fd in sorted(os.listdir("/proc/self/fd"), key=int):
            try:
                targets.append(f"{fd}={os.readlink(f'/proc/self/fd/{fd}')}")
            except OSError:
                pass
        yield "fds", " ".join(targets)


def _open_for_writing(path: str) -> str:
    """Open ``path`` write-only and close it again at once, writing nothing: ``OPENED`` or the errno name."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        return f"DENIED:{errno.errorcode.get(exc.errno or 0, exc.errno)}"
    os.close(fd)
    return "OPENED"


class KernelKnobs(Hostile):
    """Opens every file under /proc/sys for writing (writes none), writes ``text`` (the host's own value, so
    a success would change nothing) into core_pattern, opens each of ``paths`` (/sys …), and mkdirs /sys."""

    def attempts(self) -> Iterator[tuple[str, str]]:
        tried, opened, errors = 0, [], dict[str, int]()
        for folder, _, names in os.walk("/proc/sys"):
            for name in names:
                tried += 1
                outcome = _open_for_writing(os.path.join(folder, name))
                if outcome == "OPENED":
                    opened.append(os.path.join(folder, name))
                else:
                    errors[outcome] = errors.get(outcome, 0) + 1
        yield "proc_sys_tried", str(tried)
        yield "proc_sys_opened", " ".join(opened) or "none"
        yield "proc_sys_errors", " ".join(f"{k}={v}" for k, v in sorted(errors.items()))
        try:
            with open("/proc/sys/kernel/core_pattern", "w") as file:
                file.write(self.config.text)
            yield "core_pattern", "WRITTEN"
        except OSError as exc:
            yield "core_pattern", f"DENIED:{errno.errorcode.get(exc.errno or 0)}"
        for path in self.config.paths:
            yield path, _open_for_writing(path)
        try:
            os.mkdir("/sys")
            yield "mkdir /sys", "MADE"
        except OSError as exc:
            yield "mkdir /sys", f"DENIED:{errno.errorcode.get(exc.errno or 0)}"


CLONE_NEWUSER, CLONE_NEWNET, SIGCHLD = 0x10000000, 0x40000000, 17


class Syscalls(Hostile):
    """Makes system calls the seccomp filter denies, most with arguments under which they would succeed
    without it, and a fork and a thread (which must keep working); each row is ``result:errno``."""

    def attempts(self) -> Iterator[tuple[str, str]]:
        from dativo.plugins.seccomp import X32_BIT, arch  # the numbers, cross-checked in test_seccomp.py

        nr = arch().numbers
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long

        def call(number: int, *args: int | bytes | None) -> str:
            ctypes.set_errno(0)
            result = libc.syscall(ctypes.c_long(number), *[ctypes.c_long(a) if isinstance(a, int) else a
                                                            for a in args])
            if result == 0 and number == nr["clone"]:
                os._exit(0)  # a child made despite the filter: it must not run the plugin twice
            if result > 0 and number == nr["clone"]:
                os.waitpid(result, 0)
            return f"{min(result, 1)}:{errno.errorcode.get(ctypes.get_errno(), 'OK')}"

        yield "unshare(0)", call(nr["unshare"], 0)
        yield "unshare(CLONE_NEWUSER)", call(nr["unshare"], CLONE_NEWUSER)
        yield "setns(-1)", call(nr["setns"], -1, 0)
        child = os.fork()
        if child == 0:
            time.sleep(10)
            os._exit(0)
        yield "ptrace(ATTACH, own child)", call(nr["ptrace"], 16, child, 0, 0)
        os.kill(child, 9)
        os.waitpid(child, 0)
        yield "keyctl(GET_KEYRING_ID)", call(nr["keyctl"], 0, -3, 0)
        yield "mount(tmpfs)", call(nr["mount"], b"none", b"/tmp", b"tmpfs", 0, None)
        yield "bpf(MAP_CREATE)", call(nr["bpf"], 0, None, 0)
        yield "perf_event_open", call(nr["perf_event_open"], None, 0, -1, -1, 0)
        yield "userfaultfd", call(nr["userfaultfd"], 0)
        yield "open_by_handle_at", call(nr["open_by_handle_at"], -1, None, 0)
        yield "process_vm_readv", call(nr["process_vm_readv"], 1, None, 0, None, 0, 0)
        yield "clone(CLONE_NEWUSER)", call(nr["clone"], CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)
        yield "clone(CLONE_NEWNET)", call(nr["clone"], CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0)
        yield "clone3", call(nr["clone3"], None, 0)
        if platform.machine() == "x86_64":
            yield "x32 unshare(0)", call(X32_BIT | nr["unshare"], 0)
        yield "getpid", "ok" if os.getpid() > 0 else "failed"
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        yield "fork", f"exit {os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}"
        seen: list[str] = []
        thread = threading.Thread(target=lambda: seen.append("ran"))
        thread.start()
        thread.join()
        yield "thread", seen[0] if seen else "did not run"


class UnixConnect(Hostile):
    """Connects to each of ``paths`` as a Unix socket and sends a line."""

    def attempts(self) -> Iterator[tuple[str, str]]:
        for path in self.config.paths:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                    conn.settimeout(2)
                    conn.connect(path)
                    conn.sendall(b"through the grant\n")
                yield path, "CONNECTED"
            except OSError as exc:
                yield path, f"DENIED:{type(exc).__name__}:{exc.strerror}"
