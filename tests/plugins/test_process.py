"""Plugin processes that crash, hang, lie or flood: a clear error (or the built-in), nothing published, no orphan."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pyarrow.flight as fl
import pytest
import yaml

from dativo.errors import PluginIncompatible, PluginNotFound
from dativo.plugins import process
from dativo.plugins.sockets import SocketFolder
from tests.conftest import read_parquet_dir, source_csv
from tests.plugins import liar as liar_module
from tests.plugins.fixtures_flight import ROOT, plugin_children, raw, served
from tests.plugins.sandboxing import fails, needs_bwrap, run

FIXTURES = "tests.plugins.fixtures_flight"
LIAR = Path(liar_module.__file__)


def job_file(
    workdir: Path,
    reader: Any,
    *,
    options: dict | None = None,
    fallback: str = "fail",
    parallelism: int = 1,
    sandbox: dict | None = None,
) -> Path:
    """A job from data/orders.csv into out/items with ``reader`` as the custom reader (in ``sandbox``)."""
    source = {
        "type": "csv",
        "path": "data/orders.csv",
        "parallelism": parallelism,
        "reader": {
            "type": "custom",
            "implementation": reader,
            "fallback": fallback,
            "options": options or {},
            **({"sandbox": sandbox} if sandbox is not None else {}),
        },
    }
    path = workdir / "job.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "name": "items",
                "source": source,
                "target": {"type": "parquet", "path": "out/items"},
            }
        )
    )
    return path




@pytest.fixture(autouse=True)
def _healthy_host(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """After each test: no plugin process, no socket directory, no stream thread left; the host still works."""
    made: list[SocketFolder] = []  # this process's socket folders (other processes make theirs too)

    def socket_folder(*args: int) -> SocketFolder:
        made.append(make(*args))
        return made[-1]

    make = process.socket_folder
    monkeypatch.setattr(process, "socket_folder", socket_folder)
    yield
    assert plugin_children() == []
    assert [f.root for f in made if f.root.exists()] == []
    deadline = time.monotonic() + 5
    while any(
        t.name.startswith(("dativo-flight", "dativo-plugin-std", "dativo-plugin-log"))
        for t in threading.enumerate()
    ):
        assert time.monotonic() < deadline, [t.name for t in threading.enumerate()]
        time.sleep(0.05)


def nothing_published(workdir: Path) -> None:
    assert read_parquet_dir(workdir / "out" / "items").num_rows == 0


# --- a plugin that dies or hangs ----------------------------------------------------------------------------


def test_a_crash_in_the_middle_of_a_stream(workdir: Path) -> None:
    error = fails(job_file(workdir, served(f"{FIXTURES}:CrashMidStream")))
    text = str(error)
    assert error.role == "reader" and error.stage == "read" and error.job == "items"
    assert "dataset 'items' split '0'" in text and "exited with status 7" in text
    assert "about to crash: token=***" in text and "hunter2" not in text  # its stderr, redacted
    nothing_published(workdir)


def test_a_crash_shows_the_end_of_its_stderr_whole(workdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A Go panic after a flood of log lines: the error is one paragraph, then the last 40 stderr lines."""
    from tests.plugins.fixtures_flight import PANIC

    with caplog.at_level(logging.INFO, logger="dativo"):
        error = fails(job_file(workdir, served(f"{FIXTURES}:PanicMidStream")))
    paragraph, _, detail = str(error).partition("\n")
    assert "exited with status 2" in paragraph and paragraph.endswith(error.hint or "")
    heading, *lines = detail.split("\n")
    assert heading.startswith("The last 40 of the ")
    assert heading.endswith(" lines the plugin wrote to stderr:")
    assert len(lines) == 40 and all(line.startswith("    ") for line in lines)
    shown = [line.removeprefix("    ") for line in lines]
    panic = PANIC.replace("hunter2-very-secret", "***").split("\n")
    assert shown[-len(panic) : -1] == panic[:-1]  # the whole report, the frame that matters with it
    assert shown[-1].startswith("\t/src/sdk/serve.go:301 +0x") and shown[-1].endswith("more characters)")
    assert len(shown[-1]) < 600  # a line is bounded
    assert shown[0] == "INFO decoding record 193" and "hunter2" not in str(error)
    logged = {r.getMessage(): r.levelno for r in caplog.records if r.name.startswith("dativo.reader")}
    assert logged["panic: runtime error: index out of range [3] with length 3"] == logging.ERROR
    assert logged["\t/src/plugin/decode.go:142 +0x2a5"] == logging.ERROR  # the crash is logged, at ERROR
    nothing_published(workdir)


def test_a_crash_falls_back_to_the_built_in(workdir: Path) -> None:
    source_csv(workdir, "id", "name")  # the built-in reads what the plugin would have
    report = run(job_file(workdir, served(f"{FIXTURES}:CrashMidStream"), fallback="default"))
    assert report.fallback_used and "exited with status 7" in str(report.fallback_reason)
    assert report.reader is not None and report.reader.implementation == "csv"
    assert read_parquet_dir(workdir / "out" / "items").num_rows == 3


def test_a_plugin_that_hangs_in_a_stream(workdir: Path) -> None:
    started = time.monotonic()
    error = fails(job_file(workdir, served(f"{FIXTURES}:HangInRead", stall_timeout_s=1.5), parallelism=2))
    assert time.monotonic() - started < 30
    text = str(error)
    assert "the plugin sent nothing for 1.5 s, so it was declared hung and stopped" in text
    assert "Dativo stopped it" in text and "stall_timeout_s" in text
    nothing_published(workdir)


def test_a_plugin_that_hangs_in_an_action(workdir: Path) -> None:
    started = time.monotonic()
    error = fails(job_file(workdir, served(f"{FIXTURES}:HangInCheck", call_timeout_s=1)))
    assert time.monotonic() - started < 30
    assert error.stage == "check"
    assert "did not answer 'check' for 1 s" in str(error) and "call_timeout_s" in str(error)


def test_a_hang_falls_back_to_the_built_in(workdir: Path) -> None:
    report = run(job_file(workdir, served(f"{FIXTURES}:HangInCheck", call_timeout_s=1), fallback="default"))
    assert report.fallback_used and report.rows_written == 3


# --- a plugin that does not start right ---------------------------------------------------------------------


def test_a_bad_handshake(workdir: Path) -> None:
    error = fails(job_file(workdir, raw("bad-handshake")))
    assert "first line is not its handshake: 'Starting my plugin v1.0 ...'" in str(error)
    assert error.stage == "load" and error.role == "reader"


def test_no_handshake_at_all(workdir: Path) -> None:
    started = time.monotonic()
    error = fails(job_file(workdir, raw("silent", start_timeout_s=1)))
    assert time.monotonic() - started < 20
    assert "printed no handshake within 1 s" in str(error) and "listening soon" in str(error)


def test_another_protocol_version(workdir: Path) -> None:
    error = fails(job_file(workdir, raw("protocol-2")), PluginIncompatible)
    assert "speaks plugin protocol 2, but this Dativo speaks protocol 1" in str(error)


def test_an_exit_before_the_handshake(workdir: Path) -> None:
    error = fails(job_file(workdir, raw("exit")))
    assert "exited with status 4" in str(error)
    assert "cannot open config file /etc/plugin.conf (token=***" in str(error) and "hunter2" not in str(error)


def test_a_handshake_without_location(workdir: Path) -> None:
    error = fails(job_file(workdir, raw("no-location")))
    assert "refused the plugin's handshake: it names no location" in str(error)


def test_a_plugin_that_does_not_listen(workdir: Path) -> None:
    error = fails(job_file(workdir, raw("unreachable", start_timeout_s=2)))
    assert error.stage == "load" and "nothing listens at" in str(error) and "the plugin process" in str(error)


def test_start_failures_fall_back_without_starting_twice(workdir: Path) -> None:
    starts = workdir / "starts.txt"
    plugin = raw("silent", start_timeout_s=1)
    plugin["env"]["STARTS_FILE"] = str(starts)  # type: ignore[index]
    report = run(job_file(workdir, plugin, fallback="default"))
    assert report.fallback_used and report.rows_written == 3
    assert starts.read_text().splitlines() == ["silent"]  # the fallback check did not start it again


def test_a_missing_executable(workdir: Path) -> None:
    error = fails(job_file(workdir, {"command": ["./bin/no-such-plugin"]}), PluginNotFound)
    assert f"{workdir / 'bin' / 'no-such-plugin'} does not exist" in str(error)
    assert "source.reader.implementation" in str(error)
    report = run(job_file(workdir, {"command": ["no-such-plugin-on-path"]}, fallback="default"))
    assert report.fallback_used


# --- a plugin that names a listener the host did not give it ------------------------------------------------

SECRET = "liar-secret-5f1e0c"
OPTION = "option-value-9c2d7a"


def liar(workdir: Path, mode: str, **env: str) -> tuple[dict[str, object], Path]:
    """``implementation:`` of ``liar.py MODE`` (granted a secret), and the file its listener records into."""
    record, outside = workdir / f"{mode}.record", workdir / "outside"
    outside.mkdir(exist_ok=True)
    granted = {"RECORD": str(record), "OUTSIDE": str(outside), "TOKEN": "${LIAR_SECRET}", **env}
    return {"command": [sys.executable, str(LIAR), mode], "env": granted}, record


def refused(job: Path, why: str, plugin: str = "liar.py") -> None:
    """``dativo run job`` exits 3, naming the plugin, why and the fix, and shows no option value or secret."""
    done = subprocess.run(
        [sys.executable, "-m", "dativo", "run", str(job)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "LIAR_SECRET": SECRET},
    )
    output = done.stdout + done.stderr
    assert done.returncode == 3, output
    assert "Dativo refused the plugin's handshake" in output and why in output, output
    assert plugin in output and "$DATIVO_FLIGHT_SOCKET" in output  # the plugin, and the fix
    assert SECRET not in output and OPTION not in output
    nothing_published(job.parent)


def got_nothing(record: Path) -> None:
    """The listener was up, and nobody connected to it or sent it a byte."""
    lines = record.read_text().splitlines()
    assert lines[0].startswith("listening ") and lines[1:] == []


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        ("tcp", "it names 'grpc://127.0.0.1:"),  # its own listener, on the host's network
        ("elsewhere", "/outside/liar.sock', not the socket Dativo gave it"),  # its own socket elsewhere
        ("symlink", "/plugin/plugin.sock is a symbolic link (to "),  # the expected path, leading elsewhere
    ],
)
def test_a_handshake_naming_another_listener_is_refused(workdir: Path, mode: str, why: str) -> None:
    implementation, record = liar(workdir, mode)
    refused(job_file(workdir, implementation, options={"password": "${LIAR_SECRET}", "table": OPTION}), why)
    got_nothing(record)


def test_the_listener_records_what_reaches_it(workdir: Path) -> None:
    """The control: had the host connected to the liar, its record would say so."""
    implementation, record = liar(workdir, "tcp")
    env: dict[str, str] = {**os.environ, **implementation["env"]}  # type: ignore[dict-item]
    command: list[str] = implementation["command"]  # type: ignore[assignment]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env) as plugin:
        location = json.loads(plugin.stdout.readline())["location"]  # type: ignore[union-attr]
        client = fl.FlightClient(location)
        with pytest.raises(fl.FlightError):  # it is no Flight server, but it hears what is sent
            list(client.do_action(fl.Action("health", b"{}"), fl.FlightCallOptions(timeout=2)))
        client.close()
        plugin.kill()
    lines = record.read_text().splitlines()
    assert "connection" in lines and any(line.startswith("bytes ") for line in lines)


SHELL_LIARS = {  # no network in the sandbox: they name a listener of the host's, by address or through a link
    "address": """printf '{"dativo_flight": 1, "location": "%s"}\\n' "$TARGET"; exec cat""",
    "symlink": """ln -s "$TARGET" "$DATIVO_FLIGHT_SOCKET" && """
    """printf '{"dativo_flight": 1, "location": "grpc+unix://%s"}\\n' "$DATIVO_FLIGHT_SOCKET"; exec cat""",
}


@needs_bwrap
@pytest.mark.parametrize("mode", sorted(SHELL_LIARS))
def test_a_sandboxed_plugin_cannot_make_the_host_connect_for_it(workdir: Path, mode: str) -> None:
    """The host's listener (an exfiltration or SSRF target the sandbox cannot reach) hears nothing."""
    record = workdir / "host.record"
    if mode == "address":
        listener = socket.create_server(("127.0.0.1", 0))
        target = "grpc://127.0.0.1:%d" % listener.getsockname()[1]
        why = f"it names {target!r}, not the socket Dativo gave it"
    else:
        target = str(workdir / "host.sock")
        listener = liar_module.unix_listener(target)
        why = f"/plugin/plugin.sock is a symbolic link (to {target!r}), not a socket"
    listening = liar_module.recording(listener, record, target)
    env = {"TARGET": target, "TOKEN": "${LIAR_SECRET}"}
    command = {"command": ["/bin/sh", "-c", SHELL_LIARS[mode]], "env": env}
    try:
        job = job_file(workdir, command, options={"table": OPTION}, sandbox={"enabled": True})
        refused(job, why, plugin="/bin/sh -c")
    finally:
        listener.close()
        listening.join(5)
    got_nothing(record)


# --- what a plugin sees and says ----------------------------------------------------------------------------


def test_the_plugin_sees_a_minimal_environment(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST_SECRET", "do-not-pass")
    monkeypatch.setenv("GRANTED", "yes-pass")
    run(job_file(workdir, served(f"{FIXTURES}:Environment", env={"TOKEN": "${GRANTED}"})))
    seen = dict(zip(*read_parquet_dir(workdir / "out" / "items").to_pydict().values()))
    assert "HOST_SECRET" not in seen and seen["TOKEN"] == "yes-pass"
    assert set(seen) <= {
        "PATH",
        "HOME",
        "LANG",
        "TMPDIR",
        "PYTHONPATH",
        "TOKEN",
        "DATIVO_FLIGHT_SOCKET",
        "DATIVO_PROTOCOL",
        "LC_CTYPE",
    }  # LC_CTYPE: Python's own C locale coercion
    assert seen["DATIVO_PROTOCOL"] == "1" and seen["DATIVO_FLIGHT_SOCKET"].endswith("/plugin.sock")


def test_a_relative_command_starts_in_the_job_folder(
    workdir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = workdir / "bin" / "my-plugin"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\nexec {sys.executable} -m dativo plugin serve {FIXTURES}:Environment\n")
    script.chmod(0o755)
    path = job_file(workdir, {"command": ["./bin/my-plugin"], "env": {"PYTHONPATH": str(ROOT)}})
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    report = run(path)
    assert report.reader is not None and report.reader.implementation == "./bin/my-plugin"
    assert report.rows_written > 0


def test_a_flood_on_stderr_neither_blocks_nor_drowns_the_host(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="dativo"):
        report = run(job_file(workdir, served(f"{FIXTURES}:Flood"), options={"flood_mb": 30}))
    assert report.rows_written == 6
    plugin_lines = [r for r in caplog.records if r.name.startswith("dativo.reader")]
    assert len(plugin_lines) < 5000  # 30 MB of lines were rate-limited, not logged
    assert any("more lines of output were not logged" in r.getMessage() for r in plugin_lines)
    assert max(len(r.getMessage()) for r in plugin_lines) <= 1100  # long lines are cut


def test_a_slow_log_handler_does_not_slow_the_plugin(workdir: Path) -> None:
    class Slow(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            time.sleep(0.01)  # a terminal rendering huge lines

    handler = Slow()
    logger = logging.getLogger("dativo.reader")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        started = time.monotonic()
        report = run(job_file(workdir, served(f"{FIXTURES}:Flood"), options={"flood_mb": 10}))
        assert report.rows_written == 6 and time.monotonic() - started < 30
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


def test_the_plugin_dies_with_its_host(tmp_path: Path) -> None:
    """SIGKILL the host: an SDK plugin exits on stdin EOF, and any plugin gets PR_SET_PDEATHSIG."""
    host = textwrap.dedent(f"""
        import logging, sys, time
        from pathlib import Path
        from dativo.plugins.client import Connection
        from dativo.plugins.process import CommandLauncher, PluginProcess
        launcher = CommandLauncher({served(f"{FIXTURES}:Numbers")["command"]!r}, cwd=Path("."),
                                   env={{"PYTHONPATH": {str(ROOT)!r}}})
        conn = Connection(launcher, "reader", logging.getLogger("t"))
        print(conn.process.popen.pid, conn.process.socket.root, flush=True)
        deaf, _ = PluginProcess.start({raw("deaf")["command"]!r}, cwd=Path("."), env={{}}, name="deaf",
                                      logger=logging.getLogger("t"))  # ignores its stdin
        print(deaf.popen.pid, deaf.socket.root, flush=True)
        time.sleep(600)
    """)
    host_process = subprocess.Popen(
        [sys.executable, "-c", host],
        stdout=subprocess.PIPE,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    plugins, sockets = [], []
    try:
        for _ in range(2):
            pid, socket = host_process.stdout.readline().decode().split()  # type: ignore[union-attr]
            plugins.append(psutil.Process(int(pid)))
            sockets.append(socket)
        assert all(p.is_running() for p in plugins)
    finally:
        host_process.kill()  # SIGKILL: no atexit, no cleanup; the kernel and the stdin pipe must do it
        host_process.wait(10)
    for plugin in plugins:
        plugin.wait(10)  # "deaf" would sleep 30 s: only the kernel's death signal ends it this soon
        assert not plugin.is_running()
    for socket in sockets:
        shutil.rmtree(socket, ignore_errors=True)  # nobody was left to remove the killed host's socket folder


def test_the_host_survives_a_failed_plugin(workdir: Path) -> None:
    fails(job_file(workdir, served(f"{FIXTURES}:CrashMidStream")))
    assert run(job_file(workdir, served(f"{FIXTURES}:Numbers"), options={"rows": 3})).rows_written == 3
