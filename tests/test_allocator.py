"""The fixed mmap threshold returns a freed batch's memory to the system, where glibc's default keeps it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# A batch's buffers freed after a later, longer-lived block was allocated: the pattern of a reader thread
# producing while the writer still holds earlier batches. Prints the RSS growth (MiB) once all are freed.
_PATTERN = textwrap.dedent(
    """
    import ctypes, sys
    if sys.argv[1] == "tuned":
        from dativo import allocator
        assert allocator.tune()
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 >> 20
    libc.free(libc.malloc(512 << 10))  # glibc's default raises its threshold past this size here
    before = rss()
    blocks = []
    for _ in range(200):
        block = libc.malloc(512 << 10)
        ctypes.memset(block, 1, 512 << 10)
        blocks.append(block)
    keeper = libc.malloc(100 << 10)  # above the blocks on the heap: the heap cannot shrink past it
    for block in blocks:
        libc.free(block)
    print(rss() - before)
    """
)


def _growth(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", _PATTERN, mode], env=env, capture_output=True, text=True,
                         check=True)
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_batches_leave_the_heap_only_with_the_fixed_threshold() -> None:
    assert _growth("default") >= 80  # the pattern does hold memory without the tuning ...
    assert _growth("tuned") <= 10  # ... and gives it back with it


def test_the_command_tunes_before_anything_loads() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import sys; sys.argv = ['dativo', '--help']\n"
         "import dativo.__main__ as m, dativo.allocator as a\n"
         "try:\n    m.main()\nexcept SystemExit:\n    pass\nprint(a._tuned)"],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip().endswith("True")
