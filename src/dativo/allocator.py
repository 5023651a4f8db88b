"""How a Dativo process allocates memory, so that its RSS stays flat however many rows pass through it.

Batches come and go by the megabyte. pyarrow's own buffers go to jemalloc (:func:`tune`), which hands freed
memory back soon. Everything else uses the C library's ``malloc``: the gRPC buffers a Flight stream
arrives in, ADBC's and the native plugins' batches. glibc's defaults keep such memory: a freed block it had
``mmap``-ed raises its threshold for the next ones, which then come from heaps that fragment and seldom
shrink, and every thread that allocates under contention gets a heap of its own (up to eight per core). A
host reading a Go plugin over Flight grew from 326 to 365 MB between 1M and 5M rows that way; with the two
settings below it stays at about 260 MB, for no measurable CPU. glibc only; other C libraries keep their own behaviour.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

MMAP_THRESHOLD_BYTES = 1 << 20
"""Blocks at least this large are ``mmap``-ed and unmapped when freed. Fixing the threshold also stops
glibc from raising it after each free. 1 MiB keeps the host's memory as flat as 256 KiB did, without
the CPU 256 KiB cost (about 4% more for a Flight read: every smaller block freshly mapped is faulted in)."""

MAX_ARENAS = 2
"""Heaps shared by all threads: enough for the reader and writer threads of a job not to contend."""

_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8  # mallopt parameters, from <malloc.h>


def _glibc() -> ctypes.CDLL | None:
    try:
        os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError, AttributeError):
        return None
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


def tune_malloc() -> bool:
    """Set glibc ``malloc``'s mmap threshold and arena count (see the module docstring).

    Call it early, before threads allocate: a thread keeps the heap it first got. ``MALLOC_ARENA_MAX`` or
    ``MALLOC_MMAP_THRESHOLD_`` in the environment win over the settings here.

    Returns:
        Whether glibc took the settings (``False`` on other C libraries).
    """
    libc = _glibc()
    if libc is None:
        return False
    ok = True
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and ok
    if "MALLOC_ARENA_MAX" not in os.environ:
        ok = bool(libc.mallopt(_M_ARENA_MAX, MAX_ARENAS)) and ok
    return ok


def use_jemalloc() -> None:
    """Make jemalloc pyarrow's memory pool where pyarrow has it, unless ``ARROW_DEFAULT_MEMORY_POOL`` chose."""
    if "ARROW_DEFAULT_MEMORY_POOL" in os.environ:
        return
    import pyarrow as pa  # here: tune_malloc runs before the first import of pyarrow

    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except (NotImplementedError, pa.ArrowNotImplementedError):  # a build without jemalloc keeps its default
        pass


def tune() -> None:
    """Both settings, for a process about to move batches: the ``dativo`` command and a Ray task."""
    tune_malloc()
    use_jemalloc()
