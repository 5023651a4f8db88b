"""A local Ray cluster for ``make bench ARGS="--executor ray"``: a head and one more node, one CPU each.

Everything lives under a private ``--temp-dir``; :meth:`LocalCluster.stop` kills exactly the processes
started with it (by pid), so another Ray on the machine is left alone.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil


class LocalCluster:
    """Start with :meth:`start`; ``address`` is the head's ``host:port``."""

    def __init__(self, nodes: int = 2, cpus: int = 1) -> None:
        self.nodes, self.cpus = nodes, cpus
        self.temp_dir = Path(tempfile.mkdtemp(prefix="dray-bench-", dir="/tmp"))
        self.address = ""

    def _ray(self, *args: str) -> str:
        done = subprocess.run([str(Path(sys.executable).with_name("ray")), "start", *args, f"--num-cpus={self.cpus}",
                               f"--temp-dir={self.temp_dir}", "--disable-usage-stats"], capture_output=True,
                              text=True, timeout=180, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
        if done.returncode != 0:
            raise RuntimeError(f"ray start failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        return done.stdout + done.stderr

    def start(self) -> LocalCluster:
        """Start the head and the other nodes."""
        head = self._ray("--head", "--port=0", "--include-dashboard=false")
        match = re.search(r"ray start --address='([^']+)'", head)
        if not match:
            raise RuntimeError(f"the Ray head did not say its address:\n{head[-2000:]}")
        self.address = match.group(1)
        for _ in range(self.nodes - 1):
            self._ray(f"--address={self.address}")
        return self

    def stop(self) -> None:
        """Kill the cluster's processes and remove its folder."""
        mine = [p for p in psutil.process_iter(["cmdline"])
                if any(str(self.temp_dir) in arg for arg in p.info["cmdline"] or [])]
        everything = mine + [c for p in mine for c in _children(p)]
        for process in everything:
            try:
                process.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(everything, timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []
