"""A sandboxed plugin is never host root: its uid, capabilities, ``no_new_privs``, kernel knobs and seccomp
filter, each attacked from inside a real sandboxed plugin that the engine runs (and checked from the host's
side), and a sandbox whose privilege drop or filter cannot be set up fails closed, through the engine and
the CLI."""

from __future__ import annotations

import os
import platform
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dativo.errors import SandboxError
from dativo.plugins import bwrap, seccomp
from tests.conftest import Result
from tests.plugins.sandboxing import HOSTILE, fails, healthy_host, job_file, needs_bwrap, needs_no_sandbox, \
    nothing_published, outcomes, run

pytestmark = [needs_bwrap, pytest.mark.usefixtures(healthy_host.__name__)]

NO_CAPS = "0000000000000000"
KNOBS = ("kernel/core_pattern", "kernel/randomize_va_space", "fs/suid_dumpable", "vm/overcommit_memory",
         "kernel/panic", "kernel/modprobe")
"""Host sysctls (under /proc/sys) that a write as root would change; drop_caches is write-only, so it is in
``BEYOND``."""
BEYOND = ("/proc/sys/vm/drop_caches", "/proc/sysrq-trigger", "/sys/kernel/mm/transparent_hugepage/enabled",
          "/sys/fs/cgroup/cgroup.procs", "/sys/kernel/uevent_helper", "/sys/power/state", "/sys/class/net")


def knobs() -> dict[str, str]:
    return {knob: Path("/proc/sys", knob).read_text() for knob in KNOBS if Path("/proc/sys", knob).exists()}


@pytest.fixture
def plugin_uids() -> Iterator[list[tuple[str, list[int]]]]:
    """While the test runs: ``(program, [real, effective, saved, fs uid])`` of every host process that runs a
    hostile plugin, read by the host from ``/proc/PID/status``."""
    seen: list[tuple[str, list[int]]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for entry in os.scandir("/proc"):
                try:
                    argv = Path(entry.path, "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
                    if any(HOSTILE.encode() in arg for arg in argv):
                        status = Path(entry.path, "status").read_text().splitlines()
                        uids = next(line.split()[1:] for line in status if line.startswith("Uid:"))
                        seen.append((os.path.basename(argv[0].decode()), [int(uid) for uid in uids]))
                except (OSError, StopIteration):
                    continue
            stop.wait(0.005)

    thread = threading.Thread(target=watch, name="test-uid-watch", daemon=True)
    thread.start()
    yield seen
    stop.set()
    thread.join()


# --- who it is ----------------------------------------------------------------------------------------------


def test_the_plugin_runs_as_an_unprivileged_host_uid_without_capabilities(
    workdir: Path, plugin_uids: list[tuple[str, list[int]]]
) -> None:
    run(job_file(workdir, f"{HOSTILE}:Privileges"))
    seen = outcomes(workdir)
    uid = bwrap.identity().uid
    assert uid != 0
    plugin = [uids for program, uids in plugin_uids if program.startswith("python")]
    assert plugin, plugin_uids  # the host saw the plugin's process while it ran
    assert all(uids == [uid] * 4 for uids in plugin), plugin_uids  # as the host sees it: never 0
    assert seen["Uid"] == seen["Gid"] == "65534 65534 65534 65534"
    for caps in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert seen[caps] == NO_CAPS, (caps, seen[caps])
    assert seen["NoNewPrivs"] == "1" and seen["Seccomp"] == "2"
    if os.geteuid() == 0:  # the host's own user namespace: the uid map is the identity, 65534 is 65534
        assert seen["uid_map"] == "0 0 4294967295" and seen["Groups"] == "" and seen["CapBnd"] == NO_CAPS
    assert "dativo-seccomp" not in seen["fds"] and "/proc/sys" not in seen["fds"], seen["fds"]


def test_no_kernel_knob_under_proc_sys_or_sys_is_writable(workdir: Path) -> None:
    before = knobs()
    assert "kernel/core_pattern" in before
    text = before["kernel/core_pattern"].rstrip("\n")  # a write that succeeded would change nothing
    run(job_file(workdir, f"{HOSTILE}:KernelKnobs", options={"text": text, "paths": list(BEYOND)}))
    seen = outcomes(workdir)
    assert int(seen["proc_sys_tried"]) > 500, seen["proc_sys_tried"]  # it walked the whole tree
    assert seen["proc_sys_opened"] == "none", seen["proc_sys_opened"]
    assert seen["core_pattern"] in ("DENIED:EACCES", "DENIED:EROFS"), seen["core_pattern"]
    for path in BEYOND:
        assert seen[path].startswith("DENIED:"), (path, seen[path])
    for path in BEYOND[2:]:
        assert seen[path] == "DENIED:ENOENT"  # there is no /sys at all
    assert seen["mkdir /sys"] in ("DENIED:EROFS", "DENIED:EACCES")  # the sandbox's root is read-only
    assert knobs() == before


def test_denied_system_calls_fail_with_eperm_and_forks_and_threads_still_work(workdir: Path) -> None:
    run(job_file(workdir, f"{HOSTILE}:Syscalls"))
    seen = outcomes(workdir)
    # unshare(0), ptrace of its own child, keyctl and clone(NEWUSER) succeed without the filter; setns(-1) and
    # open_by_handle_at(-1) would be EBADF: EPERM is the filter's answer
    for call in ("unshare(0)", "unshare(CLONE_NEWUSER)", "setns(-1)", "ptrace(ATTACH, own child)",
                 "keyctl(GET_KEYRING_ID)",
                 "mount(tmpfs)", "bpf(MAP_CREATE)", "perf_event_open", "userfaultfd", "open_by_handle_at",
                 "process_vm_readv", "clone(CLONE_NEWUSER)", "clone(CLONE_NEWNET)"):
        assert seen[call] == "-1:EPERM", (call, seen[call])
    assert seen["clone3"] == "-1:ENOSYS"  # so the C library falls back to clone, whose flags are filtered
    if platform.machine() == "x86_64":
        assert seen["x32 unshare(0)"] == "-1:EPERM"
    assert seen["getpid"] == "ok" and seen["fork"] == "exit 7" and seen["thread"] == "ran"


# --- fails closed -------------------------------------------------------------------------------------------


def fails_closed(workdir: Path, *expected: str) -> None:
    """The job (with fallback: default) fails with SandboxError naming ``expected``; nothing ran or published."""
    error = fails(job_file(workdir, f"{HOSTILE}:Privileges", fallback="default"), SandboxError)
    assert error.exit_code == 3
    for text in expected:
        assert text in str(error), str(error)
    nothing_published(workdir)


def test_a_missing_setpriv_fails_closed(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("setpriv drops privileges only when Dativo runs as root")
    monkeypatch.setattr(bwrap, "identity", lambda: bwrap.Identity(65534, 65534, "/usr/bin/no-such-setpriv"))
    fails_closed(workdir, "the sandbox cannot start", "no-such-setpriv")


def test_a_privilege_drop_that_leaves_root_fails_closed(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("setpriv drops privileges only when Dativo runs as root")
    monkeypatch.setattr(bwrap, "identity", lambda: bwrap.Identity(0, 0, "/usr/bin/setpriv"))
    fails_closed(workdir, "the sandbox's process runs as uid 0 0 0 0 instead of 65534")


def test_a_seccomp_filter_bwrap_refuses_fails_closed(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seccomp, "program", lambda machine=None: b"not a BPF program")
    fails_closed(workdir, "the sandbox cannot start", "seccomp")


@needs_no_sandbox
def test_an_architecture_without_a_filter_fails_closed_through_the_cli(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Result]
) -> None:
    monkeypatch.setattr(seccomp.platform, "machine", lambda: "riscv64")
    result = cli("run", str(job_file(workdir, f"{HOSTILE}:Privileges", fallback="default")))
    assert result.exit_code == 3, result.output
    assert "no seccomp filter for this machine's architecture (riscv64)" in " ".join(result.output.split())
    nothing_published(workdir)


@needs_no_sandbox
def test_the_probe_judges_what_the_sandboxed_process_shows() -> None:
    good = "Uid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\nCapEff:\t0000000000000000\n" \
        "CapPrm:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n         0          0 4294967295\n"
    as_root, as_user = bwrap.Identity(65534, 65534, "/usr/bin/setpriv"), bwrap.Identity(1000, 1000)
    assert bwrap.confinement_problems(good, as_root) == [] == bwrap.confinement_problems(good, as_user)
    bad = good.replace("NoNewPrivs:\t1", "NoNewPrivs:\t0").replace("Seccomp:\t2", "Seccomp:\t0")
    assert bwrap.confinement_problems(bad, as_root) == ["has no_new_privs 0 instead of 1",
                                                          "has seccomp mode 0 instead of 2 (a filter)"]
    assert bwrap.confinement_problems("", as_user)[0] == "runs as uid <missing> instead of 65534"
    mapped_to_root = good.replace("         0          0 4294967295", "     65534          0          1")
    assert bwrap.confinement_problems(mapped_to_root, as_root) == [
        "is in a user namespace where uid 65534 is host uid 0"]
    assert bwrap.confinement_problems(mapped_to_root, as_user) == []  # not root: bwrap's map, its own uid
