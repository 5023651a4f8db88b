"""Linux cgroups for sandboxed plugins: a process limit (fork bombs) and, where possible, memory.

A sandbox (:mod:`dativo.plugins.sandbox`) creates one :class:`Cgroups` per process, beside Dativo's own group
(cgroup v1 controllers, else the v2 hierarchy), moves the child in from ``preexec_fn`` before any plugin code
runs, and removes the groups when the process has ended.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path


def own_cgroups() -> dict[str, str]:
    """This process's cgroup path per v1 controller (``""`` key: the v2 path)."""
    found: dict[str, str] = {}
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        return found
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            found[controller] = path
    return found


def child_group(controller: str, own: Mapping[str, str], limit_file: str) -> Path | None:
    """Create a fresh cgroup beside this process's own (v1 controller, else v2) that has ``limit_file``."""
    candidates: list[Path] = []
    if controller in own:
        candidates.append(Path("/sys/fs/cgroup", controller, own[controller].lstrip("/")))
    if "" in own and Path("/sys/fs/cgroup/cgroup.controllers").exists():
        candidates.append(Path("/sys/fs/cgroup", own[""].lstrip("/")))
    for parent in candidates:
        group = parent / f"dativo-sandbox-{uuid.uuid4().hex[:12]}"
        try:
            group.mkdir()
        except OSError:
            continue
        if (group / limit_file).exists():
            return group
        with contextlib.suppress(OSError):
            group.rmdir()
    return None


class Cgroups:
    """The pids (and memory) cgroups of one sandboxed process; removed when it ends."""

    def __init__(self, max_processes: int | None, memory_mb: int | None) -> None:
        own = own_cgroups()
        self.groups: list[Path] = []
        self.pids: Path | None = None
        self.memory: Path | None = None
        if max_processes is not None:
            self.pids = child_group("pids", own, "pids.max")
            if self.pids is not None:
                self.groups.append(self.pids)
                (self.pids / "pids.max").write_text(str(max_processes))
        if memory_mb is not None:
            self.memory = child_group("memory", own, "memory.limit_in_bytes") or child_group(
                "memory", own, "memory.max"
            )
            if self.memory is not None:
                self.groups.append(self.memory)
                limit = str(memory_mb * 1024 * 1024)
                for name in ("memory.limit_in_bytes", "memory.max", "memory.memsw.limit_in_bytes",
                             "memory.swap.max"):
                    with contextlib.suppress(OSError):  # swap accounting may be off; the first one matters
                        (self.memory / name).write_text(limit if "swap.max" not in name else "0")
        self._procs = [str(group / "cgroup.procs") for group in self.groups]

    def join(self) -> None:
        """Move the calling (just forked) process into the groups (in ``preexec_fn``: before plugin code)."""
        pid = str(os.getpid()).encode()
        for procs in self._procs:
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def out_of_memory(self) -> bool:
        """Whether the memory cgroup killed a process for exceeding its limit."""
        if self.memory is None:
            return False
        for name, key in (("memory.oom_control", "oom_kill"), ("memory.events", "oom_kill")):
            with contextlib.suppress(OSError, ValueError):
                for line in (self.memory / name).read_text().splitlines():
                    field, _, value = line.partition(" ")
                    if field == key and int(value) > 0:
                        return True
        return False

    def remove(self) -> None:
        """Remove the groups (once the sandbox's processes are gone: its pid namespace ends with them)."""
        for group in self.groups:
            deadline = time.monotonic() + 2.0
            while True:
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.02)  # the kernel is still reaping the namespace's processes


def tasks_of(uid: int) -> int:
    """How many tasks (threads) ``uid`` runs now: RLIMIT_NPROC counts them all, not just the sandbox's."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
    return count


def pids_cgroups_work() -> bool:
    own = own_cgroups()
    group = child_group("pids", own, "pids.max")
    if group is None:
        return False
    with contextlib.suppress(OSError):
        group.rmdir()
    return True
