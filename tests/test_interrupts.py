"""SIGINT and SIGTERM stop a run at once, publish nothing, clean up, and exit 130 / 143."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import subprocess_env


def start(tmp_path: Path, options: str = "{}") -> subprocess.Popen:
    (tmp_path / "job.yaml").write_text(textwrap.dedent(f"""\
        version: 1
        name: endless
        source:
          type: csv
          path: x.csv
          parallelism: 2
          reader: {{type: custom, implementation: "tests.fixtures.slow:Endless", fallback: fail, options: {options}}}
        target: {{type: parquet, path: out/t}}
        """))
    env = subprocess_env()
    process = subprocess.Popen([sys.executable, "-m", "dativo", "run", "job.yaml"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the reader never started"
        time.sleep(0.05)
    time.sleep(0.3)  # well into writing
    return process


def committed(target: Path) -> list[Path]:
    return [p for p in target.rglob("*.parquet") if "_dativo" not in p.parts] if target.exists() else []


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["int", "term"])
@pytest.mark.parametrize("stuck", [False, True], ids=["flowing", "stuck-reader"])
def test_a_signal_stops_the_run_at_once(tmp_path: Path, sig: signal.Signals, code: int, stuck: bool) -> None:
    process = start(tmp_path, "{stuck_after: 3}" if stuck else "{}")
    sent = time.monotonic()
    process.send_signal(sig)
    try:
        _, stderr = process.communicate(timeout=20)
    finally:
        process.kill()
    took = time.monotonic() - sent
    assert process.returncode == code, stderr
    assert took < 5, f"took {took:.1f} s to stop"
    assert ("Terminated." if sig == signal.SIGTERM else "Interrupted.") in stderr
    assert "Traceback" not in stderr
    assert committed(tmp_path / "out" / "t") == []
