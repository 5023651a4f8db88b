"""What the sandbox tests share: a job whose reader is a hostile plugin, running it, and what it saw."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dativo.config import load_job
from dativo.engine import Engine
from dativo.errors import DativoError, PluginFailed
from dativo.plugins import bwrap
from dativo.report import RunReport
from tests.conftest import read_parquet_dir
from tests.fixtures.required import unavailable
from tests.plugins.fixtures_flight import plugin_children

HOSTILE = "tests.plugins.hostile"
SECRET = "planted-secret-8d1f0c"

NEEDS_NO_SANDBOX = "needs_no_sandbox"
needs_no_sandbox = getattr(pytest.mark, NEEDS_NO_SANDBOX)
"""Marks a test of how Dativo fails closed that needs no working sandbox: it runs on every machine."""



def working_bwrap(node: pytest.Item) -> None:
    """Fail (under CI) or skip (elsewhere) ``node`` unless bubblewrap can start a sandbox here, or ``node``
    is marked :data:`needs_no_sandbox`; the fixture ``working_bwrap`` (tests/plugins/conftest.py) calls it.
    """
    if node.get_closest_marker(NEEDS_NO_SANDBOX) is None:
        status = bwrap.probe()
        if not status.ok:
            unavailable(f"no working bubblewrap: {status.reason} (`dativo check` says how to fix it)")


needs_bwrap = pytest.mark.usefixtures(working_bwrap.__name__)
"""Marks a test (or, in ``pytestmark``, a module) that runs plugins in a real sandbox."""


def job_file(
    workdir: Path,
    reader: Any,
    *,
    options: dict[str, Any] | None = None,
    fallback: str = "fail",
    box: dict[str, Any] | None = None,
    extra: str = "",
) -> Path:
    """A job from data/orders.csv into out/items whose custom reader ``reader`` runs in the sandbox."""
    source = {
        "type": "csv",
        "path": "data/orders.csv",
        "reader": {
            "type": "custom",
            "implementation": reader,
            "fallback": fallback,
            "options": options or {},
            "sandbox": {"enabled": True, **(box or {})},
        },
    }
    path = workdir / "job.yaml"
    text = yaml.safe_dump(
        {"version": 1, "name": "items", "source": source, "target": {"type": "parquet", "path": "out/items"}}
    )
    path.write_text(text + extra)
    return path


def run(path: Path) -> RunReport:
    return Engine(load_job(path)).run()


def fails(path: Path, error: type[DativoError] = PluginFailed) -> DativoError:
    with pytest.raises(error) as caught:
        run(path)
    return caught.value


def outcomes(workdir: Path) -> dict[str, str]:
    """The published ``attempt -> outcome`` rows of a hostile reader."""
    table = read_parquet_dir(workdir / "out" / "items")
    return dict(zip(table.column("attempt").to_pylist(), table.column("outcome").to_pylist(), strict=True))


def nothing_published(workdir: Path) -> None:
    assert read_parquet_dir(workdir / "out" / "items").num_rows == 0


def leftover_cgroups() -> list[Path]:
    return [p for p in Path("/sys/fs/cgroup").glob("*/**/dativo-sandbox-*") if p.is_dir()]


@pytest.fixture
def healthy_host(workdir: Path) -> Iterator[None]:
    """After a test: no plugin or sandbox process, no cgroup, no thread left; the plugin never imported."""
    cgroups = set(leftover_cgroups())
    yield
    deadline = time.monotonic() + 5
    while plugin_children() or any(t.name.startswith(("dativo-flight", "dativo-plugin-std", "dativo-plugin-log",
                                                        "dativo-sandbox")) for t in threading.enumerate()):
        assert time.monotonic() < deadline, (plugin_children(), [t.name for t in threading.enumerate()])
        time.sleep(0.05)
    assert set(leftover_cgroups()) <= cgroups
    assert HOSTILE not in sys.modules  # untrusted code is never imported into the host


def recording(server: socket.socket) -> list[bytes]:
    """What clients send a listening ``server`` (the first 100 bytes of each connection), until it closes."""
    received: list[bytes] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                received.append(conn.recv(100))

    threading.Thread(target=accept, daemon=True).start()
    return received
