"""The seccomp filter of a sandboxed plugin: the system calls a data plugin never needs fail with EPERM.

:func:`program` compiles a classic-BPF program (the ``struct sock_filter`` array of ``linux/filter.h``) that
bubblewrap loads with ``--seccomp FD`` just before it runs the plugin; the kernel then applies it to the
plugin and to everything the plugin starts, for good. For each system call it decides, in this order:

1. a call of another architecture than the host's (an i386 ``int 0x80`` on x86_64, 32-bit ARM on aarch64)
   kills the process: its numbers mean other calls, so no list of numbers could filter them;
2. an x32 call on x86_64 (``nr | 0x40000000``, the same calls under other numbers) fails with EPERM;
3. ``clone3`` fails with ENOSYS, which makes the C library fall back to ``clone`` (whose flags, unlike
   ``clone3``'s, are in a register the filter can read);
4. ``clone`` with any ``CLONE_NEW*`` flag (a new namespace) fails with EPERM;
5. every call in :data:`DENIED` fails with EPERM;
6. everything else is allowed.

A filter that cannot be built (an architecture without a table below) is a
:class:`~dativo.errors.SandboxError`: the sandbox never starts without it.
"""

from __future__ import annotations

import errno
import platform
import struct
from dataclasses import dataclass

from dativo.errors import SandboxError

DENIED: dict[str, tuple[str, ...]] = {
    "mounts and the file system tree": (
        "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount",
        "fspick", "mount_setattr", "open_by_handle_at", "name_to_handle_at",
    ),
    "namespaces": ("unshare", "setns"),
    "other processes' memory": ("ptrace", "process_vm_readv", "process_vm_writev"),
    "the host's kernel and devices": (
        "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot", "swapon",
        "swapoff", "acct", "quotactl", "quotactl_fd", "syslog", "iopl", "ioperm", "uselib", "_sysctl",
        "nfsservctl", "lookup_dcookie", "vhangup", "settimeofday", "clock_settime", "clock_adjtime",
    ),
    "kernel attack surface": (
        "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key", "io_uring_setup",
        "io_uring_enter", "io_uring_register", "fanotify_init",
    ),
}
"""The calls that fail with EPERM, by what they reach (names absent from an architecture are skipped)."""

CLONE_NAMESPACES = 0x7E020000
"""``CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET``: a ``clone`` with any fails."""

# the numbers of linux/unistd.h: x86_64's own table, and aarch64's (asm-generic, shared by newer ports)
_X86_64 = {
    "clone": 56, "ptrace": 101, "syslog": 103, "uselib": 134, "vhangup": 153, "pivot_root": 155, "_sysctl": 156,
    "chroot": 161, "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168,
    "reboot": 169, "iopl": 172, "ioperm": 173, "init_module": 175, "delete_module": 176, "quotactl": 179,
    "nfsservctl": 180, "lookup_dcookie": 212, "clock_settime": 227, "kexec_load": 246, "add_key": 248,
    "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298, "fanotify_init": 300,
    "name_to_handle_at": 303, "open_by_handle_at": 304, "clock_adjtime": 305, "setns": 308,
    "process_vm_readv": 310, "process_vm_writev": 311, "finit_module": 313, "kexec_file_load": 320, "bpf": 321,
    "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "clone3": 435,
    "mount_setattr": 442, "quotactl_fd": 443,
}
_GENERIC = {
    "lookup_dcookie": 18, "umount2": 39, "mount": 40, "pivot_root": 41, "nfsservctl": 42, "chroot": 51,
    "vhangup": 58, "quotactl": 60, "acct": 89, "unshare": 97, "kexec_load": 104, "init_module": 105,
    "delete_module": 106, "clock_settime": 112, "syslog": 116, "ptrace": 117, "reboot": 142,
    "settimeofday": 170, "add_key": 217, "request_key": 218, "keyctl": 219, "clone": 220, "swapon": 224,
    "swapoff": 225, "perf_event_open": 241, "fanotify_init": 262, "name_to_handle_at": 264,
    "open_by_handle_at": 265, "clock_adjtime": 266, "setns": 268, "process_vm_readv": 270,
    "process_vm_writev": 271, "finit_module": 273, "bpf": 280, "userfaultfd": 282, "kexec_file_load": 294,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "clone3": 435, "mount_setattr": 442,
    "quotactl_fd": 443,
}


@dataclass(frozen=True)
class Arch:
    """One architecture's view of system calls.

    Attributes:
        audit: Its ``AUDIT_ARCH_*`` value (``seccomp_data.arch``).
        numbers: System call name to number.
        x32: Whether numbers with bit 30 set are another ABI's (x86_64's x32).
    """

    audit: int
    numbers: dict[str, int]
    x32: bool = False


ARCHES = {
    "x86_64": Arch(0xC000003E, _X86_64, x32=True),  # EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
    "aarch64": Arch(0xC00000B7, _GENERIC),  # EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
}
_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}

RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000
X32_BIT = 0x40000000
# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6] (little-endian hosts)
_NR, _ARCH, _ARG0_LOW = 0, 4, 16
_LD_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|J*|K, BPF_RET|K


def arch(machine: str | None = None) -> Arch:
    """The table of ``machine`` (default: this host's, ``platform.machine()``).

    Raises:
        SandboxError: There is no seccomp table for it.
    """
    name = (machine or platform.machine()).lower()
    found = ARCHES.get(_ALIASES.get(name, name))
    if found is None:
        raise SandboxError(
            f"the sandbox has no seccomp filter for this machine's architecture ({name})",
            hint=f"Sandboxing is supported on {' and '.join(ARCHES)}; on this machine, run only trusted plugins "
            "(sandbox.enabled: false).",
        )
    return found


def denied(table: Arch) -> list[int]:
    """The numbers of :data:`DENIED` in ``table``, sorted."""
    names = {name for group in DENIED.values() for name in group}
    return sorted(table.numbers[name] for name in names if name in table.numbers)


def instructions(machine: str | None = None) -> list[tuple[int, int, int, int]]:
    """The filter as ``(code, jt, jf, k)`` instructions, jumps resolved (see the module's docstring).

    Raises:
        SandboxError: No table for ``machine``.
    """
    table = arch(machine)
    numbers = table.numbers
    # (code, jump-if-true label, jump-if-false label, k); a label is the name of a return below, or None: next
    body: list[tuple[int, str | None, str | None, int]] = [
        (_LD_ABS, None, None, _ARCH),
        (_JEQ, None, "kill", table.audit),
        (_LD_ABS, None, None, _NR),
    ]
    if table.x32:
        body.append((_JGE, "eperm", None, X32_BIT))
    body.append((_JEQ, "enosys", None, numbers["clone3"]))
    body += [(_JEQ, "eperm", None, nr) for nr in denied(table)]
    body += [
        (_JEQ, None, "allow", numbers["clone"]),
        (_LD_ABS, None, None, _ARG0_LOW),
        (_JSET, "eperm", "allow", CLONE_NAMESPACES),
    ]
    returns = {"allow": RET_ALLOW, "eperm": RET_ERRNO | errno.EPERM, "enosys": RET_ERRNO | errno.ENOSYS,
               "kill": RET_KILL_PROCESS}
    at = {label: len(body) + i for i, label in enumerate(returns)}

    def offset(pc: int, label: str | None) -> int:
        jump = 0 if label is None else at[label] - pc - 1
        if not 0 <= jump <= 255:  # classic BPF jumps forward only, by at most 255
            raise ValueError(f"seccomp filter too long: a jump of {jump}")
        return jump

    program = [(code, offset(pc, jt), offset(pc, jf), k) for pc, (code, jt, jf, k) in enumerate(body)]
    return program + [(_RET, 0, 0, value) for value in returns.values()]


def program(machine: str | None = None) -> bytes:
    """The compiled filter: what bubblewrap's ``--seccomp FD`` reads (8 bytes per instruction).

    Raises:
        SandboxError: No table for ``machine``.
    """
    return b"".join(struct.pack("<HBBI", *instruction) for instruction in instructions(machine))
