"""The seccomp filter as a program: run by a small classic-BPF interpreter over every decision it makes, and its
system call numbers checked against the kernel's headers (the sandbox tests run it for real)."""

from __future__ import annotations

import errno
import re
import struct
from pathlib import Path

import pytest

from dativo.errors import SandboxError
from dativo.plugins import seccomp

ALLOW, KILL = seccomp.RET_ALLOW, seccomp.RET_KILL_PROCESS
EPERM, ENOSYS = seccomp.RET_ERRNO | errno.EPERM, seccomp.RET_ERRNO | errno.ENOSYS
HEADERS = {"x86_64": Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
           "aarch64": Path("/usr/include/asm-generic/unistd.h")}
ORDINARY = ("read", "write", "openat", "close", "mmap", "futex", "execve", "exit_group", "socket", "connect")
ORDINARY_NUMBERS = {"x86_64": {"read": 0, "write": 1, "openat": 257, "close": 3, "mmap": 9, "futex": 202,
                               "execve": 59, "exit_group": 231, "socket": 41, "connect": 42},
                    "aarch64": {"read": 63, "write": 64, "openat": 56, "close": 57, "mmap": 222, "futex": 98,
                                "execve": 221, "exit_group": 94, "socket": 198, "connect": 203}}


def decide(program: bytes, nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """What the kernel would return for one call: a classic-BPF interpreter of the opcodes seccomp uses."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, *(list(args) + [0] * 6)[:6])
    code = [struct.unpack("<HBBI", program[i:i + 8]) for i in range(0, len(program), 8)]
    pc, acc = 0, 0
    for _ in range(len(code)):  # jumps go forward only: the program ends within len(code) steps
        op, jt, jf, k = code[pc]
        if op == 0x20:  # BPF_LD | BPF_W | BPF_ABS
            acc = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif op in (0x15, 0x35, 0x45):  # BPF_JMP | JEQ / JGE / JSET, K
            taken = acc == k if op == 0x15 else acc >= k if op == 0x35 else bool(acc & k)
            pc += 1 + (jt if taken else jf)
        elif op == 0x06:  # BPF_RET | BPF_K
            return k
        else:
            raise AssertionError(f"unexpected opcode {op:#x} at {pc}")
    raise AssertionError("the program ran off its end")


@pytest.fixture(params=sorted(seccomp.ARCHES))
def machine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_denied_calls_fail_with_eperm_and_ordinary_ones_are_allowed(machine: str) -> None:
    program, table = seccomp.program(machine), seccomp.ARCHES[machine]
    denied = seccomp.denied(table)
    assert len(denied) >= 40
    for nr in denied:
        assert decide(program, nr, table.audit) == EPERM, nr
    for name in ORDINARY:
        assert decide(program, ORDINARY_NUMBERS[machine][name], table.audit) == ALLOW, name
    for nr in range(0, 460):  # everything else is allowed: the list is a deny list, not an allow list
        expected = EPERM if nr in denied else ENOSYS if nr == table.numbers["clone3"] else ALLOW
        if nr != table.numbers["clone"]:
            assert decide(program, nr, table.audit) == expected, nr


def test_clone_may_fork_and_start_threads_but_not_make_namespaces(machine: str) -> None:
    program, table = seccomp.program(machine), seccomp.ARCHES[machine]
    clone = table.numbers["clone"]
    fork, thread = 0x01200011, 0x003D0F00  # glibc's fork() and pthread_create() flags
    assert decide(program, clone, table.audit, (fork,)) == ALLOW
    assert decide(program, clone, table.audit, (thread,)) == ALLOW
    for flag in (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000):
        assert decide(program, clone, table.audit, (fork | flag,)) == EPERM, hex(flag)
    assert decide(program, table.numbers["clone3"], table.audit) == ENOSYS  # the C library falls back to clone


def test_another_architecture_is_killed_and_x32_is_denied() -> None:
    x86 = seccomp.ARCHES["x86_64"]
    program = seccomp.program("x86_64")
    i386, arm = 0x40000003, 0x40000028
    for nr in (0, 1, 165, 272):
        assert decide(program, nr, i386) == KILL
    assert decide(seccomp.program("aarch64"), 0, arm) == KILL
    assert decide(program, 0, seccomp.ARCHES["aarch64"].audit) == KILL
    for nr in (0, x86.numbers["unshare"], x86.numbers["mount"], 512):
        assert decide(program, seccomp.X32_BIT | nr, x86.audit) == EPERM


def test_the_numbers_are_the_kernels(machine: str) -> None:
    header = HEADERS[machine]
    if not header.exists():
        pytest.skip(f"no kernel headers at {header}")
    defined = {m["name"]: int(m["nr"]) for m in re.finditer(
        r"^#define __NR(?:3264)?_(?P<name>\w+)\s+(?P<nr>\d+)$", header.read_text(), re.MULTILINE)}
    table = seccomp.ARCHES[machine].numbers
    assert table == {name: defined[name] for name in table}
    names = {name for group in seccomp.DENIED.values() for name in group}
    assert {name for name in names if name in defined} == {name for name in names if name in table}
    assert {name: defined[name] for name in ORDINARY} == ORDINARY_NUMBERS[machine]


def test_machine_names_and_an_unknown_architecture() -> None:
    assert seccomp.arch("amd64") is seccomp.ARCHES["x86_64"] and seccomp.arch("arm64") is seccomp.ARCHES["aarch64"]
    assert len(seccomp.program()) % 8 == 0
    with pytest.raises(SandboxError, match="no seccomp filter for this machine's architecture \\(riscv64\\)"):
        seccomp.program("riscv64")
