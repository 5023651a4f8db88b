"""The process's malloc settings: large freed blocks go back to the system instead of staying in a heap."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from dativo.allocator import _glibc

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="glibc malloc settings")

_PROBE = textwrap.dedent("""\
    import ctypes, sys
    from dativo.allocator import tune_malloc
    if sys.argv[1] == "tuned":
        assert tune_malloc()
    libc = ctypes.CDLL(None)
    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
    libc.mallinfo2.restype = Info
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 4 << 20
    libc.free(libc.malloc(size))  # by default, freeing an mmap-ed block raises the threshold to its size
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(size)
    print(libc.mallinfo2().hblkhd - before)
    libc.free(block)
""")


def _mapped_bytes(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin"})
    return int(done.stdout)


def test_a_large_block_stays_mapped_after_one_was_freed_so_its_memory_goes_back() -> None:
    assert _glibc() is not None, "this machine's Python runs on glibc"
    assert _mapped_bytes("default") == 0  # glibc's own behaviour: the block came from a heap that keeps it
    assert _mapped_bytes("tuned") >= 4 << 20
