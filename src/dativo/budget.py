"""The run's memory budget, and the buffer sizes it gives each split.

A job's ``memory_mb`` bounds what its buffers hold at once, across all splits: the batches a reader builds
and the read-ahead queue, and the row groups a writer gathers before it encodes them. The interpreter and
the libraries themselves (about 150 MB for pyarrow, pyiceberg and a driver) come on top. Each split gets an
equal share; a split holds about two batches in read-ahead, one being built by the reader, one being
conformed and one row group, so batches get a sixteenth of the share and row groups an eighth, within the
bounds below. The read-ahead is bounded in bytes as well (:func:`read_ahead_bytes`), whatever size of batch
a plugin sends. Options a job sets itself (``batch_size_bytes``, ``row_group_size_bytes``) win.

Plugins learn the budget from :class:`~dativo.api.Context` (``memory_bytes``, ``batch_bytes``); an
out-of-process plugin from its ``configure`` call, where the Go SDK also sets the Go runtime's soft memory
limit to half of it (``GOMEMLIMIT``; the host holds the rest) and collects at ``GOGC=50``, because a Go
process otherwise lets its heap grow to twice what is live.
"""

from __future__ import annotations

MiB = 1 << 20

DEFAULT_MEMORY_MB = 256
"""The budget of a job that does not set ``memory_mb``."""

MIN_BATCH_BYTES, MAX_BATCH_BYTES = 1 * MiB, 8 * MiB
MIN_ROW_GROUP_BYTES, MAX_ROW_GROUP_BYTES = 1 * MiB, 16 * MiB


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def split_share(memory_bytes: int, parallelism: int) -> int:
    """The bytes one split may hold when ``parallelism`` splits run at once."""
    return memory_bytes // max(1, parallelism)


def batch_bytes(memory_bytes: int, parallelism: int) -> int:
    """The target size of a record batch a reader builds."""
    return _clamp(split_share(memory_bytes, parallelism) // 16, MIN_BATCH_BYTES, MAX_BATCH_BYTES)


def row_group_bytes(memory_bytes: int, parallelism: int) -> int:
    """The Arrow bytes a writer gathers per split before it encodes them as a row group."""
    return _clamp(split_share(memory_bytes, parallelism) // 8, MIN_ROW_GROUP_BYTES, MAX_ROW_GROUP_BYTES)


def read_ahead_bytes(memory_bytes: int, parallelism: int) -> int:
    """The bytes of batches one split reads ahead at most (two batches of :func:`batch_bytes`)."""
    return 2 * batch_bytes(memory_bytes, parallelism)
