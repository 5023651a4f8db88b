"""The performance line: rows/s, MB/s, peak memory and CPU time of one pass, plugin processes included.

Memory is sampled every 50 ms while the pass runs: the resident set of this process and of every process
it started (an out-of-process plugin, its sandbox). CPU time is this process's plus the CPU its child
processes used meanwhile (read from ``/proc``; elsewhere only this process is counted). The numbers are for
comparing a plugin with the built-in on one machine, not benchmarks (see ``bench/`` for those).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class PerfLine:
    """One implementation's numbers for one pass.

    Attributes:
        label: What was measured (``plugin`` or ``built-in``), with the implementation's name.
        implementation: The implementation's name.
        what: ``read`` or ``write``.
        rows: Rows moved.
        bytes: Arrow bytes moved.
        seconds: Wall-clock time.
        peak_rss_mb: Highest resident memory seen (this process and its plugin processes), MiB.
        rss_growth_mb: How far above its level at the start the resident memory rose, MiB.
        cpu_s: CPU time used (this process and its plugin processes), seconds.
    """

    label: str
    implementation: str
    what: str
    rows: int
    bytes: int
    seconds: float
    peak_rss_mb: float
    rss_growth_mb: float
    cpu_s: float

    @property
    def rows_per_s(self) -> float:
        """Rows per second."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        """MiB of Arrow data per second."""
        return self.bytes / 2**20 / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The line as JSON-serialisable data (rates included)."""
        return {**asdict(self), "rows_per_s": round(self.rows_per_s, 1), "mb_per_s": round(self.mb_per_s, 2)}


def _children(pid: int) -> Iterator[int]:
    """Every descendant of ``pid`` (Linux: ``/proc/<pid>/task/*/children``)."""
    pending = [pid]
    while pending:
        parent = pending.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                kids = [int(p) for p in task.read_text().split()]
            except OSError:
                continue
            yield from kids
            pending.extend(kids)


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
    except (OSError, IndexError, ValueError):
        return 0.0


class _Sampler:
    """Samples memory (and the children's CPU) in a thread until stopped."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.start_rss = self.peak = self._total()[0]
        self.child_cpu: dict[int, float] = {}
        self._before: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dativo-kit-sampler", daemon=True)

    def _total(self) -> tuple[int, float]:
        rss = _rss(self.pid)
        cpu = 0.0
        for child in _children(self.pid):
            rss += _rss(child)
            cpu += _cpu(child)
        return rss, cpu

    def _sample(self) -> None:
        rss = _rss(self.pid)
        for child in _children(self.pid):
            rss += _rss(child)
            self.child_cpu[child] = _cpu(child)  # the last value seen of a child that exits meanwhile
        self.peak = max(self.peak, rss)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._sample()

    def __enter__(self) -> _Sampler:
        self.child_cpu = {child: _cpu(child) for child in _children(self.pid)}
        self._before = dict(self.child_cpu)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def children_cpu(self) -> float:
        return sum(max(0.0, cpu - self._before.get(pid, 0.0)) for pid, cpu in self.child_cpu.items())


def measure(label: str, implementation: str, what: str, work: Callable[[], tuple[int, int]]) -> PerfLine:
    """Run ``work`` (which returns ``(rows, bytes)``) and measure it.

    Raises:
        Exception: Whatever ``work`` raised.
    """
    cpu = time.process_time()
    started = time.monotonic()
    with _Sampler() as sampler:
        rows, size = work()
    seconds = time.monotonic() - started
    used = time.process_time() - cpu + sampler.children_cpu()
    return PerfLine(
        label=label,
        implementation=implementation,
        what=what,
        rows=rows,
        bytes=size,
        seconds=round(seconds, 4),
        peak_rss_mb=round(sampler.peak / 2**20, 1),
        rss_growth_mb=round(max(0, sampler.peak - sampler.start_rss) / 2**20, 1),
        cpu_s=round(used, 3),
    )


__all__ = ["PerfLine", "measure"]
