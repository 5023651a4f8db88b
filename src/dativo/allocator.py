"""Keep the C heap from growing with the table: a fixed mmap threshold for glibc's ``malloc``.

Native readers (Rust, C++, ADBC) allocate every batch's buffers with ``malloc`` on one thread and Python
frees them on another once the batch is written. glibc starts by serving blocks of 128 KiB and more with
``mmap``, but each ``free`` of such a block raises that threshold to the block's size (up to 32 MiB), so
soon whole batches come from the heap, interleaved with longer-lived blocks, and the heap cannot give the
freed space back: a Rust reader at parallelism 2 grew from 513 MB to 675 MB between 1M and 5M rows.
Setting the threshold once turns that adjustment off; at glibc's own initial 128 KiB the same run stays at
about 335 MB for either size, with no measurable CPU cost (docs/benchmarks.md).
"""

from __future__ import annotations

import ctypes
import os

MMAP_THRESHOLD = 128 * 1024
"""Blocks at least this big are mapped, and unmapped when freed (glibc's initial value, kept fixed)."""

_M_MMAP_THRESHOLD = -3  # from <malloc.h>
_ENV = "MALLOC_MMAP_THRESHOLD_"
_tuned = False


def tune() -> bool:
    """Fix glibc's mmap threshold for this process (once); ``False`` where there is no glibc ``mallopt``.

    A threshold the user set in ``MALLOC_MMAP_THRESHOLD_`` is left as it is.
    """
    global _tuned
    if _tuned:
        return True
    if _ENV in os.environ:
        _tuned = True
        return True
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this interpreter runs on
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _tuned = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return _tuned
