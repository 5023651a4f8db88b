"""Run one command and measure it: wall and CPU seconds and the peak RSS of its whole process tree."""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass
class Sample:
    """One measured run."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    ok: bool
    error: str = ""
    miscounted: bool = False
    """The command succeeded but moved other than the table's rows (``error`` says how many)."""


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def run(command: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
        stdout_path: str = os.devnull, timeout_s: float = 3600) -> Sample:
    """Run ``command`` to the end, sampling its tree's RSS every 20 ms.

    CPU time comes from ``RUSAGE_CHILDREN`` (every waited-for descendant); the database server's own CPU is
    not part of it.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(stdout_path, "wb") as out:
        proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.PIPE)
        watched = psutil.Process(proc.pid)
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _tree_rss(watched))
                done.wait(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        done.set()
        sampler.join()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    ok = proc.returncode == 0
    error = "" if ok else err.decode(errors="replace").strip().splitlines()[-1:][0] if err.strip() else "failed"
    return Sample(wall_s=wall, cpu_s=cpu, peak_rss_mb=peak / 2**20, ok=ok, error=error if not ok else "")
